"""Raster plots in the style of the GeNN tutorial's figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .formats import sparse_to_events

__all__ = ["save_rasters"]


def save_rasters(spikes: torch.Tensor, dt: float, path: str | Path,
                 titles: Sequence[str] | None = None) -> Path:
    """Save one raster per image of a ``(B, T, N)`` sparse batch to a PNG.

    Each panel is the tutorial's plot: spike time (ms) against neuron id.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = sparse_to_events(spikes.cpu())
    count = ev.batch_size
    cols = min(count, 2)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.5 * rows), squeeze=False)
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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
