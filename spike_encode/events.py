"""Spike events, what every engine returns and every output format renders: a batch's
spikes as three index tensors sorted by (sample, step, neuron)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SpikeEvents"]


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
        # one sort of packed keys (bit fields: shifts and masks are far cheaper than int64
        # division; 63 bits hold any batch this package can hold in memory)
        n_bits, t_bits = (num_neurons - 1).bit_length(), (num_steps - 1).bit_length()
        if n_bits + t_bits + batch_size.bit_length() > 63:
            raise ValueError(f"a batch of {batch_size} x {num_steps} steps x {num_neurons} neurons is too large to index")
        shift = t_bits + n_bits
        if sample.device.type == "cpu":  # NumPy: several times faster on these sizes
            sample, step, neuron = sample.numpy(), step.numpy(), neuron.numpy()
        key = (sample << shift) | (step << n_bits) | neuron
        key = np.sort(key) if isinstance(key, np.ndarray) else torch.sort(key).values
        fields = (key >> shift, (key >> n_bits) & ((1 << t_bits) - 1), key & ((1 << n_bits) - 1))
        return cls(*(torch.as_tensor(f) for f in fields), batch_size, num_steps, num_neurons)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(batch_size, num_steps, num_neurons)``."""
        return (self.batch_size, self.num_steps, self.num_neurons)

    def __len__(self) -> int:
        return int(self.sample.numel())
