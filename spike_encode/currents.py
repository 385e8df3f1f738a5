"""A batch's input currents as engines take them: whole, or chunk by chunk where they are needed.

GeNN and the accelerators take the ``(B, N)`` tensor of :func:`~spike_encode.inputs.input_currents`.
The CPU engine takes the driven neurons of one chunk of samples at a time, on its own threads:
for uint8 images those come straight from the pixels (:mod:`~spike_encode.uint8_currents`,
the same numbers), so the rule runs in the threads too and never makes the dense tensor.
"""

from __future__ import annotations

import numpy as np
import torch

from .inputs import REFERENCE_NEURONS, check_plain_tensor, input_rule, select_channels
from .spec import EncodingSpec
from .uint8_currents import MAX_NEURONS, driven_currents

__all__ = ["InputCurrents", "as_input_currents"]


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
        if spec.input_rule == "contrast":  # the rule's current grows with the image
            spec.params.check_drive(self.rule_scale, f"input_scale={spec.params.input_scale!r} nA times "
                                    f"{self.shape[1]}/{REFERENCE_NEURONS} (images of {self.shape[1]} neurons "
                                    "under input_rule='contrast')")
        self.by_chunks = (self.pixels.device.type == "cpu" and self.pixels.dtype == torch.uint8
                          and self.pixels.shape[1] <= MAX_NEURONS)
        self._dense = None if self.by_chunks else input_rule(self.pixels, spec)

    @classmethod
    def of_tensor(cls, currents: torch.Tensor) -> "InputCurrents":
        """Currents given as a ``(B, N)`` float32 tensor (nA).

        Raises:
            TypeError: ``currents`` is not a 2-d float32 tensor (the neurons' float32 arithmetic
                starts from float32 currents).
        """
        if not isinstance(currents, torch.Tensor) or currents.dtype != torch.float32 or currents.dim() != 2:
            what = f"{currents.dtype} tensor of shape {tuple(currents.shape)}" if isinstance(currents, torch.Tensor) \
                else type(currents).__name__
            raise TypeError(f"currents must be a (B, N) float32 tensor (nA), got a {what}")
        made = cls.__new__(cls)
        made.pixels, made.spec, made.by_chunks, made._dense = currents, None, False, currents
        return made

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

    @property
    def rule_scale(self) -> float:
        """The current (nA) the rule shares out over one image (``"contrast"``: ``input_scale * N / 784``)."""
        scale = self.spec.params.input_scale
        return scale * (self.shape[1] / REFERENCE_NEURONS) if self.spec.input_rule == "contrast" else scale

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, bool]:
        """Samples ``start..stop`` as an engine that applies the uint8 rule itself takes
        them: their ``(R, N)`` uint8 pixels and ``True`` (the rule still to apply) where
        :attr:`by_chunks`, else their float32 currents (nA) and ``False``; C-contiguous.
        CPU only."""
        rows = self.pixels if self.by_chunks else self._dense
        return np.ascontiguousarray(rows[start:stop].numpy()), self.by_chunks  # one compiled layout

    def driven(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """The neurons of samples ``start..stop`` with current above 0: flat int64 positions
        (``(sample - start) * N + neuron``, ascending) and their float32 currents (nA).

        CPU only; safe to call from several threads at once.

        Raises:
            ImageError: an all-zero image among them (uint8 images; others were checked
                when the currents were made).
        """
        if self.by_chunks:
            return driven_currents(self.pixels[start:stop].numpy(), self.spec.input_rule, self.rule_scale, start)
        flat = self._dense[start:stop].numpy().reshape(-1)
        positions = np.flatnonzero(flat != 0)  # of a bool mask: several times faster than of the floats
        return positions, flat[positions]


def as_input_currents(currents: InputCurrents | torch.Tensor) -> InputCurrents:
    """What an engine was given, :class:`InputCurrents` or their ``(B, N)`` tensor (nA), as the former."""
    return currents if isinstance(currents, InputCurrents) else InputCurrents.of_tensor(currents)
