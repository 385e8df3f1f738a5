"""Helpers shared by the benchmark scripts: MNIST loading, timing, machine description."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_DATA = os.environ.get("SPIKE_ENCODE_DATA", str(REPO.parent / "shared" / "data"))
DEFAULT_GOLDEN = REPO.parent / "shared" / "golden" / "tutorial-test-0-10000.npz"
if str(REPO) not in sys.path:  # measure this checkout's spike_encode, installed or not
    sys.path.append(str(REPO))


def median_rate(fn: Callable[[], object], items: int, repeats: int) -> tuple[float, list[float]]:
    """Run ``fn`` ``repeats`` times (after one warm-up); median items/s and all timings (s)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return items / statistics.median(times), times


def machine() -> dict[str, object]:
    """Where and with what a benchmark ran."""
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


def save(name: str, payload: dict[str, object]) -> Path:
    """Write ``payload`` as JSON to ``benchmarks/results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
