"""The engines' common result: a batch's spikes as three sorted index tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SpikeEvents"]


def _sorted(key: torch.Tensor) -> torch.Tensor:
    # NumPy's sort is several times faster than torch.sort on CPU tensors
    if key.device.type == "cpu":
        return torch.from_numpy(np.sort(key.numpy()))
    return torch.sort(key).values


@dataclass(frozen=True)
class SpikeEvents:
    """Every spike of a batch, sorted by (sample, step, neuron).

    Attributes:
        sample: ``(S,)`` int64 index of the image in the batch.
        step: ``(S,)`` int64 time step within the window (0-based; time = ``step * dt`` ms).
        neuron: ``(S,)`` int64 neuron (pixel) index.
        batch_size: images in the batch.
        num_steps: steps in the window.
        num_neurons: neurons per image.
    """

    sample: torch.Tensor
    step: torch.Tensor
    neuron: torch.Tensor
    batch_size: int
    num_steps: int
    num_neurons: int

    @classmethod
    def from_unsorted(
        cls,
        sample: torch.Tensor,
        step: torch.Tensor,
        neuron: torch.Tensor,
        batch_size: int,
        num_steps: int,
        num_neurons: int,
    ) -> "SpikeEvents":
        """Sort spikes given in any order into (sample, step, neuron) order."""
        key = _sorted((sample * num_steps + step) * num_neurons + neuron)
        neuron = key % num_neurons
        rest = key // num_neurons
        return cls(rest // num_steps, rest % num_steps, neuron, batch_size, num_steps, num_neurons)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(batch_size, num_steps, num_neurons)``."""
        return (self.batch_size, self.num_steps, self.num_neurons)

    def __len__(self) -> int:
        return int(self.sample.numel())
