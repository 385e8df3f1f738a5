"""Epochs of spike batches through ``SpikeLoader`` side by side with the same loader yielding images.

In one run, over the first ``--images`` MNIST training images (default 20,000; shuffled,
``--workers`` DataLoader workers, torch engine on the CPU):

- plain: ``DataLoader(collate_fn=collate_images)``, the images as uint8 tensors;
- encoded: ``SpikeLoader`` with the same arguments, sparse ``(B, T, N)`` spikes, with its
  defaults ``encode_threads="auto"`` and (the encoder being on the CPU) ``prefetch_factor=4``
  (and, with ``--default-threads``, once with torch's default threads: slow on a small machine);
- encoded_prefetch_2: the same with PyTorch's default ``prefetch_factor=2``, what SpikeLoader
  used before;

in ``--pairs`` rounds (of one epoch of each loader, after one warm-up round; the order within a round
alternates); the figure of merit is the median of the rounds' ratios encoded / plain (target:
at most 1.15). One more, untimed, epoch checks that every sample's spikes are its own
image's (targets are the dataset indices there). Also: bytes of one batch of sparse, dense
bool and dense float32 spikes and the peak memory of encoding it (each in a fresh process),
and writing the images' ``SpikeDataset`` file, reading it back, and one epoch from it.

    python benchmarks/bench_loader.py [--data-root DIR] [--images 20000] [--batch-size 256]
                                      [--workers 2] [--pairs 5] [--default-threads] [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from common import DEFAULT_DATA, check_data_root, machine, non_negative, positive, save
from spike_encode import LatencyEncode
from spike_encode.data import SpikeDataset, SpikeLoader, collate_images, encode_dataset
from spike_encode.datasets import load_mnist, mnist_dataset

TARGET_RATIO = 1.15


class TimedEncoder:
    """An encoder that adds up the seconds spent in it (the main process's encoding time)."""

    def __init__(self, enc: LatencyEncode):
        self.enc, self.device, self.seconds = enc, enc.device, 0.0

    def __call__(self, images: torch.Tensor):
        start = time.perf_counter()
        out = self.enc(images)
        self.seconds += time.perf_counter() - start
        return out


def run_epoch(loader, expected: int) -> float:
    start = time.perf_counter()
    seen = 0
    for _, targets in loader:
        seen += len(targets)
    assert seen == expected, f"epoch yielded {seen} samples, expected {expected}"
    return time.perf_counter() - start


class IndexTargets(Dataset):
    """A dataset's images with their dataset index as the target."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i][0], i


def check_alignment(dataset: Dataset, enc: LatencyEncode, images: torch.Tensor, common: dict) -> int:
    """One shuffled SpikeLoader epoch whose targets are dataset indices: every sample's spikes
    must be exactly its own image's. Returns the samples checked."""
    checked = 0
    for spikes, indices in SpikeLoader(IndexTargets(dataset), enc, **common):
        expected = enc(images[indices])
        assert torch.equal(spikes.indices(), expected.indices()), "spikes left their targets"
        checked += len(indices)
    assert checked == len(dataset)
    return checked


def _proc_status(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def memory_probe(output: str, batch_size: int, data_root: str) -> dict[str, float]:
    """In this (fresh) process: peak RSS growth while encoding one batch to ``output``."""
    images, _ = load_mnist(data_root, train=True)
    batch = images[:batch_size].clone()
    enc = LatencyEncode(backend="torch", output=output)
    enc(images[batch_size : 2 * batch_size])  # warm up lazy initialisation
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the current RSS
    before = _proc_status("VmRSS")
    spikes = enc(batch)
    peak, after = _proc_status("VmHWM"), _proc_status("VmRSS")
    if output == "sparse":
        nbytes = spikes.indices().numel() * spikes.indices().element_size() + spikes.values().numel() * 4
    else:
        nbytes = spikes.numel() * spikes.element_size()
    return {"output_bytes": nbytes, "peak_rss_growth_bytes": peak - before, "held_rss_growth_bytes": after - before}


def probe_in_subprocess(output: str, batch_size: int, data_root: str) -> dict[str, float] | None:
    cmd = [sys.executable, __file__, "--memory-probe", output, "--batch-size", str(batch_size), "--data-root", data_root]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    if done.returncode != 0:
        print(f"memory probe for {output} failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its finished children (workers)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def time_rounds(loaders: dict[str, DataLoader], timed: TimedEncoder, count: int,
                rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]], list[float]]:
    """Epoch times and CPU seconds (main process and workers) of each loader in ``rounds``
    rounds of one epoch each after one warm-up round, the order within a round alternating;
    and the main process's encoding seconds per epoch of ``loaders["encoded"]``."""
    times: dict[str, list[float]] = {name: [] for name in loaders}
    cpu: dict[str, list[float]] = {name: [] for name in loaders}
    encode_seconds = []
    for round_ in range(-1, rounds):
        for name in (list(loaders) if round_ % 2 == 0 else list(reversed(loaders))):
            timed.seconds = 0.0
            before = cpu_seconds()
            seconds = run_epoch(loaders[name], count)
            if round_ >= 0:
                times[name].append(seconds)
                cpu[name].append(cpu_seconds() - before)  # workers are reaped when the epoch ends
                if name == "encoded":
                    encode_seconds.append(timed.seconds)
    return times, cpu, encode_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=DEFAULT_DATA)
    parser.add_argument("--images", type=positive, default=20000, help="the first N MNIST training images")
    parser.add_argument("--batch-size", type=positive, default=256)
    parser.add_argument("--workers", type=non_negative, default=2)
    parser.add_argument("--pairs", type=positive, default=5,
                        help="timed rounds of one epoch of each loader (plain, encoded, ...)")
    parser.add_argument("--default-threads", action="store_true",
                        help="also one encoded epoch with torch's default intra-op threads")
    parser.add_argument("--quick", action="store_true", help="2,000 images, one pair")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/loader-cpu[-quick].json)")
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe, args.batch_size, args.data_root)))
        return
    if args.quick:
        args.images, args.pairs = 2000, 1
    check_data_root(parser, args.data_root)

    # (PIL image, int) items, as users have them
    dataset = Subset(mnist_dataset(args.data_root, train=True), range(args.images))
    images = load_mnist(args.data_root, train=True)[0][: args.images]
    count = len(dataset)
    enc = LatencyEncode(backend="torch")
    timed = TimedEncoder(enc)
    common = dict(batch_size=args.batch_size, shuffle=True, num_workers=args.workers)
    loaders = {"plain": DataLoader(dataset, collate_fn=collate_images, **common),
               "encoded": SpikeLoader(dataset, timed, **common)}
    if args.workers:
        loaders["encoded_prefetch_2"] = SpikeLoader(dataset, timed, prefetch_factor=2, **common)
    load_start = os.getloadavg()
    times, cpu, encode_seconds = time_rounds(loaders, timed, count, args.pairs)
    load_end = os.getloadavg()
    ratios = [e / p for p, e in zip(times["plain"], times["encoded"])]
    ratio = statistics.median(ratios)
    prefetch_2_ratio = (statistics.median(e / p for p, e in zip(times["plain"], times["encoded_prefetch_2"]))
                        if args.workers else None)
    cpu_ratio = statistics.median(e / p for p, e in zip(cpu["plain"], cpu["encoded"]))
    aligned = check_alignment(dataset, enc, images, common)
    default_threads_encode = None
    if args.default_threads:
        timed.seconds = 0.0
        default_threads = SpikeLoader(dataset, timed, encode_threads=None, **common)
        times["encoded_torch_default_threads"] = [run_epoch(default_threads, count)]
        default_threads_encode = timed.seconds
    # the encoder alone on the same images, already in memory, 1 thread, nothing else running here
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    for i in range(0, count, args.batch_size):
        enc(images[i : i + args.batch_size])
    encode_alone_s = time.perf_counter() - start
    torch.set_num_threads(previous)
    median = {name: statistics.median(t) for name, t in times.items()}

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mnist-train.spikes"
        start = time.perf_counter()
        encode_dataset(dataset, enc, path, batch_size=1000, num_workers=args.workers, progress=False)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        cache = SpikeDataset(path, enc)
        open_s = time.perf_counter() - start
        start = time.perf_counter()
        spikes, _ = SpikeDataset(path, enc, mmap=False).get_batch(range(count))
        load_all_s = time.perf_counter() - start
        cache_epoch_s = run_epoch(cache.loader(batch_size=args.batch_size, shuffle=True), count)
        file_bytes = path.stat().st_size
        spikes_per_image = spikes._nnz() / count

    memory = {output: probe_in_subprocess(output, args.batch_size, args.data_root) for output in ("sparse", "dense")}
    if memory["dense"] is not None:
        memory["dense_bool_output_bytes"] = memory["dense"]["output_bytes"] // 4  # dtype=torch.bool: 1 byte, not 4
    result = {
        "script": "benchmarks/bench_loader.py",
        "machine": machine(),
        "note": "timings on a small shared machine vary between runs; the load averages before and after "
                "the timed pairs are recorded",
        "load_average_start_end": [load_start, load_end],
        "images": count,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "pairs": args.pairs,
        "prefetch_factor": {name: loader.prefetch_factor for name, loader in loaders.items()},
        "epoch_s": times,
        "median_epoch_s": median,
        "pair_ratios": ratios,
        "encoded_over_plain": ratio,
        "encoded_prefetch_2_over_plain": prefetch_2_ratio,
        "cpu_s_main_and_workers": cpu,
        "cpu_encoded_over_plain": cpu_ratio,
        "target_ratio": TARGET_RATIO,
        "samples_checked_aligned": aligned,
        "main_process_encode_s": encode_seconds,
        "encode_alone_1_thread_s": encode_alone_s,
        "main_process_encode_s_torch_default_threads": default_threads_encode,
        "cache": {"write_s": write_s, "open_s": open_s, "load_all_s": load_all_s, "file_bytes": file_bytes,
                  "spikes_per_image": spikes_per_image, "epoch_from_file_s": cache_epoch_s},
        "memory_per_batch": memory,
    }
    print(f"{count} MNIST training images, batches of {args.batch_size}, {args.workers} workers, "
          f"{args.pairs} pair(s) of epochs:")
    print(f"  plain images (collate_images):   {median['plain']:6.2f} s  ({count / median['plain']:,.0f} img/s)")
    print(f"  SpikeLoader, sparse spikes:      {median['encoded']:6.2f} s  ({count / median['encoded']:,.0f} img/s), "
          f"of which encoding {statistics.median(encode_seconds):.2f} s")
    print(f"  encoded / plain, median of the pairs: {ratio:.2f}x (target <= {TARGET_RATIO}x; pairs "
          f"{', '.join(f'{r:.2f}' for r in ratios)}); all {aligned} samples' spikes checked against their images")
    if prefetch_2_ratio is not None:
        print(f"  SpikeLoader with PyTorch's prefetch_factor=2 (not 4) / plain, median: {prefetch_2_ratio:.2f}x")
    print(f"  CPU seconds of the main process and workers, encoded / plain, median of the pairs: {cpu_ratio:.2f}x "
          f"(plain {statistics.median(cpu['plain']):.2f} s)")
    print(f"  (the encoder alone, same images in memory, 1 thread: {encode_alone_s:.2f} s)")
    if args.default_threads:
        print(f"  same, torch's default threads:   {median['encoded_torch_default_threads']:6.2f} s "
              f"(encoding {default_threads_encode:.2f} s)")
    print(f"cache file: written in {write_s:.1f} s, {file_bytes / 2**20:.1f} MiB; opened in {open_s * 1e3:.1f} ms, "
          f"all {count} images' spikes read in {load_all_s:.2f} s; one epoch from it (loader()) {cache_epoch_s:.2f} s")
    for output in ("sparse", "dense"):
        m = memory[output]
        if m:
            print(f"one batch of {args.batch_size}, {output:6s}: output {m['output_bytes'] / 2**20:7.2f} MiB, "
                  f"peak RSS growth while encoding {m['peak_rss_growth_bytes'] / 2**20:7.1f} MiB")
    if memory["dense"]:
        print(f"  (dense is float32; with dtype=torch.bool: {memory['dense_bool_output_bytes'] / 2**20:.1f} MiB)")
    print("saved", save("loader-cpu" + ("-quick" if args.quick else ""), result, args.out))


if __name__ == "__main__":
    main()
