"""Spikes as Tonic events: one structured ``(x, y, t, p)`` array per image, ``t`` in µs.

Tonic (the event-camera data library) needs no import here; its transforms, e.g.
``tonic.transforms.ToFrame(sensor_size, time_window=dt_us, start_time=0,
end_time=num_steps * dt_us)``, take these arrays with :func:`sensor_size` and give back the
dense ``(T, C, H, W)`` raster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .events import SpikeEvents

__all__ = ["TONIC_DTYPE", "events_to_tonic", "sensor_size", "time_step_us"]

TONIC_DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
"""The event dtype of Tonic's N-MNIST dataset: column ``x``, row ``y``, time ``t`` (µs) and
polarity ``p``, here the image channel."""


def sensor_size(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """Tonic's ``sensor_size`` ``(W, H, C)`` of ``(C, H, W)`` images (``(H, W)``: ``C = 1``)."""
    if len(image_shape) not in (2, 3):
        raise ValueError(f"image_shape must be (H, W) or (C, H, W), got {tuple(image_shape)}")
    channels, height, width = (1, *image_shape) if len(image_shape) == 2 else image_shape
    return (int(width), int(height), int(channels))


def time_step_us(dt: float) -> int:
    """The time step ``dt`` (ms) in whole µs, as Tonic's integer timestamps need.

    Raises:
        ValueError: if ``dt`` is not a whole number of µs.
    """
    us = round(dt * 1000)
    if us < 1 or not math.isclose(dt * 1000, us, rel_tol=1e-9):
        raise ValueError(f"output='tonic' needs dt in whole µs (Tonic's timestamps are integers), got dt={dt} ms")
    return us


def events_to_tonic(ev: SpikeEvents, dt: float, image_shape: Sequence[int]) -> list[np.ndarray]:
    """Per image, a :data:`TONIC_DTYPE` array of its spikes sorted by time (``t = step * dt``
    in µs); neuron ``(c, h, w)`` of a ``(C, H, W)`` image is ``x = w, y = h, p = c``."""
    channels, height, width = image_shape
    if channels * height * width != ev.num_neurons:
        raise ValueError(f"image_shape {tuple(image_shape)} does not hold the {ev.num_neurons} neurons of the spikes")
    neuron = ev.neuron.cpu().numpy()
    events = np.empty(len(neuron), dtype=TONIC_DTYPE)
    events["x"] = neuron % width
    events["y"] = (neuron // width) % height
    events["p"] = neuron // (height * width)
    events["t"] = ev.step.cpu().numpy() * time_step_us(dt)
    counts = np.bincount(ev.sample.cpu().numpy(), minlength=ev.batch_size)
    return np.split(events, np.cumsum(counts)[:-1])
