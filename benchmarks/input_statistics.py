"""Spike statistics per kind of image under each input rule, at the encoder's defaults.

Kinds: the 10,000 MNIST test images (28 x 28 grey); synthetic 1/f-noise images (the
amplitude spectrum of natural scenes, fixed seed) and crops of the sample photographs that
installed packages ship (scikit-learn's ``china.jpg`` and ``flower.jpg``, matplotlib's
``grace_hopper.jpg``; skipped where absent), each at 32 x 32 RGB, 224 x 224 RGB and 64 x 64
grey (RGB read with ``channels="gray"``). For each kind and rule: how many images spike at
all, the share of neurons that fire (median over images), the median first spike of an
image (ms), and how long encoding (currents, then the exact torch engine) takes next to
``"sum"`` (time ratio, in the same process). No image data is stored: everything is made or read at run time.

    python benchmarks/input_statistics.py [--data-root ../shared/data] [--quick]

Prints a Markdown table (for the README) and writes
``benchmarks/results/input-statistics-cpu.json``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, when imported from tests or docs
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # a checkout without spike_encode installed

from common import DEFAULT_DATA, check_data_root, machine, positive, save  # noqa: E402
from spike_encode.datasets import load_mnist  # noqa: E402
from spike_encode.engines import simulate_exact  # noqa: E402
from spike_encode.inputs import input_currents  # noqa: E402
from spike_encode.params import EncoderParams  # noqa: E402
from spike_encode.spec import INPUT_RULES, EncodingSpec  # noqa: E402

#: (name, height, width, channel policy) of the non-MNIST kinds: the sizes of issue #17.
SIZES = (("32x32 RGB", 32, 32, "all"), ("224x224 RGB", 224, 224, "all"), ("64x64 grey", 64, 64, "gray"))


def one_over_f_images(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """``(count, 3, height, width)`` uint8 RGB images of 1/f noise (fixed ``seed``).

    Each image: a luminance field with amplitude spectrum ``1/f`` (the spectrum of natural
    scenes), plus 0.3 of an independent 1/f field per channel (colour), standardised, then
    ``mean * (1 + contrast * z)`` clipped to 0..255, with the mean drawn from 70..180 and the
    RMS contrast from 0.15..0.5 per image.
    """
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = np.inf  # no DC component: fields have mean 0

    def field() -> np.ndarray:
        spectrum = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f
        z = np.fft.irfft2(spectrum, s=(height, width))
        return (z - z.mean()) / z.std()

    images = np.empty((count, 3, height, width), dtype=np.uint8)
    for i in range(count):
        lum = field()
        z = np.stack([lum + 0.3 * field() for _ in range(3)])
        z /= z.std()
        mean, contrast = rng.uniform(70, 180), rng.uniform(0.15, 0.5)
        images[i] = np.clip(mean * (1 + contrast * z), 0, 255).round()
    return torch.from_numpy(images)


def sample_photos() -> list[Path]:
    """The sample photographs installed packages ship (scikit-learn, matplotlib), if any."""
    paths = []
    try:
        import sklearn.datasets

        folder = Path(sklearn.datasets.__file__).parent / "images"
        paths += [folder / "china.jpg", folder / "flower.jpg"]
    except ImportError:
        pass
    try:
        import matplotlib

        paths.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    except ImportError:
        pass
    return [p for p in paths if p.is_file()]


def photo_crops(count: int, size: int, seed: int = 1) -> torch.Tensor | None:
    """``(count, 3, size, size)`` uint8 random square crops of :func:`sample_photos`, each
    a quarter to all of the photo's short side, resized (bilinear) to ``size``; ``None``
    where no sample photo is installed."""
    from PIL import Image

    paths = sample_photos()
    if not paths:
        return None
    rng = np.random.default_rng(seed)
    photos = []
    for path in paths:
        with Image.open(path) as image:
            photos.append(image.convert("RGB"))
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        width, height = photo.size
        side = int(rng.integers(min(width, height) // 4, min(width, height) + 1))
        x0, y0 = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        crop = photo.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.Resampling.BILINEAR)
        crops.append(torch.from_numpy(np.array(crop)).permute(2, 0, 1))
    return torch.stack(crops)


@dataclass
class Spikes:
    """What one kind of image gives under one rule."""

    first_step: torch.Tensor  # (B,) each image's first spike (step), -1: silent
    firing: torch.Tensor  # (B,) share of the image's neurons that fire
    latency_counts: torch.Tensor  # (T,) neurons of all images whose first spike is at each step
    neurons: int


def encode(images: torch.Tensor, rule: str, channels: str = "all", batch_size: int = 50,
           params: EncoderParams | None = None) -> Spikes:
    """Encode ``images`` as ``LatencyEncode(input_rule=rule, channels=channels)`` does with
    the torch engine (:func:`~spike_encode.inputs.input_currents`, then the exact engine)."""
    spec = EncodingSpec(params or EncoderParams(), channels=channels, input_rule=rule)
    steps = spec.num_steps
    firsts, firing, counts, neurons = [], [], torch.zeros(steps, dtype=torch.int64), 0
    for start in range(0, len(images), batch_size):
        currents = input_currents(images[start : start + batch_size], spec)
        events = simulate_exact(currents, spec.params)
        neurons = currents.shape[1]
        first = torch.full(currents.shape, steps, dtype=torch.int64)
        first.view(-1).scatter_reduce_(0, events.sample * neurons + events.neuron, events.step, "amin")
        fired = first < steps
        counts += torch.bincount(first[fired], minlength=steps)
        firing.append(fired.double().mean(dim=1))
        image_first = first.min(dim=1).values
        firsts.append(torch.where(image_first < steps, image_first, -1))
    return Spikes(torch.cat(firsts), torch.cat(firing), counts, neurons)


def time_ratio(images: torch.Tensor, channels: str, repeats: int = 15,
               least_s: float = 0.5) -> tuple[float, dict[str, float]]:
    """How long encoding (currents, then the exact engine) takes under ``"contrast"`` over
    ``"sum"``, and each rule's images/s: batches of about 2**22 pixels, the rules timed in
    turn, ``repeats`` times, each time over enough passes through ``images`` to take
    ``least_s``; medians."""
    specs = {rule: EncodingSpec(channels=channels, input_rule=rule) for rule in INPUT_RULES}
    batch_size = max(1, 2**22 // images[0].numel())

    def run(rule: str) -> None:
        for i in range(0, len(images), batch_size):
            simulate_exact(input_currents(images[i : i + batch_size], specs[rule]), specs[rule].params)

    start = time.perf_counter()
    run("sum")
    passes = max(1, math.ceil(least_s / max(time.perf_counter() - start, 1e-6)))
    times: dict[str, list[float]] = {rule: [] for rule in INPUT_RULES}
    for _ in range(repeats):
        for rule in INPUT_RULES:
            start = time.perf_counter()
            for _ in range(passes):
                run(rule)
            times[rule].append((time.perf_counter() - start) / passes)
    medians = {rule: statistics.median(values) for rule, values in times.items()}
    return medians["contrast"] / medians["sum"], {rule: len(images) / t for rule, t in medians.items()}


def kinds(data_root: str, count: int, mnist_count: int) -> Iterator[tuple[str, torch.Tensor, str]]:
    """``(name, uint8 images, channel policy)`` of every kind of image measured."""
    yield "MNIST test, 28x28 grey", load_mnist(data_root, train=False)[0][:mnist_count], "all"
    for name, height, width, channels in SIZES:
        yield f"1/f noise, {name}", one_over_f_images(count, height, width), channels
        photos = photo_crops(count, height)
        if photos is not None:
            yield f"photographs, {name}", photos, channels


def summary(spikes: Spikes, dt: float) -> dict[str, float]:
    """The table's numbers for one kind and rule."""
    spiking = spikes.first_step >= 0
    first_ms = spikes.first_step[spiking].double() * dt
    return {
        "images": len(spikes.first_step),
        "neurons": spikes.neurons,
        "images_spiking_pct": 100 * float(spiking.double().mean()),
        "neurons_firing_pct_median": 100 * float(spikes.firing.median()),
        "first_spike_ms_median": float(first_ms.median()) if len(first_ms) else None,
        "first_spike_ms_p95": float(first_ms.quantile(0.95)) if len(first_ms) else None,
    }


def _cell(values: dict[str, float]) -> str:
    first, spiking = values["first_spike_ms_median"], values["images_spiking_pct"]
    return (f"{spiking:.{1 if 0 < spiking < 1 else 0}f}% / {values['neurons_firing_pct_median']:.1f}% / "
            + ("-" if first is None else f"{first:.1f} ms"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=DEFAULT_DATA)
    parser.add_argument("--images", type=positive, default=300, help="images of each synthetic or photo kind")
    parser.add_argument("--quick", action="store_true", help="60 images per kind, 2,000 MNIST images")
    args = parser.parse_args()
    check_data_root(parser, args.data_root)
    torch.manual_seed(0)
    count, mnist_count = (60, 2000) if args.quick else (args.images, 10_000)
    dt = EncoderParams().dt
    rows = []
    for name, images, channels in kinds(args.data_root, count, mnist_count):
        result = {"kind": name, "channels": channels, "shape": list(images.shape[1:])}
        for rule in INPUT_RULES:
            spikes = encode(images, rule, channels)
            result[rule] = summary(spikes, dt)
        result["time_contrast_over_sum"], rates = time_ratio(images, channels)
        for rule, rate in rates.items():
            result[rule]["images_per_s"] = rate
        rows.append(result)
        print(f"{name}: " + "; ".join(f"{rule} {_cell(result[rule])}" for rule in INPUT_RULES)
              + f"; encoding takes {result['time_contrast_over_sum']:.2f}x the time of 'sum'", flush=True)
    print("\n| images (N neurons) | `\"contrast\"` (default) | `\"sum\"` (tutorial) |")
    print("| --- | --- | --- |")
    for row in rows:
        print(f"| {row['kind']} ({row['contrast']['neurons']:,}) | {_cell(row['contrast'])} | {_cell(row['sum'])} |")
    print("\ncells: images with any spike / neurons firing (median image) / first spike (median image)")
    path = save("input-statistics-cpu", {"machine": machine(), "quick": args.quick, "kinds": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
