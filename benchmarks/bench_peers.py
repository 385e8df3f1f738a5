"""spike_encode next to the seed tutorial, the plain float32 step loop and other libraries' encoders.

Every row encodes the same MNIST test images (uint8, from ``--data-root``) and reports:

- images/s: median of ``--repeats`` timed passes (after a warm-up pass) over the row's
  images in batches of ``--batch-size``, outputs discarded as a data loader would; and
  its ratio to the plain float32 step loop (``step_loop``) measured in the same run (the
  step loop runs first and, in a full run, again last; the median of both runs' timings);
- output bytes per image, as returned (sparse: indices + values; dense: the raster);
- peak memory: each row runs in a fresh subprocess; the extra peak resident memory (Linux
  ``VmHWM`` reset through ``/proc/self/clear_refs``, minus ``VmRSS`` before) while it
  encodes one batch, output included (CUDA rows: ``torch.cuda.max_memory_allocated``, which
  does not see the memory GeNN allocates itself);
- spikes that differ from GeNN's golden spikes for those images
  (``../shared/golden/tutorial-test-0-10000.npz``): missing + extra. Meaningful for the
  GeNN-faithful rows (0 means spike for spike); the peers compute other models, so for them
  it only says how far their model is from GeNN's.

Rows: ``spike_encode:torch:<device>:<format>`` (each output format; ``cuda`` when PyTorch
sees a GPU), ``spike_encode:genn`` (when ``LatencyEncode(backend="genn", device=<--peer-device>)``
constructs), ``seed_loop`` (the tutorial's PyGeNN loop, one image at a time, in an
interpreter that imports ``pygenn``: see ``--genn-python``; on GeNN's CUDA backend where
PyGeNN has one, as the tutorial does), ``step_loop``, ``snntorch:latency``,
``norse:constant_current_lif``, ``norse:spike_latency_lif`` and ``spikingjelly:latency``
(``pip install snntorch norse spikingjelly``; rows whose library does not import are skipped
with the reason). Slow rows (``seed_loop``, ``step_loop``, ``spike_encode:genn`` and the
peers) time a subset of the images (``--slow-images``); the table says how many.

    python benchmarks/bench_peers.py            # full run, ~10 min on 2 cores
    python benchmarks/bench_peers.py --quick    # under a minute
    python benchmarks/bench_peers.py --only spike_encode,step_loop --images 500
    python benchmarks/plot_results.py           # JSON -> PNG charts
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if str(HERE.parent) not in sys.path:  # run from a checkout without installing spike_encode
    sys.path.append(str(HERE.parent))

from seed_loop import (  # noqa: E402
    DEFAULT_DATA,
    DEFAULT_GOLDEN,
    PeakRSS,
    golden_difference,
    load_mnist_idx,
    spike_keys,
)

# The tutorial's model, in the units each peer takes
DT_MS = 0.1
NUM_STEPS = 200
INPUT_SCALE_NA = 80.0
TAU_M_MS = 20.0
R_MEMBRANE_MOHM = 20.0 / 0.2  # TauM / C
V_THRESH_ABOVE_REST_MV = 10.0  # Vthresh - Vrest (Vreset = Vrest)
FORMATS = ("sparse", "dense", "times", "events")


@dataclass(frozen=True)
class Row:
    id: str
    encoder: str
    model: str
    output: str
    faithful: bool
    slow: bool


def all_rows(devices: list[str]) -> list[Row]:
    rows = [Row("step_loop", "float32 step loop (spike_encode.engines.simulate_steps)",
                "GeNN LIF, float32, every neuron every step", "SpikeEvents (3 int64 per spike)",
                True, True)]
    for device in devices:
        for fmt in FORMATS:
            out = {"sparse": "sparse COO (B, T, N)", "dense": "float32 (B, T, N)",
                   "times": "int64 first-spike step (B, N)", "events": "per image (times f64, ids i64)"}[fmt]
            rows.append(Row(f"spike_encode:torch:{device}:{fmt}", f"spike_encode torch, {device}, output='{fmt}'",
                            "GeNN LIF, exact float32", out, True, False))
    rows += [
        Row("spike_encode:genn", "spike_encode GeNN backend, output='sparse'",
            "GeNN LIF (PyGeNN)", "sparse COO (B, T, N)", True, True),
        Row("seed_loop", "seed tutorial's PyGeNN loop, one image at a time",
            "GeNN LIF (PyGeNN)", "spike_recording_data (times f64, ids i32)", True, True),
        Row("snntorch:latency", "snnTorch spikegen.latency",
            "closed-form RC latency t = tau ln(x/(x-thr)) on GeNN's normalised input (x = pixel/sum, "
            "thr = 10 mV / (80 nA * 100 MOhm), tau = 200 steps), rounded to the nearest step",
            "float32 (T, B, N)", False, True),
        Row("norse:constant_current_lif", "Norse ConstantCurrentLIFEncoder",
            "LIF, forward Euler, no refractory period (fires repeatedly), GeNN's currents and constants",
            "float32 (T, B, N)", False, True),
        Row("norse:spike_latency_lif", "Norse SpikeLatencyLIFEncoder",
            "LIF, forward Euler, first spike only, GeNN's currents and constants",
            "float32 (T, B, N)", False, True),
        Row("spikingjelly:latency", "SpikingJelly LatencyEncoder",
            "linear latency t = (T-1)(1-x), x = pixel/255; every pixel fires once",
            "float32 (T, B, N)", False, True),
    ]
    return rows


class Skip(Exception):
    """A row that cannot run here; the message says why."""


# ============================================================================ worker side
def _nbytes(obj) -> int:
    import torch

    if isinstance(obj, torch.Tensor):
        if obj.is_sparse:
            return _nbytes(obj._indices()) + _nbytes(obj._values())
        return obj.numel() * obj.element_size()
    if hasattr(obj, "nbytes"):
        return int(obj.nbytes)
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(o) for o in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return sum(_nbytes(getattr(obj, f)) for f in obj.__dataclass_fields__
                   if hasattr(getattr(obj, f), "shape"))
    raise TypeError(f"cannot size {type(obj).__name__}")


def _time_first_keys(spikes) -> tuple:
    """(sample, step, neuron) of a dense ``(T, B, N)`` spike tensor."""
    step, sample, neuron = spikes.nonzero(as_tuple=True)
    return sample, step, neuron


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def _build(row_id: str, device: str):
    """``(encode, keys, versions)`` for a row: ``encode(uint8 batch on device) -> output``,
    ``keys(output) -> (sample, step, neuron)`` tensors. Raises :class:`Skip`."""
    import torch

    def pixels(batch):
        return batch.reshape(batch.shape[0], -1).to(torch.float32)

    def genn_currents_mv(batch):  # I * Rmembrane (mV) of the tutorial's normalised currents
        x = pixels(batch)
        return (x / x.sum(dim=1, keepdim=True)) * INPUT_SCALE_NA * R_MEMBRANE_MOHM

    if row_id.startswith("spike_encode") or row_id == "step_loop":
        try:
            import spike_encode
            from spike_encode import BackendUnavailableError, LatencyEncode
            from spike_encode.formats import sparse_to_events
        except ImportError as err:
            raise Skip(f"spike_encode does not import: {err}") from err
        versions = {"spike_encode": spike_encode.__version__}

    if row_id == "step_loop":
        from spike_encode.engines import simulate_steps
        from spike_encode.inputs import normalised_currents

        params = LatencyEncode().params

        def encode(batch):
            return simulate_steps(normalised_currents(batch.reshape(batch.shape[0], -1), params.input_scale), params)

        return encode, lambda ev: (ev.sample, ev.step, ev.neuron), versions

    if row_id.startswith("spike_encode:"):
        parts = row_id.split(":")
        if parts[1] == "genn":
            try:
                enc = LatencyEncode(backend="genn", device=device, output="sparse")
            except (BackendUnavailableError, ValueError, ImportError) as err:
                raise Skip(f"LatencyEncode(backend='genn'): {type(err).__name__}: {err}") from err
            try:
                import pygenn

                versions["pygenn"] = getattr(pygenn, "__version__", "?")
            except ImportError:
                pass
            fmt = "sparse"
        else:
            fmt = parts[3]
            enc = LatencyEncode(backend="torch", device=parts[2], output=fmt)

        def keys(out):
            if fmt == "sparse":
                ev = sparse_to_events(out)
                return ev.sample, ev.step, ev.neuron
            if fmt == "dense":
                return out.nonzero(as_tuple=True)
            if fmt == "times":
                sample, neuron = (out >= 0).nonzero(as_tuple=True)
                return sample, out[sample, neuron], neuron
            steps = [torch.round(t / DT_MS).long() for t, _ in out]
            sample = torch.cat([torch.full_like(s, b) for b, s in enumerate(steps)])
            return sample, torch.cat(steps), torch.cat([i for _, i in out])

        return enc, keys, versions

    if row_id == "snntorch:latency":
        try:
            from snntorch import spikegen
        except Exception as err:  # noqa: BLE001 - any import failure skips the row
            raise Skip(f"snntorch does not import: {type(err).__name__}: {err}") from err

        # snnTorch's RC model t = tau ln(x / (x - threshold)) is GeNN's LIF first-spike time
        # t = TauM ln(I R / (I R - (Vthresh - Vrest))) when x = I R / (input_scale R), i.e.
        # the tutorial's normalised pixel (x = pixel / sum <= 1), threshold = (Vthresh - Vrest)
        # / (input_scale R) and tau = TauM / dt steps; spikes past the window are dropped
        # (bypass) and sub-threshold pixels stay silent (clip), as in GeNN
        threshold = V_THRESH_ABOVE_REST_MV / (INPUT_SCALE_NA * R_MEMBRANE_MOHM)

        def encode(batch):
            x = pixels(batch)
            return spikegen.latency(x / x.sum(dim=1, keepdim=True), num_steps=NUM_STEPS, tau=TAU_M_MS / DT_MS,
                                    threshold=threshold, clip=True, bypass=True)

        return encode, _time_first_keys, {"snntorch": _version("snntorch")}

    if row_id.startswith("norse:"):
        try:
            from norse.torch import ConstantCurrentLIFEncoder, LIFParameters, SpikeLatencyLIFEncoder
        except Exception as err:  # noqa: BLE001
            raise Skip(f"norse does not import: {type(err).__name__}: {err}") from err
        # GeNN's LIF in Norse's units: potentials relative to Vrest (mV), time in seconds
        p = LIFParameters(tau_mem_inv=torch.tensor(1000.0 / TAU_M_MS), v_leak=torch.tensor(0.0),
                          v_th=torch.tensor(V_THRESH_ABOVE_REST_MV), v_reset=torch.tensor(0.0))
        cls = ConstantCurrentLIFEncoder if row_id == "norse:constant_current_lif" else SpikeLatencyLIFEncoder
        enc = cls(NUM_STEPS, p=p, dt=DT_MS / 1000.0).to(device)

        def encode(batch):
            return enc(genn_currents_mv(batch))

        return encode, _time_first_keys, {"norse": _version("norse")}

    if row_id == "spikingjelly:latency":
        try:
            from spikingjelly.activation_based import encoding
        except Exception as err:  # noqa: BLE001
            raise Skip(f"spikingjelly does not import: {type(err).__name__}: {err}") from err
        # enc_function="log" needs alpha = exp(T - 1) - 1, which overflows float32 for T = 200
        enc = encoding.LatencyEncoder(NUM_STEPS, enc_function="linear")

        def encode(batch):
            x = pixels(batch) / 255.0
            spikes = torch.stack([enc(x) for _ in range(NUM_STEPS)])  # its documented loop
            enc.reset()
            return spikes

        return encode, _time_first_keys, {"spikingjelly": _version("spikingjelly")}

    raise ValueError(f"unknown row {row_id!r}")


def run_worker(row_id: str, opts: dict) -> dict:
    """Measure one row in this (fresh) process."""
    import torch

    if opts.get("threads"):
        torch.set_num_threads(opts["threads"])
    device = row_id.split(":")[2] if row_id.startswith("spike_encode:torch:") else opts["device"]
    try:
        encode, keys_of, versions = _build(row_id, device)
    except Skip as skip:
        return {"skipped": str(skip)}
    n, bs = opts["images"], opts["batch_size"]
    # the first n test images as uint8 (B, 1, 28, 28), as spike_encode.datasets.load_mnist gives them
    images = torch.from_numpy(load_mnist_idx(opts["data_root"], n)).reshape(n, 1, 28, 28).to(device)
    batches = [images[i : i + bs] for i in range(0, n, bs)]
    cuda = device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    # peak memory: the first batch, output kept until the end of the measurement
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        out = encode(batches[0])
        sync()
        peak, method = torch.cuda.max_memory_allocated() - before, "torch.cuda.max_memory_allocated delta"
    else:
        with PeakRSS() as mem:
            out = encode(batches[0])
        peak, method = mem.bytes, mem.method
    del out

    # spikes vs the golden file and output bytes over every image (one untimed pass, also the warm-up)
    parts, out_bytes = [], 0
    for start, batch in zip(range(0, n, bs), batches):
        out = encode(batch)
        out_bytes += _nbytes(out)
        sample, step, neuron = keys_of(out)
        del out
        parts.append(spike_keys(sample.cpu().numpy() + start, step.cpu().numpy(), neuron.cpu().numpy(), NUM_STEPS))
    import numpy as np

    keys = np.concatenate(parts)
    golden = golden_difference(keys, n, NUM_STEPS, opts["golden"])

    times = []
    for _ in range(opts["repeats"]):
        start = time.perf_counter()
        for batch in batches:
            encode(batch)
        sync()
        times.append(time.perf_counter() - start)
    versions.update(torch=torch.__version__, python=sys.version.split()[0])
    return {
        "images_per_s": n / statistics.median(times),
        "timings_s": times,
        "images": n,
        "batch_size": bs,
        "memory_batch_images": len(batches[0]),
        "device": device,
        "output_bytes_per_image": out_bytes / n,
        "peak_bytes": peak,
        "peak_method": method + f" (one batch of {len(batches[0])}, output included)",
        "spikes_per_image": len(keys) / n,
        "golden": golden,
        "versions": versions,
        "torch_threads": torch.get_num_threads(),
    }


# ============================================================================ parent side
def _python_with_pygenn(choice: str) -> tuple[str | None, str]:
    """An interpreter that imports pygenn: ``choice``, or (auto) this one, else ``python3``."""
    candidates = [choice] if choice != "auto" else [sys.executable, shutil.which("python3") or ""]
    tried = []
    for py in dict.fromkeys(c for c in candidates if c):
        probe = subprocess.run([py, "-c", "import pygenn, numpy"], capture_output=True, text=True)
        if probe.returncode == 0:
            return py, ""
        tried.append(f"{py}: {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    return None, "no interpreter imports pygenn (" + "; ".join(tried) + ")"


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


def _run(cmd: list[str], timeout: float, threads: int) -> dict:
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {timeout:.0f} s"}
    try:
        result = _last_json(proc.stdout)
    except ValueError:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"failed": f"exit {proc.returncode}: {tail}"}
    result["wall_s"] = time.perf_counter() - start
    return result


def run_row(row: Row, args, genn_python: tuple[str | None, str]) -> dict:
    images = args.slow_images if row.slow else args.images
    repeats = args.slow_repeats if row.slow else args.repeats
    if row.id == "seed_loop":
        py, why = genn_python
        if py is None:
            return {"skipped": why}
        return _run([py, str(HERE / "seed_loop.py"), "--data-root", args.data_root, "--images",
                     str(min(images, args.seed_images)), "--repeats", str(repeats), "--golden", args.golden],
                    args.timeout, args.threads)
    opts = {"images": images, "repeats": repeats, "batch_size": args.batch_size,
            "data_root": args.data_root, "golden": args.golden, "device": args.peer_device, "threads": args.threads}
    return _run([sys.executable, str(Path(__file__).resolve()), "--worker", row.id, json.dumps(opts)],
                args.timeout, args.threads)


def _versions(results: list[dict]) -> dict[str, str]:
    """Every library version the rows reported (the seed loop's interpreter as ``genn_python``)."""
    merged: dict[str, str] = {}
    for r in results:
        for name, version in (r.get("versions") or {}).items():
            key = f"{name} (seed loop)" if r["id"] == "seed_loop" and name in ("python", "numpy") else name
            merged.setdefault(key, version)
    return dict(sorted(merged.items()))


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def fmt_bytes(x: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if x < 1024 or unit == "GiB":
            return f"{x:,.0f} {unit}" if unit == "B" else f"{x:,.1f} {unit}"
        x /= 1024
    return str(x)


def markdown_table(payload: dict) -> str:
    """The results as a Markdown table (also used by plot_results.py)."""
    lines = ["| encoder | model computed | output | images timed | images/s | × step loop | "
             "output / image | peak memory (batch) | spikes ≠ GeNN golden |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in payload["rows"]:
        if "images_per_s" not in r:
            why = r.get("skipped") or r.get("failed")
            lines.append(f"| {r['encoder']} | {r['model']} | {r['output']} | | | | | | "
                         f"{'skipped' if 'skipped' in r else 'failed'}: {why} |")
            continue
        golden = r.get("golden", {})
        if golden.get("differing") is None:
            diff_s = "n/a"
        elif golden["differing"] == 0:
            diff_s = f"0 of {golden['golden_spikes']:,}"
        else:
            diff_s = (f"{golden['missing']:,} missed + {golden['extra']:,} extra, of {golden['golden_spikes']:,}"
                      + ("" if r["faithful"] else " (other model)"))
        ratio = r.get("ratio_to_step_loop")
        lines.append(
            f"| {r['encoder']} | {r['model']} | {r['output']} | {r['images']:,} | {fmt_rate(r['images_per_s'])} | "
            f"{'' if ratio is None else f'{ratio:,.2f}×' if ratio < 10 else f'{ratio:,.0f}×'} | "
            f"{fmt_bytes(r['output_bytes_per_image'])} | {fmt_bytes(r['peak_bytes'])} | {diff_s} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=DEFAULT_DATA)
    parser.add_argument("--golden", default=str(DEFAULT_GOLDEN))
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats: under a minute")
    parser.add_argument("--only", default="", help="comma-separated row id prefixes, e.g. spike_encode,step_loop")
    parser.add_argument("--images", type=int, help="images for the fast rows (default 10000; quick 500)")
    parser.add_argument("--slow-images", type=int, help="images for the slow rows (default 2000; quick 100)")
    parser.add_argument("--seed-images", type=int, default=1000, help="cap for the seed loop's images")
    parser.add_argument("--repeats", type=int, help="timed passes, fast rows (default 5; quick 3)")
    parser.add_argument("--slow-repeats", type=int, help="timed passes, slow rows (default 5; quick 2)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--devices", default="auto", help="torch devices for spike_encode rows (auto: cpu, and cuda if visible)")
    parser.add_argument("--peer-device", default="cpu",
                        help="torch device for the step loop and the other libraries' rows (default cpu)")
    parser.add_argument("--genn-python", default="auto",
                        help="interpreter with pygenn for the seed loop (auto: this one, else python3 on PATH)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per row (torch.set_num_threads, OMP_NUM_THREADS); 0: PyTorch's default. "
                             "Default 1: every row single-threaded, like the seed loop's CPU backend, and "
                             "stable on a shared machine")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per row")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/peers-<device>[-quick].json)")
    parser.add_argument("--worker", nargs=2, metavar=("ROW", "OPTS_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(run_worker(args.worker[0], json.loads(args.worker[1]))))
        return

    from common import check_data_root, check_golden

    check_data_root(parser, args.data_root)  # before any row runs, and before results are replaced
    check_golden(parser, args.golden)
    quick = args.quick
    args.images = args.images or (500 if quick else 10000)
    args.slow_images = args.slow_images or (100 if quick else 2000)
    args.repeats = args.repeats or (3 if quick else 5)
    args.slow_repeats = args.slow_repeats or (2 if quick else 5)
    if quick:
        args.seed_images = min(args.seed_images, 100)

    import torch

    from common import machine, save

    if args.devices == "auto":
        devices = ["cpu", "cuda"]
    else:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    rows = [r for r in all_rows(devices) if not only or any(r.id.startswith(p) for p in only)]
    if not rows:
        parser.error(f"--only {args.only!r} matches no row")
    genn_python = _python_with_pygenn(args.genn_python) if any(r.id == "seed_loop" for r in rows) else (None, "")

    results = []
    total_start = time.perf_counter()
    baseline_runs = []
    for row in rows:
        if row.id.startswith("spike_encode:torch:cuda") and not torch.cuda.is_available():
            res = {"skipped": "no CUDA GPU visible to PyTorch on this machine"}
        else:
            print(f"[{time.perf_counter() - total_start:6.1f} s] {row.id} ...", file=sys.stderr, flush=True)
            res = run_row(row, args, genn_python)
        if row.id == "step_loop" and "images_per_s" in res:
            baseline_runs.append(res)
        results.append({**asdict(row), **res})
    # the baseline again at the end of a full run, so drift on a shared machine shows up in both
    if baseline_runs and not quick and len(rows) > 2:
        print(f"[{time.perf_counter() - total_start:6.1f} s] step_loop (again) ...", file=sys.stderr, flush=True)
        again = run_row(rows[0], args, genn_python)
        if "images_per_s" in again:
            baseline_runs.append(again)
    base = None
    if baseline_runs:
        times = [t for run in baseline_runs for t in run["timings_s"]]
        base = baseline_runs[0]["images"] / statistics.median(times)
        step = next(r for r in results if r["id"] == "step_loop")
        step.update(images_per_s=base, timings_s=times,
                    runs_images_per_s=[run["images_per_s"] for run in baseline_runs])
    for r in results:
        if "images_per_s" in r:
            r["ratio_to_step_loop"] = r["images_per_s"] / base if base else None

    device_tag = "cuda" if torch.cuda.is_available() and "cuda" in devices else "cpu"
    payload = {
        "script": "benchmarks/bench_peers.py",
        "argv": sys.argv[1:],
        "quick": quick,
        "machine": machine(),
        "settings": {
            "images_fast_rows": args.images, "images_slow_rows": args.slow_images,
            "images_seed_loop": min(args.slow_images, args.seed_images),
            "repeats_fast_rows": args.repeats, "repeats_slow_rows": args.slow_repeats,
            "batch_size": args.batch_size, "peer_device": args.peer_device, "cpu_threads_per_row": args.threads or "PyTorch default",
            "dt_ms": DT_MS, "num_steps": NUM_STEPS,
            "data": "MNIST test set, first N images, uint8", "golden": Path(args.golden).name,
            "timing": "median of the timed passes after one untimed pass; outputs discarded",
            "ratio": "images/s over the float32 step loop's images/s in this run "
                     "(median of its timings from its runs at the start and end)",
            "peak_memory": "extra peak RSS of a fresh subprocess while it encodes one batch "
                           "(VmHWM reset via /proc/self/clear_refs); CUDA: max_memory_allocated delta",
        },
        "versions": _versions(results),
        "total_s": time.perf_counter() - total_start,
        "rows": results,
    }
    out = save(f"peers-{device_tag}{'-quick' if quick else ''}", payload, args.out)
    print(markdown_table(payload))
    print(f"\nsaved {out} ({payload['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
