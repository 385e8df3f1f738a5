"""The seed tutorial's own PyGeNN loop, as a benchmark row, and NumPy-only helpers.

The loop is the GeNN tutorial "Presenting latency-coded inputs" as written: one LIF
population of 784 projection neurons fed by a current source (``injectCurrent(magnitude);``),
and for each image: write its normalised pixels times ``INPUT_SCALE`` into ``magnitude``,
push, call ``step_time()`` 200 times, reset ``V`` and ``RefracTime``, pull the recording
buffers and read ``spike_recording_data``. Only differences: MNIST *test* images (read
from torchvision's raw IDX files instead of the ``mnist`` package, so the golden file can
check them), the model built into a temporary folder, and ``single_threaded_cpu`` where
PyGeNN has no CUDA backend.

This file needs only NumPy (and PyGeNN for :func:`run_seed_loop`), so it runs in an
interpreter without PyTorch, such as the one where PyGeNN was built:

    python3 benchmarks/seed_loop.py --images 1000 --repeats 3   # prints one JSON row
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import resource
import statistics
import sys
import tempfile
import time
from copy import copy
from pathlib import Path

import numpy as np

from common import DEFAULT_DATA, DEFAULT_GOLDEN, check_golden, positive

# The tutorial's parameters
DT = 0.1
INPUT_SCALE = 80.0
NUM_PN = 784
PRESENT_TIME_MS = 20.0
LIF_PARAMS = {"C": 0.2, "TauM": 20.0, "Vrest": -60.0, "Vreset": -60.0,
              "Vthresh": -50.0, "Ioffset": 0.0, "TauRefrac": 2.0}
PN_PARAMS = copy(LIF_PARAMS)
PN_PARAMS["TauRefrac"] = 100.0


# --------------------------------------------------------------------------- memory
def rss_kib(field: str = "VmRSS") -> int:
    """The process's current (``VmRSS``) or peak (``VmHWM``) resident set, KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


class PeakRSS:
    """Extra peak resident memory (bytes) of the code run inside ``with PeakRSS() as m``.

    Linux: the kernel's high-water mark is reset (``/proc/self/clear_refs`` ``5``) on entry,
    so ``m.bytes = VmHWM(after) - VmRSS(before)`` counts every page the block touched at its
    peak, torch tensors and C++ buffers included. Elsewhere, ``ru_maxrss`` after minus
    ``VmRSS``/``ru_maxrss`` before (a lower bound when an earlier peak was higher).
    """

    def __enter__(self) -> "PeakRSS":
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "VmHWM after (reset via /proc/self/clear_refs) - VmRSS before, fresh subprocess"
            self.before = rss_kib("VmRSS")
        except OSError:
            self.method = "ru_maxrss after - ru_maxrss before, fresh subprocess"
            self.before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc) -> None:
        if self.method.startswith("VmHWM"):
            after = rss_kib("VmHWM")
        else:
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.bytes = max(0, after - self.before) * 1024


# --------------------------------------------------------------------------- data
def load_mnist_idx(root: str | Path, count: int, first: int = 0, train: bool = False) -> np.ndarray:
    """``count`` MNIST images from torchvision's ``root/MNIST/raw`` as ``(count, 784)`` uint8."""
    name = ("train" if train else "t10k") + "-images-idx3-ubyte"
    raw = Path(root) / "MNIST" / "raw"
    path = raw / name
    if path.exists():
        data = path.read_bytes()
    elif (raw / (name + ".gz")).exists():
        data = gzip.decompress((raw / (name + ".gz")).read_bytes())
    else:
        raise FileNotFoundError(f"no {name} under {raw}")
    magic, n, rows, cols = np.frombuffer(data[:16], dtype=">i4")
    if magic != 2051:
        raise ValueError(f"{path} is not an IDX image file (magic {magic})")
    images = np.frombuffer(data[16:], dtype=np.uint8).reshape(n, rows * cols)
    if first + count > n:
        raise ValueError(f"asked for images {first}..{first + count - 1}, the file has {n}")
    return images[first : first + count].copy()


# --------------------------------------------------------------------------- golden
def spike_keys(sample, step, neuron, num_steps: int, num_neurons: int = NUM_PN) -> np.ndarray:
    """Sorted linear (sample, step, neuron) keys, to compare spike sets exactly."""
    keys = ((np.asarray(sample, dtype=np.int64) * num_steps + np.asarray(step, dtype=np.int64))
            * num_neurons + np.asarray(neuron, dtype=np.int64))
    return np.sort(keys)


def golden_difference(keys: np.ndarray, images: int, num_steps: int,
                      golden_path: str | Path = DEFAULT_GOLDEN) -> dict[str, object]:
    """Compare spike keys of the first ``images`` test images with the golden GeNN file.

    Returns the golden spike count, ours, how many golden spikes we lack and how many we
    add; ``differing = missing + extra`` (a spike one step late counts twice). ``None``
    values, with a reason, when the file is absent or was made for another window.
    """
    path = Path(golden_path)
    if not path.exists():
        return {"differing": None, "reason": f"{path} not found"}
    with np.load(path) as z:
        if int(z["num_steps"]) != num_steps or int(z["first_image"]) != 0:
            return {"differing": None, "reason": f"{path.name} has another window"}
        if images > int(z["num_samples"]):
            return {"differing": None, "reason": f"{path.name} has only {int(z['num_samples'])} images"}
        keep = z["sample"] < images
        golden = spike_keys(z["sample"][keep], z["step"][keep], z["neuron"][keep], num_steps)
    keys = np.unique(keys)
    missing = int(np.setdiff1d(golden, keys, assume_unique=True).size)
    extra = int(np.setdiff1d(keys, golden, assume_unique=True).size)
    return {"golden_file": path.name, "golden_spikes": int(golden.size), "spikes": int(keys.size),
            "missing": missing, "extra": extra, "differing": missing + extra}


# --------------------------------------------------------------------------- the loop
def build_tutorial_model(build_dir: str, backend: str | None = None):
    """The tutorial's model, built into ``build_dir``; returns ``(model, pn, pn_input, lif_init)``."""
    from pygenn import GeNNModel, create_current_source_model, genn_model

    if backend is None:
        backend = "cuda" if "cuda" in genn_model.backend_modules else "single_threaded_cpu"
    cs_model = create_current_source_model(
        "cs_model", vars=[("magnitude", "scalar")], injection_code="injectCurrent(magnitude);")
    model = GeNNModel("float", "mnist_mb_first_layer", backend=backend)
    model.dt = DT
    lif_init = {"V": PN_PARAMS["Vreset"], "RefracTime": 0.0}
    pn = model.add_neuron_population("pn", NUM_PN, "LIF", PN_PARAMS, lif_init)
    pn.spike_recording_enabled = True
    pn_input = model.add_current_source("pn_input", cs_model, pn, {}, {"magnitude": 0.0})
    present_timesteps = int(round(PRESENT_TIME_MS / DT))
    model.build(path_to_model=build_dir)
    model.load(num_recording_timesteps=present_timesteps)
    return model, pn, pn_input, lif_init


def reset_neuron(pop, var_init) -> None:
    """The tutorial's reset: write each variable's initial value and push it."""
    for var_name, var_val in var_init.items():
        pop.vars[var_name].view[:] = var_val
        pop.vars[var_name].push_to_device()


def present(model, pn, pn_input, lif_init, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The tutorial's loop over ``images`` (already normalised float32): spikes per image."""
    present_timesteps = int(round(PRESENT_TIME_MS / DT))
    out = []
    for s in range(len(images)):
        pn_input.vars["magnitude"].view[:] = images[s] * INPUT_SCALE
        pn_input.vars["magnitude"].push_to_device()
        for _ in range(present_timesteps):
            model.step_time()
        reset_neuron(pn, lif_init)
        model.pull_recording_buffers_from_device()
        pn_spike_times, pn_spike_ids = pn.spike_recording_data[0]
        out.append((pn_spike_times, pn_spike_ids))
    return out


def run_seed_loop(data_root: str, images: int, repeats: int, golden: str | Path = DEFAULT_GOLDEN,
                  backend: str | None = None) -> dict[str, object]:
    """Time the tutorial's loop over the first ``images`` test images; one result row."""
    import pygenn

    raw = load_mnist_idx(data_root, images).astype(np.float32)
    # The tutorial: normalise so each image's pixels add up to one
    raw /= np.sum(raw, axis=1)[:, np.newaxis]
    with tempfile.TemporaryDirectory(prefix="seed_loop_") as build_dir, PeakRSS() as mem:
        start = time.perf_counter()
        model, pn, pn_input, lif_init = build_tutorial_model(build_dir, backend)
        build_s = time.perf_counter() - start
        spikes = present(model, pn, pn_input, lif_init, raw)  # warm-up, memory and golden pass
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            present(model, pn, pn_input, lif_init, raw)
            times.append(time.perf_counter() - start)
        used_backend = model.backend_name
    num_steps = int(round(PRESENT_TIME_MS / DT))
    # The model's clock is never reset (as in the tutorial): spike times are absolute, so
    # image b of the first pass has its window at steps b * num_steps ... (b + 1) * num_steps - 1.
    counts = [len(ids) for _, ids in spikes]
    sample = np.repeat(np.arange(images, dtype=np.int64), counts)
    step = np.round(np.concatenate([t for t, _ in spikes]) / DT).astype(np.int64) - sample * num_steps
    neuron = np.concatenate([ids for _, ids in spikes])
    out_bytes = sum(t.nbytes + i.nbytes for t, i in spikes) / images
    return {
        "images_per_s": images / statistics.median(times),
        "timings_s": times,
        "images": images,
        "memory_batch_images": images,
        "build_s": build_s,
        "output_bytes_per_image": out_bytes,
        "peak_bytes": mem.bytes,
        "peak_method": mem.method + " (model load and the first pass over all images)",
        "spikes_per_image": len(neuron) / images,
        "golden": golden_difference(spike_keys(sample, step, neuron, num_steps), images, num_steps, golden),
        "versions": {"pygenn": getattr(pygenn, "__version__", "?"), "numpy": np.__version__,
                     "python": sys.version.split()[0]},
        "backend": used_backend,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=DEFAULT_DATA)
    parser.add_argument("--images", type=positive, default=1000)
    parser.add_argument("--repeats", type=positive, default=3)
    parser.add_argument("--golden", default=str(DEFAULT_GOLDEN))
    parser.add_argument("--backend", default=None, help="PyGeNN backend (default: cuda if built, else single_threaded_cpu)")
    args = parser.parse_args()
    try:
        load_mnist_idx(args.data_root, args.images)
    except (OSError, ValueError) as err:
        parser.error(f"--data-root {args.data_root}: {err}")
    check_golden(parser, args.golden, default_may_be_missing=True)
    try:  # before any model is built
        importlib.import_module("pygenn")
    except ImportError as err:
        parser.error(f"PyGeNN cannot be imported in {sys.executable} ({err}); install it from GeNN's release")
    print(json.dumps(run_seed_loop(args.data_root, args.images, args.repeats, args.golden, args.backend)))


if __name__ == "__main__":
    main()
