"""A batch's input currents as engines take them: whole, or chunk by chunk where they are needed.

GeNN and the accelerators take the ``(B, N)`` tensor of :func:`~spike_encode.inputs.input_currents`.
The CPU engine takes the driven neurons of one chunk of samples at a time, on its own threads:
for uint8 images those come straight from the pixels (:mod:`~spike_encode.uint8_currents`,
the same numbers), so the rule runs in the threads too and never makes the dense tensor.
"""

from __future__ import annotations

import numpy as np
import torch

from .inputs import check_plain_tensor, input_rule, select_channels
from .spec import EncodingSpec
from .uint8_currents import MAX_NEURONS, driven_currents

__all__ = ["InputCurrents", "dense_currents", "driven_of_dense"]


class InputCurrents:
    """The input currents (nA) of a ``(B, C, H, W)`` batch of images under ``spec``.

    Made in the caller's thread, where every check of the images that does not need the
    rule runs; the rule runs in :meth:`dense` or, for uint8 images on the CPU, in each
    :meth:`driven` chunk (whose errors name the image in the batch).

    Raises:
        TypeError: for images on the ``meta`` device, nested or not strided.
        ImageError: naming the image, for pixels the rule cannot turn into currents (when
            the rule runs now: for other than uint8 images on the CPU).
    """

    def __init__(self, images: torch.Tensor, spec: EncodingSpec):
        check_plain_tensor(images)
        batch = select_channels(images, spec.channels)
        self.pixels = batch.reshape(batch.shape[0], -1)
        self.spec = spec
        self.by_chunks = (self.pixels.device.type == "cpu" and self.pixels.dtype == torch.uint8
                          and self.pixels.shape[1] <= MAX_NEURONS)
        self._dense = None if self.by_chunks else input_rule(self.pixels, spec)

    @property
    def shape(self) -> tuple[int, int]:
        """``(B, N)``: images and neurons per image."""
        return (self.pixels.shape[0], self.pixels.shape[1])

    @property
    def device(self) -> torch.device:
        """Where the images are (and the currents are computed)."""
        return self.pixels.device

    def dense(self) -> torch.Tensor:
        """The ``(B, N)`` float32 currents (nA), made at the first call."""
        if self._dense is None:
            self._dense = input_rule(self.pixels, self.spec)
        return self._dense

    def driven(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """The neurons of samples ``start..stop`` with current above 0: flat int64 positions
        (``(sample - start) * N + neuron``, ascending) and their float32 currents (nA).

        CPU only; safe to call from several threads at once.

        Raises:
            ImageError: an all-zero image among them (uint8 images; others were checked
                when the currents were made).
        """
        if self.by_chunks:
            return driven_currents(self.pixels[start:stop].numpy(), self.spec.input_rule,
                                   self.spec.params.input_scale, start)
        return driven_of_dense(self._dense, start, stop)


def driven_of_dense(currents: torch.Tensor, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`InputCurrents.driven` of a ``(B, N)`` float32 CPU tensor of currents (nA)."""
    flat = currents[start:stop].numpy().reshape(-1)
    positions = np.flatnonzero(flat != 0)  # of a bool mask: several times faster than of the floats
    return positions, flat[positions]


def dense_currents(currents: InputCurrents | torch.Tensor) -> torch.Tensor:
    """The ``(B, N)`` tensor of currents (nA) an engine was given either way."""
    return currents.dense() if isinstance(currents, InputCurrents) else currents
