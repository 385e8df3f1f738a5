"""Where the second thread's time goes: the CPU engine's compiled loop alone on one and on
several threads, next to the encoder, in one run.

Rows (MNIST test images in batches of ``--batch-size``, each row timed ``--repeats`` times
after a warm-up, the rows interleaved, medians reported):

- ``kernel_1_thread``: the compiled loop (``compiled.rows_spikes``) over each whole batch
  on this thread: the engine's work without anything around it (no hand-off, no int64
  indices, no Python per batch);
- ``kernel_threads_free``: each batch cut into ``--threads`` equal parts, each thread
  running its part of every batch one after another, one hand-off per pass: what the
  machine's cores give the loop;
- ``kernel_threads_synced``: batch by batch, as the engine runs it: through the engine's
  own hand-off (``map_on_threads``: this thread starts the helpers, takes blocks of rows
  from the batch's counter as they do, and waits for theirs): the cost of one hand-off and
  one join per batch;
- ``encoder_1_thread``, ``encoder_threads``: ``LatencyEncode(backend="torch")`` to sparse
  output with ``torch.set_num_threads(1)`` and ``(--threads)``, each batch let go before the
  next (``bench_encode.py``'s sparse rows).

The ratios say how much of the encoder's shortfall from ``--threads`` x is the machine's
(``kernel_threads_free``), the hand-off's (``kernel_threads_synced``), and what one thread
does alone in every batch (``serial_share``: the part of ``encoder_1_thread``'s time that is
not the loop). Needs numba (the ``fast`` extra).

Also what the hand-off is built on (medians of ``--handoffs`` two-item ``map_on_threads``
calls): how long after a call starts a helper takes its item, woken from sleep (the calls
10 ms apart) and spinning (back to back); and how long a waiting thread watches its word
(``parallel.SPIN_LOADS`` reads) before it sleeps.

    python benchmarks/bench_threads.py [--data-root DIR] [--threads N] [--repeats 9] [--out PATH]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from common import DEFAULT_DATA, OtherLoad, check_data_root, machine, positive, save
from spike_encode import LatencyEncode
from spike_encode.currents import InputCurrents
from spike_encode.datasets import load_mnist
from spike_encode.engines import atomics, compiled, parallel
from spike_encode.engines.parallel import map_on_threads
from spike_encode.engines.torch_engine import BLOCK_ELEMENTS, _kernel_constants, _new_outputs


class Part:
    """One thread's part of every batch: its rows' pixels and output arrays, and the loop's
    other arguments."""

    def __init__(self, pixels: list[np.ndarray], arguments: tuple):
        self.pixels = pixels
        self.arguments = arguments
        self.outputs = _new_outputs(max(len(p) for p in pixels))
        self.row_spikes = np.empty(max(len(p) for p in pixels), dtype=np.int64)
        self.taken = np.empty(max(len(p) for p in pixels), dtype=np.int64)

    def run(self, batch: int, pixels: np.ndarray | None = None, word: np.ndarray | None = None,
            block: int = 0) -> int:
        """The loop over this part of batch ``batch`` (or over ``pixels``, taking blocks of
        ``block`` rows from the counter ``word`` with other threads); its spike count."""
        if pixels is None:
            pixels, word, block = self.pixels[batch], atomics.new_word(), len(self.pixels[batch])
        steps, neurons, count, _, status, _ = compiled.rows_spikes(pixels, *self.arguments, word, block,
                                                                   self.row_spikes[: len(pixels)], self.taken,
                                                                   *self.outputs)
        if status != compiled.OK:
            raise SystemExit(f"the compiled loop stopped with status {status}")  # never on MNIST
        self.outputs = (steps, neurons)
        return count


def helper_start_s(apart_s: float, calls: int) -> float:
    """Median time from the start of a two-item ``map_on_threads`` call to a helper taking
    its item (this thread's item waits for it), with the calls ``apart_s`` apart."""
    starts = []
    for _ in range(calls):
        time.sleep(apart_s)
        taken, at = threading.Event(), []

        def item(i: int) -> None:
            if threading.current_thread().name == "spike_encode":
                at.append(time.perf_counter())
                taken.set()
            elif not taken.wait(1):
                raise SystemExit("no helper took an item within a second")  # never expected

        start = time.perf_counter()
        map_on_threads(item, 2, 2)
        starts.append(at[0] - start)
    return statistics.median(starts)


def spin_s(calls: int) -> float:
    """Median time a waiting thread watches its word before it sleeps (nothing comes)."""
    spins = []
    for _ in range(calls):
        start = time.perf_counter()
        parallel._wait_for_go(atomics.new_word(), parallel.SPIN_LOADS)
        spins.append(time.perf_counter() - start)
    return statistics.median(spins)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=DEFAULT_DATA)
    parser.add_argument("--batch-size", type=positive, default=1000)
    parser.add_argument("--images", type=positive, default=10000, help="MNIST test images (default 10000)")
    parser.add_argument("--threads", type=positive, default=max(2, torch.get_num_threads()),
                        help="threads of the multi-threaded rows (default: torch's default, at least 2: %(default)s)")
    parser.add_argument("--repeats", type=positive, default=9, help="timed passes per row (default 9)")
    parser.add_argument("--handoffs", type=positive, default=100,
                        help="two-item calls timed for each hand-off figure (default 100)")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/threads-cpu.json)")
    args = parser.parse_args()
    check_data_root(parser, args.data_root)
    if not compiled.available():
        parser.error("the compiled loop is not available here: install the fast extra (numba) and leave "
                     f"{compiled.DISABLE_ENV} unset")
    if args.threads < 2:
        parser.error(f"--threads {args.threads}: the multi-threaded rows need at least 2")

    images, _ = load_mnist(args.data_root, train=False)
    images = images[: args.images]
    encoder = LatencyEncode(backend="torch")
    bs, n = args.batch_size, args.threads
    batches = [images[i : i + bs] for i in range(0, len(images), bs)]
    currents = InputCurrents(batches[0], encoder.spec)
    rule = (encoder.spec.input_rule == "contrast", np.float32(currents.rule_scale))
    arguments = (np.empty((0, currents.shape[1]), np.float32), *rule, *_kernel_constants(encoder.spec.params))
    flat = [b.reshape(len(b), -1).numpy() for b in batches]
    whole = Part(flat, arguments)
    parts = [Part([f[len(f) * k // n : len(f) * (k + 1) // n] for f in flat], arguments) for k in range(n)]
    synced = [Part(flat, arguments) for _ in range(n)]

    def every_batch(part: Part) -> None:
        for i in range(len(batches)):
            part.run(i)

    def kernel_1_thread() -> None:
        every_batch(whole)

    def kernel_threads_free() -> None:
        map_on_threads(lambda k: every_batch(parts[k]), n, n)

    block = max(1, BLOCK_ELEMENTS // flat[0].shape[1])

    def synced_batch(i: int) -> int:
        word = atomics.new_word()  # the batch's next row, shared
        return sum(map_on_threads(lambda k: synced[k].run(i, flat[i], word, block), n, n))

    def kernel_threads_synced() -> None:
        for i in range(len(batches)):
            synced_batch(i)

    def encoder_pass() -> None:
        for b in batches:  # as a training loop takes them: each batch let go before the next
            encoder(b)._nnz()

    rows: dict[str, tuple[int, Callable[[], None]]] = {
        "kernel_1_thread": (1, kernel_1_thread),
        "kernel_threads_free": (n, kernel_threads_free),
        "kernel_threads_synced": (n, kernel_threads_synced),
        "encoder_1_thread": (1, encoder_pass),
        "encoder_threads": (n, encoder_pass),
    }
    # untimed: every row does the encoder's work (the same spikes, counted)
    spikes = {"kernel_1_thread": sum(whole.run(i) for i in range(len(batches))),
              "kernel_threads": sum(part.run(i) for part in parts for i in range(len(batches))),
              "kernel_synced": sum(synced_batch(i) for i in range(len(batches))),
              "encoder": sum(encoder(b)._nnz() for b in batches)}
    if len(set(spikes.values())) != 1:
        raise SystemExit(f"the rows count different spikes: {spikes}")  # never expected
    times: dict[str, list[float]] = {name: [] for name in rows}
    for threads, run in rows.values():  # warm-up: the encoder's helpers, the output arrays
        torch.set_num_threads(threads)
        run()
    with OtherLoad() as load:
        for _ in range(args.repeats):
            for name, (threads, run) in rows.items():
                torch.set_num_threads(threads)
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    torch.set_num_threads(n)
    hand_off = {"helper_start_asleep_s": helper_start_s(0.01, args.handoffs),
                "helper_start_spinning_s": helper_start_s(0.0, args.handoffs),
                "spin_before_sleep_s": spin_s(args.handoffs)}

    rate = {name: len(images) / statistics.median(t) for name, t in times.items()}
    result = {
        "script": "benchmarks/bench_threads.py",
        "machine": machine(),
        "other_processes_cores": load.cores,
        "batch_size": bs,
        "threads": n,
        "repeats": args.repeats,
        "spikes": spikes["encoder"],
        "rows": {name: {"images": len(images), "threads": rows[name][0], "images_per_s": rate[name],
                        "timings_s": times[name]} for name in rows},
        "kernel_free_speedup": rate["kernel_threads_free"] / rate["kernel_1_thread"],
        "kernel_synced_speedup": rate["kernel_threads_synced"] / rate["kernel_1_thread"],
        "encoder_speedup": rate["encoder_threads"] / rate["encoder_1_thread"],
        "serial_share": 1 - rate["encoder_1_thread"] / rate["kernel_1_thread"],
        "hand_off": hand_off,
    }
    busy = "?" if load.cores is None else f"{load.cores:.2f}"
    print(f"batches of {bs}, median of {args.repeats} interleaved passes (other processes kept {busy} cores busy):")
    for name in rows:
        print(f"  {name:22s} {rate[name]:>12,.0f} images/s")
    print(f"{n} threads / one: the loop alone {result['kernel_free_speedup']:.2f}x, with a hand-off per batch "
          f"{result['kernel_synced_speedup']:.2f}x, the encoder {result['encoder_speedup']:.2f}x; "
          f"one thread's encoder time outside the loop: {result['serial_share']:.0%}")
    print(f"a helper takes its item {hand_off['helper_start_asleep_s'] * 1e6:.0f} µs after a call starts when "
          f"woken from sleep, {hand_off['helper_start_spinning_s'] * 1e6:.0f} µs when spinning; a waiting thread "
          f"spins {hand_off['spin_before_sleep_s'] * 1e3:.2f} ms before it sleeps")
    print(f"saved {save('threads-cpu', result, args.out)}")


if __name__ == "__main__":
    main()
