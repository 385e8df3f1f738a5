"""The ``spike-encode`` subcommands encode, plot, info and demo on MNIST and on image folders,
their manners (version, help, one-line errors, pipes), and the cache directory rule they share
with the GeNN engine."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import pytest
import torch

from spike_encode import LatencyEncode
from spike_encode.cache_dir import default_cache_dir
from spike_encode.cli import _parser, main
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
    assert path.name == f"mnist-test-first20-{other.params.digest()[:12]}.spikes"
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
    assert "out of range: " in _fails(["plot", "--cache", str(cache), "--images", "10", "--out", str(png2)], capsys)


def test_demo_still_works(tmp_path, data_root, capsys):
    main(["demo", "--data-root", str(data_root), "--limit", "40", "--show", "2", "--out", str(tmp_path)])
    assert "encoded 40 MNIST test images" in capsys.readouterr().out
    assert _png_size(tmp_path / "raster.png") == (1000, 700)


def _fails(argv: list[str], capsys) -> str:
    """Run the CLI, expecting exit status 2 and one error line; return that line."""
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's own errors
        status = stop.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2, captured
    assert len(lines) == 1 and lines[0].startswith("spike-encode: error: "), captured.err
    return lines[0]


def _image_folder(root: Path, mode: str, size=(12, 10), per_class: int = 3) -> Path:
    """Two class folders of random PNGs (``mode`` "RGB" or "L"); pixels 1..254, never all zero."""
    from PIL import Image

    rng = np.random.default_rng(0)
    shape = (*size, 3) if mode == "RGB" else size
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(1, 255, shape, dtype=np.uint8), mode).save(root / name / f"{i}.png")
    return root


def _folder_images(root: Path) -> torch.Tensor:
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    return torch.stack([pil_to_tensor(Image.open(p)) for p in sorted(root.glob("*/*.png"))])


def test_version_and_python_m(tmp_path):
    import spike_encode

    run = subprocess.run([sys.executable, "-m", "spike_encode", "--version"], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(spike_encode.__file__).parents[1])})
    assert run.returncode == 0 and run.stdout.strip() == f"spike-encode {spike_encode.__version__}"


def test_help_documents_every_option_with_its_default_and_no_markup(capsys):
    parser = _parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings} has no help text"
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        assert "`" not in text and "``" not in text, text
    with pytest.raises(SystemExit):
        main(["encode", "--help"])
    text = capsys.readouterr().out
    assert "images encoded at once (default: 1000)" in " ".join(text.split())
    assert "time step (ms) (default: 0.1)" in " ".join(text.split())


@pytest.mark.parametrize("argv, words", [
    (["encode", "--dt", "0"], "--dt: '0' is not a positive"),
    (["encode", "--dt", "nan"], "--dt: 'nan' is not a positive"),
    (["encode", "--batch-size", "0"], "--batch-size: '0' is not a positive integer"),
    (["demo", "--limit", "-5"], "--limit: '-5' is not a positive integer"),
    (["encode", "--device", "gpu0"], "--device: 'gpu0' is not a torch device"),
    (["encode", "--dataset", "CIFAR11"], "dataset must be one of MNIST"),
    (["encode", "--dataset", "EMNIST"], "EMNIST needs a split"),
    (["plot", "--dataset", "KMNIST", "--data-root", "/no/such/folder"], "KMNIST test split not found under"),
])
def test_user_errors_are_one_line_exit_2(argv, words, capsys):
    assert words in _fails(argv, capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="PyTorch sees a GPU here")
def test_cuda_without_a_gpu_is_a_one_line_error(capsys, data_root):
    line = _fails(["encode", "--device", "cuda", "--data-root", str(data_root), "--limit", "5"], capsys)
    assert "cuda" in line and "no CUDA GPU" in line


def test_missing_data_leaves_no_tree_behind(capsys, tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    missing = tmp_path / "not-there"
    line = _fails(["encode", "--dataset", "FashionMNIST", "--data-root", str(missing)], capsys)
    assert "FashionMNIST test split not found" in line and "--download" in line
    # MNIST is downloaded when missing; here the download fails (nothing listens on port 9)
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    line = _fails(["demo", "--data-root", str(missing), "--out", str(tmp_path / "out")], capsys)
    assert "MNIST is not under" in line and "could not be downloaded" in line
    assert not missing.exists() and not (tmp_path / "out").exists()
    existing = tmp_path / "data"
    (existing / "mine.txt").parent.mkdir()
    (existing / "mine.txt").write_text("kept")
    _fails(["encode", "--data-root", str(existing)], capsys)
    assert [p.name for p in existing.iterdir()] == ["mine.txt"]  # no empty MNIST/raw


def test_unwritable_out_is_refused_before_encoding(capsys, tmp_path, data_root):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for argv in (["encode", "--out", str(blocker / "x.spikes")], ["demo", "--out", str(blocker)],
                 ["plot", "--out", str(blocker / "x.png")]):
        line = _fails([*argv, "--data-root", str(data_root)], capsys)
        assert f"cannot write --out {blocker}" in line


def test_encode_refuses_to_overwrite_without_force(capsys, tmp_path, data_root):
    out = tmp_path / "x.spikes"
    argv = ["encode", "--data-root", str(data_root), "--limit", "5", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    before = out.read_bytes()
    assert "exists; pass --force" in _fails([*argv, "--limit", "6"], capsys)
    assert out.read_bytes() == before
    assert main([*argv, "--limit", "6", "--force"]) == 0
    assert len(SpikeDataset(out)) == 6


def test_info_into_a_closed_pipe_exits_quietly(tmp_path):
    import spike_encode

    read, write = os.pipe()
    os.close(read)  # as `spike-encode info | head -1` once head has exited
    try:
        run = subprocess.run([sys.executable, "-m", "spike_encode", "info"], stdout=write, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(Path(spike_encode.__file__).parents[1])})
    finally:
        os.close(write)
    assert run.returncode == 1 and run.stderr == "", run.stderr


@pytest.mark.parametrize("mode, channels", [("RGB", 3), ("L", 1)])
def test_encode_an_image_folder(mode, channels, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPIKE_ENCODE_CACHE", str(tmp_path / "cache"))
    folder = _image_folder(tmp_path / f"pics-{mode}", mode)
    assert main(["encode", "--dataset", "ImageFolder", "--data-root", str(folder), "--no-progress",
                 "--batch-size", "4"]) == 0
    enc = LatencyEncode(backend="torch")
    (path,) = (tmp_path / "cache" / "datasets").glob("*.spikes")
    assert path.name == f"imagefolder-pics-{mode}-{enc.params.digest()[:12]}.spikes"
    spikes, targets = SpikeDataset(path, enc).get_batch(range(6))
    images = _folder_images(folder)
    assert images.shape == (6, channels, 12, 10) and images.dtype == torch.uint8
    assert spikes.shape == (6, enc.num_steps, channels * 12 * 10)
    assert_same_sparse(spikes, enc(images))
    assert targets.tolist() == [0, 0, 0, 1, 1, 1]
    png = tmp_path / "folder.png"
    assert main(["plot", "--dataset", "imagefolder", "--data-root", str(folder), "--images", "0", "-1",
                 "--out", str(png)]) == 0
    assert _png_size(png) == (1000, 350)
    assert "has no splits" in _fails(["encode", "--dataset", "ImageFolder", "--data-root", str(folder),
                                      "--split", "train"], capsys)


def test_emnist_split_spellings():
    from spike_encode.datasets import parse_dataset_name

    assert parse_dataset_name("emnist-Balanced") == ("EMNIST", "balanced")
    assert parse_dataset_name("EMNIST", "letters") == ("EMNIST", "letters")
    assert parse_dataset_name("fashionmnist") == ("FashionMNIST", None)
    with pytest.raises(ValueError, match="different splits"):
        parse_dataset_name("EMNIST-digits", "letters")
    with pytest.raises(ValueError, match="EMNIST only"):
        parse_dataset_name("MNIST", "letters")


def test_plotting_keeps_the_backend_and_is_imported_lazily(tmp_path):
    code = (
        "import sys, matplotlib, torch\n"
        "matplotlib.use('svg')\n"
        "import spike_encode\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "spikes = spike_encode.LatencyEncode(backend='torch')(torch.full((3, 1, 4, 4), 9, dtype=torch.uint8))\n"
        "fig = spike_encode.plot_rasters(spikes, 0.1, ['a', 'b', 'c'])\n"
        "print(type(fig).__name__, len(fig.axes), matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.stdout.split() == ["Figure", "4", "svg", "False"], run.stderr
    no_mpl = "import sys; sys.modules['matplotlib'] = None\nimport spike_encode\nspike_encode.plot_rasters"
    run = subprocess.run([sys.executable, "-c", no_mpl], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert run.returncode == 0, run.stderr  # importing works without matplotlib
    run = subprocess.run([sys.executable, "-c", no_mpl + "(None, 0.1)"], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert 'pip install "spike_encode[plot]"' in run.stderr
