"""Spike events sort into (sample, step, neuron) order through packed keys, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spike_encode.events import KeyLayout, SpikeEvents


def random_spikes(rng: np.random.Generator, batch: int, steps: int, neurons: int, count: int):
    """``count`` distinct (sample, step, neuron) triples in random order, as int64 tensors."""
    flat = rng.choice(batch * steps * neurons, size=count, replace=False)
    sample, rest = np.divmod(flat, steps * neurons)
    step, neuron = np.divmod(rest, neurons)
    return [torch.from_numpy(x) for x in (sample, step, neuron)]


@pytest.mark.parametrize("batch, steps, neurons", [
    (1000, 200, 784),    # MNIST: uint32 keys
    (3, 1, 1),           # no step or neuron bits
    (5, 2**20, 2**13),   # 33 bits below the sample: int64 keys
])
def test_from_unsorted_sorts_by_sample_step_neuron(batch, steps, neurons):
    rng = np.random.default_rng(batch)
    sample, step, neuron = random_spikes(rng, batch, steps, neurons, min(5000, batch * steps * neurons))
    ev = SpikeEvents.from_unsorted(sample, step, neuron, batch, steps, neurons)
    order = np.lexsort((neuron.numpy(), step.numpy(), sample.numpy()))
    for name, values in (("sample", sample), ("step", step), ("neuron", neuron)):
        field = getattr(ev, name)
        assert field.dtype == torch.int64 and torch.equal(field, values[order]), name
    assert ev.shape == (batch, steps, neurons) and len(ev) == len(order)


def test_key_layout_packs_into_uint32_while_the_samples_fit():
    layout = KeyLayout(num_steps=200, num_neurons=784)  # 8 + 10 bits
    assert (layout.step_bits, layout.neuron_bits, layout.uint32_samples) == (8, 10, 1 << 14)
    one = np.array([layout.uint32_samples - 1])
    assert layout.sorted_keys(one, np.array([199]), np.array([783])).dtype == np.uint32
    assert layout.sorted_keys(one + 1, np.array([0]), np.array([0])).dtype == np.int64
    assert KeyLayout(num_steps=2**20, num_neurons=2**13).uint32_samples == 0


def test_unpack_writes_into_slices_and_offsets_the_sample():
    layout = KeyLayout(num_steps=7, num_neurons=5)
    keys = layout.sorted_keys(np.array([1, 0, 1]), np.array([2, 6, 0]), np.array([4, 3, 0]))
    fields = np.full((3, 5), -1, dtype=np.int64)
    layout.unpack(keys, 10, *fields[:, 1:4])
    assert fields.tolist() == [[-1, 10, 11, 11, -1], [-1, 6, 0, 2, -1], [-1, 3, 0, 4, -1]]


def test_a_batch_too_large_for_63_bit_keys_is_refused():
    empty = torch.zeros(0, dtype=torch.int64)
    with pytest.raises(ValueError, match="too large to index"):
        SpikeEvents.from_unsorted(empty, empty, empty, 2**40, 2**12, 2**12)
    with pytest.raises(ValueError, match="too many to index"):
        KeyLayout(2**20, 2**20).sorted_keys(np.array([2**30]), np.array([0]), np.array([0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")
def test_gpu_events_sort_on_the_gpu_as_on_the_cpu():
    rng = np.random.default_rng(0)
    spikes = random_spikes(rng, 100, 200, 784, 20000)
    cpu = SpikeEvents.from_unsorted(*spikes, 100, 200, 784)
    gpu = SpikeEvents.from_unsorted(*(x.cuda() for x in spikes), 100, 200, 784)
    for name in ("sample", "step", "neuron"):
        assert getattr(gpu, name).is_cuda and torch.equal(getattr(gpu, name).cpu(), getattr(cpu, name))


def test_indices_are_a_view_of_the_cpu_engines_events_and_a_copy_otherwise():
    from spike_encode import EncoderParams
    from spike_encode.engines import simulate_exact

    rng = np.random.default_rng(3)
    currents = torch.from_numpy(rng.random((300, 784), dtype=np.float32) * (rng.random((300, 784)) < 0.2))
    ev = simulate_exact(currents * 5, EncoderParams())
    rows = ev.indices()
    assert len(ev) > 1000 and rows.shape == (3, len(ev)) and rows.dtype == torch.int64
    assert torch.equal(rows, torch.stack([ev.sample, ev.step, ev.neuron]))
    assert rows.data_ptr() == ev.sample.data_ptr()  # no copy
    apart = SpikeEvents(ev.sample.clone(), ev.step.clone(), ev.neuron.clone(), *ev.shape)
    assert torch.equal(apart.indices(), rows) and apart.indices().data_ptr() != apart.sample.data_ptr()
    swapped = SpikeEvents(ev.step, ev.sample, ev.neuron, *ev.shape)  # the same block, rows out of order
    assert torch.equal(swapped.indices(), torch.stack([ev.step, ev.sample, ev.neuron]))
