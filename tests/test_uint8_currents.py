"""uint8 images on the CPU: each engine chunk makes its own currents from the pixels
(spike_encode.uint8_currents), bit for bit the reference rule's (spike_encode.inputs), so
the spikes are the same as from the dense currents, at any number of threads (issue #19)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spike_encode import ImageError, latency_encode
from spike_encode.currents import InputCurrents
from spike_encode.engines import simulate_exact
from spike_encode.inputs import input_currents
from spike_encode.functional import encoding_spec
from spike_encode.spec import CHANNEL_POLICIES, INPUT_RULES, EncodingSpec
from spike_encode.uint8_currents import MAX_NEURONS, driven_currents


def _images(rng: np.random.Generator, kind: str, batch: int, channels: int, size: int) -> np.ndarray:
    shape = (batch, channels, size, size)
    if kind == "digits":  # mostly black, a bright stroke
        return (rng.integers(0, 256, shape) * (rng.random(shape) < 0.2)).astype(np.uint8)
    if kind == "photos":  # no black background at all
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if kind == "dim":  # few values, many ties at the median
        return rng.integers(0, 4, shape, dtype=np.uint8)
    # a batch mixing all of these, and uniform (silent under "contrast") images
    out = np.concatenate([_images(rng, k, batch, channels, size) for k in ("digits", "photos", "dim")])
    out[::5] = rng.integers(1, 256)
    return out


def _reference(images: np.ndarray, spec: EncodingSpec) -> tuple[np.ndarray, np.ndarray]:
    dense = input_currents(torch.from_numpy(images), spec).numpy().reshape(-1)
    positions = np.flatnonzero(dense)
    return positions, dense[positions]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["digits", "photos", "dim", "mixed"]),
       rule=st.sampled_from(INPUT_RULES), channels=st.sampled_from(CHANNEL_POLICIES),
       size=st.sampled_from([1, 2, 5, 28, 33]), scale=st.sampled_from([80.0, 1.0, 3e-7, 123.456]))
def test_chunk_currents_are_the_reference_rule_bit_for_bit(seed, kind, rule, channels, size, scale):
    rng = np.random.default_rng(seed)
    images = _images(rng, kind, 4, 3, size)
    images[:, :, 0, 0] = 200  # no all-zero image here, in gray either
    spec = encoding_spec(input_scale=scale, input_rule=rule, channels=channels)
    currents = InputCurrents(torch.from_numpy(images), spec)
    assert currents.by_chunks
    positions, values = currents.driven(0, len(images))
    expected_positions, expected_values = _reference(images, spec)
    np.testing.assert_array_equal(positions, expected_positions)
    np.testing.assert_array_equal(values.view(np.int32), expected_values.view(np.int32))  # every bit
    # a chunk in the middle numbers its positions from its own first image
    middle = currents.driven(1, 3)
    neurons = currents.shape[1]
    inside = (expected_positions >= neurons) & (expected_positions < 3 * neurons)
    np.testing.assert_array_equal(middle[0], expected_positions[inside] - neurons)


@pytest.mark.parametrize("rule", INPUT_RULES)
def test_the_spikes_of_uint8_images_are_those_of_their_dense_currents_at_any_threads(rule, cpu_path):
    rng = np.random.default_rng(3)
    images = torch.from_numpy(_images(rng, "mixed", 150, 1, 28))
    spec = EncodingSpec(input_rule=rule)
    reference = simulate_exact(input_currents(images.float(), spec), spec.params, threads=1)
    for threads in (1, 2, 3):
        events = simulate_exact(InputCurrents(images, spec), spec.params, threads=threads)
        assert torch.equal(events.indices(), reference.indices()), threads
    assert len(reference) > 10_000


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rule", INPUT_RULES)
def test_an_all_zero_uint8_image_is_refused_naming_the_first_one(rule, threads, cpu_path):
    images = torch.from_numpy(_images(np.random.default_rng(0), "digits", 400, 1, 28))
    images[images.reshape(400, -1).sum(dim=1) == 0] = 9
    images[371] = 0
    images[130] = 0
    spec = EncodingSpec(input_rule=rule)
    with pytest.raises(ImageError, match=r"image 130 .*has all-zero pixels") as chunked:
        simulate_exact(InputCurrents(images, spec), spec.params, threads=threads)
    with pytest.raises(ImageError) as dense:
        input_currents(images, spec)
    assert str(chunked.value) == str(dense.value)
    assert isinstance(chunked.value, ValueError)


def test_only_cpu_uint8_images_small_enough_to_sum_exactly_take_the_chunk_path():
    spec = EncodingSpec()
    assert InputCurrents(torch.zeros(2, 1, 28, 28, dtype=torch.uint8) + 1, spec).by_chunks
    assert not InputCurrents(torch.ones(2, 1, 28, 28), spec).by_chunks  # float: the dense rule
    assert not InputCurrents(torch.ones(2, 1, 28, 28, dtype=torch.int16), spec).by_chunks
    big = torch.ones(1, 1, 1, MAX_NEURONS + 1, dtype=torch.uint8)
    assert not InputCurrents(big, spec).by_chunks  # float32 sums of its pixels could round
    assert InputCurrents(big[..., :MAX_NEURONS], spec).by_chunks
    # the largest exact image's sum of all-255 pixels is below 2**24
    assert 255 * MAX_NEURONS < 2**24 <= 255 * (MAX_NEURONS + 1)


def test_driven_currents_need_nothing_of_the_rest_of_the_batch():
    rng = np.random.default_rng(5)
    pixels = _images(rng, "mixed", 10, 1, 28).reshape(30, -1)
    pixels[pixels.sum(axis=1) == 0, 0] = 1
    whole = driven_currents(pixels, "contrast", 80.0)
    parts = [driven_currents(pixels[a:b], "contrast", 80.0) for a, b in ((0, 7), (7, 8), (8, 30))]
    offsets = (0, 7 * 784, 8 * 784)
    np.testing.assert_array_equal(whole[0], np.concatenate([p + o for (p, _), o in zip(parts, offsets)]))
    np.testing.assert_array_equal(whole[1], np.concatenate([v for _, v in parts]))


def test_encoding_uint8_and_float_pixels_of_the_same_values_gives_the_same_spikes(cpu_path):
    images = torch.from_numpy(_images(np.random.default_rng(9), "mixed", 40, 3, 16))
    for rule in INPUT_RULES:
        a = latency_encode(images, backend="torch", input_rule=rule)
        b = latency_encode(images.double(), backend="torch", input_rule=rule)
        assert torch.equal(a.indices(), b.indices())
        # strided views of the pixels (transposed, every other image) read as their copies
        view = images.transpose(2, 3)[::2]
        assert not view.is_contiguous()
        c = latency_encode(view, backend="torch", input_rule=rule)
        assert torch.equal(c.indices(), latency_encode(view.contiguous(), backend="torch", input_rule=rule).indices())
        assert torch.equal(c.indices(), latency_encode(view.float(), backend="torch", input_rule=rule).indices())
