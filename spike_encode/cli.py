"""The ``spike-encode`` command line."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .formats import sparse_to_events
from .mnist import DATA_ENV, load_mnist
from .plots import save_rasters
from .transform import LatencyEncode

__all__ = ["main"]


def _add_encoder_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=None,
                        help=f"folder holding MNIST/raw (default: ${DATA_ENV} or ./data; downloaded if missing)")
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "genn"))
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=1000)


def _demo(args: argparse.Namespace) -> None:
    images, labels = load_mnist(args.data_root, train=args.split == "train")
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    enc = LatencyEncode(backend=args.backend, device=args.device)
    print(enc)
    dt, num_neurons = enc.params.dt, images[0].numel()
    start = time.perf_counter()
    batches = [enc(images[i : i + args.batch_size]) for i in range(0, len(images), args.batch_size)]
    elapsed = time.perf_counter() - start
    counts, firsts, means = [], [], []
    for batch in batches:
        ev = sparse_to_events(batch.cpu())
        n = torch.bincount(ev.sample, minlength=ev.batch_size)
        steps = ev.step.double()
        total = torch.zeros(ev.batch_size, dtype=torch.float64).index_add_(0, ev.sample, steps)
        first = torch.full((ev.batch_size,), float("nan"), dtype=torch.float64)
        first = first.scatter_reduce(0, ev.sample, steps, reduce="amin", include_self=False)
        counts.append(n)
        firsts.append(first * dt)
        means.append(total / n.clamp(min=1) * dt)
    counts, firsts, means = torch.cat(counts), torch.cat(firsts), torch.cat(means)
    print(f"\nencoded {len(images)} MNIST {args.split} images in {elapsed:.2f} s "
          f"({len(images) / elapsed:,.0f} images/s, {enc.engine_name} engine)")
    print(f"\n{'image':>6} {'label':>5} {'spikes':>6} {'active %':>8} {'first ms':>8} {'mean ms':>8}")
    for i in range(min(args.show, len(images))):
        print(f"{i:>6} {int(labels[i]):>5} {int(counts[i]):>6} {100 * int(counts[i]) / num_neurons:>8.1f} "
              f"{float(firsts[i]):>8.1f} {float(means[i]):>8.2f}")
    c = counts.double()
    print(f"\nspikes per image: mean {c.mean():.1f}, min {int(c.min())}, max {int(c.max())}; "
          f"first spike {firsts.nanmean():.2f} ms, mean latency {means.nanmean():.2f} ms on average")
    sparse_bytes = sum(b.indices().numel() * 8 + b.values().numel() * 4 for b in batches) / len(images)
    print(f"sparse output: {sparse_bytes / 1024:.1f} KiB per image "
          f"(a dense float32 raster would be {enc.num_steps * num_neurons * 4 / 1024:.0f} KiB)")
    titles = [f"{args.split} image {i}, label {int(labels[i])}" for i in range(min(4, len(images)))]
    first_four = batches[0].index_select(0, torch.arange(len(titles)))
    path = save_rasters(first_four, dt, Path(args.out) / "raster.png", titles)
    print(f"raster of the first {len(titles)} images: {path}")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``spike-encode`` console script."""
    parser = argparse.ArgumentParser(prog="spike-encode", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="encode an MNIST split, print spike statistics, plot rasters")
    _add_encoder_options(demo)
    demo.add_argument("--limit", type=int, default=0, help="encode only the first N images")
    demo.add_argument("--show", type=int, default=10, help="images to list one by one")
    demo.add_argument("--out", default="out", help="folder for raster.png")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
