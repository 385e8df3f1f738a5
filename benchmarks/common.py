"""Helpers shared by the benchmark scripts: MNIST loading, timing, machine description.

Importable without PyTorch (``seed_loop.py`` runs in PyGeNN's own interpreter)."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_DATA = os.environ.get("SPIKE_ENCODE_DATA", str(REPO.parent / "shared" / "data"))
DEFAULT_GOLDEN = REPO.parent / "shared" / "golden" / "tutorial-test-0-10000.npz"
if str(REPO) not in sys.path:  # measure this checkout's spike_encode, installed or not
    sys.path.append(str(REPO))


def positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative(text: str) -> int:
    """An argparse type: an integer of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def check_data_root(parser: argparse.ArgumentParser, root: str) -> None:
    """The parser's error (one line, exit 2) unless MNIST can be read under ``root``: before
    any timing, and before any results file is written."""
    from spike_encode.datasets import load_mnist

    try:
        load_mnist(root, train=False)
    except (OSError, RuntimeError, ValueError) as err:
        parser.error(f"--data-root {root}: {' '.join(str(err).split())}")


def check_device(parser: argparse.ArgumentParser, device: str, backend: str = "torch",
                 option: str = "--device") -> None:
    """The parser's error (one line, exit 2) unless spike_encode's ``backend`` can run on
    ``device`` here (a CUDA device needs a GPU; ``genn`` needs PyGeNN); builds no engine, so
    no one-off cost is paid before the script times it."""
    from spike_encode import BackendUnavailableError
    from spike_encode.devices import resolve_device
    from spike_encode.engines.registry import ENGINES

    try:
        why = ENGINES[backend].unavailable(resolve_device(device), None)
    except (BackendUnavailableError, ValueError) as err:
        why = str(err)
    if why:
        parser.error(f"{option} {device}: {' '.join(why.split())}")


GOLDEN_FIELDS = ("sample", "step", "neuron", "num_steps", "num_samples", "first_image")


def check_golden(parser: argparse.ArgumentParser, path: str, *, default_may_be_missing: bool = False) -> bool:
    """The parser's error (one line, exit 2) unless ``path`` is a golden spike file (an
    ``.npz`` with :data:`GOLDEN_FIELDS`); with ``default_may_be_missing``, the default file
    may be absent (a machine without ``../shared``): then ``False``."""
    if default_may_be_missing and Path(path) == DEFAULT_GOLDEN and not DEFAULT_GOLDEN.exists():
        return False
    try:
        with numpy.load(path) as z:
            missing = [name for name in GOLDEN_FIELDS if name not in z.files]
    except Exception as err:  # noqa: BLE001 - whatever np.load makes of a damaged file
        parser.error(f"--golden {path}: not a golden spike file ({' '.join(str(err).split()) or type(err).__name__})")
    if missing:
        parser.error(f"--golden {path}: not a golden spike file (no {', '.join(missing)})")
    return True


def median_rate(fn: Callable[[], object], items: int, repeats: int) -> tuple[float, list[float]]:
    """Run ``fn`` ``repeats`` times (after one warm-up); median items/s and all timings (s)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return items / statistics.median(times), times


class OtherLoad:
    """How busy other processes kept the machine while the ``with`` block ran: the average
    number of cores they used (``/proc/stat`` busy time minus this process's CPU time, per
    second of wall time). ``None`` where ``/proc/stat`` is missing."""

    @staticmethod
    def _busy_s() -> float | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except OSError:
            return None
        return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait

    @staticmethod
    def _own_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def __enter__(self) -> "OtherLoad":
        self.start = (time.perf_counter(), self._busy_s(), self._own_s())
        self.cores: float | None = None
        return self

    def __exit__(self, *exc) -> None:
        wall, busy, own = time.perf_counter(), self._busy_s(), self._own_s()
        if busy is not None and self.start[1] is not None:
            self.cores = max(0.0, (busy - self.start[1]) - (own - self.start[2])) / (wall - self.start[0])


def machine() -> dict[str, object]:
    """Where and with what a benchmark ran."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


def save(name: str, payload: dict[str, object], out: str | Path | None = None) -> Path:
    """Write ``payload`` as JSON to ``out`` (a script's ``--out``), else to
    ``benchmarks/results/<name>.json``."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
