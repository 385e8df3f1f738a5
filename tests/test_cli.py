"""The ``spike-encode`` subcommands encode, plot and info (and demo still working), and the
cache directory rule they share with the GeNN engine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from spike_encode import LatencyEncode
from spike_encode.cache_dir import default_cache_dir
from spike_encode.cli import main
from spike_encode.data import SpikeDataset

from .loader_helpers import assert_same_sparse


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_cache_dir_is_the_env_var_else_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("SPIKE_ENCODE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "spike_encode"
    monkeypatch.setenv("SPIKE_ENCODE_CACHE", "~/elsewhere")
    assert default_cache_dir() == tmp_path / "elsewhere"
    assert not (tmp_path / "elsewhere").exists()  # computing the path creates nothing


def test_info_reports_backends_cuda_and_cache_dir(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SPIKE_ENCODE_CACHE", str(tmp_path / "c"))
    main(["info"])
    out = capsys.readouterr().out
    assert f"cache directory: {tmp_path / 'c'} (from $SPIKE_ENCODE_CACHE)" in out
    assert "torch  available" in out
    genn_line = next(line for line in out.splitlines() if line.strip().startswith("genn"))
    has_pygenn = importlib.util.find_spec("pygenn") is not None
    assert ("PyGeNN" in genn_line) == has_pygenn and ("not available" in genn_line) != has_pygenn
    assert ("CUDA: available" in out) == torch.cuda.is_available()


def test_encode_writes_a_dataset_equal_to_direct_encoding(tmp_path, data_root, mnist_test, capsys):
    out = tmp_path / "first.spikes"
    main(["encode", "--data-root", str(data_root), "--limit", "120", "--batch-size", "50",
          "--num-workers", "0", "--out", str(out)])
    assert "120/120" in capsys.readouterr().err  # the progress bar
    enc = LatencyEncode(backend="torch")
    spikes, targets = SpikeDataset(out, enc).get_batch(range(120))
    assert_same_sparse(spikes, enc(mnist_test[0][:120]))
    assert torch.equal(targets, mnist_test[1][:120])


def test_encode_options_reach_the_file_and_its_default_place(monkeypatch, tmp_path, data_root):
    monkeypatch.setenv("SPIKE_ENCODE_CACHE", str(tmp_path))
    main(["encode", "--data-root", str(data_root), "--limit", "20", "--input-scale", "70",
          "--present-time-ms", "10", "--arithmetic", "fma", "--no-progress", "--num-workers", "0"])
    other = LatencyEncode(input_scale=70.0, present_time_ms=10.0, arithmetic="fma")
    (path,) = (tmp_path / "datasets").glob("*.spikes")
    assert path.name == f"mnist-test-{other.params.digest()[:12]}.spikes"
    assert len(SpikeDataset(path, other)) == 20
    with pytest.raises(ValueError, match="input_scale"):
        SpikeDataset(path, LatencyEncode())
    with pytest.raises(ValueError, match="arithmetic"):
        SpikeDataset(path, LatencyEncode(input_scale=70.0, present_time_ms=10.0))


def test_plot_writes_a_raster_png_from_mnist_and_from_a_file(tmp_path, data_root, capsys):
    png = tmp_path / "raster.png"
    main(["plot", "--data-root", str(data_root), "--images", "0", "5", "9", "--out", str(png)])
    assert _png_size(png) == (1000, 700)  # 2 columns x 2 rows of 5 x 3.5 inch panels at 100 dpi
    from matplotlib.image import imread

    assert imread(png)[..., :3].std() > 0.05, "blank figure"
    cache = tmp_path / "c.spikes"
    main(["encode", "--data-root", str(data_root), "--limit", "10", "--out", str(cache), "--no-progress",
          "--num-workers", "0"])
    png2 = tmp_path / "from-cache.png"
    main(["plot", "--cache", str(cache), "--images", "3", "--out", str(png2)])
    assert _png_size(png2) == (500, 350)
    with pytest.raises(SystemExit, match="out of range"):
        main(["plot", "--cache", str(cache), "--images", "10", "--out", str(png2)])


def test_demo_still_works(tmp_path, data_root, capsys):
    main(["demo", "--data-root", str(data_root), "--limit", "40", "--show", "2", "--out", str(tmp_path)])
    assert "encoded 40 MNIST test images" in capsys.readouterr().out
    assert _png_size(tmp_path / "raster.png") == (1000, 700)
