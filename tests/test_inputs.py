"""Shapes, dtypes and bad input: clear errors naming the argument, never a silent wrong train."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spike_encode import LatencyEncode
from spike_encode.currents import InputCurrents
from spike_encode.inputs import input_currents, luma, normalised_currents
from spike_encode.spec import INPUT_RULES, EncodingSpec


@pytest.fixture(scope="module")
def digits(mnist_test):
    return mnist_test[0][:3]  # (3, 1, 28, 28) uint8


def test_single_images_in_every_form_give_the_same_raster(enc, digits):
    batch = enc(digits).to_dense()
    x = digits[1]
    hwc = x.permute(1, 2, 0).numpy()  # ndarrays are channels-last, as v2.ToImage reads them
    forms = [x, x[0], hwc, x[0].numpy(), Image.fromarray(x[0].numpy()), x.float(), x.double()]
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
    assert enc(stack.permute(1, 2, 0).numpy()).shape == (200, 3 * 784)  # an (H, W, C) ndarray
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


@pytest.mark.parametrize("rule", INPUT_RULES)
def test_pixels_overflowing_float32_sums_are_refused(rule):
    images = torch.zeros((2, 1, 28, 28), dtype=torch.float64)
    images[:, :, 14:] = 1e37  # half the pixels: background 0 under "contrast" too
    with pytest.raises(ValueError, match="image 0 .*too large"):
        input_currents(images, EncodingSpec(input_rule=rule))


@pytest.mark.parametrize("rule", INPUT_RULES)
def test_float64_pixels_float32_would_make_0_are_refused_naming_the_pixel(rule):
    images = torch.rand(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 1
    spec = EncodingSpec(input_rule=rule)
    scaled = input_currents(images * 1e-30, spec)  # still float32 numbers: the same currents, both rules
    assert torch.allclose(scaled, input_currents(images, spec), rtol=1e-5)
    images[1, 0, 0, 5] = 1e-50  # one pixel below float32's range (it used to become 0 silently)
    with pytest.raises(ValueError, match=r"image 1 .*too small for float32.*pixel 5, value 1e-50"):
        input_currents(images, spec)
    with pytest.raises(ValueError, match=r"image 0 .*too small for float32"):  # not "all-zero pixels"
        input_currents(images * 1e-50, spec)


def test_a_contrast_current_beyond_float32_for_a_large_image_is_refused():
    image = torch.zeros(1, 1, 56, 56, dtype=torch.uint8)
    image[0, 0, 0, 0] = 255  # the whole current of 3,136 neurons on one pixel
    enc = LatencyEncode(backend="torch", input_scale=1e36, output="times")  # fine for 784 neurons
    assert int(enc(image[..., :28, :28])[0, 0]) == 0  # fires at once
    with pytest.raises(ValueError, match=r"input_scale=1e\+36 nA times 3136/784 .* drives a neuron towards 4e\+38 mV"):
        enc(image)  # the brightest pixel would never have fired
    with pytest.raises(ValueError, match="3136/784"):
        InputCurrents(image, enc.spec)  # what every engine is given


@pytest.mark.parametrize("shape", [(0, 0), (3, 0, 5), (2, 1, 0, 4)])
def test_images_without_pixels_are_refused_as_such(enc, shape):
    with pytest.raises(ValueError, match="no pixels"):
        enc(torch.ones(shape, dtype=torch.uint8))


def test_an_image_that_requires_grad_is_encoded_detached(enc, digits):
    image = (digits.float() / 255).requires_grad_()
    spikes = enc(image)
    assert not spikes.requires_grad
    assert torch.equal(spikes.to_dense(), enc(digits.float() / 255).to_dense())


@pytest.mark.filterwarnings("ignore:.*(Sparse CSR|nested tensors).*:UserWarning")
@pytest.mark.parametrize("make, words", [
    (lambda x: x.to("meta"), "device 'meta'"),
    (lambda x: x.to_sparse(), "layout torch.sparse_coo"),
    (lambda x: x[0, 0].to_sparse_csr(), "layout torch.sparse_csr"),
    (lambda x: torch.nested.nested_tensor([x[0].float(), x[1, :, :20].float()]), "nested tensor"),
    (lambda x: torch.nested.nested_tensor([x[0, 0].float(), x[1, 0, :20].float()], layout=torch.jagged),
     "nested tensor"),
])
def test_tensors_without_plain_pixels_are_a_type_error_naming_why(enc, digits, make, words):
    with pytest.raises(TypeError, match=words):
        enc(make(digits))


def test_an_encoder_on_the_meta_device_says_so(digits):
    from spike_encode import BackendUnavailableError, LatencyEncode

    with pytest.raises(BackendUnavailableError, match="device='meta'"):
        LatencyEncode(backend="torch", device="meta")
    with pytest.raises(TypeError, match="device 'meta'"):
        LatencyEncode(backend="torch")(digits.to("meta"))


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


def test_gray_channel_policy_keeps_mnist_and_converts_rgb_as_pil_does(digits, rgb):
    from spike_encode import LatencyEncode

    every, gray = LatencyEncode(backend="torch"), LatencyEncode(backend="torch", channels="gray")
    assert torch.equal(gray(digits).to_dense(), every(digits).to_dense())
    pil = Image.fromarray(rgb.permute(1, 2, 0).numpy(), mode="RGB")
    as_l = torch.from_numpy(np.array(pil.convert("L")))
    spikes = gray(rgb)
    assert spikes.shape == (200, 784)
    assert torch.equal(spikes.to_dense(), every(as_l).to_dense())
    assert torch.equal(gray(pil).to_dense(), spikes.to_dense())
    assert gray.sensor_size((3, 28, 28)) == (28, 28, 1) and every.sensor_size((3, 28, 28)) == (28, 28, 3)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.int32, torch.int64, torch.float16,
                                   torch.float32, torch.float64])
def test_gray_of_three_equal_channels_is_that_grey_image_exactly(digits, dtype):
    # torchvision's rgb_to_grayscale truncates: every non-zero MNIST pixel lost one
    from spike_encode import LatencyEncode

    gray = LatencyEncode(backend="torch", channels="gray")
    grey = digits.to(dtype) if not dtype.is_floating_point else (digits.to(dtype) / 255)
    rgb = grey.expand(-1, 3, -1, -1)
    assert torch.equal(luma(rgb).double(), grey.double())
    assert torch.equal(gray(rgb).to_dense(), gray(grey).to_dense())


def test_luma_is_pils_convert_l_on_random_rgb_triples():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    expected = np.array(Image.fromarray(rgb, "RGB").convert("L"))
    got = luma(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0, 0].numpy()
    assert got.dtype == np.uint8 and np.array_equal(got, expected)


@pytest.mark.slow
def test_luma_is_pils_convert_l_on_every_rgb_triple():
    levels = np.arange(256, dtype=np.uint8)
    for red in range(0, 256, 64):  # 4 chunks of 64 x 256 x 256 triples
        r, g, b = np.meshgrid(np.arange(red, red + 64, dtype=np.uint8), levels, levels, indexing="ij")
        rgb = np.stack([r, g, b], axis=-1).reshape(4096, 1024, 3)
        expected = np.array(Image.fromarray(rgb, "RGB").convert("L"))
        got = luma(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0, 0].numpy()
        assert np.array_equal(got, expected), f"red {red}..{red + 63}"


def test_gray_refuses_integer_pixels_beyond_exact_arithmetic():
    image = torch.zeros(2, 3, 4, 4, dtype=torch.int64)
    image[1, 0, 0, 0] = 2**50
    with pytest.raises(ValueError, match="image 1 .*2\\*\\*46"):
        luma(image)


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
