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


def test_batches_with_and_without_channel_dimension_agree(enc, digits):
    assert torch.equal(enc(digits).to_dense(), enc(digits[:, 0]).to_dense())
    assert enc(digits[:, 0].numpy()).shape == (3, 200, 784)


def test_uint8_currents_are_the_tutorials_float32_arithmetic(digits):
    x = digits[0].reshape(1, -1).numpy().astype(np.float32)
    expected = (x / x.sum(axis=1, keepdims=True)) * np.float32(80.0)
    got = normalised_currents(digits[0].reshape(1, -1), 80.0).numpy()
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (float("inf"), "inf"), (-1.0, "negative")])
def test_bad_pixel_values_are_refused_naming_image_and_pixel(enc, value, word):
    images = torch.rand(2, 28, 28)
    images[1, 3, 4] = value
    with pytest.raises(ValueError, match=word) as err:
        enc(images)
    assert "image 1" in str(err.value) and "pixel 88" in str(err.value)


def test_all_zero_image_is_an_error_not_nan(enc, digits):
    images = digits.clone()
    images[2] = 0
    with pytest.raises(ValueError, match="image 2 .*all-zero"):
        enc(images)


def test_pixels_overflowing_float32_sums_are_refused(enc):
    images = torch.full((2, 28, 28), 1e37, dtype=torch.float64)
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
