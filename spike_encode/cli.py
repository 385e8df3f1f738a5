"""The spike-encode command line: encode image datasets to spike files, plot rasters, report
backends. Errors in what was asked (an option value, a missing dataset, an unavailable
device, an unwritable output) print one line, "spike-encode: error: ...", and exit with
status 2."""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from . import __version__
from .engines.registry import backend_names
from .errors import BackendUnavailableError
from .cache_dir import CACHE_ENV, default_cache_dir
from .datasets import DATA_ENV, DATASETS, EMNIST_SPLITS, image_dataset, parse_dataset_name
from .formats import sparse_to_events
from .params import ARITHMETICS, TUTORIAL_LIF_PARAMS, EncoderParams
from .spec import CHANNEL_POLICIES, INPUT_RULES, EncodingSpec
from .transform import LatencyEncode

__all__ = ["main"]

PROG = "spike-encode"


#: Errors that say what was asked cannot be done; reported in one line, exit status 2.
_USER_ERRORS = (ValueError, TypeError, OSError, BackendUnavailableError)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, like the command's other errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none or the help text says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _number(kind: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` where ``ok`` accepts it, else an error naming ``what``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


_positive_int = _number(int, lambda v: v > 0, "a positive integer")
_batch_size = _number(int, lambda v: 0 < v <= sys.maxsize, f"a positive integer up to {sys.maxsize}")
_count = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: 0 < v < float("inf"), "a positive finite number")
_finite_float = _number(float, math.isfinite, "a finite number")
#: The largest --size side, JPEG's: one RGB image that size is 12.9 GB before encoding.
_MAX_SIDE = 65_535
_side = _number(int, lambda v: 0 < v <= _MAX_SIDE, f"a positive integer up to {_MAX_SIDE:,}")


def _path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is empty; give a path")
    return text


def _lif_param(text: str) -> tuple[str, float]:
    """``NAME=VALUE``: one GeNN LIF parameter, its name checked."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or name not in TUTORIAL_LIF_PARAMS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME=VALUE with NAME one of {', '.join(TUTORIAL_LIF_PARAMS)}")
    return name, _number(float, math.isfinite, f"a finite number (in {text!r})")(value.strip())


def _device(text: str) -> str:
    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    return text


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="MNIST", metavar="NAME",
                        help=f"one of {', '.join(DATASETS)}; EMNIST-<split> names an EMNIST split")
    parser.add_argument("--emnist-split", choices=EMNIST_SPLITS, default=None,
                        help="EMNIST's split (or use --dataset EMNIST-<split>)")
    parser.add_argument("--data-root", type=_path, default=None,
                        help=f"folder torchvision reads the dataset from (default: ${DATA_ENV} or ./data); "
                             "for ImageFolder the folder of class sub-folders of images")
    parser.add_argument("--split", choices=("train", "test"), default=None,
                        help="dataset split (default: test; not for ImageFolder)")
    parser.add_argument("--download", action="store_true",
                        help="download the dataset into --data-root when missing (MNIST is downloaded anyway)")
    parser.add_argument("--size", type=_side, nargs=2, metavar=("H", "W"), default=None,
                        help="resize every image to H x W pixels first (needed for folders of images of "
                             "different sizes)")


def _add_encoder_options(parser: argparse.ArgumentParser) -> None:
    defaults = EncoderParams()
    parser.add_argument("--backend", default="auto", choices=backend_names(),
                        help="engine: auto picks torch (the faster, on a CPU and on CUDA; same spikes), "
                             "GeNN for what only GeNN runs")
    parser.add_argument("--device", type=_device, default=None,
                        help="torch device to encode on, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--dt", type=_positive_float, default=defaults.dt, help="time step (ms)")
    parser.add_argument("--present-time-ms", type=_positive_float, default=defaults.present_time_ms,
                        help="presentation window (ms)")
    parser.add_argument("--input-scale", type=_finite_float, default=defaults.input_scale,
                        help="current (nA) of a whole normalised 784-pixel image (the contrast rule gives "
                             "an N-pixel image N/784 times as much)")
    parser.add_argument("--input-rule", choices=INPUT_RULES, default=None,
                        help=f"how pixels become currents: contrast (pixels above the image's background; "
                             f"MNIST as the tutorial) or sum (the tutorial's rule) "
                             f"(default: {EncodingSpec.input_rule})")
    parser.add_argument("--channels", choices=CHANNEL_POLICIES, default="all",
                        help="all: one neuron per channel and pixel; gray: RGB images as one grey channel")
    parser.add_argument("--lif", type=_lif_param, action="append", default=None, metavar="NAME=VALUE",
                        help=f"a GeNN LIF parameter, repeatable, e.g. --lif TauM=10 (names: "
                             f"{', '.join(TUTORIAL_LIF_PARAMS)}; default: the tutorial's)")
    parser.add_argument("--arithmetic", choices=ARITHMETICS, default=defaults.arithmetic,
                        help="ieee: as GeNN's CPU backend; fma: as GeNN's default CUDA build")


def _add_batch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=_batch_size, default=1000, help="images encoded at once")
    parser.add_argument("--num-workers", type=_count, default=0, help="DataLoader workers loading images")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="encode only the first N images (default: all)")


def _make_encoder(args: argparse.Namespace) -> LatencyEncode:
    return LatencyEncode(dt=args.dt, present_time_ms=args.present_time_ms, input_scale=args.input_scale,
                         lif_params=dict(args.lif) if args.lif else None, backend=args.backend,
                         device=args.device, arithmetic=args.arithmetic, channels=args.channels,
                         input_rule=args.input_rule)


def _dataset(args: argparse.Namespace) -> tuple[Any, str]:
    """The chosen dataset (limited to --limit images) and how to name it to the user."""
    from torch.utils.data import Subset

    dataset = image_dataset(args.dataset, args.data_root, args.split, emnist_split=args.emnist_split,
                            download=True if args.download else None, size=args.size)
    name, emnist_split = parse_dataset_name(args.dataset, args.emnist_split)
    label = f"ImageFolder {args.data_root}" if name == "ImageFolder" else (
        f"{name}{'-' + emnist_split if emnist_split else ''} {args.split or 'test'}")
    if getattr(args, "limit", None):
        dataset = Subset(dataset, range(min(args.limit, len(dataset))))
    return dataset, label


def _writable(path: Path, force: bool) -> Path:
    """``path``, after making sure a file can be written there (before any encoding), creating
    nothing: the file and its missing folders are made when it is written (``NewFile``)."""
    from .data.files import check_writable

    check_writable(path, "--out")
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    return path


def _default_name(args: argparse.Namespace, enc: LatencyEncode) -> str:
    """``<dataset>-<split>[-<H>x<W>][-first<N>]-<digest>.spikes``: what the file holds (the
    digest names the whole encoding: parameters, channel policy, input rule)."""
    name, emnist_split = parse_dataset_name(args.dataset, args.emnist_split)
    if name == "ImageFolder":
        source = f"imagefolder-{Path(args.data_root).resolve().name}"
    else:
        source = f"{name.lower()}{'-' + emnist_split if emnist_split else ''}-{args.split or 'test'}"
    first = f"-first{args.limit}" if args.limit else ""
    size = f"-{args.size[0]}x{args.size[1]}" if args.size else ""
    return f"{source}{size}{first}-{enc.spec.digest()[:12]}.spikes"


def _demo(args: argparse.Namespace) -> None:
    from .data import SpikeLoader
    from .plots import save_rasters

    enc = _make_encoder(args)
    dataset, label = _dataset(args)
    png = _writable(Path(args.out) / "raster.png", force=True)
    print(enc)
    loader = SpikeLoader(dataset, enc, batch_size=args.batch_size, num_workers=args.num_workers)
    start = time.perf_counter()
    batches, labels = zip(*loader)
    elapsed = time.perf_counter() - start
    count, dt = len(dataset), enc.params.dt
    num_neurons = batches[0].shape[2]
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
        means.append(torch.where(n > 0, total / n.clamp(min=1), float("nan")) * dt)  # NaN: silent
    counts, firsts, means, targets = torch.cat(counts), torch.cat(firsts), torch.cat(means), torch.cat(labels)
    print(f"\nencoded {count} {label} images in {elapsed:.2f} s "
          f"({count / elapsed:,.0f} images/s, {enc.engine_name} engine)")
    print(f"\n{'image':>6} {'label':>5} {'spikes':>6} {'active %':>8} {'first ms':>8} {'mean ms':>8}")
    for i in range(min(args.show, count)):
        times = (f"{float(firsts[i]):>8.1f} {float(means[i]):>8.2f}" if counts[i] else f"{'silent':>8} {'-':>8}")
        print(f"{i:>6} {int(targets[i]):>5} {int(counts[i]):>6} {100 * int(counts[i]) / num_neurons:>8.1f} {times}")
    c, silent = counts.double(), int((counts == 0).sum())
    print(f"\nspikes per image: mean {c.mean():.1f}, min {int(c.min())}, max {int(c.max())}; " + (
        f"first spike {firsts.nanmean():.2f} ms, mean latency {means.nanmean():.2f} ms on average"
        + (f" over the {count - silent} images that spike" if silent else "") if silent < count else
        "no image spiked"))
    if silent:
        advice = ("a larger --input-scale gives them stronger currents; so does --input-rule contrast, except "
                  "to a uniform image" if enc.spec.input_rule == "sum" else
                  "under --input-rule contrast an image with nothing brighter than its background, such as a "
                  "uniform one, gets no current; a larger --input-scale gives the others stronger currents")
        print(f"{silent} of {count} images are silent: no neuron fired within {enc.params.present_time_ms:g} ms "
              f"({advice})")
    sparse_bytes = sum(b.indices().numel() * 8 + b.values().numel() * 4 for b in batches) / count
    print(f"sparse output: {sparse_bytes / 1024:.1f} KiB per image "
          f"(a dense float32 raster would be {enc.num_steps * num_neurons * 4 / 1024:.0f} KiB)")
    shown = min(4, len(batches[0]))
    titles = [f"{label} image {i}, label {int(targets[i])}" for i in range(shown)]
    save_rasters(batches[0].index_select(0, torch.arange(shown)), dt, png, titles)
    print(f"raster of the first {shown} images: {png}")


def _encode(args: argparse.Namespace) -> None:
    from .data import SpikeDataset, encode_dataset

    enc = _make_encoder(args)
    dataset, label = _dataset(args)
    out = Path(args.out) if args.out else default_cache_dir() / "datasets" / _default_name(args, enc)
    _writable(out, args.force)
    print(enc)
    start = time.perf_counter()
    try:  # without --force, a file that appears at --out while encoding is kept
        encode_dataset(dataset, enc, out, batch_size=args.batch_size, num_workers=args.num_workers,
                       progress=not args.no_progress, overwrite=args.force)
    except FileExistsError:
        raise FileExistsError(f"{out} appeared while encoding; it was kept and the new spikes discarded "
                              "(pass --force to overwrite it)") from None
    elapsed = time.perf_counter() - start
    ds = SpikeDataset(out, enc)
    print(f"encoded {len(ds)} {label} images in {elapsed:.1f} s ({len(ds) / elapsed:,.0f} images/s)")
    print(f"{ds.num_spikes} spikes ({ds.num_spikes / len(ds):.1f} per image), "
          f"{out.stat().st_size / 2**20:.1f} MiB, encoding spec digest {ds.digest}")
    print(f"written to {out}")


def _plot(args: argparse.Namespace) -> None:
    from .data import SpikeDataset, SpikeLoader
    from .plots import save_rasters

    if args.cache:
        ds = SpikeDataset(args.cache)
        count, where, source = len(ds), args.cache, Path(args.cache).name
    else:
        enc = _make_encoder(args)
        dataset, label = _dataset(args)
        count, where, source = len(dataset), label, f"{label} image"
    png = _writable(Path(args.out), force=True)
    bad = [i for i in args.images if not -count <= i < count]
    if bad:
        raise ValueError(f"--images {bad[0]} is out of range: {where} has {count} images")
    index = [i % count for i in args.images]
    if args.cache:
        (spikes, labels), dt = ds.get_batch(index), ds.params.dt
    else:  # the loader's errors (an image it cannot load, stack or encode) name dataset indices
        spikes, labels = next(iter(SpikeLoader(dataset, enc, batch_size=len(index), sampler=index)))
        dt = enc.params.dt
    titles = [f"{source} {i}, label {int(label)}" for i, label in zip(index, labels)]
    print(f"raster of {len(titles)} image(s): {save_rasters(spikes, dt, png, titles)}")


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
    print(f"spike_encode {__version__}; torch {torch.__version__}; Python {platform.python_version()}")
    print("backends:")
    devices = "cpu" + (", cuda" if torch.cuda.is_available() else "")
    print(f"  torch  available (devices: {devices})")
    genn, why = _genn_version()
    if genn:
        from .engines.genn_engine import genn_backends

        print(f"  genn   PyGeNN {genn}, GeNN backends: {', '.join(genn_backends()) or 'none'} "
              "(backend='auto' uses GeNN only for what only GeNN runs)")
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


def _parser() -> argparse.ArgumentParser:
    formatter = _HelpFormatter
    parser = _Parser(prog=PROG, description=__doc__, formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", formatter_class=formatter,
                          help="encode a dataset split, print spike statistics, plot four rasters",
                          description="Encode a dataset split (MNIST test by default), print spike "
                                      "statistics and write the first four images' rasters to OUT/raster.png.")
    _add_data_options(demo)
    _add_encoder_options(demo)
    _add_batch_options(demo)
    demo.add_argument("--show", type=_count, default=10, help="images to list one by one")
    demo.add_argument("--out", type=_path, default="out", help="folder for raster.png")
    demo.set_defaults(func=_demo)

    encode = sub.add_parser("encode", formatter_class=formatter,
                            help="encode a dataset split to one spike file (read it with SpikeDataset)",
                            description="Encode a dataset split to one spike file, read back with "
                                        "spike_encode.data.SpikeDataset. By default the file is "
                                        "<cache directory>/datasets/<dataset>-<split>[-<H>x<W>][-first<N>]-"
                                        "<digest>.spikes, digest naming the encoding (parameters, channels, "
                                        "input rule); spike-encode info prints the cache directory.")
    _add_data_options(encode)
    _add_encoder_options(encode)
    _add_batch_options(encode)
    encode.add_argument("--out", type=_path, default=None,
                        help="file to write (default: in the cache directory, see above)")
    encode.add_argument("--force", action="store_true", help="overwrite an existing file")
    encode.add_argument("--no-progress", action="store_true", help="no progress bar")
    encode.set_defaults(func=_encode)

    plot = sub.add_parser("plot", formatter_class=formatter,
                          help="raster plot (time against neuron) of chosen images to a PNG")
    _add_data_options(plot)
    _add_encoder_options(plot)
    plot.add_argument("--images", type=int, nargs="+", default=[0, 1, 2, 3],
                      help="image indices (negative ones count from the end)")
    plot.add_argument("--cache", type=_path, default=None,
                      help="plot from a file written by spike-encode encode (with its own parameters) instead")
    plot.add_argument("--out", type=_path, default="raster.png", help="PNG to write")
    plot.set_defaults(func=_plot)

    info = sub.add_parser("info", formatter_class=formatter,
                          help="versions, backends, CUDA and the cache directory")
    info.set_defaults(func=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``spike-encode`` command line on ``argv`` (default ``sys.argv[1:]``); returns
    the exit status: 0, or 2 after a one-line error about what was asked."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
        sys.stdout.flush()  # a closed pipe (`spike-encode info | head -1`) shows up here
    except BrokenPipeError:
        # https://docs.python.org/3/library/signal.html#note-on-sigpipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as err:
        if _out_of_memory(err):  # e.g. images resized by a --size too large
            size = getattr(args, "size", None)
            asked = f" with --size {size[0]} {size[1]}" if size else ""
            print(f"{PROG}: error: out of memory{asked} ({_one_line(err).rstrip(':') or 'MemoryError'}); "
                  "ask for fewer or smaller images", file=sys.stderr)
            return 2
        if not isinstance(err, _USER_ERRORS):
            raise
        print(f"{PROG}: error: {_one_line(err) or type(err).__name__}", file=sys.stderr)
        return 2
    return 0


def _out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says memory ran out: Python's ``MemoryError``, CUDA's, or the
    ``RuntimeError`` of torch's CPU allocator."""
    return (isinstance(err, (MemoryError, torch.cuda.OutOfMemoryError))
            or "DefaultCPUAllocator: can't allocate memory" in str(err))


def _one_line(err: BaseException) -> str:
    """``err``'s message on one line, its lines joined by "; "."""
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
