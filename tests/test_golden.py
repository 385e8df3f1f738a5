"""The core promise: exactly GeNN's spikes on real MNIST (golden files from PyGeNN 5.4.0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spike_encode import LatencyEncode
from spike_encode.formats import sparse_to_events

from .conftest import GOLDEN_NAMES, load_golden, spike_keys

pytestmark = pytest.mark.slow  # every test reads MNIST


def encode_keys(enc: LatencyEncode, images: torch.Tensor, batch: int = 1000) -> np.ndarray:
    keys = []
    for start in range(0, len(images), batch):
        ev = sparse_to_events(enc(images[start : start + batch]).cpu())
        keys.append(spike_keys(ev.sample.numpy() + start, ev.step.numpy(), ev.neuron.numpy(), ev.num_steps))
    return np.concatenate(keys)


def _encoder(params, device):
    return LatencyEncode(params.dt, params.present_time_ms, params.input_scale,
                         lif_params=params.lif.as_dict(), backend="torch", device=device)


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request):
    """torch's thread count, which the CPU engine splits its batches over."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_torch_engine_reproduces_golden_file_exactly(name, mnist_test, threads, cpu_path):
    golden = load_golden(name)
    images = mnist_test[0][golden.first_image : golden.first_image + golden.num_samples]
    enc = _encoder(golden.params, "cpu")
    assert enc.num_steps == golden.num_steps
    ours, theirs = encode_keys(enc, images), golden.keys()
    assert len(ours) == len(theirs)
    assert np.array_equal(ours, theirs), (
        f"{len(np.setdiff1d(theirs, ours))} GeNN spikes missing, {len(np.setdiff1d(ours, theirs))} extra")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")
@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_torch_engine_on_gpu_reproduces_golden_file_exactly(name, mnist_test):
    golden = load_golden(name)
    images = mnist_test[0][golden.first_image : golden.first_image + golden.num_samples]
    assert np.array_equal(encode_keys(_encoder(golden.params, "cuda"), images), golden.keys())
