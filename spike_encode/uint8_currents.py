"""The input rules on uint8 images in NumPy, for a chunk of samples on a CPU engine's thread:
only the driven neurons' currents, bit for bit those of :func:`~spike_encode.inputs.input_currents`.

With uint8 pixels every quantity a rule needs is an exact integer until the division: the
background level (the lower median of integers plus their median absolute deviation), each
pixel's excess over it, and the image's total excess, which float32 holds exactly whatever
the order of the sum as long as ``255 * N < 2**24`` (:data:`MAX_NEURONS`). Each current is
then the reference's two correctly rounded float32 operations, ``(e / total) * scale``.
Most pixels of a digit are 0, so working on the driven ones only also saves the division
of the others.
"""

from __future__ import annotations

import numpy as np

from .inputs import EMPTY_IMAGE, ImageError

__all__ = ["MAX_NEURONS", "driven_currents"]

MAX_NEURONS = (2**24 - 1) // 255
"""Most pixels per image (65,793) for which every partial sum of uint8 values is exact in float32."""


def _row_bounds(positions: np.ndarray, rows: int, neurons: int) -> np.ndarray:
    """``(rows + 1,)`` offsets of each row's entries in the sorted flat ``positions``."""
    return np.searchsorted(positions, np.arange(0, (rows + 1) * neurons, neurons))


def _background(pixels: np.ndarray) -> np.ndarray:
    """The lower median plus the median absolute deviation of each row of ``(R, N)`` uint8
    pixels, as int16 (at most 510)."""
    rank = (pixels.shape[1] - 1) // 2
    median = np.partition(pixels, rank, axis=1)[:, rank].astype(np.int16)
    deviation = np.abs(pixels.astype(np.int16) - median[:, None])
    return median + np.partition(deviation, rank, axis=1)[:, rank]


def driven_currents(pixels: np.ndarray, rule: str, scale: float,
                    first_sample: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The neurons with input current and their currents (nA) under ``rule`` (``"sum"`` or
    ``"contrast"``, :mod:`spike_encode.inputs`), for ``(R, N)`` uint8 pixels with ``N <=
    MAX_NEURONS``; ``scale``: the current of a whole image (nA; under ``"contrast"``
    ``input_scale * N / 784``).

    Returns:
        Flat positions (int64, ascending, ``row * N + neuron``) of the neurons whose current
        is above 0, and their float32 currents.

    Raises:
        ImageError: for an all-zero image, numbered from ``first_sample``.
    """
    rows, neurons = pixels.shape
    flat = pixels.reshape(-1)
    positions = np.flatnonzero(flat != 0)  # of a bool mask: several times faster than of the pixels
    bounds = _row_bounds(positions, rows, neurons)
    excess = flat
    if rule == "contrast":
        # a level above 0 needs fewer than half the pixels at 0 (the lower median is then > 0)
        lit = np.flatnonzero(neurons - np.diff(bounds) <= (neurons - 1) // 2)
        if len(lit):
            excess = pixels.astype(np.int16)
            excess[lit] = np.maximum(excess[lit] - _background(pixels[lit])[:, None], 0)
            excess = excess.reshape(-1)
            positions = np.flatnonzero(excess != 0)
            bounds = _row_bounds(positions, rows, neurons)
    values = excess[positions]
    counts = np.diff(bounds)
    sums = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
    totals = sums[bounds[1:]] - sums[bounds[:-1]]
    for row in np.flatnonzero(totals == 0):  # nothing above the background: silent, unless all black
        if not pixels[row].any():
            raise ImageError(first_sample + int(row), EMPTY_IMAGE)
    currents = values.astype(np.float32)
    currents /= np.repeat(totals.astype(np.float32), counts)
    currents *= np.float32(scale)
    return positions, currents
