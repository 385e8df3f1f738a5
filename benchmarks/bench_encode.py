"""Throughput of the exact torch engine: one thread, torch's default threads, dense rasters,
next to the straightforward float32 step loop, all in one run.

Rows (MNIST test images in batches of ``--batch-size``, after a warm-up pass each row timed
``--repeats`` times, interleaved with the other rows of its group (sparse, dense, step loop;
the groups one after another), medians reported):

- ``sparse_1_thread``: ``LatencyEncode(backend="torch", output="sparse")`` over the 10,000
  test images (``--images``) with ``torch.set_num_threads(1)``, each batch let go before the
  next as a training loop does, on the CPU engine's compiled loop where numba is installed
  (the ``fast`` extra; the JSON's ``compiled_loop`` says);
- ``sparse_default_threads``: the same with torch's default thread count (``--threads``);
- ``sparse_1_thread_kept``, ``sparse_default_threads_kept``: the same two keeping every
  batch (a split encoded into memory): each batch's output is then new memory, page faults
  included;
- ``sparse_1_thread_numpy``, ``sparse_default_threads_numpy``: the first two on the NumPy
  path (``SPIKE_ENCODE_NO_NUMBA=1``), what a CPU without numba runs;
- ``dense_transform``: ``LatencyEncode(output="dense")`` (float32) as the transform renders it;
- ``dense_raster_fresh``: the engine's events through ``spike_encode.rasters.dense_raster``,
  a fresh raster per batch;
- ``dense_raster_out``: the same into one reused ``out=`` buffer;
- ``step_loop``: the float32 loop over every neuron and step (``--baseline-images``).

Dense rows encode ``--dense-images`` images and then read one byte in every 4 KiB page of
the raster, as any consumer would: memory the kernel hands out lazily is paid for there.
Each row also reports minor page faults per batch (``ru_minflt``), and the run how many cores
other processes kept busy meanwhile (on a shared machine, the figures mean little when
that is not near 0). Also: the spikes of the
one-thread and default-thread passes (identical, or the script fails), the differences
against GeNN's golden file, output bytes per image, and the one-off time of constructing
an encoder (making its crossing table) for each arithmetic.

    python benchmarks/bench_encode.py [--data-root DIR] [--device cpu|cuda] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from common import (DEFAULT_DATA, DEFAULT_GOLDEN, OtherLoad, check_data_root, check_device, check_golden, machine,
                    positive, save)
from seed_loop import golden_difference, spike_keys
from spike_encode import LatencyEncode
from spike_encode.datasets import load_mnist
from spike_encode.engines import compiled, simulate_exact, simulate_steps
from spike_encode.engines.crossing_table import crossing_table
from spike_encode.formats import sparse_to_events
from spike_encode.functional import clear_engine_cache
from spike_encode.currents import InputCurrents
from spike_encode.inputs import normalised_currents
from spike_encode.params import ARITHMETICS
from spike_encode.rasters import dense_raster


class Row:
    """One timed configuration: ``run()`` encodes its images once, on ``threads`` threads
    (torch's own ops on ``torch_threads``, by default the same)."""

    def __init__(self, name: str, images: int, threads: int, run: Callable[[], object], torch_threads: int = 0):
        self.name, self.images, self.threads, self.run = name, images, threads, run
        self.torch_threads = torch_threads or threads
        self.times: list[float] = []
        self.faults: list[int] = []

    def time_once(self, batches: int) -> None:
        torch.set_num_threads(self.torch_threads)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        self.run()
        self.times.append(time.perf_counter() - start)
        self.faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) // max(1, batches))

    def result(self) -> dict[str, object]:
        return {"images": self.images, "threads": self.threads, "torch_threads": self.torch_threads,
                "images_per_s": self.images / statistics.median(self.times),
                "timings_s": self.times, "page_faults_per_batch": statistics.median(self.faults)}


def touch_pages(raster: torch.Tensor) -> None:
    """Read one element per 4 KiB page (the kernel maps pages on first touch)."""
    step = max(1, 4096 // raster.element_size())
    raster.view(-1)[::step].sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=DEFAULT_DATA)
    parser.add_argument("--golden", default=str(DEFAULT_GOLDEN))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=positive, default=1000)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="the multi-threaded rows' threads (default: torch's default, %(default)s here)")
    parser.add_argument("--images", type=positive, default=10000, help="test images for the sparse rows")
    parser.add_argument("--dense-images", type=int, help="images for the dense rows (default 3000; quick 1000)")
    parser.add_argument("--baseline-images", type=int, help="images for the slow loop (default 2000; quick 500)")
    parser.add_argument("--repeats", type=positive, help="timed passes per row (default 9; quick 3)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and images")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/encode-<device>[-quick].json)")
    args = parser.parse_args()
    check_data_root(parser, args.data_root)
    check_device(parser, args.device)
    check_golden(parser, args.golden, default_may_be_missing=True)
    args.repeats = args.repeats or (3 if args.quick else 9)
    args.dense_images = min(args.images, args.dense_images or (1000 if args.quick else 3000))
    args.baseline_images = min(args.images, args.baseline_images or (500 if args.quick else 2000))
    load_start = os.getloadavg()

    images, _ = load_mnist(args.data_root, train=False)
    images = images[: args.images].to(args.device)
    cuda = images.is_cuda
    # the one-off cost of an encoder: making its crossing table (once per parameter set)
    table_s, tables_made = {}, {}
    for arithmetic in ARITHMETICS:
        clear_engine_cache()  # an encoder made before (the --device check) must not be reused
        crossing_table.cache_clear()
        start = time.perf_counter()
        LatencyEncode(backend="torch", device=args.device, arithmetic=arithmetic)
        table_s[arithmetic] = time.perf_counter() - start
        tables_made[arithmetic] = crossing_table.cache_info().misses
    sparse = LatencyEncode(backend="torch", device=args.device)
    dense = LatencyEncode(backend="torch", device=args.device, output="dense")
    bs = args.batch_size
    batches = [images[i : i + bs] for i in range(0, len(images), bs)]
    dense_batches = [images[i : min(i + bs, args.dense_images)] for i in range(0, args.dense_images, bs)]
    step_batches = [images[i : min(i + bs, args.baseline_images)] for i in range(0, args.baseline_images, bs)]
    buffer = torch.empty((len(dense_batches[0]), sparse.num_steps, 784), device=args.device)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def encode_sparse() -> list[torch.Tensor]:
        out = [sparse(b) for b in batches]
        sync()
        return out

    def stream_sparse() -> None:
        for b in batches:  # as a training loop takes them: each batch let go before the next
            sparse(b)._nnz()
        sync()

    def on_numpy(run: Callable[[], object]) -> Callable[[], object]:
        def numpy_path() -> object:
            os.environ[compiled.DISABLE_ENV] = "1"
            try:
                return run()
            finally:
                del os.environ[compiled.DISABLE_ENV]
        return numpy_path

    def dense_via_transform() -> None:
        for b in dense_batches:
            touch_pages(dense(b))
        sync()

    def dense_via_raster(reuse: bool) -> None:
        for b in dense_batches:
            events = simulate_exact(InputCurrents(b, sparse.spec), sparse.params)
            out = buffer[: len(b)] if reuse else None
            touch_pages(dense_raster(events, time_first=False, dtype=torch.float32, out=out))
        sync()

    def baseline() -> None:
        for b in step_batches:
            simulate_steps(normalised_currents(b.reshape(-1, 784), sparse.params.input_scale), sparse.params)
        sync()

    n_dense = sum(len(b) for b in dense_batches)
    rows = [
        Row("sparse_1_thread", len(images), 1, stream_sparse),
        Row("sparse_default_threads", len(images), args.threads, stream_sparse),
        Row("sparse_1_thread_kept", len(images), 1, encode_sparse),
        Row("sparse_default_threads_kept", len(images), args.threads, encode_sparse),
        Row("sparse_1_thread_numpy", len(images), 1, on_numpy(stream_sparse)),
        Row("sparse_default_threads_numpy", len(images), args.threads, on_numpy(stream_sparse)),
        Row("dense_transform", n_dense, args.threads, dense_via_transform),
        Row("dense_raster_fresh", n_dense, args.threads, lambda: dense_via_raster(False)),
        Row("dense_raster_out", n_dense, args.threads, lambda: dense_via_raster(True)),
        Row("step_loop", args.baseline_images, args.threads, baseline),
    ]
    batch_count = {"sparse": len(batches), "dense": len(dense_batches), "step": len(step_batches)}

    # untimed: the spikes of one thread and of several, and against GeNN's golden file
    torch.set_num_threads(1)
    one = encode_sparse()
    torch.set_num_threads(args.threads)
    several = encode_sparse()
    numpy_path = on_numpy(encode_sparse)()
    same = all(torch.equal(a.indices(), b.indices()) and torch.equal(a.indices(), c.indices())
               for a, b, c in zip(one, several, numpy_path))
    if not same:
        raise SystemExit("the one-thread, multi-thread and NumPy passes gave different spikes")  # never expected
    events = [sparse_to_events(b.cpu()) for b in several]
    keys = np.concatenate([spike_keys(ev.sample.numpy() + i * bs, ev.step.numpy(), ev.neuron.numpy(), ev.num_steps)
                           for i, ev in enumerate(events)])
    golden = golden_difference(keys, len(images), sparse.num_steps, args.golden)
    nnz = sum(len(ev) for ev in events)
    sparse_bytes = sum(b.indices().numel() * b.indices().element_size() + b.values().numel() * b.values().element_size()
                       for b in several) / len(images)
    del one, several, numpy_path, events, keys  # not held while the rows are timed

    for row in rows:  # warm-up
        row.time_once(1)
        row.times.clear(), row.faults.clear()
    with OtherLoad() as load:
        # interleaved within a group: a load spike hits every row alike; the groups one after
        # another: a dense raster's hundreds of MB leave the memory to the next row in disorder
        for group in ("sparse", "dense", "step"):
            members = [row for row in rows if row.name.startswith(group)]
            for _ in range(args.repeats):
                for row in members:
                    row.time_once(batch_count[group])
    torch.set_num_threads(args.threads)

    results = {row.name: row.result() for row in rows}
    rate = {name: r["images_per_s"] for name, r in results.items()}
    result = {
        "script": "benchmarks/bench_encode.py",
        "machine": machine(),
        "load_average_start_end": [load_start, os.getloadavg()],
        "other_processes_cores": load.cores,
        "device": args.device,
        "batch_size": bs,
        "repeats": args.repeats,
        "rows": results,
        "threads_speedup": rate["sparse_default_threads"] / rate["sparse_1_thread"],
        "kept_threads_speedup": rate["sparse_default_threads_kept"] / rate["sparse_1_thread_kept"],
        "numpy_threads_speedup": rate["sparse_default_threads_numpy"] / rate["sparse_1_thread_numpy"],
        "compiled_loop": compiled.available(),
        "speedup_over_step_loop": rate["sparse_default_threads"] / rate["step_loop"],
        "dense_out_over_fresh": rate["dense_raster_out"] / rate["dense_raster_fresh"],
        "same_spikes_one_and_default_threads": same,
        "golden": golden,
        "spikes_per_image": nnz / len(images),
        "sparse_bytes_per_image": sparse_bytes,
        "dense_float32_bytes_per_image": sparse.num_steps * 784 * 4,
        "encoder_construction_s": table_s,
        "crossing_tables_made_while_timed": tables_made,
    }
    busy = "?" if load.cores is None else f"{load.cores:.2f}"
    print(f"{args.device}, batches of {bs}, median of {args.repeats} passes interleaved by group "
          f"(other processes kept {busy} of {os.cpu_count()} cores busy meanwhile):")
    for name, r in results.items():
        torch_note = f", torch ops on {r['torch_threads']}" if r["torch_threads"] != r["threads"] else ""
        print(f"  {name:24s} {r['images_per_s']:>10,.0f} images/s  ({r['images']} images, {r['threads']} thread(s)"
              f"{torch_note}, {r['page_faults_per_batch']:,} page faults per batch)")
    path = "the compiled loop" if result["compiled_loop"] else "NumPy (numba is not installed)"
    print(f"default threads ({args.threads}) / one thread: {result['threads_speedup']:.2f}x on {path} "
          f"(every batch kept: {result['kept_threads_speedup']:.2f}x; NumPy path: {result['numpy_threads_speedup']:.2f}x); "
          f"over the step loop: {result['speedup_over_step_loop']:.0f}x; "
          f"dense out= / fresh: {result['dense_out_over_fresh']:.2f}x")
    print(f"spikes: identical at 1 and {args.threads} threads and on NumPy; against GeNN's golden file: "
          f"{golden.get('differing', 'n/a')} differing")
    print(f"sparse output: {sparse_bytes / 1024:.2f} KiB/image ({nnz / len(images):.1f} spikes); "
          f"dense float32 (T, N) raster: {result['dense_float32_bytes_per_image'] / 1024:.0f} KiB/image")
    print("constructing an encoder (its crossing table): "
          + ", ".join(f"{seconds:.2f} s with arithmetic={name!r}" for name, seconds in table_s.items()))
    print("saved", save(f"encode-{args.device}" + ("-quick" if args.quick else ""), result, args.out))


if __name__ == "__main__":
    main()
