"""Values the formats cannot hold are refused, naming the option or the value and where it
is, never turned into a wrong spike train: dense dtypes torch cannot fill, spikes other than
0 and 1, out-of-range first-spike steps, non-integer Tonic events, Tonic times past int64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spike_encode as se
from spike_encode import LatencyEncode
from spike_encode.data import CompactSpikes

IMAGES = torch.full((2, 1, 3, 4), 255, dtype=torch.uint8)
SPIKES = LatencyEncode(backend="torch")(IMAGES)


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64, torch.float8_e4m3fn, torch.float8_e5m2])
def test_dense_dtypes_torch_cannot_fill_are_refused_when_the_output_is_made(dtype):
    match = f"dtype={dtype}"
    with pytest.raises(ValueError, match=match):
        se.Dense(dtype=dtype)
    with pytest.raises(ValueError, match=match):
        se.latency_encode(IMAGES, backend="torch", output="dense", dtype=dtype)
    with pytest.raises(ValueError, match=match):
        se.to_dense(SPIKES, dtype=dtype)


def test_moving_a_dense_encoder_to_float8_is_refused_and_changes_nothing():
    enc = LatencyEncode(backend="torch", output="dense")
    with pytest.raises(ValueError, match="dtype=torch.float8_e4m3fn"):
        enc.to(torch.float8_e4m3fn)
    assert enc.dtype == torch.float32 and enc(IMAGES).dtype == torch.float32


def test_uint64_steps_beyond_int64_are_refused_not_read_as_silent():
    with pytest.raises(ValueError, match=r"times holds 9223372036854775808 at position 0, outside \[-1, 3\)"):
        se.times_to_sparse(torch.tensor([2**63, 1, 2**64 - 1], dtype=torch.uint64), 3)
    with pytest.raises(ValueError, match=r"holds 18446744073709551615 at position 2"):
        se.times_to_sparse(torch.tensor([0, 1, 2**64 - 1], dtype=torch.uint64), 3)
    times = torch.tensor([2, 0, 1], dtype=torch.uint64)  # in range: as int64 steps
    assert se.to_times(se.times_to_sparse(times, 3)).tolist() == [2, 0, 1]
    ids = torch.tensor([1, 2**64 - 1], dtype=torch.uint64)  # events_to_sparse checks ids the same way
    with pytest.raises(ValueError, match=r"ids holds 18446744073709551615 at position 1, outside \[0, 4\)"):
        se.events_to_sparse([(torch.tensor([0.0, 0.1]), ids)], 0.1, 3, 4)


FLOAT_EVENT = [("x", float), ("y", float), ("t", float), ("p", float)]


@pytest.mark.parametrize("event, message", [
    ((2.0, 1.0, 100.5, 0.0), "t=100.5, not an integer"),
    ((2.7, 1.0, 100.0, 0.0), "x=2.7, not an integer"),
    ((2.0, 1.9, 100.0, 0.0), "y=1.9, not an integer"),
    ((2.0, 1.0, 100.0, 0.5), "p=0.5, not an integer"),
    ((2.0, 1.0, float("nan"), 0.0), "t=nan, not an integer"),
    ((float("inf"), 1.0, 100.0, 0.0), "x=inf, not an integer"),
])
def test_tonic_frames_refuse_events_that_are_not_integers(event, message):
    with pytest.raises(ValueError, match=f"event 0 has {message}"):
        se.tonic_frames(np.array([event], dtype=FLOAT_EVENT), (4, 4, 1), 3, 0.1)
    # integral floats are taken as the integers
    events = np.array([(2.0, 1.0, 100.0, 0.0), (3.0, 0.0, 0.0, 0.0)], dtype=FLOAT_EVENT)
    frames = se.tonic_frames(events, (4, 4, 1), 3, 0.1)
    assert torch.equal(frames, se.tonic_frames(events.astype(se.TONIC_DTYPE), (4, 4, 1), 3, 0.1))
    assert frames[1, 0, 1, 2] == 1 and frames[0, 0, 0, 3] == 1 and frames.sum() == 2


def test_tonic_times_past_int64_are_refused_naming_dt_and_the_window():
    options = dict(dt=1e13, present_time_ms=1e16, lif_params={"TauRefrac": 0.0}, input_rule="sum", backend="torch")
    with pytest.raises(ValueError, match=r"fit int64 µs, but dt=10000000000000.0 ms with present_time_ms=1e\+16"):
        se.latency_encode(IMAGES, output="tonic", **options)
    with pytest.raises(ValueError, match="present_time_ms=1e"):
        LatencyEncode(output="tonic", **options)
    events = LatencyEncode(output="tonic", dt=1e12, present_time_ms=1e15, lif_params={"TauRefrac": 0.0},
                           input_rule="sum", backend="torch")(IMAGES[0])  # last step 999e15 µs: fits
    assert events["t"].min() >= 0 and events["t"].max() == 999 * 10**15


@pytest.mark.parametrize("value", [0.5, 2.0, -3.0, float("nan")])
def test_dense_values_other_than_0_and_1_are_refused_naming_the_first(value):
    dense = torch.tensor([[[0.0, 1.0], [1.0, value]]])
    with pytest.raises(ValueError, match=r"dense must hold 0 or 1, but sample 0, step 1, neuron 1 holds (nan|-?\d)"):
        se.to_sparse(dense)
    with pytest.raises(ValueError, match=r"but sample 0, step 1, neuron 1 holds"):  # named in (B, T, N)
        se.to_sparse(dense.transpose(0, 1), time_first=True)
    dense = torch.tensor([[[0, 1], [1, 0]]])
    for raster in (dense, dense.bool(), dense.to(torch.uint8)):
        assert se.to_sparse(raster).indices().T.tolist() == [[0, 0, 1], [0, 1, 0]]


@pytest.mark.parametrize("convert", [se.to_dense, se.to_times, lambda s: se.to_events(s, 0.1)],
                         ids=["to_dense", "to_times", "to_events"])
@pytest.mark.parametrize("value", [0.5, -3.0, 2.0, float("nan")])
def test_sparse_values_other_than_0_and_1_are_refused_by_every_converter(convert, value):
    spikes = torch.sparse_coo_tensor([[0, 1], [2, 3]], torch.tensor([1.0, value]), (4, 5), check_invariants=True)
    with pytest.raises(ValueError, match=r"sparse spikes must hold 0 or 1, but step 1, neuron 3 holds (nan|-?\d)"):
        convert(spikes)
    with pytest.raises(ValueError, match=r"but sample 0, step 1, neuron 3 holds"):
        convert(spikes.unsqueeze(0))


def test_a_stored_zero_is_no_spike_in_every_converter():
    spikes = torch.sparse_coo_tensor([[0, 1], [2, 3]], torch.tensor([0.0, 1.0]), (4, 5), check_invariants=True)
    dense = se.to_dense(spikes)
    assert dense.sum() == 1 and dense[1, 3] == 1
    assert se.to_times(spikes).tolist() == [-1, -1, -1, 1, -1]
    assert se.to_events(spikes.unsqueeze(0), 0.1)[0][1].tolist() == [3]
    assert torch.equal(CompactSpikes.from_sparse(spikes).to_sparse().to_dense(), dense)


def test_hybrid_sparse_tensors_are_refused_by_the_converters():
    hybrid = torch.sparse_coo_tensor([[0, 1]], torch.ones(2, 5), (4, 5), check_invariants=True)
    for convert in (se.to_dense, se.to_times, lambda s: se.to_events(s, 0.1)):
        with pytest.raises(ValueError, match=r"no dense dimensions, got shape \(4, 5\) with 1 dense dimensions"):
            convert(hybrid)
