"""Output formats and their conversions."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision.transforms as T

import spike_encode as se
from spike_encode import LatencyEncode


@pytest.fixture(scope="module")
def digits(mnist_test):
    return mnist_test[0][:8]


@pytest.fixture(scope="module")
def sparse(digits):
    return LatencyEncode(backend="torch")(digits)


def test_sparse_output_is_coalesced_coo_with_unit_values(sparse):
    assert sparse.is_sparse and sparse.is_coalesced() and sparse.shape == (8, 200, 784)
    assert torch.all(sparse.values() == 1)
    idx = sparse.indices()
    key = (idx[0] * 200 + idx[1]) * 784 + idx[2]
    assert torch.all(key[1:] > key[:-1]), "indices must be sorted by (sample, step, neuron)"


def test_sparse_output_is_a_few_kib_per_image(sparse):
    per_image = (sparse.indices().nbytes + sparse.values().nbytes) / 8
    assert per_image < 8 * 1024
    assert 200 * 784 * 4 / per_image > 50


def test_dense_output_both_layouts(digits, sparse):
    dense = LatencyEncode(output="dense")(digits)
    assert dense.dtype == torch.float32 and torch.equal(dense, sparse.to_dense())
    compact = LatencyEncode(output="dense", dtype=torch.bool)(digits)
    assert compact.dtype == torch.bool and torch.equal(compact, dense.bool())
    assert torch.equal(se.to_dense(sparse, dtype=torch.bool), compact)
    tf = LatencyEncode(output="dense", time_first=True)(digits)
    assert tf.shape == (200, 8, 784) and torch.equal(tf, dense.transpose(0, 1))
    assert torch.equal(se.to_sparse(tf, time_first=True).to_dense(), sparse.to_dense())
    assert torch.equal(se.to_dense(sparse, time_first=True), tf)


def test_times_output_is_first_spike_step_or_minus_one(digits, sparse):
    times = LatencyEncode(output="times")(digits)
    assert times.shape == (8, 784) and times.dtype == torch.int64
    dense = sparse.to_dense().bool()
    fired = dense.any(dim=1)
    assert torch.equal(times >= 0, fired)
    assert torch.equal(times[fired], dense.int().argmax(dim=1)[fired])
    assert torch.equal(se.times_to_sparse(times, 200).to_dense(), sparse.to_dense())
    assert torch.equal(se.to_times(sparse), times)


def test_times_refuse_a_raster_with_repeated_spikes(digits):
    multi = LatencyEncode(lif_params={"TauRefrac": 2.0})(digits)
    with pytest.raises(ValueError, match="more than once"):
        se.to_times(multi)


def test_events_are_like_pygenn_spike_recording_data(digits, sparse):
    events = LatencyEncode(output="events")(digits)
    assert len(events) == 8
    times, ids = events[0]
    assert times.dtype == torch.float64 and ids.dtype == torch.int64
    expected = sparse[0].coalesce().indices()
    assert torch.equal(ids, expected[1]) and torch.equal(times, expected[0].double() * 0.1)
    assert torch.equal(se.events_to_sparse(events, 0.1, 200, 784).to_dense(), sparse.to_dense())
    assert torch.equal(se.events_to_sparse(se.to_events(sparse, 0.1), 0.1, 200, 784).to_dense(), sparse.to_dense())


def test_latency_encode_function_is_the_transform(digits):
    times = se.latency_encode(digits, output="times", input_scale=90.0)
    assert torch.equal(times, LatencyEncode(output="times", input_scale=90.0)(digits))


def test_single_image_formats_drop_the_batch_dimension(digits):
    x = digits[0]
    assert LatencyEncode(output="times")(x).shape == (784,)
    assert LatencyEncode(output="dense", time_first=True)(x).shape == (200, 784)
    times, ids = LatencyEncode(output="events")(x)
    assert times.shape == ids.shape


def test_transform_composes_repr_and_pickles(mnist_test):
    enc = LatencyEncode(input_scale=100.0, lif_params={"TauM": 10.0})
    text = repr(enc)
    assert text.startswith("LatencyEncode(") and "input_scale=100.0" in text and "'TauM': 10.0" in text
    pipeline = T.Compose([T.PILToTensor(), enc])
    from PIL import Image
    img = Image.fromarray(mnist_test[0][0, 0].numpy())
    out = pipeline(img)
    assert out.shape == (200, 784)
    clone = pickle.loads(pickle.dumps(enc))
    assert torch.equal(clone(mnist_test[0][:2]).to_dense(), enc(mnist_test[0][:2]).to_dense())
