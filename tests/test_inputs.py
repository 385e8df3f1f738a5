"""Shapes, dtypes and bad input: clear errors naming the argument, never a silent wrong train."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spike_encode.inputs import normalised_currents


@pytest.fixture(scope="module")
def digits(mnist_test):
    return mnist_test[0][:3]  # (3, 1, 28, 28) uint8


def test_single_images_in_every_form_give_the_same_raster(enc, digits):
    batch = enc(digits).to_dense()
    x = digits[1]
    forms = [x, x[0], x.numpy(), x[0].numpy(), Image.fromarray(x[0].numpy()), x.float(), x.double()]
    for form in forms:
        one = enc(form)
        assert one.shape == (200, 784)
        assert torch.equal(one.to_dense(), batch[1]), type(form)


def test_three_d_input_is_one_image_as_in_torchvision(enc, digits):
    # (C, H, W) is always one image: a (3, H, W) stack is one 3-channel image of 3 * 784
    # neurons, normalised as a whole; batches are (B, C, H, W)
    stack = digits[:, 0]
    one = enc(stack)
    assert one.shape == (200, 3 * 784)
    assert torch.equal(one.to_dense(), enc(stack[None])[0].to_dense())
    assert enc(stack.numpy()).shape == (200, 3 * 784)
    assert not torch.equal(one.to_dense()[:, :784], enc(digits[0]).to_dense()), "channels normalised apart"


def test_uint8_currents_are_the_tutorials_float32_arithmetic(digits):
    x = digits[0].reshape(1, -1).numpy().astype(np.float32)
    expected = (x / x.sum(axis=1, keepdims=True)) * np.float32(80.0)
    got = normalised_currents(digits[0].reshape(1, -1), 80.0).numpy()
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (float("inf"), "inf"), (-1.0, "negative")])
def test_bad_pixel_values_are_refused_naming_image_and_pixel(enc, value, word):
    images = torch.rand(2, 1, 28, 28)
    images[1, 0, 3, 4] = value
    with pytest.raises(ValueError, match=word) as err:
        enc(images)
    assert "image 1" in str(err.value) and "pixel 88" in str(err.value)


def test_all_zero_image_is_an_error_not_nan(enc, digits):
    images = digits.clone()
    images[2] = 0
    with pytest.raises(ValueError, match="image 2 .*all-zero"):
        enc(images)


def test_pixels_overflowing_float32_sums_are_refused(enc):
    images = torch.full((2, 1, 28, 28), 1e37, dtype=torch.float64)
    with pytest.raises(ValueError, match="image 0 .*too large"):
        enc(images)


@pytest.mark.parametrize("shape", [(784,), (2, 2, 1, 28, 28)])
def test_wrong_rank_is_refused(enc, shape):
    with pytest.raises(ValueError, match="images must have shape"):
        enc(torch.ones(shape, dtype=torch.uint8))


def test_empty_batch_is_refused(enc):
    with pytest.raises(ValueError, match="empty batch"):
        enc(torch.ones((0, 1, 28, 28), dtype=torch.uint8))


@pytest.mark.parametrize("bad", [torch.ones(28, 28, dtype=torch.bool), torch.ones(28, 28, dtype=torch.complex64)])
def test_unsupported_dtypes_are_refused(enc, bad):
    with pytest.raises(TypeError, match="dtype"):
        enc(bad)


def test_unsupported_types_are_refused(enc):
    with pytest.raises(TypeError, match="images must be"):
        enc([[1, 2], [3, 4]])


@pytest.fixture(scope="module")
def rgb(digits):
    """A (3, 28, 28) uint8 colour image: three different digits as its R, G, B planes."""
    return digits[:, 0].clone()


def test_rgb_pil_image_gives_the_rgb_tensors_spikes(enc, rgb):
    pil = Image.fromarray(rgb.permute(1, 2, 0).numpy(), mode="RGB")
    expected = enc(rgb[None])[0].to_dense()
    assert expected.shape == (200, 3 * 784) and expected.sum() > 0
    assert torch.equal(enc(pil).to_dense(), expected)


def test_pil_modes_are_read_as_torchvision_users_expect(enc, rgb, digits):
    pil = Image.fromarray(rgb.permute(1, 2, 0).numpy(), mode="RGB")
    as_rgb = enc(pil).to_dense()
    gray = Image.fromarray(digits[0, 0].numpy(), mode="L")
    as_gray = enc(gray).to_dense()
    # alpha is opacity, not intensity: dropped
    assert torch.equal(enc(pil.convert("RGBA")).to_dense(), as_rgb)
    assert torch.equal(enc(gray.convert("LA")).to_dense(), as_gray)
    # palette images are their colours, not palette indices
    palette = pil.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    assert torch.equal(enc(palette).to_dense(), enc(palette.convert("RGB")).to_dense())
    # CMYK is converted to RGB, not read as four ink channels
    cmyk = pil.convert("CMYK")
    assert enc(cmyk).shape == (200, 3 * 784)
    assert torch.equal(enc(cmyk).to_dense(), enc(cmyk.convert("RGB")).to_dense())
    # 16-bit and 32-bit integer and float modes keep their values
    wide = digits[0, 0].numpy().astype(np.uint16) * 257
    for array, mode in [(wide, "I;16"), (wide.astype(np.int32), "I"), (wide.astype(np.float32), "F")]:
        image = Image.fromarray(array)
        assert image.mode == mode
        assert torch.equal(enc(image).to_dense(), as_gray), mode
    # 1-bit images are 0/1 pixels
    bits = gray.convert("1")
    assert torch.equal(enc(bits).to_dense(), enc(torch.from_numpy(np.array(bits)).to(torch.uint8)).to_dense())


def test_uint16_tensors_are_accepted(enc, digits):
    wide = digits.to(torch.int32).mul(257).to(torch.uint16)
    assert torch.equal(enc(wide).to_dense(), enc(digits).to_dense())


def test_gray_channel_policy_keeps_mnist_and_converts_rgb_like_torchvision(digits, rgb):
    from torchvision.transforms.v2.functional import rgb_to_grayscale

    from spike_encode import LatencyEncode

    every, gray = LatencyEncode(backend="torch"), LatencyEncode(backend="torch", channels="gray")
    assert torch.equal(gray(digits).to_dense(), every(digits).to_dense())
    luma = rgb_to_grayscale(rgb)
    assert luma.dtype == torch.uint8
    spikes = gray(rgb)
    assert spikes.shape == (200, 784)
    assert torch.equal(spikes.to_dense(), every(luma).to_dense())
    assert gray.sensor_size((3, 28, 28)) == (28, 28, 1) and every.sensor_size((3, 28, 28)) == (28, 28, 3)


def test_gray_refuses_other_channel_counts_and_negative_channels(digits):
    from spike_encode import LatencyEncode

    gray = LatencyEncode(backend="torch", channels="gray")
    with pytest.raises(ValueError, match="got 2 channels"):
        gray(digits[:2, 0])
    image = torch.rand(3, 8, 8)
    image[1, 0, 2] = -0.5  # mixed with bright R and B it would hide in the luma
    with pytest.raises(ValueError, match="negative pixels .*pixel 66"):
        gray(image)
    with pytest.raises(ValueError, match="channels='grey' is not one of"):
        LatencyEncode(channels="grey")
