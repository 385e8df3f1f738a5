"""CompactSpikes made by hand are checked before they become a sparse raster: out-of-range
steps or neurons, repeats, wrong dtypes and sizes are refused by name; any order is sorted.
Sparse spikes hold only 0 and 1, in any sparse layout; integer dtypes may mix in a batch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spike_encode.data import CompactSpikes, collate_spikes


def _compact(step, neuron, num_steps=200, num_neurons=784, dtype=torch.int16):
    return CompactSpikes(torch.tensor(step, dtype=dtype), torch.tensor(neuron, dtype=dtype), num_steps, num_neurons)


def test_an_out_of_range_spike_is_refused_not_crashed_on():
    # to_dense() of the unchecked raster crashed the process (segfault)
    spikes = _compact([5000], [30000])
    with pytest.raises(ValueError, match=r"spike 0 has step 5000, outside 0\.\.199 \(num_steps=200\)"):
        spikes.to_sparse()
    with pytest.raises(ValueError, match=r"spike 1 has neuron 784, outside 0\.\.783"):
        _compact([0, 3], [5, 784]).to_sparse()
    with pytest.raises(ValueError, match=r"item 1 of the batch: spike 0 has step -1"):
        collate_spikes([(_compact([1], [1]), 0), (_compact([-1], [2]), 1)])


def test_unsorted_spikes_come_back_sorted_and_coalesced():
    raster = _compact([7, 2, 7, 0], [1, 9, 0, 3], num_steps=10, num_neurons=12).to_sparse()
    assert raster.is_coalesced()
    assert raster.indices().T.tolist() == [[0, 3], [2, 9], [7, 0], [7, 1]]
    assert torch.equal(raster.to_dense(), raster.coalesce().to_dense())
    batch, _ = collate_spikes([(_compact([3, 1], [0, 0], 4, 2), 0), (_compact([2, 0], [1, 1], 4, 2), 1)])
    assert batch.is_coalesced()
    assert batch.indices().T.tolist() == [[0, 1, 0], [0, 3, 0], [1, 0, 1], [1, 2, 1]]


def test_a_repeated_spike_is_refused():
    with pytest.raises(ValueError, match="neuron 4 at step 3 is there more than once"):
        _compact([3, 1, 3], [4, 0, 4], 10, 10).to_sparse()
    with pytest.raises(ValueError, match="item 1 of the batch: the spike of neuron 0 at step 2"):
        collate_spikes([(_compact([2], [0], 10, 10), 0), (_compact([2, 2], [0, 0], 10, 10), 1)])


@pytest.mark.parametrize("fields, error, match", [
    ((torch.tensor([1.0]), torch.tensor([2]), 10, 10), TypeError, "step must be an integer tensor, got torch.float32"),
    ((torch.tensor([1]), torch.tensor([True]), 10, 10), TypeError, "neuron must be an integer tensor, got torch.bool"),
    (([1], torch.tensor([2]), 10, 10), TypeError, "step must be an integer tensor, got list"),
    ((torch.tensor([1, 2]), torch.tensor([2]), 10, 10), ValueError, "step has 2 entries but neuron has 1"),
    ((torch.tensor([[1]]), torch.tensor([[2]]), 10, 10), ValueError, r"step must be 1-d, got shape \(1, 1\)"),
    ((torch.tensor([1]), torch.tensor([2]), 0, 10), ValueError, "num_steps must be a positive int, got 0"),
    ((torch.tensor([1]), torch.tensor([2]), 10, 10.0), ValueError, "num_neurons must be a positive int, got 10.0"),
    ((torch.tensor([1]), torch.tensor([2]), True, 10), ValueError, "num_steps must be a positive int, got True"),
])
def test_fields_that_cannot_make_a_raster_are_refused_by_name(fields, error, match):
    with pytest.raises(error, match=match):
        CompactSpikes(*fields).to_sparse()
    with pytest.raises(error, match="item 0 of the batch: " + match):
        collate_spikes([(CompactSpikes(*fields), 0)])


@st.composite
def _rasters(draw):
    num_steps, num_neurons = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    cells = draw(st.sets(st.tuples(st.integers(0, num_steps - 1), st.integers(0, num_neurons - 1)), max_size=60))
    order = draw(st.permutations(sorted(cells)))
    dtype = draw(st.sampled_from([torch.int16, torch.int32, torch.int64, torch.uint8]))
    if dtype == torch.uint8 and max(num_steps, num_neurons) > 255:
        dtype = torch.int16
    return order, num_steps, num_neurons, dtype


@settings(max_examples=60, deadline=None)
@given(_rasters())
def test_any_order_and_integer_dtype_gives_the_raster_of_those_spikes(raster):
    cells, num_steps, num_neurons, dtype = raster
    compact = CompactSpikes(torch.tensor([s for s, _ in cells], dtype=dtype),
                            torch.tensor([n for _, n in cells], dtype=dtype), num_steps, num_neurons)
    expected = torch.zeros(num_steps, num_neurons)
    for s, n in cells:
        expected[s, n] = 1
    sparse = compact.to_sparse()
    assert sparse.is_coalesced() and torch.equal(sparse.to_dense(), expected)
    step, neuron = sparse.indices()
    key = step * num_neurons + neuron
    assert bool((key[1:] > key[:-1]).all()), "flagged coalesced, but not sorted"
    batch, _ = collate_spikes([(compact, 0), (compact, 1)])
    assert torch.equal(batch.to_dense(), torch.stack([expected, expected]))
    sample, step, neuron = batch.indices()
    key = (sample * num_steps + step) * num_neurons + neuron
    assert batch.is_coalesced() and bool((key[1:] > key[:-1]).all())


def test_items_of_different_integer_dtypes_collate_into_one_batch():
    # uint16/uint32/uint64 do not promote with other integer types in torch.cat
    items = [(_compact([0, 1], [2, 3], 5, 4, dtype=torch.int16), 0), (_compact([1], [1], 5, 4, dtype=torch.uint32), 1),
             (_compact([4], [0], 5, 4, dtype=torch.uint8), 2), (_compact([2], [3], 5, 4, dtype=torch.uint64), 3)]
    batch, targets = collate_spikes(items)
    assert batch.indices().T.tolist() == [[0, 0, 2], [0, 1, 3], [1, 1, 1], [2, 4, 0], [3, 2, 3]]
    assert targets.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("value", [0.5, 2.0, -3.0, float("nan"), 255])
def test_sparse_values_other_than_0_and_1_are_refused_as_dense_ones_are(value):
    spikes = torch.sparse_coo_tensor([[2, 0], [1, 3]], torch.tensor([1, value]), (4, 5), check_invariants=True)
    match = r"sparse spikes must hold 0 or 1, but step 0, neuron 3 holds (nan|-?\d)"
    with pytest.raises(ValueError, match=match):
        CompactSpikes.from_sparse(spikes)
    with pytest.raises(ValueError, match=match):
        collate_spikes([(spikes, 0)])


def test_a_stored_zero_is_no_spike_and_true_is_one():
    stored_zero = torch.sparse_coo_tensor([[0, 1], [1, 2]], [0.0, 1.0], (2, 3), check_invariants=True)  # e.g. spikes times a 0/1 mask
    assert CompactSpikes.from_sparse(stored_zero).step.tolist() == [1]
    batch, _ = collate_spikes([(stored_zero, 0)])
    assert torch.equal(batch.to_dense()[0], stored_zero.to_dense())
    boolean = torch.sparse_coo_tensor([[0, 1], [1, 2]], [True, False], (2, 3), check_invariants=True)
    assert CompactSpikes.from_sparse(boolean).neuron.tolist() == [1]


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_csr_spikes_collate_as_the_coo_ones_do():
    coo = torch.sparse_coo_tensor([[0, 2, 2], [1, 0, 3]], torch.ones(3), (3, 4), check_invariants=True).coalesce()
    for layout in (coo.to_sparse_csr(), coo.to_sparse_csc()):
        batch, _ = collate_spikes([(layout, 0), (coo, 1)])
        assert torch.equal(batch.to_dense(), torch.stack([coo.to_dense()] * 2))


def test_hybrid_sparse_tensors_are_refused():
    hybrid = torch.sparse_coo_tensor([[0, 1]], torch.ones(2, 5), (3, 5), check_invariants=True)  # one sparse, one dense dimension
    with pytest.raises(ValueError, match=r"no dense dimensions, got shape \(3, 5\) with 1 dense dimensions"):
        CompactSpikes.from_sparse(hybrid)
