"""Raster plots in the style of the GeNN tutorial's figures (needs the ``plot`` extra).

The figures are drawn on a ``matplotlib.figure.Figure`` directly: no pyplot, and the global
backend (e.g. a notebook's inline backend) is left alone.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .formats import sparse_to_events

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_rasters", "save_rasters"]

_MISSING = 'plotting needs matplotlib: pip install "spike_encode[plot]"'


def _figure_class() -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(_MISSING) from err
    return Figure


def plot_rasters(spikes: torch.Tensor, dt: float, titles: Sequence[str] | None = None) -> Figure:
    """One raster per image of a ``(B, T, N)`` sparse batch, in one new ``Figure``.

    Each panel is the tutorial's plot: spike time (ms, steps times ``dt`` in ms) against
    neuron id; panels are laid out two per row, 5 x 3.5 inches each.

    Raises:
        ImportError: matplotlib is not installed (install the ``plot`` extra).
        ValueError: ``titles`` does not give one title per image.
    """
    figure_class = _figure_class()
    ev = sparse_to_events(spikes.cpu())
    count = ev.batch_size
    if titles is not None and len(titles) != count:
        raise ValueError(f"titles has {len(titles)} entries for {count} images")
    cols = min(count, 2)
    rows = (count + cols - 1) // cols
    fig = figure_class(figsize=(5 * cols, 3.5 * rows), layout="tight")
    axes = fig.subplots(rows, cols, squeeze=False)
    for b, axis in enumerate(axes.flat):
        if b >= count:
            axis.axis("off")
            continue
        mine = ev.sample == b
        axis.scatter((ev.step[mine] * dt).numpy(), ev.neuron[mine].numpy(), s=1)
        axis.set_xlim(0, ev.num_steps * dt)
        axis.set_ylim(0, ev.num_neurons)
        axis.set_xlabel("Time [ms]")
        axis.set_ylabel("Neuron id")
        if titles is not None:
            axis.set_title(titles[b])
    return fig


def save_rasters(spikes: torch.Tensor, dt: float, path: str | Path,
                 titles: Sequence[str] | None = None) -> Path:
    """Save :func:`plot_rasters` of a ``(B, T, N)`` sparse batch (``dt`` in ms) at 100 dpi, a
    PNG or the format the suffix names (``.svg``, ``.pdf``); returns the path. The file
    appears whole or not at all, and parent folders it needs are made, none left behind on
    a failure (:class:`~spike_encode.data.files.NewFile`)."""
    from .data.files import NewFile

    path = Path(path)
    image = io.BytesIO()
    plot_rasters(spikes, dt, titles).savefig(image, format=path.suffix[1:] or None, dpi=100)
    with NewFile(path, what="the plot") as out:
        out.write(image.getvalue())
    return path
