"""The ``spike-encode`` command line."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .cache_dir import CACHE_ENV, default_cache_dir
from .formats import sparse_to_events
from .mnist import DATA_ENV, load_mnist, mnist_dataset
from .params import ARITHMETICS, EncoderParams
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
    defaults = EncoderParams()
    parser.add_argument("--dt", type=float, default=defaults.dt, help="time step (ms)")
    parser.add_argument("--present-time-ms", type=float, default=defaults.present_time_ms,
                        help="presentation window (ms)")
    parser.add_argument("--input-scale", type=float, default=defaults.input_scale,
                        help="current (nA) of a whole normalised image")
    parser.add_argument("--arithmetic", choices=ARITHMETICS, default=defaults.arithmetic,
                        help="ieee: GeNN's CPU backend (the default); fma: GeNN's default CUDA build")


def _make_encoder(args: argparse.Namespace) -> LatencyEncode:
    return LatencyEncode(dt=args.dt, present_time_ms=args.present_time_ms, input_scale=args.input_scale,
                         backend=args.backend, device=args.device, arithmetic=args.arithmetic)


def _demo(args: argparse.Namespace) -> None:
    images, labels = load_mnist(args.data_root, train=args.split == "train")
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    enc = _make_encoder(args)
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


def _encode(args: argparse.Namespace) -> None:
    from torch.utils.data import Subset

    from .data import SpikeDataset, encode_dataset

    enc = _make_encoder(args)
    dataset = mnist_dataset(args.data_root, train=args.split == "train")
    if args.limit:
        dataset = Subset(dataset, range(min(args.limit, len(dataset))))
    out = Path(args.out) if args.out else (
        default_cache_dir() / "datasets" / f"mnist-{args.split}-{enc.params.digest()[:12]}.spikes")
    print(enc)
    start = time.perf_counter()
    encode_dataset(dataset, enc, out, batch_size=args.batch_size, num_workers=args.num_workers,
                   progress=not args.no_progress)
    elapsed = time.perf_counter() - start
    ds = SpikeDataset(out, enc)
    print(f"encoded {len(ds)} MNIST {args.split} images in {elapsed:.1f} s ({len(ds) / elapsed:,.0f} images/s)")
    print(f"{ds.num_spikes} spikes ({ds.num_spikes / len(ds):.1f} per image), "
          f"{out.stat().st_size / 2**20:.1f} MiB, parameter digest {ds.digest}")
    print(f"written to {out}")


def _plot(args: argparse.Namespace) -> None:
    from .data import SpikeDataset

    if args.cache:
        ds = SpikeDataset(args.cache)
        count, where, source = len(ds), args.cache, Path(args.cache).name
    else:
        images, all_labels = load_mnist(args.data_root, train=args.split == "train")
        count, where, source = len(images), f"MNIST {args.split}", f"{args.split} image"
    bad = [i for i in args.images if not -count <= i < count]
    if bad:
        raise SystemExit(f"--images {bad[0]} is out of range: {where} has {count} images")
    index = torch.tensor([i % count for i in args.images])
    if args.cache:
        (spikes, labels), dt = ds.get_batch(index), ds.params.dt
    else:
        enc = _make_encoder(args)
        spikes, labels, dt = enc(images[index]), all_labels[index], enc.params.dt
    titles = [f"{source} {int(i)}, label {int(label)}" for i, label in zip(index, labels)]
    print(f"raster of {len(titles)} image(s): {save_rasters(spikes, dt, args.out, titles)}")


def _genn_version() -> tuple[str | None, str]:
    """PyGeNN's version if ``import pygenn`` works, else ``None`` and why not."""
    try:
        import pygenn  # noqa: F401
    except Exception as err:  # a broken install raises more than ImportError
        return None, f"{type(err).__name__}: {err}"
    try:
        return importlib.metadata.version("pygenn"), ""
    except importlib.metadata.PackageNotFoundError:
        return getattr(pygenn, "__version__", "unknown"), ""


def _info(args: argparse.Namespace) -> None:
    from . import __version__

    print(f"spike_encode {__version__}; torch {torch.__version__}; Python {platform.python_version()}")
    print("backends:")
    devices = "cpu" + (", cuda" if torch.cuda.is_available() else "")
    print(f"  torch  available (devices: {devices})")
    genn, why = _genn_version()
    if genn:
        from .backends import genn_can_run
        from .engines.genn_engine import genn_backends

        usable = [d for d in ("cpu", "cuda")
                  if genn_can_run(torch.device(d)) and (d == "cpu" or torch.cuda.is_available())]
        print(f"  genn   PyGeNN {genn}, GeNN backends: {', '.join(genn_backends()) or 'none'} "
              f"(backend='auto' uses GeNN on: {', '.join(usable) or 'no device'})")
    else:
        print(f"  genn   not available (import pygenn failed: {why})")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        print(f"CUDA: available, {torch.cuda.device_count()} device(s): {names} (CUDA {torch.version.cuda})")
    else:
        built = f"torch built with CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only torch build"
        print(f"CUDA: not available ({built})")
    source = f"from ${CACHE_ENV}" if os.environ.get(CACHE_ENV, "").strip() else f"default; set ${CACHE_ENV} to change"
    print(f"cache directory: {default_cache_dir()} ({source})")


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

    encode = sub.add_parser("encode", help="encode an MNIST split to one spike file (see SpikeDataset)")
    _add_encoder_options(encode)
    encode.add_argument("--out", default=None,
                        help="file to write (default: <cache directory>/datasets/mnist-<split>-<digest>.spikes)")
    encode.add_argument("--limit", type=int, default=0, help="encode only the first N images")
    encode.add_argument("--num-workers", type=int, default=2, help="DataLoader workers loading images")
    encode.add_argument("--no-progress", action="store_true", help="no progress bar")
    encode.set_defaults(func=_encode)

    plot = sub.add_parser("plot", help="raster plot (time against neuron) of chosen images to a PNG")
    _add_encoder_options(plot)
    plot.add_argument("--images", type=int, nargs="+", default=[0, 1, 2, 3], help="image indices")
    plot.add_argument("--cache", default=None, help="plot from a file written by `encode` (with its own parameters) instead")
    plot.add_argument("--out", default="raster.png", help="PNG to write")
    plot.set_defaults(func=_plot)

    info = sub.add_parser("info", help="backends, GeNN version, CUDA and the cache directory")
    info.set_defaults(func=_info)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
