"""The GeNN backend against golden files and the torch engine (runs only where PyGeNN is installed)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from spike_encode import LatencyEncode, clear_engine_cache
from spike_encode.engines.genn_engine import genn_backends

from .conftest import GOLDEN_NAMES, load_golden
from .test_engines import random_params
from .test_golden import encode_keys

pygenn = pytest.importorskip("pygenn", reason="PyGeNN is not installed (see README: Installing PyGeNN)")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("genn-cache")


@pytest.fixture(autouse=True)
def fresh_engines():
    """Each test starts with no cached engine, as a new process does (engines that a test
    changes or damages are not shared with the next)."""
    clear_engine_cache()
    yield
    clear_engine_cache()


def genn_encoder(params, cache, **kwargs):
    return LatencyEncode(params.dt, params.present_time_ms, params.input_scale, lif_params=params.lif.as_dict(),
                         backend="genn", cache_dir=cache, **kwargs)


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_genn_backend_reproduces_golden_file_exactly(name, mnist_test, cache):
    golden = load_golden(name)
    images = mnist_test[0][golden.first_image : golden.first_image + golden.num_samples]
    enc = genn_encoder(golden.params, cache)
    assert enc.engine_name == "genn"
    assert np.array_equal(encode_keys(enc, images), golden.keys())


@pytest.mark.parametrize("seed", range(4))
def test_genn_backend_agrees_with_torch_engine_on_random_input(seed, cache):
    rng = np.random.default_rng(100 + seed)
    params = random_params(rng)
    images = torch.from_numpy((rng.random((24, 1, 20, 20)) ** 4 * 255).astype(np.uint8))
    genn = genn_encoder(params, cache)(images).to_dense()
    torch_ = LatencyEncode(params.dt, params.present_time_ms, params.input_scale, lif_params=params.lif.as_dict(),
                           backend="torch")(images).to_dense()
    assert genn.sum() > 0 and torch.equal(genn, torch_)


def test_a_short_last_batch_gives_the_same_spikes_as_a_full_one(mnist_test, cache):
    enc = LatencyEncode(backend="genn", cache_dir=cache)
    full = enc(mnist_test[0][:10]).to_dense()
    tail = enc(mnist_test[0][9:17]).to_dense()  # 8 images run padded in the same model (capacity 16)
    assert list(enc.engine._loaded) == [(16, 784)]
    assert torch.equal(tail[:1], full[9:10])
    # a much smaller batch gets a model of its own instead of running padded in the large one
    assert torch.equal(enc(mnist_test[0][3]).to_dense(), full[3])
    assert list(enc.engine._loaded) == [(16, 784), (1, 784)]
    assert torch.equal(enc(mnist_test[0][:10]).to_dense(), full)  # both stay loaded and usable
    assert list(enc.engine._loaded) == [(1, 784), (16, 784)]


def test_batches_above_max_batch_run_in_chunks(mnist_test, cache):
    images = mnist_test[0][:36]  # chunks of 16, 16 and 4
    enc = LatencyEncode(backend="genn", cache_dir=cache)
    enc.engine.max_batch = 16
    assert torch.equal(enc(images).to_dense(), LatencyEncode(backend="torch")(images).to_dense())
    assert list(enc.engine._loaded) == [(16, 784), (4, 784)]


def test_another_window_length_reuses_the_built_model(mnist_test, tmp_path):
    short = LatencyEncode(backend="genn", cache_dir=tmp_path, present_time_ms=10.0)
    short(mnist_test[0][:4])
    long = LatencyEncode(backend="genn", cache_dir=tmp_path, present_time_ms=30.0)
    spikes = long(mnist_test[0][:4])
    assert short.engine.last_build[1] and not long.engine.last_build[1]
    assert short.engine.last_build[0] == long.engine.last_build[0]
    expected = LatencyEncode(backend="torch", present_time_ms=30.0)(mnist_test[0][:4])
    assert spikes.shape == (4, 300, 784) and torch.equal(spikes.to_dense(), expected.to_dense())


def test_auto_takes_the_torch_engine_on_a_cpu_and_genn_for_what_only_genn_runs(cache):
    assert LatencyEncode(cache_dir=cache).engine_name == "torch"
    assert LatencyEncode(cache_dir=cache, device="cpu").engine_name == "torch"
    assert LatencyEncode(cache_dir=cache, precision="double").engine_name == "genn"


def test_building_prints_nothing_to_the_users_terminal(tmp_path, capfd, caplog, mnist_test):
    import logging

    with caplog.at_level(logging.DEBUG, logger="spike_encode.engines.genn_engine"):
        enc = LatencyEncode(backend="genn", cache_dir=tmp_path)
        enc(mnist_test[0][:2])
    assert enc.engine.last_build[1]  # compiled now
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert any("building GeNN model" in r.getMessage() for r in caplog.records)  # there when asked for


def test_a_damaged_cache_entry_is_rebuilt_once(tmp_path, mnist_test):
    first = LatencyEncode(backend="genn", cache_dir=tmp_path)
    expected = first(mnist_test[0][:3]).to_dense()
    entry = first.engine.last_build[0]
    for state in first.engine._loaded.values():
        state["model"].unload()
    library = next(entry.rglob("librunner.so"))
    damaged = library.with_name("damaged")
    damaged.write_bytes(library.read_bytes()[:1000])  # truncated, as a full disk leaves it
    damaged.replace(library)
    clear_engine_cache()  # as a new process: the damaged entry is found on loading
    again = LatencyEncode(backend="genn", cache_dir=tmp_path)
    assert torch.equal(again(mnist_test[0][:3]).to_dense(), expected)
    assert again.engine.last_build == (entry, True)  # rebuilt in place


def test_a_cache_folder_that_cannot_be_written_is_named(tmp_path):
    from spike_encode import BackendUnavailableError

    (tmp_path / "file").write_text("")
    blocked = tmp_path / "file" / "cache"  # under a file: no folder can be made there
    with pytest.raises(BackendUnavailableError, match=f"{blocked}, which is not writable.*SPIKE_ENCODE_CACHE"):
        LatencyEncode(backend="genn", cache_dir=blocked)
    assert LatencyEncode(cache_dir=blocked).engine_name == "torch"  # auto never needed it on a CPU


def test_fused_arithmetic_needs_genns_cuda_backend(cache):
    with pytest.raises(ValueError, match="arithmetic='fma'.*cuda"):
        LatencyEncode(backend="genn", arithmetic="fma", cache_dir=cache)
    assert LatencyEncode(arithmetic="fma", cache_dir=cache).engine_name == "torch"  # auto, on the CPU


genn_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and "cuda" in genn_backends()),
    reason="needs a CUDA GPU and PyGeNN built with its CUDA backend (CUDA_PATH set at install)")


@genn_cuda
@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_genn_cuda_backend_reproduces_golden_file_exactly(name, mnist_test, cache):
    # compiled with --fmad=false: GeNN's CUDA arithmetic is then its CPU backend's
    golden = load_golden(name)
    images = mnist_test[0][golden.first_image : golden.first_image + golden.num_samples]
    enc = genn_encoder(golden.params, cache, device="cuda")
    assert enc.engine_name == "genn" and enc(images[:2]).device.type == "cuda"
    assert np.array_equal(encode_keys(enc, images), golden.keys())


@genn_cuda
def test_genn_cuda_default_build_equals_the_torch_fma_engine(mnist_test, cache):
    images = mnist_test[0][:2000]
    genn = LatencyEncode(backend="genn", device="cuda", arithmetic="fma", cache_dir=cache, output="times")(images)
    fma = LatencyEncode(backend="torch", device="cuda", arithmetic="fma", output="times")(images)
    assert torch.equal(genn, fma)


def test_double_precision_runs_and_is_close_to_float(mnist_test, cache):
    images = mnist_test[0][:20]
    double = LatencyEncode(backend="genn", precision="double", cache_dir=cache, output="times")(images)
    single = LatencyEncode(backend="torch", output="times")(images)
    fired = (single >= 0).sum()
    assert fired > 1000
    assert (double != single).sum() <= 0.002 * fired  # a rare neuron may move by one step


def test_custom_neuron_model_reading_isyn(mnist_test, cache):
    # the LIF model written out as a custom model gives the built-in LIF's spikes
    lif = pygenn.create_neuron_model(
        "my_lif",
        params=["C", "TauM", "Vrest", "Vreset", "Vthresh", "Ioffset", "TauRefrac"],
        derived_params=[("ExpTC", lambda pars, dt: np.exp(-dt / pars["TauM"])),
                        ("Rmembrane", lambda pars, dt: pars["TauM"] / pars["C"])],
        vars=[("V", "scalar"), ("RefracTime", "scalar")],
        sim_code="""
        if (RefracTime <= 0.0) {
          scalar alpha = ((Isyn + Ioffset) * Rmembrane) + Vrest;
          V = alpha - (ExpTC * (alpha - V));
        } else { RefracTime -= dt; }""",
        threshold_condition_code="RefracTime <= 0.0 && V >= Vthresh",
        reset_code="V = Vreset; RefracTime = TauRefrac;")
    params = dict(C=0.2, TauM=20.0, Vrest=-60.0, Vreset=-60.0, Vthresh=-50.0, Ioffset=0.0, TauRefrac=100.0)
    enc = LatencyEncode(backend="genn", cache_dir=cache, neuron_model=lif, neuron_params=params,
                        neuron_vars={"V": -60.0, "RefracTime": 0.0})
    images = mnist_test[0][:16]
    assert torch.equal(enc(images).to_dense(), LatencyEncode(backend="torch")(images).to_dense())
    with pytest.raises(ValueError, match="backend='genn'"):
        LatencyEncode(backend="torch", neuron_model=lif, neuron_params=params)


_CHILD = textwrap.dedent("""
    import json, sys, time, torch
    from spike_encode import LatencyEncode
    from spike_encode.datasets import load_mnist
    images, _ = load_mnist(sys.argv[2])
    start = time.perf_counter()
    enc = LatencyEncode(backend="genn", cache_dir=sys.argv[1], input_scale=77.0)
    spikes = enc(images[:50])
    entry, built = enc.engine.last_build
    print(json.dumps({"built": built, "entry": str(entry), "nnz": int(spikes._nnz()),
                      "seconds": time.perf_counter() - start}))
""")


def _child(cache, data_root):
    out = subprocess.run([sys.executable, "-c", _CHILD, str(cache), str(data_root)],
                         capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_built_model_without_compiling(tmp_path, data_root):
    first = _child(tmp_path, data_root)
    second = _child(tmp_path, data_root)
    assert first["built"] and not second["built"]
    assert first["entry"] == second["entry"] and first["nnz"] == second["nnz"] > 0


def test_concurrent_processes_building_the_same_model_are_safe(tmp_path, data_root):
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path), str(data_root)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["built"] for r in results) == [False, True]
    assert results[0]["nnz"] == results[1]["nnz"] > 0
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1


def test_an_entry_that_does_not_load_is_rebuilt_once_then_named(tmp_path, mnist_test, monkeypatch):
    from spike_encode.engines.genn_engine import GeNNEngine

    LatencyEncode(backend="genn", cache_dir=tmp_path)(mnist_test[0][:1])  # a complete entry
    real, calls = GeNNEngine._load_entry, []

    def fails_once(self, entry, *shape):  # e.g. a library built against another PyGeNN
        calls.append(entry)
        if len(calls) == 1:
            raise RuntimeError("Unable to load library")
        return real(self, entry, *shape)

    monkeypatch.setattr(GeNNEngine, "_load_entry", fails_once)
    clear_engine_cache()  # as a new process, which loads the entry
    enc = LatencyEncode(backend="genn", cache_dir=tmp_path)
    assert torch.equal(enc(mnist_test[0][:1]).to_dense(), LatencyEncode(backend="torch")(mnist_test[0][:1]).to_dense())
    assert len(calls) == 2 and enc.engine.last_build == (calls[0], True)

    def always_fails(self, entry, *shape):
        raise RuntimeError("Unable to load library")

    monkeypatch.setattr(GeNNEngine, "_load_entry", always_fails)
    clear_engine_cache()
    with pytest.raises(RuntimeError, match=f"GeNN cache entry {calls[0]} was rebuilt and still does not load"):
        LatencyEncode(backend="genn", cache_dir=tmp_path)(mnist_test[0][:1])
