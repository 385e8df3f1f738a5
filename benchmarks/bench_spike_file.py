"""Reading a spike file: ``SpikeDataset.get_batch`` (pread on the one open descriptor, each
batch's spikes checked) next to the 0.2 way (``np.memmap`` fancy indexing, unchecked) on the
same file, in one process.

The file holds the 60,000 MNIST training images (``--test``: the 10,000 test images)
encoded once; each reader then runs ``--repeats`` epochs (alternating) of batches of
``--batch-size``, shuffled and in order, building the same ``(B, T, N)`` sparse batches; the
figure of merit is the ratio of median epoch times (pread / memmap; in memory for scale).
Also: opening the file (``verify=True`` and ``False``).

    python benchmarks/bench_spike_file.py [--data-root DIR] [--batch-size 256] [--repeats 5] [--test]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import DEFAULT_DATA, check_data_root, machine, positive, save
from spike_encode import LatencyEncode
from spike_encode.data import SpikeDataset, encode_dataset
from spike_encode.datasets import load_mnist
from spike_encode.events import SpikeEvents
from spike_encode.outputs import output_format


class MemmapReader:
    """The 0.2 reader's batch path: arrays memory-mapped, gathered by fancy indexing."""

    def __init__(self, path: Path, ds: SpikeDataset) -> None:
        data = path.read_bytes()[:8]
        length = int.from_bytes(data, "little")
        with open(path, "rb") as f:
            table = json.loads(f.read(8 + length)[8:])
        dtypes = {"U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "I64": np.int64}
        self.arrays = {name: np.memmap(path, dtypes[e["dtype"]], "r", 8 + length + e["data_offsets"][0],
                                       (e["shape"][0],)) for name, e in table.items() if name != "__metadata__"}
        self.offsets = np.asarray(self.arrays["offsets"])
        self.targets = torch.from_numpy(np.array(self.arrays["targets"]))
        self.T, self.N, self.dt = ds.num_steps, ds.num_neurons, ds.params.dt

    def get_batch(self, idx: np.ndarray):
        starts, stops = self.offsets[idx], self.offsets[idx + 1]
        counts = stops - starts
        firsts = np.cumsum(counts) - counts
        pos = np.repeat(starts - firsts, counts) + np.arange(int(counts.sum()))
        step = torch.from_numpy(self.arrays["step"][pos].astype(np.int64))
        neuron = torch.from_numpy(self.arrays["neuron"][pos].astype(np.int64))
        sample = torch.from_numpy(np.repeat(np.arange(len(idx), dtype=np.int64), counts))
        ev = SpikeEvents(sample, step, neuron, len(idx), self.T, self.N)
        return output_format().render(ev, dt=self.dt, image_shape=None, batched=True), self.targets[idx]


def epoch(reader, order: np.ndarray, batch_size: int) -> float:
    start = time.perf_counter()
    for at in range(0, len(order), batch_size):
        reader.get_batch(order[at : at + batch_size])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=DEFAULT_DATA)
    parser.add_argument("--batch-size", type=positive, default=256)
    parser.add_argument("--repeats", type=positive, default=5)
    parser.add_argument("--test", action="store_true", help="the 10,000 test images instead of 60,000")
    args = parser.parse_args()
    check_data_root(parser, args.data_root)

    images, labels = load_mnist(args.data_root, train=not args.test)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mnist.spikes"
        items = torch.utils.data.TensorDataset(images, labels)
        encode_dataset(items, LatencyEncode(backend="torch"), path, batch_size=2000, progress=False)
        opening = {}
        for verify in (True, False):
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                SpikeDataset(path, verify=verify)
                times.append(time.perf_counter() - start)
            opening[f"verify={verify}"] = statistics.median(times)
        readers = {"pread": SpikeDataset(path), "in_memory": SpikeDataset(path, mmap=False)}
        readers["memmap_0.2"] = MemmapReader(path, readers["pread"])
        rng = np.random.default_rng(0)
        results = {}
        for order_name in ("shuffled", "in_order"):
            times: dict[str, list[float]] = {name: [] for name in readers}
            for _ in range(args.repeats):
                order = rng.permutation(len(images)) if order_name == "shuffled" else np.arange(len(images))
                for name, reader in readers.items():
                    times[name].append(epoch(reader, order, args.batch_size))
            medians = {name: statistics.median(t) for name, t in times.items()}
            results[order_name] = {
                "epoch_s": medians,
                "pread_over_memmap": medians["pread"] / medians["memmap_0.2"],
                "in_memory_over_memmap": medians["in_memory"] / medians["memmap_0.2"],
            }
            print(f"{order_name}: " + ", ".join(f"{n} {s:.3f} s" for n, s in medians.items())
                  + f"; pread/memmap {results[order_name]['pread_over_memmap']:.2f}")
        size = path.stat().st_size
    print("open: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in opening.items()) + f" ({size / 2**20:.1f} MiB)")
    out = save(f"spike-file-cpu{'-test' if args.test else ''}", {
        "machine": machine(),
        "images": len(images),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "file_bytes": size,
        "open_s": opening,
        "epochs": results,
    })
    print(f"results: {out}")


if __name__ == "__main__":
    main()
