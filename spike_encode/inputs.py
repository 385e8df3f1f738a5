"""Images in, input currents out: torchvision's rank rule, PIL modes, the channel policy,
validation and the tutorial's normalisation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import ImageError
from .spec import CHANNEL_POLICIES, EncodingSpec

__all__ = ["CHANNEL_POLICIES", "ImageError", "as_image_batch", "input_currents", "normalised_currents", "select_channels",
           "to_tensor"]

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


def to_tensor(images: Any) -> torch.Tensor:
    """A plain tensor of a tensor (``tv_tensors`` included), ndarray or PIL image.

    A PIL image becomes one ``(C, H, W)`` image as :func:`_pil_to_tensor` describes; arrays
    and tensors keep their shape and dtype (big-endian arrays are read in native order).

    Raises:
        TypeError: for any other type.
    """
    if isinstance(images, torch.Tensor):
        return images.as_subclass(torch.Tensor)
    if isinstance(images, np.ndarray):
        if not images.dtype.isnative:
            images = images.astype(images.dtype.newbyteorder("="))
        return torch.from_numpy(np.ascontiguousarray(images))
    from PIL import Image

    if isinstance(images, Image.Image):
        return _pil_to_tensor(images)
    raise TypeError(
        "images must be a torch.Tensor, a numpy array or a PIL image, "
        f"got {type(images).__name__}"
    )


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
    batch = tensor if batched else tensor.reshape(1, -1, *tensor.shape[-2:])
    if batch.shape[0] == 0:
        raise ValueError(f"images is an empty batch, shape {tuple(tensor.shape)}")
    if batch[0].numel() == 0:
        raise ValueError(f"images has no pixels, shape {tuple(tensor.shape)}")
    return batch, batched


def select_channels(images: torch.Tensor, channels: str) -> torch.Tensor:
    """Apply the channel policy to a ``(B, C, H, W)`` batch.

    ``"all"``: every channel kept (one neuron per channel and pixel). ``"gray"``: one channel;
    3-channel (RGB) images through torchvision's ``rgb_to_grayscale`` (ITU-R 601-2 luma,
    rounded and kept in the input's integer dtype, so uint8 stays uint8), 1-channel images
    unchanged (MNIST gives the same spikes under both policies).

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
    from torchvision.transforms.v2.functional import rgb_to_grayscale

    check_pixel_values(images.reshape(images.shape[0], -1))  # before mixing channels hides them
    return rgb_to_grayscale(images)


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
        ImageError: (a ``ValueError``) naming the image, for NaN/inf or negative pixels, an
            all-zero image or one whose sum overflows float32.
    """
    check_pixel_values(pixels)
    x = pixels.to(torch.float32)
    totals = x.sum(dim=1, keepdim=True)
    overflow = ~torch.isfinite(totals[:, 0])
    if bool(overflow.any()):
        sample = int(overflow.nonzero()[0, 0])
        raise ImageError(sample, f"sums to {float(totals[sample, 0])} in float32; its pixels are too large "
                                 "to normalise")
    empty = totals[:, 0] <= 0
    if bool(empty.any()):
        sample = int(empty.nonzero()[0, 0])
        raise ImageError(sample, "has all-zero pixels: it cannot be normalised to sum to 1 (the "
                                 "tutorial's division would give NaN currents)")
    scale = torch.tensor(input_scale, dtype=torch.float32, device=x.device)
    return (x / totals).mul_(scale)  # in place on the fresh quotient; same float32 operations


def input_currents(images: torch.Tensor, spec: EncodingSpec) -> torch.Tensor:
    """The ``(B, N)`` float32 input currents (nA) of a ``(B, C, H, W)`` batch under ``spec``:
    its channel policy, then its input rule (``"sum"``: :func:`normalised_currents`).

    Raises:
        ImageError: naming the image, for pixels the rule cannot turn into currents.
    """
    batch = select_channels(images, spec.channels)
    return normalised_currents(batch.reshape(batch.shape[0], -1), spec.params.input_scale)
