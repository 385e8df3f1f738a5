"""Spike events, what every engine returns and every output format renders: a batch's
spikes as three index tensors sorted by (sample, step, neuron)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["KeyLayout", "SpikeEvents"]


@dataclass(frozen=True)
class KeyLayout:
    """(sample, step, neuron) packed as bit fields of one integer key, so that sorting keys
    sorts spikes by (sample, step, neuron): shifts and masks, no division.

    Keys of up to :attr:`uint32_samples` samples fit ``uint32`` (half the memory and about
    twice the sort speed of ``int64``); a batch is packed in chunks of samples that fit.
    """

    num_steps: int
    num_neurons: int

    @property
    def neuron_bits(self) -> int:
        """Low bits holding the neuron."""
        return (self.num_neurons - 1).bit_length()

    @property
    def step_bits(self) -> int:
        """Bits above the neuron's holding the step."""
        return (self.num_steps - 1).bit_length()

    @property
    def sample_shift(self) -> int:
        """Position of the sample's bits."""
        return self.step_bits + self.neuron_bits

    @property
    def uint32_samples(self) -> int:
        """Most samples whose keys fit ``uint32`` (0: not even one)."""
        return 1 << (32 - self.sample_shift) if self.sample_shift <= 32 else 0

    def sorted_keys(self, sample: np.ndarray, step: np.ndarray, neuron: np.ndarray) -> np.ndarray:
        """The spikes' keys, sorted: ``uint32`` where ``sample`` (counted from the chunk's
        first sample) stays below :attr:`uint32_samples`, else ``int64``.

        Raises:
            ValueError: a sample too large for any 63-bit key.
        """
        top = int(sample.max()) if sample.size else 0
        if top < self.uint32_samples:
            dtype = np.uint32
        elif self.sample_shift + top.bit_length() <= 63:
            dtype = np.int64
        else:
            raise ValueError(f"{top + 1} samples x {self.num_steps} steps x {self.num_neurons} neurons are too many "
                             "to index")
        # the fields are non-negative and in range: casting them to the key's type is exact
        keys = np.left_shift(sample, self.sample_shift, dtype=dtype, casting="unsafe")
        keys |= np.left_shift(step, self.neuron_bits, dtype=dtype, casting="unsafe")
        np.bitwise_or(keys, neuron, out=keys, casting="unsafe")
        keys.sort()
        return keys

    def unpack(self, keys: np.ndarray, first_sample: int, sample: np.ndarray, step: np.ndarray,
               neuron: np.ndarray) -> None:
        """Write the fields of ``keys`` into the int64 arrays ``sample`` (plus ``first_sample``),
        ``step`` and ``neuron``, each as long as ``keys``."""
        np.right_shift(keys, self.sample_shift, out=sample, casting="unsafe")
        if first_sample:
            sample += first_sample
        np.right_shift(keys, self.neuron_bits, out=step, casting="unsafe")
        step &= (1 << self.step_bits) - 1
        np.bitwise_and(keys, (1 << self.neuron_bits) - 1, out=neuron, casting="unsafe")


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
        """Sort spikes given in any order into (sample, step, neuron) order (one sort of
        :class:`KeyLayout` keys; on CPU with NumPy, several times faster on these sizes).

        Raises:
            ValueError: a batch too large for 63-bit keys.
        """
        layout = KeyLayout(num_steps, num_neurons)
        if layout.sample_shift + batch_size.bit_length() > 63:
            raise ValueError(f"a batch of {batch_size} x {num_steps} steps x {num_neurons} neurons is too large to index")
        if sample.device.type == "cpu":
            keys = layout.sorted_keys(sample.numpy(), step.numpy(), neuron.numpy())
            fields = [np.empty(len(keys), dtype=np.int64) for _ in range(3)]
            layout.unpack(keys, 0, *fields)
            return cls(*(torch.from_numpy(f) for f in fields), batch_size, num_steps, num_neurons)
        n_bits, shift = layout.neuron_bits, layout.sample_shift
        key = torch.sort((sample << shift) | (step << n_bits) | neuron).values
        fields = (key >> shift, (key >> n_bits) & ((1 << layout.step_bits) - 1), key & ((1 << n_bits) - 1))
        return cls(*fields, batch_size, num_steps, num_neurons)

    def indices(self) -> torch.Tensor:
        """The ``(3, S)`` int64 rows (sample, step, neuron), as ``torch.sparse_coo_tensor``
        takes its indices: a view where the three fields are consecutive rows of one tensor
        (the CPU engine makes them so), else a stacked copy."""
        first, n = self.sample, len(self)
        one_block = (all(f.dim() == 1 and f.is_contiguous() and f.dtype == first.dtype and f.device == first.device
                         and f.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
                         and f.storage_offset() == first.storage_offset() + k * n
                         for k, f in enumerate((self.sample, self.step, self.neuron))))
        if one_block:
            return torch.as_strided(first, (3, n), (n, 1), first.storage_offset())
        return torch.stack([self.sample, self.step, self.neuron])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(batch_size, num_steps, num_neurons)``."""
        return (self.batch_size, self.num_steps, self.num_neurons)

    def __len__(self) -> int:
        return int(self.sample.numel())
