"""Images in, input currents out: torchvision's rank rule, PIL modes, the channel policy,
validation and the input rules (:data:`~spike_encode.spec.INPUT_RULES`): the tutorial's
``"sum"`` normalisation and the ``"contrast"`` rule that extends it beyond MNIST."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import ImageError
from .spec import CHANNEL_POLICIES, INPUT_RULES, EncodingSpec

__all__ = ["CHANNEL_POLICIES", "EMPTY_IMAGE", "INPUT_RULES", "REFERENCE_NEURONS", "ImageError", "as_image_batch",
           "background_levels", "check_plain_tensor", "contrast_currents", "input_currents", "input_rule", "luma",
           "normalised_currents", "select_channels", "to_tensor"]

#: Neurons of the tutorial's images (28 x 28 MNIST): the ``"contrast"`` rule gives an image
#: of ``N`` neurons ``input_scale * N / REFERENCE_NEURONS`` nA in all.
REFERENCE_NEURONS = 784

EMPTY_IMAGE = ("has all-zero pixels: it cannot be normalised to sum to 1 (the tutorial's division "
               "would give NaN currents)")
"""How an all-zero image is refused."""

# ITU-R 601-2 luma in PIL's 16-bit fixed point (R + G + B weights sum to 65536), and as fractions
_LUMA_FIXED = (19595, 38470, 7471)
_LUMA = (0.299, 0.587, 0.114)

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_UNSIGNED_DTYPES = (torch.uint8, torch.uint16, torch.uint32, torch.uint64)
_INT_DTYPES = _UNSIGNED_DTYPES + (torch.int8, torch.int16, torch.int32, torch.int64)

# PIL modes that torchvision's pil_to_tensor would read as something other than intensities
# (palette indices, CMYK ink, alpha as a channel): the mode PIL converts them to first.
_PIL_CONVERSIONS = {
    "P": "RGB", "PA": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB",
    "RGBA": "RGB", "RGBa": "RGB", "RGBX": "RGB", "LA": "L", "La": "LA",
}


def _pil_to_tensor(image: Any) -> torch.Tensor:
    """One PIL image as a ``(C, H, W)`` tensor, through torchvision's ``pil_to_tensor``.

    Modes: ``L`` -> 1 channel uint8; ``RGB`` -> 3 channels uint8; ``1`` -> uint8 0/1;
    ``P``/``PA`` -> RGB of the palette colours; ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` -> RGB;
    ``RGBA``/``RGBa``/``RGBX`` -> RGB and ``LA``/``La`` -> L, the alpha channel dropped (alpha is
    opacity, not intensity; as torchvision's ``ImageFolder`` loader, which converts to RGB);
    ``I;16*`` -> uint16; ``I`` -> int32; ``F`` -> float32.
    """
    from torchvision.transforms.v2.functional import pil_to_tensor

    if image.mode.startswith("I;16"):  # any byte order: native uint16
        return torch.from_numpy(np.asarray(image).astype(np.uint16))[None]
    while image.mode in _PIL_CONVERSIONS:  # La -> LA -> L: PIL has no direct route
        image = image.convert(_PIL_CONVERSIONS[image.mode])
    tensor = pil_to_tensor(image)
    return tensor.to(torch.uint8) if tensor.dtype == torch.bool else tensor


def is_explicit_image(value: Any) -> bool:
    """A PIL image or ``tv_tensors.Image``: what torchvision v2 takes as a sample's image first."""
    from PIL import Image
    from torchvision import tv_tensors

    return isinstance(value, (Image.Image, tv_tensors.Image))


def is_plain_array(value: Any) -> bool:
    """An ndarray or a plain tensor (not a ``tv_tensors`` mask, box or other annotation):
    v2's image when a sample has no explicit one (the first such leaf)."""
    from torchvision import tv_tensors

    return isinstance(value, np.ndarray) or (isinstance(value, torch.Tensor)
                                              and not isinstance(value, tv_tensors.TVTensor))


#: torchvision v2's rule for a sample's image, in order: the first leaf passing the first
#: test that any leaf passes.
IMAGE_RULES = (is_explicit_image, is_plain_array)


def to_tensor(images: Any) -> torch.Tensor:
    """A plain tensor of a tensor (``tv_tensors`` included), ndarray or PIL image.

    A PIL image becomes one ``(C, H, W)`` image as :func:`_pil_to_tensor` describes; tensors
    keep their shape and dtype; ndarrays are read as torchvision v2's ``ToImage`` reads them,
    channels last: ``(H, W)`` and ``(H, W, C)`` become ``(1, H, W)`` and ``(C, H, W)``, a
    ``(B, H, W, C)`` stack ``(B, C, H, W)`` (dtype kept; big-endian arrays in native order).

    The encoding is not differentiable: a tensor that requires grad is detached (no
    gradient flows back to it).

    Raises:
        TypeError: for any other type, and for tensors without plain pixel values: nested
            (ragged) tensors, sparse layouts and the ``meta`` device.
    """
    if isinstance(images, torch.Tensor):
        check_plain_tensor(images)
        return images.detach().as_subclass(torch.Tensor)
    if isinstance(images, np.ndarray):
        if not images.dtype.isnative:
            images = images.astype(images.dtype.newbyteorder("="))
        if images.ndim == 4:  # a stack of channels-last images, each read as ToImage reads one
            return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        if images.ndim not in (2, 3):
            return torch.from_numpy(np.ascontiguousarray(images))  # as_image_batch names the wrong rank
        from torchvision.transforms.v2.functional import to_image

        return to_image(np.ascontiguousarray(images)).as_subclass(torch.Tensor)
    from PIL import Image

    if isinstance(images, Image.Image):
        return _pil_to_tensor(images)
    raise TypeError(
        "images must be a torch.Tensor, a numpy array or a PIL image, "
        f"got {type(images).__name__}"
    )


def check_plain_tensor(images: torch.Tensor) -> None:
    """Refuse tensors whose pixels cannot be read as one dense array."""
    if images.is_nested:
        raise TypeError("images is a nested tensor (images of different sizes); give a (B, C, H, W) batch "
                        "of one size (resize them first) or encode the images one by one")
    if images.layout != torch.strided:
        raise TypeError(f"images must be a dense (strided) tensor, got layout {images.layout}; "
                        "pass images.to_dense()")
    if images.device.type == "meta":
        raise TypeError("images are on device 'meta', which holds shapes but no pixel values to encode")


def as_image_batch(images: Any) -> tuple[torch.Tensor, bool]:
    """Images as a ``(B, C, H, W)`` tensor, and whether the input was a batch.

    torchvision's rank rule: ``(H, W)`` is one image with ``C = 1``, ``(C, H, W)`` is
    always one image (a ``(B, H, W)`` stack is not a batch: pass ``(B, 1, H, W)``), and
    ``(B, C, H, W)`` is a batch. A PIL image is one image.

    Raises:
        TypeError: for an unsupported type or dtype (bool, complex).
        ValueError: for a wrong rank, an empty batch or an image without pixels.
    """
    tensor = to_tensor(images)
    if tensor.dtype not in _FLOAT_DTYPES + _INT_DTYPES:
        raise TypeError(
            f"images must hold uint8, uint16, integer or floating-point pixels, got dtype {tensor.dtype}"
        )
    if tensor.ndim not in (2, 3, 4):
        raise ValueError(
            "images must have shape (H, W) or (C, H, W) for one image, or (B, C, H, W) for a "
            f"batch, got {tuple(tensor.shape)}"
        )
    batched = tensor.ndim == 4
    if batched and tensor.shape[0] == 0:
        raise ValueError(f"images is an empty batch, shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ValueError(f"images has no pixels, shape {tuple(tensor.shape)}")
    batch = tensor if batched else tensor.reshape(1, -1, *tensor.shape[-2:])
    return batch, batched


def select_channels(images: torch.Tensor, channels: str) -> torch.Tensor:
    """Apply the channel policy to a ``(B, C, H, W)`` batch.

    ``"all"``: every channel kept (one neuron per channel and pixel). ``"gray"``: one channel;
    3-channel (RGB) images through :func:`luma` (PIL's ``convert("L")``, exactly, for uint8),
    1-channel images unchanged (MNIST gives the same spikes under both policies, and an RGB
    image with three equal channels the spikes of that grey image).

    Raises:
        ValueError: for an unknown policy, or ``"gray"`` on images with neither 1 nor 3 channels.
    """
    if channels not in CHANNEL_POLICIES:
        raise ValueError(f"channels={channels!r} is not one of {CHANNEL_POLICIES}")
    if channels == "all" or images.shape[1] == 1:
        return images
    if images.shape[1] != 3:
        raise ValueError(
            f"channels='gray' converts RGB (3-channel) images, got {images.shape[1]} channels "
            f"(images of shape {tuple(images.shape)}); use channels='all'"
        )
    check_pixel_values(images.reshape(images.shape[0], -1))  # before mixing channels hides them
    return luma(images)


def luma(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma ``L = 0.299 R + 0.587 G + 0.114 B`` of a ``(B, 3, H, W)`` batch of
    non-negative pixels, as ``(B, 1, H, W)``.

    Integer pixels: PIL's ``convert("L")`` arithmetic, exactly (16-bit fixed-point weights
    19595, 38470, 7471, rounded half up), in the input's dtype; uint8 RGB gives PIL's ``L``
    image bit for bit. Floating-point pixels: float32 (float64 stays float64). Both are
    written as ``G + wR (R - G) + wB (B - G)``, so three equal channels give that channel
    exactly (torchvision's ``rgb_to_grayscale`` truncates uint8: 100 becomes 99).

    Raises:
        ImageError: for 64-bit integer pixels of 2**46 or more (beyond the exact arithmetic).
    """
    if images.dtype.is_floating_point:
        x = images if images.dtype == torch.float64 else images.to(torch.float32)
        r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        return g + _LUMA[0] * (r - g) + _LUMA[2] * (b - g)
    x = images.to(torch.int64)
    if images.dtype in (torch.int64, torch.uint64):
        too_large = (x < 0) | (x >= 2**46)  # uint64 beyond int64 reads negative
        if bool(too_large.any()):
            sample = int(too_large.nonzero()[0, 0])
            raise ImageError(sample, "has pixels of 2**46 or more; channels='gray' converts integer pixels "
                                     "exactly only below that (pass float pixels)")
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    wr, _, wb = _LUMA_FIXED
    return (g + (((r - g) * wr + (b - g) * wb + 32768) >> 16)).to(images.dtype)


def check_pixel_values(pixels: torch.Tensor) -> None:
    """Refuse NaN/inf and negative pixels of a ``(B, N)`` batch, naming image and pixel.

    Raises:
        ImageError: naming the first bad image, pixel (row-major over ``(C, H, W)``) and value.
    """
    if pixels.dtype.is_floating_point:
        bad = ~torch.isfinite(pixels)
        if bool(bad.any()):
            sample, neuron = (int(i) for i in bad.nonzero()[0])
            raise ImageError(sample, f"has NaN or inf pixels (first: pixel {neuron}, "
                                     f"value {float(pixels[sample, neuron])})")
    if pixels.dtype not in _UNSIGNED_DTYPES:
        negative = pixels < 0
        if bool(negative.any()):
            sample, neuron = (int(i) for i in negative.nonzero()[0])
            raise ImageError(sample, f"has negative pixels (first: pixel {neuron}, value "
                                     f"{float(pixels[sample, neuron])}); a latency code needs intensities >= 0")


def _float32_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """``pixels`` in float32, refusing float64 pixels too small to be told from 0 there.

    Raises:
        ImageError: naming the first image and pixel that float32 would make 0.
    """
    x = pixels.to(torch.float32)
    if pixels.dtype == torch.float64:
        lost = (x == 0) & (pixels != 0)
        if bool(lost.any()):
            sample, neuron = (int(i) for i in lost.nonzero()[0])
            raise ImageError(sample, f"has pixels too small for float32, the currents' type (first: pixel "
                                     f"{neuron}, value {float(pixels[sample, neuron])!r}); the input rules do "
                                     "not change when an image is multiplied by a constant: scale it up")
    return x


def normalised_currents(pixels: torch.Tensor, input_scale: float) -> torch.Tensor:
    """Input current (nA) per pixel: each image divided by its sum, times ``input_scale``.

    Computed in float32 in the tutorial's order, ``(x / sum(x)) * input_scale``, so raw
    uint8 images give GeNN's currents bit for bit (their sums are exact in float32).

    Args:
        pixels: ``(B, N)`` non-negative pixel values, any real dtype.
        input_scale: current (nA) of a whole normalised image.

    Returns:
        ``(B, N)`` float32 currents on the device of ``pixels``.

    Raises:
        ImageError: (a ``ValueError``) naming the image, for NaN/inf or negative pixels, float64
            pixels float32 makes 0, an all-zero image or one whose sum overflows float32.
    """
    check_pixel_values(pixels)
    x = _float32_pixels(pixels)
    totals = x.sum(dim=1, keepdim=True)
    _check_totals(totals)
    return _scaled(x / totals, input_scale)


def _check_totals(totals: torch.Tensor) -> None:
    """Refuse images whose ``(B, 1)`` float32 pixel sums overflow or are zero."""
    overflow = ~torch.isfinite(totals[:, 0])
    if bool(overflow.any()):
        sample = int(overflow.nonzero()[0, 0])
        raise ImageError(sample, f"sums to {float(totals[sample, 0])} in float32; its pixels are too large "
                                 "to normalise")
    empty = totals[:, 0] <= 0
    if bool(empty.any()):
        sample = int(empty.nonzero()[0, 0])
        raise ImageError(sample, EMPTY_IMAGE)


def _scaled(shares: torch.Tensor, input_scale: float) -> torch.Tensor:
    """``shares * input_scale`` in float32, in place on the fresh quotient (the tutorial's last step)."""
    return shares.mul_(torch.tensor(input_scale, dtype=torch.float32, device=shares.device))


def background_levels(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The background level ``b`` of each image of a ``(B, N)`` batch of pixels >= 0, and
    which images have ``b = 0``.

    ``b = m + median(|x - m|)``, ``m = median(x)``: the image's median pixel plus its median
    absolute deviation (lower medians over the ``N`` values, in float32). Where at least half
    the pixels are 0 (every MNIST image) both medians are exactly 0; a batch of such images
    is found by counting zeros, without computing a median. uint8 images take their medians
    from a histogram of their 256 values (the same numbers, several times faster).

    Returns:
        ``(B, 1)`` float32 levels, and a ``(B,)`` bool tensor, ``True`` where the level is 0.
    """
    count = pixels.shape[1]
    zero = (pixels == 0).sum(dim=1) > (count - 1) // 2  # the lower median is the ((N - 1) // 2)-th smallest
    if bool(zero.all()):
        return torch.zeros(pixels.shape[0], 1, dtype=torch.float32, device=pixels.device), zero
    return (_uint8_levels(pixels) if pixels.dtype == torch.uint8 else _float_levels(pixels)), zero


def _float_levels(pixels: torch.Tensor) -> torch.Tensor:
    """``median + median absolute deviation`` of each row of a ``(R, N)`` batch, in float32."""
    x = pixels.to(torch.float32)
    median = x.median(dim=1, keepdim=True).values
    return median + (x - median).abs_().median(dim=1, keepdim=True).values


def _uint8_levels(pixels: torch.Tensor) -> torch.Tensor:
    """:func:`_float_levels` of a ``(R, N)`` uint8 batch, from each row's histogram."""
    rows, count = pixels.shape
    rank = (count - 1) // 2  # of the lower median, from 0
    offsets = torch.arange(rows, dtype=torch.int32, device=pixels.device)[:, None] * 256
    histogram = torch.bincount((pixels.to(torch.int32) + offsets).view(-1), minlength=rows * 256).view(rows, 256)
    median = (histogram.cumsum(dim=1) <= rank).sum(dim=1, keepdim=True)  # first value past `rank` pixels
    distance = torch.arange(256, device=pixels.device)
    above, below = median + distance, median - distance
    at_distance = (torch.where(above <= 255, histogram.gather(1, above.clamp(max=255)), 0)
                   + torch.where((below >= 0) & (distance > 0), histogram.gather(1, below.clamp(min=0)), 0))
    spread = (at_distance.cumsum(dim=1) <= rank).sum(dim=1, keepdim=True)
    return (median + spread).to(torch.float32)


def contrast_currents(pixels: torch.Tensor, input_scale: float) -> torch.Tensor:
    """Input current (nA) per pixel under the ``"contrast"`` rule: each pixel's excess over
    its image's background level (:func:`background_levels`), normalised to sum to 1, times
    ``input_scale * N / 784``::

        I_i = max(x_i - b, 0) / sum_j max(x_j - b, 0) * input_scale * N / 784

    Every image gets ``input_scale / 784`` nA per neuron on average, whatever its size, and
    only its pixels brighter than the background are driven, so photographs give sparse,
    strong currents as MNIST digits do. Where at least half the pixels are 0, ``b = 0`` and
    ``N = 784`` (every MNIST image) this is :func:`normalised_currents`, bit for bit: the same
    float32 operations on the same values. Invariant to the image's brightness (adding a
    constant) and, as the tutorial's rule, its contrast (a factor).

    Args:
        pixels: ``(B, N)`` non-negative pixel values, any real dtype.
        input_scale: current (nA) of a whole 784-pixel image.

    Returns:
        ``(B, N)`` float32 currents on the device of ``pixels``; all zero (a silent image)
        where no pixel is brighter than the background (e.g. a uniform image).

    Raises:
        ImageError: (a ``ValueError``) naming the image, for NaN/inf or negative pixels, float64
            pixels float32 makes 0, an all-zero image or one whose excess sums to more than
            float32 holds.
    """
    check_pixel_values(pixels)
    x = _float32_pixels(pixels)
    levels, zero = background_levels(pixels)
    if not bool(zero.all()):
        x = (x - levels).clamp_(min=0)  # exactly x where the level is 0
    totals = x.sum(dim=1, keepdim=True)
    flat = ~zero[:, None] & (totals == 0)  # nothing above the background: no current
    totals = torch.where(flat, torch.ones_like(totals), totals)
    _check_totals(totals)  # all-zero images, whose background is 0, are still refused
    return _scaled(x / totals, input_scale * (x.shape[1] / REFERENCE_NEURONS))


_RULES = {"sum": normalised_currents, "contrast": contrast_currents}


def input_rule(pixels: torch.Tensor, spec: EncodingSpec) -> torch.Tensor:
    """``spec``'s input rule on ``(B, N)`` pixels: the ``(B, N)`` float32 currents (nA)."""
    return _RULES[spec.input_rule](pixels, spec.params.input_scale)


def input_currents(images: torch.Tensor, spec: EncodingSpec) -> torch.Tensor:
    """The ``(B, N)`` float32 input currents (nA) of a ``(B, C, H, W)`` batch under ``spec``:
    its channel policy, then its input rule (``"sum"``: :func:`normalised_currents`,
    ``"contrast"``: :func:`contrast_currents`).

    Raises:
        TypeError: for images on the ``meta`` device (no pixel values).
        ImageError: naming the image, for pixels the rule cannot turn into currents.
    """
    check_plain_tensor(images)
    batch = select_channels(images, spec.channels)
    return input_rule(batch.reshape(batch.shape[0], -1), spec)
