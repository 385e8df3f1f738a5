"""Images in, input currents out: shape rules, validation and the tutorial's normalisation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["as_pixel_batch", "normalised_currents", "to_tensor"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def to_tensor(images: Any) -> torch.Tensor:
    """A tensor view of a tensor, ndarray or PIL image (PIL: ``(C, H, W)`` or ``(H, W)``)."""
    if isinstance(images, torch.Tensor):
        return images
    if isinstance(images, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(images))
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - torchvision depends on pillow
        Image = None
    if Image is not None and isinstance(images, Image.Image):
        array = np.array(images)
        if array.dtype == bool:
            array = array.astype(np.uint8)
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        return tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor
    raise TypeError(
        "images must be a torch.Tensor, a numpy array or a PIL image, "
        f"got {type(images).__name__}"
    )


def as_pixel_batch(images: Any) -> tuple[torch.Tensor, bool]:
    """Flatten images to a ``(B, N)`` pixel tensor and say whether the input was a batch.

    Shapes: ``(H, W)`` and ``(1, H, W)`` are one image; ``(B, H, W)`` with ``B > 1`` and
    ``(B, C, H, W)`` are batches. A PIL image is one ``(C, H, W)`` image. Pixels are
    flattened row-major (channel, row, column), so MNIST gives ``N = 784``.

    Raises:
        TypeError: for an unsupported type or dtype (bool, complex).
        ValueError: for a wrong rank or an empty batch.
    """
    tensor = to_tensor(images)
    if tensor.dtype not in _FLOAT_DTYPES + _INT_DTYPES:
        raise TypeError(
            f"images must hold uint8, integer or floating-point pixels, got dtype {tensor.dtype}"
        )
    if tensor.ndim == 2 or (tensor.ndim == 3 and tensor.shape[0] == 1):
        batched = False
        flat = tensor.reshape(1, -1)
    elif tensor.ndim in (3, 4):
        batched = True
        if tensor.shape[0] == 0:
            raise ValueError(f"images is an empty batch, shape {tuple(tensor.shape)}")
        flat = tensor.reshape(tensor.shape[0], -1)
    else:
        raise ValueError(
            "images must have shape (H, W), (1, H, W), (B, H, W) or (B, C, H, W), "
            f"got {tuple(tensor.shape)}"
        )
    if flat.shape[1] == 0:
        raise ValueError(f"images has no pixels, shape {tuple(tensor.shape)}")
    return flat, batched


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
        ValueError: naming the image, for NaN/inf or negative pixels or an all-zero image.
    """
    x = pixels.to(torch.float32)
    if pixels.dtype.is_floating_point:
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            sample, neuron = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"images contain NaN or inf pixels (first: image {sample}, pixel {neuron}, "
                f"value {float(pixels[sample, neuron])})"
            )
    if pixels.dtype != torch.uint8:
        negative = x < 0
        if bool(negative.any()):
            sample, neuron = (int(i) for i in negative.nonzero()[0])
            raise ValueError(
                f"images contain negative pixels (first: image {sample}, pixel {neuron}, "
                f"value {float(x[sample, neuron])}); a latency code needs intensities >= 0"
            )
    totals = x.sum(dim=1, keepdim=True)
    overflow = ~torch.isfinite(totals[:, 0])
    if bool(overflow.any()):
        sample = int(overflow.nonzero()[0, 0])
        raise ValueError(f"image {sample} of the batch sums to {float(totals[sample, 0])} in float32; "
                         "its pixels are too large to normalise")
    empty = totals[:, 0] <= 0
    if bool(empty.any()):
        sample = int(empty.nonzero()[0, 0])
        raise ValueError(
            f"image {sample} of the batch has all-zero pixels: it cannot be normalised to "
            "sum to 1 (the tutorial's division would give NaN currents)"
        )
    scale = torch.tensor(input_scale, dtype=torch.float32, device=x.device)
    return (x / totals).mul_(scale)  # in place on the fresh quotient; same float32 operations
