"""Asking for a backend or device that cannot run here is a clear error (runs everywhere)."""

from __future__ import annotations

import sys

import pytest
import torch

from spike_encode import BackendUnavailableError, EncoderParams, LatencyEncode, latency_encode


def test_missing_pygenn_is_a_clear_error_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygenn", None)
    with pytest.raises(BackendUnavailableError, match="PyGeNN, which is not installed.*genn-team/genn"):
        LatencyEncode(backend="genn")


def test_auto_falls_back_to_torch_without_pygenn(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygenn", None)
    monkeypatch.setitem(sys.modules, "pygenn.genn_model", None)
    assert LatencyEncode().engine_name == "torch"


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_auto_picks_the_torch_engine_even_where_genn_could_run(device, monkeypatch):
    # measured on an H200 (benchmarks/results/genn-cuda.json): the torch engine is the faster
    # on CUDA too, with the same spikes; GeNN's availability is all that is stood in for here
    import dataclasses

    from spike_encode.engines.registry import ENGINES, auto_engine_name
    from spike_encode.spec import EncodingSpec

    monkeypatch.setitem(ENGINES, "genn", dataclasses.replace(ENGINES["genn"], unavailable=lambda d, c: None))
    for arithmetic in ("ieee", "fma"):
        spec = EncodingSpec(params=EncoderParams(arithmetic=arithmetic))
        assert auto_engine_name(spec, torch.device(device)) == "torch"
    assert auto_engine_name(EncodingSpec(precision="double"), torch.device(device)) == "genn"


def test_settings_only_genn_runs_need_genn(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygenn", None)
    with pytest.raises(ValueError, match="precision='double'"):
        LatencyEncode(backend="torch", precision="double")
    with pytest.raises(BackendUnavailableError):
        LatencyEncode(precision="double")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
@pytest.mark.parametrize("backend", ["torch", "genn", "auto"])
def test_asking_for_a_missing_gpu_is_a_clear_error(backend):
    with pytest.raises(BackendUnavailableError, match="device='cuda'.*no CUDA GPU"):
        LatencyEncode(backend=backend, device="cuda")
    with pytest.raises(BackendUnavailableError, match="device='cuda'"):
        latency_encode(torch.ones(1, 4, 4), backend=backend, device="cuda")
    enc = LatencyEncode(backend=backend)
    for move in (lambda: enc.to("cuda"), enc.cuda, lambda: torch.nn.Sequential(enc).to("cuda")):
        with pytest.raises(BackendUnavailableError):
            move()
    assert enc.device is None  # unchanged by the refused moves


@pytest.mark.parametrize("device", ["meta", "mps", "ipu"])
def test_devices_spike_encode_cannot_compute_on_are_refused(device):
    with pytest.raises(BackendUnavailableError, match=f"not '{device}'"):
        LatencyEncode(device=device)


def test_every_error_is_a_spike_encode_error_and_keeps_its_builtin_base():
    from spike_encode import ImageError, ItemKeyError, SpecMismatchError, SpikeEncodeError, SpikeFileError

    for error, builtin in ((BackendUnavailableError, RuntimeError), (ImageError, ValueError),
                           (SpikeFileError, ValueError), (SpecMismatchError, ValueError), (ItemKeyError, KeyError)):
        assert issubclass(error, SpikeEncodeError) and issubclass(error, builtin)
    with pytest.raises(ValueError, match="all-zero"):  # except ValueError keeps working
        LatencyEncode(backend="torch")(torch.zeros(1, 4, 4))


def test_auto_and_the_cli_read_the_engine_registry():
    from spike_encode.cli import _parser
    from spike_encode.engines.registry import ENGINES, backend_names

    assert backend_names() == ("auto", *ENGINES) and set(ENGINES) >= {"torch", "genn"}
    encode = _parser()._subparsers._group_actions[0].choices["encode"]
    backend = next(a for a in encode._actions if a.dest == "backend")
    assert tuple(backend.choices) == backend_names()
