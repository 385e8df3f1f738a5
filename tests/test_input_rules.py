"""The input rules: "contrast" (default) is the tutorial's "sum" rule bit for bit on MNIST, and
gives photographs and 1/f-noise images of any size MNIST-like spikes, where "sum" leaves them
silent (issue #17)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spike_encode import LatencyEncode
from spike_encode.inputs import background_levels, contrast_currents, input_currents, normalised_currents
from spike_encode.spec import INPUT_RULES, EncodingSpec

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def statistics():
    sys.path.insert(0, str(BENCH))
    try:
        import input_statistics

        yield input_statistics
    finally:
        sys.path.remove(str(BENCH))


def _bits(currents: torch.Tensor) -> torch.Tensor:
    return currents.view(torch.int32)


def test_contrast_is_the_default_rule_and_sum_stays_available():
    assert INPUT_RULES == ("contrast", "sum")
    assert EncodingSpec().input_rule == "contrast"
    assert LatencyEncode(backend="torch").spec.input_rule == "contrast"
    with pytest.raises(ValueError, match="input_rule='tutorial' is not one of"):
        EncodingSpec(input_rule="tutorial")


def test_contrast_currents_follow_the_documented_formula():
    x = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 100]], dtype=np.float64)
    m = np.sort(x[0])[(x.size - 1) // 2]  # lower median: 4
    b = m + np.sort(np.abs(x[0] - m))[(x.size - 1) // 2]  # + median absolute deviation (2): 6
    excess = np.maximum(x - b, 0)
    expected = (excess / excess.sum()) * (80.0 * x.size / 784)
    got = contrast_currents(torch.from_numpy(x), 80.0)
    assert float(background_levels(torch.from_numpy(x).float())[0]) == b == 6
    assert got.dtype == torch.float32 and np.allclose(got.numpy(), expected, rtol=1e-6, atol=0)
    assert int((got > 0).sum()) == 3  # 7, 8 and 100


def test_every_image_gets_the_same_current_per_neuron_whatever_its_size():
    rng = np.random.default_rng(0)
    for shape in [(1, 28, 28), (3, 32, 32), (3, 224, 224), (1, 5, 7)]:
        images = torch.from_numpy(rng.integers(0, 256, (4, *shape), dtype=np.uint8))
        currents = input_currents(images, EncodingSpec())
        n = currents.shape[1]
        assert torch.allclose(currents.double().sum(dim=1), torch.full((4,), 80.0 * n / 784, dtype=torch.float64),
                              rtol=1e-5)


def test_brightness_and_contrast_do_not_change_the_currents():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.integers(0, 100, (3, 3, 16, 16), dtype=np.uint8))
    currents = contrast_currents(images.reshape(3, -1), 80.0)
    brighter = contrast_currents((images + 50).reshape(3, -1), 80.0)
    stronger = contrast_currents((images.to(torch.int32) * 3).reshape(3, -1), 80.0)
    assert torch.equal(_bits(brighter), _bits(currents)) and torch.equal(_bits(stronger), _bits(currents))
    # the tutorial's rule follows brightness: a brighter photo spreads its current thinner
    tutorial = normalised_currents(images.reshape(3, -1), 80.0)
    assert not torch.equal(normalised_currents((images + 50).reshape(3, -1), 80.0), tutorial)


def test_an_image_with_nothing_above_its_background_is_silent_and_an_all_zero_one_refused():
    flat = torch.full((2, 1, 8, 8), 7, dtype=torch.uint8)
    flat[1, 0, :5] = 200  # more than half the image at its brightest value
    currents = input_currents(flat, EncodingSpec())
    assert torch.equal(currents, torch.zeros_like(currents))
    assert LatencyEncode(backend="torch")(flat)._nnz() == 0
    with pytest.raises(ValueError, match="image 1 of the batch has all-zero pixels"):
        input_currents(torch.cat([flat[:1], torch.zeros_like(flat[:1])]), EncodingSpec())


def test_contrast_is_sum_bit_for_bit_on_mostly_black_images_of_784_pixels():
    # the rule's neutral case, with float pixels whose sums round (not only exact uint8 sums),
    # in a batch whose other images go through the background subtraction
    rng = np.random.default_rng(2)
    mostly_black = rng.random((64, 784)).astype(np.float32) ** 3
    mostly_black[rng.random((64, 784)) < 0.5 + 0.5 * rng.random((64, 1))] = 0
    mostly_black[:, :392] = 0  # at least half of every image is 0
    mostly_black[:, -1] = 0.5  # and none all zero
    photo_like = rng.random((8, 784)).astype(np.float32) + 0.1
    batch = torch.from_numpy(np.concatenate([mostly_black, photo_like]))
    for scale in (80.0, 3.3, 1234.5):
        assert torch.equal(_bits(contrast_currents(batch, scale)[:64]),
                           _bits(normalised_currents(batch[:64], scale)))


@pytest.mark.slow
def test_contrast_is_sum_bit_for_bit_on_all_70000_mnist_images(data_root):
    from spike_encode.datasets import load_mnist

    checked = 0
    for train in (False, True):
        images = load_mnist(data_root, train=train)[0]
        for start in range(0, len(images), 5000):
            pixels = images[start : start + 5000].reshape(-1, 784)
            for form in (pixels, pixels.float() / 255):
                assert torch.equal(_bits(contrast_currents(form, 80.0)), _bits(normalised_currents(form, 80.0)))
            checked += len(pixels)
    assert checked == 70_000


def _meets_issue_17(spikes, dt: float = 0.1) -> tuple[bool, str]:
    spiking = spikes.first_step >= 0
    firing = float(spikes.firing.median())
    first = float(spikes.first_step[spiking].double().median()) * dt if bool(spiking.any()) else float("inf")
    ok = float(spiking.double().mean()) >= 0.95 and 0.02 <= firing <= 0.60 and first <= 5.0
    return ok, f"{float(spiking.double().mean()):.0%} spike, {firing:.1%} fire, first {first:.1f} ms"


@pytest.mark.parametrize("height, width, channels, count", [(32, 32, "all", 60), (224, 224, "all", 12),
                                                           (64, 64, "gray", 60)])
def test_one_over_f_images_spike_as_mnist_does_at_the_defaults(statistics, height, width, channels, count):
    images = statistics.one_over_f_images(count, height, width, seed=7)
    ok, what = _meets_issue_17(statistics.encode(images, EncodingSpec().input_rule, channels))
    assert ok, what
    ok, what = _meets_issue_17(statistics.encode(images, "sum", channels))
    assert not ok, f"the tutorial's rule was expected to leave them (nearly) silent: {what}"


@pytest.mark.slow
@pytest.mark.parametrize("size, channels", [(32, "all"), (64, "gray")])
def test_photographs_spike_as_mnist_does_at_the_defaults(statistics, size, channels):
    photos = statistics.photo_crops(60, size)
    if photos is None:
        pytest.skip("no sample photograph installed (scikit-learn, matplotlib)")
    ok, what = _meets_issue_17(statistics.encode(photos, "contrast", channels))
    assert ok, what


def test_uint8_images_get_the_same_background_from_their_histogram():
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (6, n), dtype=np.uint8) for n in (1, 2, 3, 784, 3072)]
    edge = np.full((4, 100), 200, dtype=np.uint8)
    edge[1, :60] = 255  # brightest value fills most of the image
    edge[2, :49] = 0  # just under half black
    edge[3, ::2] = 0  # exactly half black: lower median 0
    for pixels in [*images, edge, (rng.random((5, 999)) ** 6 * 255).astype(np.uint8)]:
        x = torch.from_numpy(pixels)
        levels, zero = background_levels(x)
        expected, expected_zero = background_levels(x.float())  # medians by torch.median
        assert torch.equal(zero, expected_zero) and torch.equal(levels, expected), pixels.shape
