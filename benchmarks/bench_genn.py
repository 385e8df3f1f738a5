"""The GeNN backend: exactness against the golden file and the torch engine, and speed.

Encodes the MNIST test set with ``LatencyEncode(backend="genn")`` for several batch sizes,
counts spikes that differ from ``../shared/golden/tutorial-test-0-10000.npz`` and from the
torch engine on the same device, and times it next to the seed tutorial's one-image-at-a-time
PyGeNN loop on the same device, in one run. On CUDA also GeNN's default build
(``arithmetic="fma"``: nvcc fuses multiply-adds) against the torch engine's ``"fma"`` mode.
Needs PyGeNN (see README).

    python benchmarks/bench_genn.py --device cuda            # the prepared GPU check
    python benchmarks/bench_genn.py --device cpu --quick     # GeNN's CPU backend, a subset
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from common import DEFAULT_DATA, DEFAULT_GOLDEN, check_data_root, check_device, check_golden, machine, positive, save
from seed_loop import run_seed_loop
from spike_encode import LatencyEncode
from spike_encode.formats import sparse_to_events
from spike_encode.datasets import load_mnist


def keys_of(enc: LatencyEncode, images: torch.Tensor, batch: int) -> tuple[np.ndarray, float]:
    """Sorted (sample, step, neuron) keys of all spikes, and the seconds encoding took."""
    keys, elapsed = [], 0.0
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        t0 = time.perf_counter()
        spikes = enc(chunk)
        if spikes.is_cuda:
            torch.cuda.synchronize()
        elapsed += time.perf_counter() - t0
        ev = sparse_to_events(spikes.cpu())
        keys.append(((ev.sample.numpy() + start) * ev.num_steps + ev.step.numpy()) * ev.num_neurons + ev.neuron.numpy())
    return np.concatenate(keys), elapsed


def differing_neurons(a: np.ndarray, b: np.ndarray, num_steps: int, num_neurons: int) -> int:
    """Neurons (sample, neuron) whose spike trains differ between key sets ``a`` and ``b``."""
    diff = np.setxor1d(a, b)
    return len(np.unique((diff // (num_steps * num_neurons)) * num_neurons + diff % num_neurons))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=DEFAULT_DATA)
    parser.add_argument("--golden", default=str(DEFAULT_GOLDEN))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated; default 100,500,1000 (CUDA) or 1000 (CPU)")
    parser.add_argument("--images", type=positive, default=10000)
    parser.add_argument("--seed-images", type=int, default=500, help="images for the one-at-a-time loop")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--quick", action="store_true", help="1,000 images, 50 for the seed loop")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/genn-<device>[-quick].json)")
    args = parser.parse_args()
    check_data_root(parser, args.data_root)
    check_device(parser, args.device, backend="genn")
    check_golden(parser, args.golden)
    if args.quick:
        args.images, args.seed_images = 1000, 50
    on_cuda = args.device.startswith("cuda")
    sizes = [int(s) for s in (args.batch_sizes or ("100,500,1000" if on_cuda else "1000")).split(",")]

    images = load_mnist(args.data_root, train=False)[0][: args.images]
    with np.load(args.golden) as z:
        golden = (z["sample"].astype(np.int64) * int(z["num_steps"]) + z["step"]) * 784 + z["neuron"]
    golden = golden[golden < args.images * 200 * 784]

    torch_enc = LatencyEncode(backend="torch", device=args.device)
    torch_enc(images[:10])  # its table is made once per parameter set: outside the timing
    torch_keys, torch_seconds = keys_of(torch_enc, images, 1000)
    # GeNN's default CUDA build fuses multiply-adds: compare it with the torch engine's "fma"
    arithmetics = ["ieee", "fma"] if on_cuda else ["ieee"]
    torch_fma_keys = keys_of(LatencyEncode(backend="torch", device=args.device, arithmetic="fma"), images, 1000)[0]
    rows = []
    for arithmetic in arithmetics:
        for size in sizes if arithmetic == "ieee" else sizes[-1:]:
            enc = LatencyEncode(backend="genn", device=args.device, cache_dir=args.cache_dir, arithmetic=arithmetic)
            enc(images[:size])  # build or load the model for this batch size, outside the timing
            keys, seconds = keys_of(enc, images, size)
            rows.append({
                "arithmetic": arithmetic,
                "batch_size": size,
                "images_per_s": len(images) / seconds,
                "neurons_differing_from_golden": differing_neurons(keys, golden, 200, 784),
                "spikes_differing_from_golden": int(len(np.setxor1d(keys, golden))),
                "neurons_differing_from_torch_engine_same_arithmetic": differing_neurons(
                    keys, torch_keys if arithmetic == "ieee" else torch_fma_keys, 200, 784),
            })
            print(rows[-1])

    backend = "cuda" if on_cuda else "single_threaded_cpu"
    seed = run_seed_loop(args.data_root, args.seed_images, 1, args.golden, backend)

    result = {
        "script": "benchmarks/bench_genn.py",
        "machine": machine(),
        "device": args.device,
        "genn_backend": backend,
        "images": len(images),
        "genn": rows,
        "torch_engine": {"images_per_s": len(images) / torch_seconds,
                         "neurons_differing_from_golden": differing_neurons(torch_keys, golden, 200, 784),
                         "fma_neurons_differing_from_golden": differing_neurons(torch_fma_keys, golden, 200, 784)},
        "seed_loop": {key: seed[key] for key in ("images", "images_per_s", "golden", "backend")},
    }
    print(f"seed tutorial loop ({backend}, one image at a time): {seed['images_per_s']:,.0f} images/s, "
          f"{seed['golden'].get('differing')} spikes differ from golden")
    print(f"torch engine ({args.device}): {result['torch_engine']['images_per_s']:,.0f} images/s, "
          f"{result['torch_engine']['neurons_differing_from_golden']} neurons differ from golden")
    print("saved", save(f"genn-{args.device.split(':')[0]}" + ("-quick" if args.quick else ""), result, args.out))


if __name__ == "__main__":
    main()
