"""A dense raster larger than the device's memory is refused before it is allocated, with the
figure named; ordinary batches are untouched."""

from __future__ import annotations

import pytest
import torch

from spike_encode.events import SpikeEvents
from spike_encode.formats import to_dense
from spike_encode.memory_guard import available_memory_bytes
from spike_encode.outputs import Dense, Times

CPU = torch.device("cpu")
T, N = 1_000_000, 784


def _too_many_images() -> int:
    total = available_memory_bytes(CPU)
    if total is None:
        pytest.skip("this system does not tell its memory size")
    return total // (T * N) + 1


def test_a_dense_batch_larger_than_memory_is_refused_naming_its_size():
    B = _too_many_images()
    none = torch.zeros(0, dtype=torch.int64)
    ev = SpikeEvents(none, none, none, B, T, N)
    gb = B * T * N * 4 / 1e9  # float32, the default
    with pytest.raises(MemoryError, match=rf"float32 raster of {B} images x 1,000,000 steps x 784 neurons needs {gb:,.1f} GB"
                                          r".*of memory available on cpu; use output='sparse'"):
        Dense().render(ev, dt=0.1, image_shape=None, batched=True)
    spikes = torch.sparse_coo_tensor(torch.zeros((3, 0), dtype=torch.int64), torch.zeros(0), (B, T, N), check_invariants=True)
    with pytest.raises(MemoryError, match="GB"):
        to_dense(spikes, time_first=True)


def test_a_dense_batch_that_fits_is_built(enc, mnist_test):
    spikes = enc(mnist_test[0][:4])
    dense = to_dense(spikes)
    assert dense.shape == (4, enc.num_steps, 784) and int(dense.sum()) == spikes._nnz()


def test_first_spike_times_larger_than_memory_are_refused():
    B = available_memory_bytes(CPU) // (8 * N) + 1
    none = torch.zeros(0, dtype=torch.int64)
    with pytest.raises(MemoryError, match=f"first-spike times of {B} images"):
        Times().render(SpikeEvents(none, none, none, B, 200, N), dt=0.1, image_shape=None, batched=True)
