"""Dense rasters of spike events: fresh or written into a reused buffer, the same 0/1
raster either way, and a buffer that does not fit is refused naming what differs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from spike_encode.events import SpikeEvents
from spike_encode.memory_guard import available_memory_bytes
from spike_encode.rasters import dense_raster

B, T, N = 3, 7, 10


@pytest.fixture
def ev() -> SpikeEvents:
    """A few spikes of a (3, 7, 10) batch, repeated neurons and steps included."""
    spikes = torch.tensor([[0, 0, 3], [0, 6, 9], [1, 2, 0], [1, 2, 4], [1, 5, 4], [2, 0, 0]])
    return SpikeEvents(*spikes.T.contiguous(), B, T, N)


def reference(ev: SpikeEvents, time_first: bool) -> torch.Tensor:
    """The raster, written out spike by spike."""
    raster = torch.zeros((T, B, N) if time_first else (B, T, N))
    for s, t, n in zip(ev.sample.tolist(), ev.step.tolist(), ev.neuron.tolist()):
        raster[(t, s, n) if time_first else (s, t, n)] = 1
    return raster


@pytest.mark.parametrize("time_first", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bool, torch.uint8, torch.bfloat16, torch.float64])
def test_fresh_and_reused_rasters_hold_exactly_the_spikes(ev, time_first, dtype):
    want = reference(ev, time_first).to(dtype)
    fresh = dense_raster(ev, time_first=time_first, dtype=dtype)
    assert fresh.dtype == dtype and fresh.shape == want.shape and torch.equal(fresh, want)
    stale = torch.ones_like(want)  # a buffer still holding another batch's spikes
    reused = dense_raster(ev, time_first=time_first, dtype=dtype, out=stale)
    assert reused is stale and torch.equal(reused, want)


def test_out_may_have_the_image_shape_in_place_of_n(ev):
    out = torch.ones(B, T, 1, 2, 5)
    raster = dense_raster(ev, time_first=False, dtype=torch.float32, out=out)
    assert raster is out and torch.equal(raster.reshape(B, T, N), reference(ev, False))


def test_a_fresh_cpu_raster_is_an_ordinary_tensor(ev):
    raster = dense_raster(ev, time_first=False, dtype=torch.float32)
    raster[0, 0, 0] = 5.0  # writable
    assert raster.is_contiguous() and raster.device.type == "cpu"
    assert torch.equal(pickle.loads(pickle.dumps(raster)), raster)
    assert torch.equal(raster.clone().share_memory_(), raster)


def test_no_spikes_give_a_zero_raster(ev):
    none = torch.zeros(0, dtype=torch.int64)
    empty = SpikeEvents(none, none, none, B, T, N)
    assert not dense_raster(empty, time_first=True, dtype=torch.bool, out=torch.ones(T, B, N, dtype=torch.bool)).any()


@pytest.mark.parametrize("out, message", [
    (torch.zeros(B, T, N + 1), r"out has shape \(3, 7, 11\), the raster is \(3, 7, 10\)"),
    (torch.zeros(T, B, N), r"out has shape \(7, 3, 10\), the raster is \(3, 7, 10\)"),
    (torch.zeros(B, T * N), r"out has shape \(3, 70\)"),
    (torch.zeros(B, T, N, dtype=torch.float64), "out has dtype torch.float64, the raster is torch.float32"),
    (torch.zeros(B, T, N, device="meta"), "out is on meta, the spikes are on cpu"),
    (torch.zeros(N, T, B).permute(2, 1, 0), "out must be contiguous"),
    (torch.zeros(B, T, N, requires_grad=True), "out requires grad"),
    (torch.zeros(B, T, N).to_sparse(), "out must be a dense torch.Tensor .* layout torch.sparse_coo"),
    (np.zeros((B, T, N), dtype=np.float32), "out must be a dense torch.Tensor .* got ndarray"),
])
def test_an_out_that_does_not_fit_is_refused_naming_what_differs(ev, out, message):
    with pytest.raises(ValueError, match=message):
        dense_raster(ev, time_first=False, dtype=torch.float32, out=out)


def test_a_fresh_raster_larger_than_memory_is_refused_before_it_is_allocated():
    total = available_memory_bytes(torch.device("cpu"))
    if total is None:
        pytest.skip("this system does not tell its memory size")
    steps = 1_000_000
    images = total // (steps * N) + 1
    none = torch.zeros(0, dtype=torch.int64)
    ev = SpikeEvents(none, none, none, images, steps, N)
    with pytest.raises(MemoryError, match=rf"float32 raster of {images} images x 1,000,000 steps x {N} neurons "
                                          r"needs .* GB.*use output='sparse'"):
        dense_raster(ev, time_first=False, dtype=torch.float32)
    # a buffer the caller already holds is not allocated again: no guard (a tiny one here)
    with pytest.raises(ValueError, match="out has shape"):
        dense_raster(ev, time_first=False, dtype=torch.float32, out=torch.zeros(1, 1, N))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")
def test_gpu_rasters_stay_on_the_gpu(ev):
    gpu = SpikeEvents(ev.sample.cuda(), ev.step.cuda(), ev.neuron.cuda(), B, T, N)
    raster = dense_raster(gpu, time_first=True, dtype=torch.float32)
    assert raster.is_cuda and torch.equal(raster.cpu(), reference(ev, True))
    out = torch.ones(T, B, N, device="cuda")
    assert dense_raster(gpu, time_first=True, dtype=torch.float32, out=out) is out
    assert torch.equal(out.cpu(), reference(ev, True))
