"""The benchmark scripts run, measure what they say, and render their results (a few seconds)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import GOLDEN

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench_modules():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_peers
        import seed_loop

        yield bench_peers, seed_loop
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.slow
def test_idx_loader_gives_torchvision_pixels(bench_modules, mnist_test, data_root):
    _, seed_loop = bench_modules
    images = seed_loop.load_mnist_idx(data_root, 50, first=10)
    assert images.dtype == np.uint8 and images.shape == (50, 784)
    assert np.array_equal(images, mnist_test[0][10:60].reshape(50, 784).numpy())


def test_golden_difference_counts_missing_and_extra(bench_modules):
    _, seed_loop = bench_modules
    path = GOLDEN / "tutorial-test-0-10000.npz"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    with np.load(path) as z:
        keep = z["sample"] < 3
        keys = seed_loop.spike_keys(z["sample"][keep], z["step"][keep], z["neuron"][keep], 200)
    assert seed_loop.golden_difference(keys, 3, 200, path)["differing"] == 0
    late = keys.copy()
    late[0] += 784  # first spike one step later: one missing, one extra
    diff = seed_loop.golden_difference(late, 3, 200, path)
    assert (diff["missing"], diff["extra"], diff["differing"]) == (1, 1, 2)
    assert seed_loop.golden_difference(keys, 3, 600, path)["differing"] is None


def test_peer_rows_are_skipped_with_the_reason_when_their_library_is_missing(bench_modules, monkeypatch):
    bench_peers, _ = bench_modules
    for module, sub, row in [("snntorch", "snntorch.spikegen", "snntorch:latency"),
                             ("norse", "norse.torch", "norse:spike_latency_lif"),
                             ("spikingjelly", "spikingjelly.activation_based", "spikingjelly:latency")]:
        for name in (module, sub):  # None in sys.modules makes `import name` raise ImportError
            monkeypatch.setitem(sys.modules, name, None)
        with pytest.raises(bench_peers.Skip, match=f"{module} does not import"):
            bench_peers._build(row, "cpu")


@pytest.mark.slow
def test_genn_row_is_skipped_or_built(bench_modules):
    bench_peers, _ = bench_modules
    from spike_encode import BackendUnavailableError, LatencyEncode

    try:
        LatencyEncode(backend="genn")
    except (BackendUnavailableError, ValueError, ImportError) as err:
        with pytest.raises(bench_peers.Skip, match="backend='genn'"):
            bench_peers._build("spike_encode:genn", "cpu")
        assert str(err)
    else:
        encode, keys, versions = bench_peers._build("spike_encode:genn", "cpu")
        assert callable(encode) and "spike_encode" in versions


@pytest.mark.slow
def test_genn_row_runs_on_the_peer_device(bench_modules):
    # the GeNN row once ran GeNN's CPU backend under --peer-device cuda and reported "cuda"
    pytest.importorskip("pygenn", reason="PyGeNN is not installed")
    import torch

    bench_peers, _ = bench_modules
    if not torch.cuda.is_available():
        with pytest.raises(bench_peers.Skip, match="device='cuda'.*no CUDA GPU"):
            bench_peers._build("spike_encode:genn", "cuda")
        return
    encode, _, _ = bench_peers._build("spike_encode:genn", "cuda")
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, device="cuda")
    assert encode(images).device.type == "cuda"


@pytest.mark.slow
def test_bench_peers_quick_run_and_plots(tmp_path, data_root, bench_modules):
    out = tmp_path / "peers.json"
    cmd = [sys.executable, str(BENCH / "bench_peers.py"), "--quick", "--data-root", str(data_root),
           "--only", "step_loop,spike_encode:torch:cpu:sparse,spike_encode:torch:cuda:sparse",
           "--images", "100", "--slow-images", "50", "--repeats", "1", "--slow-repeats", "1",
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads(out.read_text())
    rows = {r["id"]: r for r in payload["rows"]}
    assert set(rows) == {"step_loop", "spike_encode:torch:cpu:sparse", "spike_encode:torch:cuda:sparse"}
    assert payload["machine"]["torch"] and payload["machine"]["date"]
    base, ours = rows["step_loop"], rows["spike_encode:torch:cpu:sparse"]
    assert base["images"] == 50 and ours["images"] == 100
    assert base["ratio_to_step_loop"] == pytest.approx(1.0)
    assert ours["ratio_to_step_loop"] == pytest.approx(ours["images_per_s"] / base["images_per_s"])
    assert ours["output_bytes_per_image"] > 0 and ours["peak_bytes"] > 0
    if (GOLDEN / "tutorial-test-0-10000.npz").exists():
        assert base["golden"]["differing"] == 0 and ours["golden"]["differing"] == 0
        assert ours["golden"]["golden_spikes"] == ours["golden"]["spikes"] > 0
    cuda = rows["spike_encode:torch:cuda:sparse"]
    assert "images_per_s" in cuda or "no CUDA GPU" in cuda["skipped"]
    assert "| spike_encode torch, cpu, output='sparse' |" in proc.stdout

    plot = subprocess.run([sys.executable, str(BENCH / "plot_results.py"), str(out), "--markdown"],
                          capture_output=True, text=True, timeout=60)
    assert plot.returncode == 0, plot.stderr[-2000:]
    for suffix in ("throughput", "bytes"):
        png = tmp_path / f"peers-{suffix}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "step loop" in plot.stdout


@pytest.mark.slow
def test_bench_encode_quick_run_and_plot(tmp_path, data_root):
    out = tmp_path / "encode.json"
    cmd = [sys.executable, str(BENCH / "bench_encode.py"), "--quick", "--data-root", str(data_root),
           "--images", "200", "--dense-images", "60", "--baseline-images", "50", "--batch-size", "100",
           "--repeats", "1", "--threads", "2", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads(out.read_text())
    rows = payload["rows"]
    assert set(rows) == {"sparse_1_thread", "sparse_default_threads", "sparse_1_thread_kept",
                         "sparse_default_threads_kept", "sparse_1_thread_numpy",
                         "sparse_default_threads_numpy", "dense_transform", "dense_raster_fresh", "dense_raster_out",
                         "step_loop"}
    assert (rows["sparse_1_thread"]["threads"], rows["sparse_default_threads"]["threads"]) == (1, 2)
    assert (rows["sparse_1_thread_numpy"]["threads"], rows["sparse_default_threads_numpy"]["threads"]) == (1, 2)
    assert payload["compiled_loop"] is (importlib.util.find_spec("numba") is not None)
    assert rows["sparse_1_thread"]["images"] == 200 and rows["dense_raster_out"]["images"] == 60
    assert rows["step_loop"]["images"] == 50
    assert payload["threads_speedup"] == pytest.approx(
        rows["sparse_default_threads"]["images_per_s"] / rows["sparse_1_thread"]["images_per_s"])
    assert payload["same_spikes_one_and_default_threads"] is True
    assert payload["crossing_tables_made_while_timed"] == {"ieee": 1, "fma": 1}  # the one-off cost was timed
    assert payload["machine"]["cpu"] and payload["machine"]["torch"] and payload["machine"]["cores"]
    if (GOLDEN / "tutorial-test-0-10000.npz").exists():
        assert payload["golden"]["differing"] == 0 and payload["golden"]["golden_spikes"] > 0

    plot = subprocess.run([sys.executable, str(BENCH / "plot_results.py"), str(out), "--markdown"],
                          capture_output=True, text=True, timeout=60)
    assert plot.returncode == 0, plot.stderr[-2000:]
    assert (tmp_path / "encode.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| dense float32, dense_raster(out=) (reused) | 60 | 2 |" in plot.stdout


@pytest.mark.slow
def test_bench_revisions_compares_this_checkout_with_a_revision_in_both_import_orders(tmp_path, data_root):
    out = tmp_path / "revisions.json"
    cmd = [sys.executable, str(BENCH / "bench_revisions.py"), "--base", "HEAD", "--data-root", str(data_root),
           "--images", "200", "--batch-size", "100", "--rounds", "2", "--threads", "2", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads(out.read_text())
    head = subprocess.run(["git", "-C", str(BENCH.parent), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert payload["base"]["commit"] == head.stdout.strip() == payload["work"]["commit"]
    assert payload["images"] == 200 and payload["rounds_per_order"] == 2
    assert set(payload["timings_s"]) == {"base_first", "work_first"}
    for timings in payload["timings_s"].values():
        assert set(timings) == {"base 1", "base 2", "work 1", "work 2"}
        assert all(len(t) == 2 and min(t) > 0 for t in timings.values())
    by_order = payload["work_over_base_by_order"]
    for count in ("1", "2"):  # the geometric mean of the two orders
        assert payload["work_over_base"][count] == pytest.approx(
            (by_order["base_first"][count] * by_order["work_first"][count]) ** 0.5)
        assert 0.2 < payload["work_over_base"][count] < 5
    assert set(payload["threads_speedup"]) == {"base", "work"}


def test_bench_revisions_refuses_an_unknown_revision_in_one_line(tmp_path):
    cmd = [sys.executable, str(BENCH / "bench_revisions.py"), "--base", "no-such-revision", "--out", str(tmp_path / "x")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("error: --base 'no-such-revision' is not a commit of "
                                                         f"{BENCH.parent}")
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()


def test_a_revision_that_imports_spike_encode_by_name_is_found(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from bench_revisions import absolute_imports

    (tmp_path / "engines").mkdir()
    (tmp_path / "__init__.py").write_text("from .engines import x\nimport spike_encode_extra\n")
    (tmp_path / "engines" / "a.py").write_text('"""doc"""\n\nfrom spike_encode.events import SpikeEvents\n')
    (tmp_path / "engines" / "b.py").write_text("if True:\n    import spike_encode\n")
    assert absolute_imports(tmp_path) == ["engines/a.py", "engines/b.py"]


def test_bench_peers_without_mnist_fails_in_one_line_and_writes_nothing(tmp_path):
    out, not_a_folder = tmp_path / "peers.json", tmp_path / "file"
    not_a_folder.write_text("")  # no MNIST, and nowhere to download it to, with or without a network
    run = subprocess.run([sys.executable, str(BENCH / "bench_peers.py"), "--data-root", str(not_a_folder),
                          "--only", "step_loop", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(f"bench_peers.py: error: --data-root {not_a_folder}: ")
    assert "Traceback" not in run.stderr and not out.exists()


def test_gpu_check_reports_every_step_and_copies_no_stale_results(tmp_path):
    # where every step fails (here: an interpreter that is `false`), the check still runs each
    # step within its limit, says how each ended, and hands back no earlier run's JSON
    run = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), str(tmp_path)], capture_output=True, text=True,
                         env={**os.environ, "PYTHON": "false"}, timeout=120)
    steps = ["environment", "tests", "bench_encode_cuda", "bench_genn_cuda", "bench_encode_2_cores",
             "bench_loader_2_cores", "bench_peers_cuda"]
    for step in steps:
        assert f"== {step}: exit 1 after" in run.stdout, run.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu-check-tests.log", "gpu-check.log"]


def test_gpu_check_writes_every_benchmark_result_into_its_log_dir(tmp_path):
    # an interpreter that records what it was asked to run: each benchmark gets an --out in
    # LOG_DIR, so the check never overwrites the checkout's benchmarks/results
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit 1\n')
    fake.chmod(0o755)
    logs = tmp_path / "logs"
    subprocess.run(["bash", str(BENCH / "gpu_check.sh"), str(logs)], capture_output=True, text=True,
                   env={**os.environ, "PYTHON": str(fake)}, timeout=120)
    benchmarks = [line.split() for line in calls.read_text().splitlines() if line.startswith("benchmarks/")]
    assert len(benchmarks) == 5, calls.read_text()
    for args in benchmarks:
        assert "--out" in args and args[args.index("--out") + 1].startswith(f"{logs}/"), args



def test_venv_script_says_its_usage_and_refuses_unknown_extras():
    script = BENCH.parent / "scripts" / "venv.sh"
    usage = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and usage.stdout.startswith("usage: scripts/venv.sh [EXTRAS]")
    assert "test" in usage.stdout and "fast" in usage.stdout
    for extras in ("bogus", "test,bogus"):
        run = subprocess.run(["bash", str(script), extras], capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 and run.stderr.startswith("scripts/venv.sh: error: unknown extra 'bogus'"), run.stderr


@pytest.mark.parametrize("script", ["bench_encode.py", "bench_genn.py", "bench_loader.py", "bench_spike_file.py",
                                    "bench_threads.py", "input_statistics.py", "seed_loop.py"])
def test_every_benchmark_without_mnist_fails_in_one_line(tmp_path, script):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    run = subprocess.run([sys.executable, str(BENCH / script), "--data-root", str(not_a_folder)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(f"{script}: error: --data-root {not_a_folder}: ")


@pytest.mark.parametrize("script, args, message", [
    ("bench_encode.py", ["--images", "-1"], "argument --images: must be at least 1, got -1"),
    ("bench_encode.py", ["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    ("bench_loader.py", ["--workers", "-1"], "argument --workers: must be at least 0, got -1"),
])
def test_benchmark_counts_out_of_range_fail_in_one_line(script, args, message):
    run = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.strip().splitlines()[-1] == f"{script}: error: {message}"


def _fails_in_one_line(args: list[str], start: str, **options) -> None:
    run = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, **options)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(start), run.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible")
@pytest.mark.parametrize("script", ["bench_encode.py", "bench_genn.py"])
def test_a_benchmark_asked_for_a_missing_gpu_fails_in_one_line(script):
    _fails_in_one_line([str(BENCH / script), "--device", "cuda"],
                       f"{script}: error: --device cuda: device='cuda' was asked for, but PyTorch sees no CUDA GPU")


@pytest.mark.parametrize("script", ["bench_encode.py", "bench_genn.py", "bench_peers.py", "seed_loop.py"])
@pytest.mark.parametrize("golden", ["missing", "not an npz", "other fields"])
def test_a_benchmark_given_no_golden_file_fails_in_one_line(script, golden, tmp_path):
    path = tmp_path / "golden.npz"
    if golden == "not an npz":
        path.write_text("{}")
    elif golden == "other fields":
        np.savez(path, sample=np.zeros(1))
    _fails_in_one_line([str(BENCH / script), "--golden", str(path)],
                       f"{script}: error: --golden {path}: not a golden spike file (")


@pytest.mark.parametrize("script, start", [
    ("seed_loop.py", "seed_loop.py: error: PyGeNN cannot be imported in "),
    ("bench_genn.py", "bench_genn.py: error: --device cpu: backend='genn' on cpu needs PyGeNN"),
])
def test_a_genn_benchmark_without_pygenn_fails_in_one_line(script, start, tmp_path):
    (tmp_path / "pygenn").mkdir()  # an interpreter where importing PyGeNN fails
    (tmp_path / "pygenn" / "__init__.py").write_text("raise ImportError('no PyGeNN in this interpreter')\n")
    _fails_in_one_line([str(BENCH / script), "--device", "cpu"] if script == "bench_genn.py" else [str(BENCH / script)],
                       start, env={**os.environ, "PYTHONPATH": str(tmp_path)})


@pytest.mark.parametrize("content, message", [
    (None, "No such file or directory"),
    ("{", "Expecting property name"),
    (json.dumps({"script": "benchmarks/bench_loader.py", "rows": []}),
     "not the results of benchmarks/bench_peers.py or benchmarks/bench_encode.py "
     "(its script: benchmarks/bench_loader.py)"),
    (json.dumps({"script": "benchmarks/bench_encode.py", "rows": []}), "not the results of"),
    (json.dumps([1, 2]), "not the results of"),
])
def test_plotting_a_file_that_is_no_result_fails_in_one_line_and_plots_nothing(content, message, tmp_path):
    path = tmp_path / "result.json"
    if content is not None:
        path.write_text(content)
    good = tmp_path / "encode.json"
    good.write_text(json.dumps({"script": "benchmarks/bench_encode.py", "rows": {"step_loop": {}}}))
    _fails_in_one_line([str(BENCH / "plot_results.py"), str(good), str(path)], f"plot_results.py: error: {path}: ")
    run = subprocess.run([sys.executable, str(BENCH / "plot_results.py"), str(path)], capture_output=True, text=True)
    assert message in run.stderr.strip().splitlines()[-1]
    assert not list(tmp_path.glob("*.png")), "a plot was written before the bad file was found"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="times the compiled loop (the fast extra)")
def test_bench_threads_times_the_loop_and_the_encoder_on_the_same_spikes(tmp_path, data_root):
    out = tmp_path / "threads.json"
    cmd = [sys.executable, str(BENCH / "bench_threads.py"), "--data-root", str(data_root), "--images", "300",
           "--batch-size", "100", "--threads", "3", "--repeats", "1", "--handoffs", "5", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    payload = json.loads(out.read_text())
    rows = payload["rows"]
    assert list(rows) == ["kernel_1_thread", "kernel_threads_free", "kernel_threads_synced", "encoder_1_thread",
                          "encoder_threads"]
    assert [rows[name]["threads"] for name in rows] == [1, 3, 3, 1, 3]
    assert all(row["images"] == 300 and row["images_per_s"] > 0 for row in rows.values())
    assert payload["spikes"] == pytest.approx(300 * 127, rel=0.1)  # MNIST: about 127 spikes an image
    assert payload["kernel_synced_speedup"] == pytest.approx(
        rows["kernel_threads_synced"]["images_per_s"] / rows["kernel_1_thread"]["images_per_s"])
    assert payload["serial_share"] == pytest.approx(
        1 - rows["encoder_1_thread"]["images_per_s"] / rows["kernel_1_thread"]["images_per_s"])
    hand_off = payload["hand_off"]  # seconds, each a median of 5 calls
    assert set(hand_off) == {"helper_start_asleep_s", "helper_start_spinning_s", "spin_before_sleep_s"}
    assert all(0 < seconds < 0.1 for seconds in hand_off.values())
    assert "µs after a call starts when woken from sleep" in proc.stdout


@pytest.mark.parametrize("args, env, message", [
    (["--threads", "1"], {}, "--threads 1: the multi-threaded rows need at least 2"),
    ([], {"SPIKE_ENCODE_NO_NUMBA": "1"}, "the compiled loop is not available here"),
])
def test_bench_threads_refuses_what_it_cannot_time_in_one_line(args, env, message, data_root):
    _fails_in_one_line([str(BENCH / "bench_threads.py"), "--data-root", str(data_root), *args],
                       f"bench_threads.py: error: {message}", env={**os.environ, **env})
