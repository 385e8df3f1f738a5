"""``output="tonic"``: one structured ``(x, y, t, p)`` array per image, ``t`` in µs, as Tonic's
event datasets (N-MNIST) give them.

Tonic (the event-camera data library) needs no import here. Tonic's own
``ToFrame(sensor_size, time_window=dt_us, start_time=0, end_time=num_steps * dt_us)`` gives the
window's ``T`` frames only while an image spikes (on a silent image it gives none, and with
``n_time_bins`` the bins span the spikes, not the window); :func:`tonic_frames` always gives
the whole window's ``(T, C, H, W)`` frames, equal to the dense raster.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from ..events import SpikeEvents
from ..spec import EncodingSpec
from .base import OutputFormat, check_image_shape

__all__ = ["TONIC_DTYPE", "Tonic", "events_to_tonic", "sensor_size", "time_step_us", "tonic_frames"]

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


@dataclasses.dataclass(frozen=True, repr=False)
class Tonic(OutputFormat):
    """Tonic's event arrays, one per image (no options; the time step must be whole µs)."""

    name = "tonic"

    def check_spec(self, spec: EncodingSpec) -> None:
        """Refuse a time step that is not a whole number of µs, or a window whose last step's
        time in µs does not fit Tonic's int64 ``t``."""
        p = spec.params
        last_us = (p.num_steps - 1) * time_step_us(p.dt)
        if last_us > np.iinfo(np.int64).max:
            raise ValueError(f"output='tonic' needs times that fit int64 µs, but dt={p.dt} ms with "
                             f"present_time_ms={p.present_time_ms} puts the last step at {last_us} µs")

    def render(self, ev: SpikeEvents, *, dt: float, image_shape: tuple[int, int, int] | None,
               batched: bool) -> list[np.ndarray] | np.ndarray:
        events = events_to_tonic(ev, dt, check_image_shape(image_shape, ev.num_neurons))
        return events if batched else events[0]


def tonic_frames(events: np.ndarray, sensor_size: Sequence[int], num_steps: int, dt: float,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One image's Tonic events back to the window's ``(T, C, H, W)`` frames (spike counts).

    Unlike Tonic's ``ToFrame``, every one of the ``num_steps`` steps of the window gets a
    frame, whether the image spikes or not: the result equals ``output="dense"`` with
    ``flatten=False``.

    Args:
        events: a :data:`TONIC_DTYPE` array (``x``, ``y``, ``t`` in µs, ``p``).
        sensor_size: Tonic's ``(W, H, C)``, e.g. ``encoder.sensor_size(image.shape)``.
        num_steps: steps in the window (``encoder.num_steps``).
        dt: the time step (ms).
        dtype: the frames' element type.

    Raises:
        ValueError: an event outside the sensor or the window, a value that is not an integer,
            or a time between steps.
    """
    width, height, channels = (int(n) for n in sensor_size)
    us = time_step_us(dt)
    if not isinstance(events, np.ndarray) or events.dtype.names is None or \
            not {"x", "y", "t", "p"} <= set(events.dtype.names):
        raise TypeError(f"events must be a structured array with fields x, y, t, p, got {type(events).__name__}")
    for name, size in (("t", int(num_steps) * us), ("p", channels), ("y", height), ("x", width)):
        values = events[name]
        if values.dtype.kind == "f":
            bad = ~(np.isfinite(values) & (values == np.round(values)))
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise ValueError(f"event {k} has {name}={values[k]}, not an integer")
        bad = (values < 0) | (values >= size)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"event {k} has {name}={values[k]}, outside the window of {num_steps} steps "
                             f"of {us} µs" if name == "t" else f"event {k} has {name}={values[k]}, outside 0..{size - 1}")
    step, rest = np.divmod(events["t"].astype(np.int64), us)
    if rest.any():
        k = int(np.flatnonzero(rest)[0])
        raise ValueError(f"event {k} has t={events['t'][k]} µs, not a multiple of the {us} µs time step")
    frames = torch.zeros((int(num_steps), channels, height, width), dtype=dtype)
    index = [torch.from_numpy(np.asarray(v, dtype=np.int64)) for v in (step, events["p"], events["y"], events["x"])]
    frames.index_put_(tuple(index), torch.ones(len(events), dtype=dtype), accumulate=True)
    return frames
