"""Two versions of spike_encode side by side: this checkout against a git revision
(``--base``, default ``HEAD``), both encoding the same MNIST test images to sparse output on
the CPU, on one thread and on torch's default threads.

On a shared machine whose speed drifts by more than a change is worth, back-to-back runs of
``bench_encode.py`` cannot tell the change from the machine. Here every round times both
versions at both thread counts, in alternating order, in one process, so a slow period
hits them alike; the figure is the median of the rounds' ratios.

Two copies of the same code in one process still differ: whichever package is imported
first ran 2-3% faster on two threads on the machine of README's figures (memory layout).
So both versions are copied into a temporary folder (``git archive`` of ``--base`` as the
package ``spike_encode_base``, this checkout's ``spike_encode/`` as ``spike_encode_work``,
uncommitted changes included), and two subprocesses time them, one importing each first;
the result is the geometric mean of their two ratios. A package with an absolute
``spike_encode`` import is refused (it would measure the installed package instead). Both
versions must give the same spikes on every batch.

    python benchmarks/bench_revisions.py [--base REV] [--rounds 15] [--images 10000] [--batch-size 1000]
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from common import DEFAULT_DATA, REPO, OtherLoad, machine, positive, save

VERSIONS = ("base", "work")
_ABSOLUTE_IMPORT = re.compile(r"^\s*(from|import)\s+spike_encode\b", re.MULTILINE)


def git(*args: str) -> str:
    """A git command's output in this checkout, stripped; ``ValueError`` with git's message."""
    proc = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True)
    if proc.returncode != 0:
        raise ValueError(proc.stderr.decode(errors="replace").strip() or f"git {' '.join(args)} failed")
    return proc.stdout.decode().strip()


def absolute_imports(package: Path) -> list[str]:
    """The files under ``package`` that import ``spike_encode`` by its absolute name."""
    return sorted(str(p.relative_to(package)) for p in package.rglob("*.py") if _ABSOLUTE_IMPORT.search(p.read_text()))


def copy_versions(rev: str, folder: Path) -> None:
    """``rev``'s ``spike_encode`` and this checkout's into ``folder`` as ``spike_encode_base``
    and ``spike_encode_work``.

    Raises:
        ValueError: ``rev`` has no ``spike_encode`` folder, or a copy imports itself by name.
    """
    tar = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "spike_encode"], capture_output=True)
    if tar.returncode != 0:
        raise ValueError(f"--base {rev!r}: {tar.stderr.decode(errors='replace').strip() or 'git archive failed'}")
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
        archive.extractall(folder, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (folder / "spike_encode").rename(folder / "spike_encode_base")
    shutil.copytree(REPO / "spike_encode", folder / "spike_encode_work", ignore=shutil.ignore_patterns("__pycache__"))
    for version in VERSIONS:
        if found := absolute_imports(folder / f"spike_encode_{version}"):
            raise ValueError(f"the {version} version's {', '.join(found)} import spike_encode by name: it would not "
                             "measure that version")


def time_versions(folder: Path, first: str, data_root: str, images: int, batch_size: int, rounds: int,
                  threads: int) -> dict[str, object]:
    """In this process: import both copies in ``folder``, ``first`` first, check their spikes
    match, and time ``rounds`` alternating rounds. Returns the images, the timings (s) by
    ``"<version> <threads>"``, and how many cores other processes kept busy meanwhile."""
    sys.path.insert(0, str(folder))
    order = (first, *(v for v in VERSIONS if v != first))
    packages = {v: importlib.import_module(f"spike_encode_{v}") for v in order}
    encoders = {v: packages[v].LatencyEncode(backend="torch") for v in order}
    pixels, _ = importlib.import_module(f"spike_encode_{first}.datasets").load_mnist(data_root, train=False)
    batches = list(pixels[:images].split(batch_size))
    for i, batch in enumerate(batches):
        a, b = (encoders[v](batch) for v in VERSIONS)
        if a.shape != b.shape or not torch.equal(a.indices(), b.indices()):
            raise SystemExit(f"batch {i}: the base revision and this checkout give different spikes")
    del a, b  # not held while timing

    def one_pass(version: str, count: int) -> float:
        torch.set_num_threads(count)
        start = time.perf_counter()
        for batch in batches:  # as a training loop takes them: each batch let go before the next
            encoders[version](batch)._nnz()
        return time.perf_counter() - start

    counts = sorted({1, threads})
    times: dict[str, list[float]] = {f"{v} {c}": [] for v in VERSIONS for c in counts}
    for version in order:  # warm-up: the pool threads, the kept output arrays
        for count in counts:
            one_pass(version, count)
    with OtherLoad() as load:
        for r in range(rounds):
            for version in (order if r % 2 == 0 else order[::-1]):
                for count in (counts if r % 2 == 0 else counts[::-1]):
                    times[f"{version} {count}"].append(one_pass(version, count))
    return {"images": sum(len(b) for b in batches), "timings_s": times, "other_processes_cores": load.cores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD", help="git revision to compare this checkout with (default HEAD)")
    parser.add_argument("--data-root", default=DEFAULT_DATA)
    parser.add_argument("--images", type=positive, default=10000, help="MNIST test images (default 10000)")
    parser.add_argument("--batch-size", type=positive, default=1000)
    parser.add_argument("--rounds", type=positive, default=15, help="rounds per import order (default 15)")
    parser.add_argument("--threads", type=positive, default=torch.get_num_threads(),
                        help="the multi-threaded passes' threads (default: torch's default, %(default)s here)")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/revisions-cpu.json)")
    parser.add_argument("--worker", nargs=2, metavar=("FOLDER", "FIRST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = (args.data_root, args.images, args.batch_size, args.rounds, args.threads)
    if args.worker:  # one import order, in its own process; the timings to stdout
        print(json.dumps(time_versions(Path(args.worker[0]), args.worker[1], *sizes)))
        return

    try:
        base_commit = git("rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}")
    except ValueError:
        parser.error(f"--base {args.base!r} is not a commit of {REPO}")
    with tempfile.TemporaryDirectory() as folder:
        try:
            copy_versions(base_commit, Path(folder))
        except ValueError as err:
            parser.error(str(err))
        orders = {}
        for first in VERSIONS:
            cmd = [sys.executable, __file__, "--worker", folder, first, "--data-root", args.data_root, "--images",
                   str(args.images), "--batch-size", str(args.batch_size), "--rounds", str(args.rounds),
                   "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "a worker failed")
            orders[f"{first}_first"] = json.loads(proc.stdout.strip().splitlines()[-1])

    result = summary(orders, args.threads)
    result.update(script="benchmarks/bench_revisions.py", machine=machine(), batch_size=args.batch_size,
                  rounds_per_order=args.rounds,
                  base={"rev": args.base, "commit": base_commit},
                  work={"commit": git("rev-parse", "HEAD"),
                        "uncommitted_changes": bool(git("status", "--porcelain", "--", "spike_encode"))})
    for count, ratio in result["work_over_base"].items():
        each = ", ".join(f"{o.replace('_', ' ')} {r[count]:.3f}x" for o, r in result["work_over_base_by_order"].items())
        print(f"{count} thread(s): this checkout / base {ratio:.3f}x ({each})")
    for version, speedup in result["threads_speedup"].items():
        print(f"{args.threads} threads / one thread, {version}: {speedup:.3f}x")
    print(f"base: {args.base} = {base_commit[:12]}")
    print(f"saved {save('revisions-cpu', result, args.out)}")


def summary(runs: dict[str, dict], threads: int) -> dict[str, object]:
    """Each import order's median over rounds of the round's ratios (base / work time; one
    thread / ``threads`` for each version), and the geometric means of the two orders."""
    counts = sorted({1, threads})
    orders = {o: run["timings_s"] for o, run in runs.items()}

    def ratio(times: dict[str, list[float]], count: int) -> float:  # median over rounds of base / work time
        return statistics.median(b / w for b, w in zip(times[f"base {count}"], times[f"work {count}"]))

    by_order = {o: {str(c): ratio(t, c) for c in counts} for o, t in orders.items()}
    speedups = {v: math.sqrt(math.prod(statistics.median(a / b for a, b in zip(t[f"{v} 1"], t[f"{v} {threads}"]))
                                       for t in orders.values())) for v in VERSIONS} if threads > 1 else {}
    return {
        "images": next(iter(runs.values()))["images"],
        "other_processes_cores": {o: run["other_processes_cores"] for o, run in runs.items()},
        "timings_s": orders,
        "work_over_base_by_order": by_order,
        "work_over_base": {str(c): math.sqrt(math.prod(r[str(c)] for r in by_order.values())) for c in counts},
        "threads_speedup": speedups,
    }


if __name__ == "__main__":
    main()
