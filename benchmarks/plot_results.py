"""Render bench_peers.py and bench_encode.py results (JSON) as PNG charts, and print them
as Markdown tables.

For each JSON file (default: every ``benchmarks/results/peers-*.json`` and
``encode-*.json`` that is not a quick run) it writes, beside it:

- peers: ``<name>-throughput.png``: images/s per encoder, log scale, with the ratio to the
  float32 step loop measured in the same run; ``<name>-bytes.png``: output bytes per image
  and extra peak memory per batch, log scale;
- encode: ``<name>.png``: images/s of each bench_encode row (threads, dense rasters fresh
  and reused, the step loop), log scale, with the ratio to the step loop of the same run.

    python benchmarks/plot_results.py [results/peers-cpu.json results/encode-cpu.json ...]
                                      [--out-dir DIR] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_peers import markdown_table  # noqa: E402

# colours by family: faithful to GeNN (blues/greens) and other models (oranges)
COLOURS = {"spike_encode": "#1f77b4", "genn": "#2ca02c", "step_loop": "#7f7f7f", "peer": "#ff7f0e"}


def label(row: dict) -> str:
    rid = row["id"]
    if rid.startswith("spike_encode:torch:"):
        _, _, device, fmt = rid.split(":")
        return f"spike_encode torch {device} '{fmt}'"
    return {
        "spike_encode:genn": "spike_encode GeNN backend",
        "seed_loop": "seed tutorial loop (PyGeNN)",
        "step_loop": "float32 step loop (baseline)",
        "snntorch:latency": "snnTorch spikegen.latency*",
        "norse:constant_current_lif": "Norse ConstantCurrentLIF*",
        "norse:spike_latency_lif": "Norse SpikeLatencyLIF*",
        "spikingjelly:latency": "SpikingJelly LatencyEncoder*",
    }.get(rid, rid)


def colour(row: dict) -> str:
    rid = row["id"]
    if rid.startswith("spike_encode:torch"):
        return COLOURS["spike_encode"]
    if rid in ("spike_encode:genn", "seed_loop"):
        return COLOURS["genn"]
    if rid == "step_loop":
        return COLOURS["step_loop"]
    return COLOURS["peer"]


def subtitle(payload: dict) -> str:
    m, s = payload["machine"], payload["settings"]
    where = m["gpu"] or f"{m['cpu']}, {s.get('cpu_threads_per_row', '?')} thread(s) per row"
    return (f"{where} — torch {m['torch']}, {m['date'][:10]}\nMNIST test images "
            f"({s['images_fast_rows']:,} for spike_encode torch rows, {s['images_seed_loop']:,} for the seed loop, "
            f"{s['images_slow_rows']:,} for the others)")


def _legend(ax) -> None:
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=COLOURS["spike_encode"], label="spike_encode (exact GeNN spikes)"),
                       Patch(color=COLOURS["genn"], label="PyGeNN (GeNN's own spikes)"),
                       Patch(color=COLOURS["step_loop"], label="float32 step loop (exact GeNN spikes)"),
                       Patch(color=COLOURS["peer"], label="* other libraries: other models")],
              loc="lower right", fontsize=8, framealpha=0.9)


def _skipped_note(payload: dict) -> str:
    skipped = [f"{label(r)}: {r.get('skipped') or r.get('failed')}" for r in payload["rows"]
               if "images_per_s" not in r]
    # one line per distinct reason, so the four CUDA rows make one line
    lines, seen = [], {}
    for text in skipped:
        name, why = text.split(": ", 1)
        seen.setdefault(why, []).append(name)
    for why, names in seen.items():
        head = names[0] if len(names) == 1 else f"{names[0].rsplit(' ', 1)[0]} (x{len(names)})"
        lines.append(f"not run: {head} — {why}")
    return "\n".join(lines)


def plot_throughput(payload: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in payload["rows"] if "images_per_s" in r]
    rows.sort(key=lambda r: r["images_per_s"])
    note = _skipped_note(payload)
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(rows) + 1.6 + 0.16 * note.count("\n")))
    y = range(len(rows))
    rates = [r["images_per_s"] for r in rows]
    ax.barh(y, rates, color=[colour(r) for r in rows])
    ax.set_xscale("log")
    ax.set_yticks(list(y), [label(r) for r in rows], fontsize=9)
    ax.set_xlabel("images / s (log scale; median of timed passes)")
    for i, r in enumerate(rows):
        ratio = r.get("ratio_to_step_loop")
        text = f" {r['images_per_s']:,.0f}" + (f"  ({ratio:,.1f}× step loop)" if ratio else "")
        ax.text(r["images_per_s"], i, text, va="center", fontsize=8)
    ax.set_xlim(min(rates) / 2, max(rates) * 12)
    ax.set_title("Latency encoding of MNIST: throughput\n" + subtitle(payload), fontsize=9)
    _legend(ax)
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, va="bottom", color="#555555")
    fig.tight_layout(rect=(0, 0.02 + 0.025 * (note.count("\n") + 1) if note else 0, 1, 1))
    return _save(fig, path)


def plot_bytes(payload: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in payload["rows"] if "images_per_s" in r]
    rows.sort(key=lambda r: r["output_bytes_per_image"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 0.42 * len(rows) + 1.6), sharey=True)
    y = list(range(len(rows)))
    colours = [colour(r) for r in rows]
    out = [r["output_bytes_per_image"] / 1024 for r in rows]
    ax1.barh(y, out, color=colours)
    ax1.set_xscale("log")
    ax1.set_yticks(y, [label(r) for r in rows], fontsize=9)
    ax1.set_xlabel("output KiB per image (log scale)")
    for i, v in enumerate(out):
        ax1.text(v, i, f" {v:,.1f}", va="center", fontsize=8)
    ax1.set_xlim(min(out) / 2, max(out) * 8)
    peak = [max(r["peak_bytes"], 1) / 2**20 for r in rows]
    batch = payload["settings"]["batch_size"]
    ax2.barh(y, peak, color=colours)
    ax2.set_xscale("log")
    ax2.set_xlabel("extra peak memory (MiB, log scale) encoding one batch")
    for i, (v, r) in enumerate(zip(peak, rows)):
        n = r.get("memory_batch_images", min(batch, r["images"]))
        extra = f" ({n} images, 1 at a time)" if r["id"] == "seed_loop" else f" (batch {n})"
        ax2.text(v, i, f" {v:,.0f}{extra}", va="center", fontsize=8)
    ax2.set_xlim(min(peak) / 2, max(peak) * 40)
    fig.suptitle("Latency encoding of MNIST: output size and memory\n" + subtitle(payload), fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


ENCODE_LABELS = {
    "sparse_1_thread": "sparse, 1 thread",
    "sparse_default_threads": "sparse, {threads} threads",
    "sparse_1_thread_kept": "sparse, 1 thread, every batch kept",
    "sparse_default_threads_kept": "sparse, {threads} threads, every batch kept",
    "sparse_1_thread_numpy": "sparse, 1 thread, NumPy path (no numba)",
    "sparse_default_threads_numpy": "sparse, {threads} threads, NumPy path (no numba)",
    "dense_transform": "dense float32, LatencyEncode(output='dense')",
    "dense_raster_fresh": "dense float32, dense_raster (fresh)",
    "dense_raster_out": "dense float32, dense_raster(out=) (reused)",
    "step_loop": "float32 step loop, {threads} threads (baseline)",
}


def encode_rows(payload: dict) -> list[tuple[str, dict]]:
    """bench_encode.py's rows as ``(label, row)``, in the script's order."""
    return [(ENCODE_LABELS.get(name, name).format(threads=row["threads"]), row) for name, row in payload["rows"].items()]


def encode_subtitle(payload: dict) -> str:
    m = payload["machine"]
    where = m["gpu"] if payload["device"] != "cpu" else f"{m['cpu']}, {m['cores']} cores"
    return (f"{where} — torch {m['torch']}, numpy {m.get('numpy', '?')}, {m['date'][:10]}\nMNIST test images, "
            f"batches of {payload['batch_size']}, median of {payload['repeats']} passes interleaved by group"
            + ("\nnumba installed (compiled loop)" if payload.get("compiled_loop") else ""))


def encode_markdown(payload: dict) -> str:
    """bench_encode.py's results as a Markdown table."""
    base = payload["rows"]["step_loop"]["images_per_s"]
    lines = ["| row | images | threads | images/s | × step loop | page faults / batch |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for text, row in encode_rows(payload):
        lines.append(f"| {text} | {row['images']:,} | {row['threads']} | {row['images_per_s']:,.0f} | "
                     f"{row['images_per_s'] / base:,.1f}× | {row['page_faults_per_batch']:,} |")
    return "\n".join(lines)


def plot_encode(payload: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = encode_rows(payload)
    base = payload["rows"]["step_loop"]["images_per_s"]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.6))
    y = list(range(len(rows)))[::-1]
    rates = [r["images_per_s"] for _, r in rows]
    colours = [COLOURS["step_loop"] if name == "step_loop" else COLOURS["spike_encode"] for name in payload["rows"]]
    ax.barh(y, rates, color=colours)
    ax.set_xscale("log")
    ax.set_yticks(y, [text for text, _ in rows], fontsize=9)
    ax.set_xlabel("images / s (log scale; median of interleaved passes)")
    for i, rate in zip(y, rates):
        ax.text(rate, i, f" {rate:,.0f}  ({rate / base:,.1f}× step loop)", va="center", fontsize=8)
    ax.set_xlim(min(rates) / 2, max(rates) * 30)
    ax.set_title("spike_encode torch engine: MNIST throughput\n" + encode_subtitle(payload), fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


PLOTTED = ("benchmarks/bench_peers.py", "benchmarks/bench_encode.py")


def read_result(parser: argparse.ArgumentParser, path: Path) -> dict:
    """The results in ``path``, or the parser's one-line error where it cannot be read or
    is not a result of one of the :data:`PLOTTED` scripts."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        parser.error(f"{path}: {' '.join(str(err).split())}")
    script = payload.get("script") if isinstance(payload, dict) else None
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not (script == PLOTTED[0] and isinstance(rows, list)
            or script == PLOTTED[1] and isinstance(rows, dict) and "step_loop" in rows):
        parser.error(f"{path}: not the results of {' or '.join(PLOTTED)} (its script: {script})")
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--out-dir", type=Path, help="where to write the PNGs (default: beside each JSON)")
    parser.add_argument("--markdown", action="store_true", help="also print each file as a Markdown table")
    args = parser.parse_args()
    files = args.files or sorted(p for pattern in ("peers-*.json", "encode-*.json")
                                 for p in (HERE / "results").glob(pattern) if "quick" not in p.name)
    if not files:
        parser.error("no results: run benchmarks/bench_peers.py or bench_encode.py first, or name JSON files")
    payloads = [read_result(parser, f) for f in files]  # every file checked before any plot is written
    for f, payload in zip(files, payloads):
        out_dir = args.out_dir or f.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        if payload.get("script") == "benchmarks/bench_encode.py":
            plots = [plot_encode(payload, out_dir / f"{f.stem}.png")]
            table, title = encode_markdown(payload), encode_subtitle(payload)
        else:
            plots = [plot_throughput(payload, out_dir / f"{f.stem}-throughput.png"),
                     plot_bytes(payload, out_dir / f"{f.stem}-bytes.png")]
            table, title = markdown_table(payload), subtitle(payload)
        for p in plots:
            print(f"wrote {p} ({p.stat().st_size / 1024:.0f} KiB)")
        if args.markdown:
            print(f"\n{f.name}: {title}\n\n{table}\n")


if __name__ == "__main__":
    main()
