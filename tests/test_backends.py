"""Asking for a backend or device that cannot run here is a clear error (runs everywhere)."""

from __future__ import annotations

import sys

import pytest
import torch

from spike_encode import BackendUnavailableError, LatencyEncode


def test_missing_pygenn_is_a_clear_error_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygenn", None)
    with pytest.raises(BackendUnavailableError, match="PyGeNN, which is not installed.*genn-team/genn"):
        LatencyEncode(backend="genn")


def test_auto_falls_back_to_torch_without_pygenn(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygenn", None)
    monkeypatch.setitem(sys.modules, "pygenn.genn_model", None)
    assert LatencyEncode().engine_name == "torch"


def test_settings_only_genn_runs_need_genn(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygenn", None)
    with pytest.raises(ValueError, match="precision='double'"):
        LatencyEncode(backend="torch", precision="double")
    with pytest.raises(BackendUnavailableError):
        LatencyEncode(precision="double")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
@pytest.mark.parametrize("backend", ["torch", "genn", "auto"])
def test_asking_for_a_missing_gpu_is_a_clear_error(backend):
    with pytest.raises(RuntimeError, match="device='cuda'.*no CUDA GPU"):
        LatencyEncode(backend=backend, device="cuda")
