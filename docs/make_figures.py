"""Make the pictures of docs/encoding.md with spike_encode, from the MNIST test set, and from
1/f-noise images and crops of the sample photographs installed packages ship (made at run time
by benchmarks/input_statistics.py; no image data is stored).

    python docs/make_figures.py [--data-root ../shared/data] [--out-dir docs/images]

Writes (each well under 200 KB):

- ``raster_first4.png``: the tutorial's raster plot of the first four test digits;
- ``latency_per_pixel.png``: each of those digits next to its first-spike latency per pixel;
- ``latency_histogram.png``: first-spike latencies of all 10,000 test images;
- ``latency_vs_current.png``: latency as a function of a pixel's input current;
- ``latency_by_image_kind.png``: first-spike latencies of MNIST, photographs and 1/f noise at
  32 x 32 RGB, 224 x 224 RGB and 64 x 64 grey, under the "contrast" and "sum" input rules.
"""

from __future__ import annotations

import argparse
import math
import os

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # a checkout without spike_encode installed
sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))  # input_statistics

from spike_encode import LatencyEncode, to_times  # noqa: E402
from spike_encode.datasets import load_mnist  # noqa: E402
from spike_encode.plots import save_rasters  # noqa: E402
from input_statistics import SIZES, encode, one_over_f_images, photo_crops  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = os.environ.get("SPIKE_ENCODE_DATA", str(HERE.parents[1] / "shared" / "data"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def raster_first4(images, labels, enc: LatencyEncode, path: Path) -> Path:
    spikes = enc(images[:4])
    titles = [f"test image {i}: digit {int(labels[i])}, {int(n)} spikes"
              for i, n in enumerate(torch.sparse.sum(spikes, dim=(1, 2)).to_dense())]
    return save_rasters(spikes, enc.params.dt, path, titles=titles)


def latency_per_pixel(images, labels, enc: LatencyEncode, path: Path) -> Path:
    plt = _plt()
    from matplotlib.colors import LogNorm

    dt = enc.params.dt
    times = to_times(enc(images[:4]))  # (4, 784) first-spike step, -1: never fires
    fig, axes = plt.subplots(2, 4, figsize=(9, 5), constrained_layout=True)
    cmap = plt.get_cmap("viridis_r").copy()
    cmap.set_bad("#e4e4e4")
    norm = LogNorm(vmin=0.5, vmax=enc.params.present_time_ms)
    for i in range(4):
        digit, latency = axes[i // 2, 2 * (i % 2)], axes[i // 2, 2 * (i % 2) + 1]
        digit.imshow(images[i, 0].numpy(), cmap="gray_r")
        digit.set_title(f"test image {i}: digit {int(labels[i])}", fontsize=9)
        lat = np.ma.masked_less(times[i].numpy().astype(float), 0).reshape(28, 28) * dt
        im = latency.imshow(np.ma.maximum(lat, 0.5), cmap=cmap, norm=norm)
        latency.set_title(f"first spike: {int((times[i] >= 0).sum())} of 784 fire", fontsize=9)
        for ax in (digit, latency):
            ax.set_xticks([])
            ax.set_yticks([])
    bar = fig.colorbar(im, ax=axes, shrink=0.8, label="first-spike latency (ms, log scale)")
    bar.set_ticks([0.5, 1, 2, 5, 10, 20], labels=["≤0.5", "1", "2", "5", "10", "20"])
    fig.suptitle("Each digit next to its spike latency per pixel: bright pixels fire first; "
                 "grey: no spike in the 20 ms window", fontsize=10)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def latency_histogram(images, enc: LatencyEncode, path: Path) -> Path:
    plt = _plt()
    dt, steps = enc.params.dt, enc.num_steps
    counts = torch.zeros(steps, dtype=torch.int64)
    silent = 0
    first_per_image = []
    for start in range(0, len(images), 1000):
        t = enc(images[start : start + 1000])  # output="times"
        fired = t[t >= 0]
        counts += torch.bincount(fired, minlength=steps)
        silent += int((t < 0).sum())
        first_per_image.append(torch.where(t >= 0, t, steps).min(dim=1).values)
    first = torch.cat(first_per_image)
    total = len(images) * t.shape[1]
    fig, ax = plt.subplots(figsize=(8, 4))
    edges = np.arange(steps + 1) * dt
    ax.stairs(counts.numpy(), edges, fill=True, color="#1f77b4", alpha=0.85,
              label=f"all spikes ({int(counts.sum()):,})")
    first_counts = torch.bincount(first, minlength=steps + 1)[:steps]
    ax.stairs(first_counts.numpy(), edges, color="#d62728", lw=1.5,
              label="each image's earliest spike")
    ax.set_yscale("log")
    ax.set_xlim(0, enc.params.present_time_ms)
    ax.set_xlabel(f"first-spike latency (ms) within the {enc.params.present_time_ms:g} ms window, "
                  f"{dt:g} ms steps")
    ax.set_ylabel("spikes per step (log scale)")
    ax.set_title(f"First-spike latencies of the {len(images):,} MNIST test images: "
                 f"{100 * silent / total:.0f}% of pixels never fire", fontsize=10)
    ax.legend(fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def latency_vs_current(images, enc: LatencyEncode, path: Path) -> Path:
    """Latency of every pixel of 200 images against its input current, and the closed form."""
    plt = _plt()
    p = enc.params
    pix = images[:200].reshape(200, -1).to(torch.float32)
    currents = (pix / pix.sum(dim=1, keepdim=True)) * p.input_scale
    times = enc(images[:200])
    fired = times >= 0
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.scatter(currents[fired].numpy(), times[fired].numpy() * p.dt, s=6, alpha=0.4, zorder=1,
               label="pixels of 200 test images (spike_encode)")
    lif = p.lif
    rheobase = (lif.Vthresh - lif.Vrest) / (lif.TauM / lif.C) - lif.Ioffset  # nA
    i = np.geomspace(rheobase * 1.0005, float(currents.max()) * 1.1, 400)
    v_inf = lif.Vrest + (i + lif.Ioffset) * (lif.TauM / lif.C)
    t = -lif.TauM * np.log((v_inf - lif.Vthresh) / (v_inf - lif.Vreset))
    ax.plot(i, t, color="#d62728", lw=0.9, ls="--", zorder=2,
            label=r"$t = \tau_m \ln\frac{V_\infty - V_{reset}}{V_\infty - V_{thresh}}$, $V_\infty = V_{rest} + I R$")
    decay = math.exp(-p.present_time_ms / lif.TauM)
    in_window = ((lif.Vthresh - lif.Vreset * decay) / (1 - decay) - lif.Vrest) / (lif.TauM / lif.C) - lif.Ioffset
    ax.axvline(rheobase, color="gray", ls=":", lw=1)
    ax.axvline(in_window, color="gray", ls=":", lw=1)
    ax.text(rheobase, 2.0, f" rheobase {rheobase:.2f} nA: weaker pixels never fire;\n"
            f" below {in_window:.2f} nA they fire after the {p.present_time_ms:g} ms window", fontsize=8)
    ax.set_xscale("log")
    ax.set_ylim(0, p.present_time_ms)
    ax.set_xlabel("input current I of a pixel (nA) = pixel / sum(pixels) × input_scale")
    ax.set_ylabel("first-spike latency (ms)")
    ax.set_title("Stronger current, earlier spike: the LIF neuron's latency code", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def latency_by_image_kind(images, path: Path, count: int = 200) -> Path:
    """Each neuron's first-spike latency, per kind of image and input rule (0.5 ms bins)."""
    plt = _plt()
    dt, steps, per_bin = 0.1, 200, 5
    edges = np.arange(0, steps + 1, per_bin) * dt
    fig, grid = plt.subplots(2, 2, figsize=(10, 6.4), constrained_layout=True)
    axes = grid.reshape(-1)

    def draw(ax, spikes, label, **style):
        neurons = len(spikes.first_step) * spikes.neurons
        share = spikes.latency_counts.reshape(-1, per_bin).sum(dim=1).double() / neurons
        spiking = spikes.first_step >= 0
        first = float(spikes.first_step[spiking].double().median()) * dt if bool(spiking.any()) else None
        label += f": {100 * float(spiking.double().mean()):.0f}% of images spike" + (
            f", {100 * float(spikes.firing.median()):.0f}% of neurons fire, first {first:.1f} ms"
            if first is not None else "")
        ax.stairs(100 * share.numpy(), edges, label=label, **style)

    draw(axes[0], encode(images, "contrast", batch_size=1000), "contrast = sum", color="#1f77b4", lw=1.5)
    axes[0].set_title(f"MNIST test ({len(images):,}), 28 x 28 grey", fontsize=10)
    for ax, (name, height, width, channels) in zip(axes[1:], SIZES):
        photos = photo_crops(count, height)
        if photos is not None:
            draw(ax, encode(photos, "contrast", channels), "photos, contrast", color="#1f77b4", lw=1.5)
        draw(ax, encode(one_over_f_images(count, height, width), "contrast", channels), "1/f noise, contrast",
             color="#2ca02c", lw=1.2, ls="--")
        if photos is not None:
            draw(ax, encode(photos, "sum", channels), "photos, sum", color="#d62728", lw=1.2)
        ax.set_title(f"{name}" + (", channels='gray'" if channels == "gray" else "") + f" ({count} each)", fontsize=10)
    for ax in axes:
        ax.set_xlim(0, steps * dt)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.4)  # room for the legend
        ax.set_xlabel("first-spike latency (ms)")
        ax.set_ylabel("% of neurons per 0.5 ms")
        ax.legend(fontsize=7.5, loc="upper right")
    fig.suptitle("Each neuron's first spike at the defaults: the \"contrast\" rule gives photographs of any size\n"
                 "MNIST-like spikes; the tutorial's \"sum\" rule leaves them silent (medians over images)", fontsize=10)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=DEFAULT_DATA)
    parser.add_argument("--out-dir", type=Path, default=HERE / "images")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    images, labels = load_mnist(args.data_root, train=False)
    sparse = LatencyEncode()  # the tutorial's parameters, sparse output
    times = LatencyEncode(output="times")
    for path in (
        raster_first4(images, labels, sparse, args.out_dir / "raster_first4.png"),
        latency_per_pixel(images, labels, sparse, args.out_dir / "latency_per_pixel.png"),
        latency_histogram(images, times, args.out_dir / "latency_histogram.png"),
        latency_vs_current(images, times, args.out_dir / "latency_vs_current.png"),
        latency_by_image_kind(images, args.out_dir / "latency_by_image_kind.png"),
    ):
        size = path.stat().st_size
        print(f"wrote {path} ({size / 1024:.0f} KiB)")
        if size > 200 * 1024:
            raise SystemExit(f"{path} is over 200 KB")


if __name__ == "__main__":
    main()
