"""Shared fixtures: real MNIST and GeNN's golden spike trains from ../shared."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from spike_encode import EncoderParams

SHARED = Path(os.environ.get("SPIKE_ENCODE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA_ROOT = SHARED / "data"
GOLDEN = SHARED / "golden"


def pytest_configure(config):
    # built GeNN models go to a fresh folder per test session, not the user's cache
    if "SPIKE_ENCODE_CACHE" not in os.environ:
        import tempfile

        os.environ["SPIKE_ENCODE_CACHE"] = tempfile.mkdtemp(prefix="spike-encode-test-cache-")


#: Fixtures that read the real MNIST files: a test that uses one is in the slow tier.
_MNIST_FIXTURES = {"data_root", "mnist_test"}
#: Test modules that build GeNN models, spawn processes, train or build packages: slow tier.
_SLOW_MODULES = {"test_genn", "test_packaging", "test_train_snn", "test_distributed", "test_bench_scripts"}


def pytest_collection_modifyitems(config, items):
    """The fast tier (``pytest -m "not slow"``) leaves out what reads MNIST, runs GeNN or
    spawns processes; the default run (CI) keeps everything."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in _SLOW_MODULES or _MNIST_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is missing (set SPIKE_ENCODE_SHARED to the shared folder)")
    return path


@pytest.fixture(params=["compiled", "numpy"], ids=["compiled loop", "numpy"])
def cpu_path(request, monkeypatch) -> str:
    """The CPU engine's path under test: the compiled loop (numba, the "fast" extra) or NumPy."""
    from spike_encode.engines.compiled import DISABLE_ENV

    if request.param == "compiled":
        pytest.importorskip("numba", reason="the compiled CPU loop needs numba (pip install 'spike_encode[fast]')")
        monkeypatch.delenv(DISABLE_ENV, raising=False)
    else:
        monkeypatch.setenv(DISABLE_ENV, "1")
    return request.param


@pytest.fixture(scope="session")
def data_root() -> Path:
    return _need(DATA_ROOT / "MNIST" / "raw").parents[1]


@pytest.fixture(scope="session")
def mnist_test(data_root) -> tuple[torch.Tensor, torch.Tensor]:
    """The 10,000 MNIST test images as (B, 1, 28, 28) uint8, and labels."""
    from spike_encode.datasets import load_mnist

    return load_mnist(data_root, train=False)


@pytest.fixture(scope="session")
def enc():
    """The tutorial's encoder on the exact torch engine."""
    from spike_encode import LatencyEncode

    return LatencyEncode(backend="torch")


class Golden:
    """One golden file: its parameters and its spikes as sorted linear keys."""

    def __init__(self, path: Path):
        with np.load(path) as z:
            self.params = EncoderParams.from_dict(json.loads(str(z["params"])))
            self.first_image = int(z["first_image"])
            self.num_samples = int(z["num_samples"])
            self.num_steps = int(z["num_steps"])
            self.sample = z["sample"].astype(np.int64)
            self.step = z["step"].astype(np.int64)
            self.neuron = z["neuron"].astype(np.int64)

    def keys(self) -> np.ndarray:
        return (self.sample * self.num_steps + self.step) * 784 + self.neuron


def load_golden(name: str) -> Golden:
    return Golden(_need(GOLDEN / f"{name}.npz"))


def spike_keys(sample, step, neuron, num_steps: int, num_neurons: int = 784) -> np.ndarray:
    """Linear (sample, step, neuron) keys, for comparing spike sets exactly."""
    return ((np.asarray(sample, dtype=np.int64) * num_steps + np.asarray(step)) * num_neurons
            + np.asarray(neuron))


GOLDEN_NAMES = ["tutorial-test-0-10000", "variant-a-test-0-2000"]
