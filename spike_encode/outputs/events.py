"""``output="events"``: per image, ``(times_ms, ids)`` as PyGeNN's ``spike_recording_data``
gives them (times from the window start, ``step * dt`` float64 ms; ids int64; sorted by time
then id)."""

from __future__ import annotations

import dataclasses

import torch

from ..events import SpikeEvents
from .base import OutputFormat

__all__ = ["EventList", "Events", "events_per_image"]

EventList = list[tuple[torch.Tensor, torch.Tensor]]


def events_per_image(ev: SpikeEvents, dt: float) -> EventList:
    """Per image, ``(times_ms, ids)`` of its spikes."""
    counts = torch.bincount(ev.sample, minlength=ev.batch_size).tolist()
    times = ev.step.to(torch.float64) * dt
    return list(zip(times.split(counts), ev.neuron.split(counts)))


@dataclasses.dataclass(frozen=True, repr=False)
class Events(OutputFormat):
    """GeNN's spike-recording layout (no options)."""

    name = "events"

    def render(self, ev: SpikeEvents, *, dt: float, image_shape: tuple[int, int, int] | None, batched: bool) -> EventList:
        events = events_per_image(ev, dt)
        return events if batched else events[0]
