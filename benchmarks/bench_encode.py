"""Throughput of the exact torch engine next to the straightforward float32 step loop.

Encodes the 10,000 MNIST test images to sparse output with ``LatencyEncode(backend="torch")``
and, in the same run, a subset with the straightforward loop (every neuron, every step,
batches of 1000): images/s for both and their ratio, plus output bytes per image, and the
one-off time of constructing an encoder (making its crossing table) for each arithmetic.

    python benchmarks/bench_encode.py [--data-root DIR] [--device cpu|cuda] [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch

from common import DEFAULT_DATA, machine, median_rate, save
from spike_encode import LatencyEncode
from spike_encode.engines import simulate_steps
from spike_encode.engines.crossing_table import crossing_table
from spike_encode.inputs import normalised_currents
from spike_encode.datasets import load_mnist
from spike_encode.params import ARITHMETICS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=DEFAULT_DATA)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--baseline-images", type=int, default=2000, help="images for the slow loop")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and baseline images")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.baseline_images = 3, 1000

    images, _ = load_mnist(args.data_root, train=False)
    images = images.to(args.device)
    # the one-off cost of an encoder: making its crossing table (once per parameter set)
    table_s = {}
    for arithmetic in ARITHMETICS:
        crossing_table.cache_clear()
        start = time.perf_counter()
        LatencyEncode(backend="torch", device=args.device, arithmetic=arithmetic)
        table_s[arithmetic] = time.perf_counter() - start
    enc = LatencyEncode(backend="torch", device=args.device)
    bs = args.batch_size

    def encode_all() -> list[torch.Tensor]:
        out = [enc(images[i : i + bs]) for i in range(0, len(images), bs)]
        if images.is_cuda:
            torch.cuda.synchronize()
        return out

    def baseline() -> None:
        for i in range(0, args.baseline_images, 1000):
            currents = normalised_currents(images[i : i + 1000].reshape(-1, 784), enc.params.input_scale)
            simulate_steps(currents, enc.params)
        if images.is_cuda:
            torch.cuda.synchronize()

    rate, times = median_rate(encode_all, len(images), args.repeats)
    base_rate, base_times = median_rate(baseline, args.baseline_images, max(1, args.repeats // 3))
    batches = encode_all()
    nnz = sum(b._nnz() for b in batches)
    sparse_bytes = sum(b.indices().numel() * b.indices().element_size() + b.values().numel() * b.values().element_size()
                       for b in batches) / len(images)
    dense_bytes = enc.num_steps * 784 * 4
    result = {
        "script": "benchmarks/bench_encode.py",
        "machine": machine(),
        "device": args.device,
        "batch_size": bs,
        "images": len(images),
        "torch_engine_images_per_s": rate,
        "step_loop_images_per_s": base_rate,
        "speedup": rate / base_rate,
        "spikes_per_image": nnz / len(images),
        "sparse_bytes_per_image": sparse_bytes,
        "dense_float32_bytes_per_image": dense_bytes,
        "encoder_construction_s": table_s,
        "timings_s": {"torch_engine": times, "step_loop": base_times},
    }
    print(f"torch engine ({args.device}, batches of {bs}): {rate:,.0f} images/s "
          f"(median of {args.repeats} runs over {len(images)} images)")
    print(f"float32 step loop (batches of 1000):   {base_rate:,.0f} images/s "
          f"({args.baseline_images} images)  -> {rate / base_rate:.1f}x")
    print(f"sparse output: {sparse_bytes / 1024:.2f} KiB/image ({nnz / len(images):.1f} spikes); "
          f"dense float32 (T, N) raster: {dense_bytes / 1024:.0f} KiB/image")
    print("constructing an encoder (its crossing table): "
          + ", ".join(f"{seconds:.2f} s with arithmetic={name!r}" for name, seconds in table_s.items()))
    print("saved", save(f"encode-{args.device}" + ("-quick" if args.quick else ""), result))


if __name__ == "__main__":
    main()
