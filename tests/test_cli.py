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


def _python_env() -> dict[str, str]:
    """The environment for a Python subprocess: this checkout first, then every path this
    process imports from (packages installed through PYTHONPATH too)."""
    import spike_encode

    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(spike_encode.__file__).parents[1]), *sys.path])}


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


def test_encode_options_reach_the_file_and_its_default_place(monkeypatch, tmp_path, data_root, mnist_test):
    monkeypatch.setenv("SPIKE_ENCODE_CACHE", str(tmp_path))
    main(["encode", "--data-root", str(data_root), "--limit", "20", "--input-scale", "70",
          "--present-time-ms", "10", "--arithmetic", "fma", "--no-progress", "--num-workers", "0",
          "--lif", "TauM=15", "--lif", "Vthresh=-52", "--channels", "gray"])
    other = LatencyEncode(input_scale=70.0, present_time_ms=10.0, arithmetic="fma",
                          lif_params={"TauM": 15.0, "Vthresh": -52.0}, channels="gray")
    (path,) = (tmp_path / "datasets").glob("*.spikes")
    assert path.name == f"mnist-test-first20-{other.spec.digest()[:12]}.spikes"
    assert len(SpikeDataset(path, other)) == 20
    assert_same_sparse(SpikeDataset(path, other).get_batch(range(20))[0], other(mnist_test[0][:20]))
    with pytest.raises(ValueError, match="input_scale"):
        SpikeDataset(path, LatencyEncode())
    with pytest.raises(ValueError, match="arithmetic"):
        SpikeDataset(path, LatencyEncode(input_scale=70.0, present_time_ms=10.0, lif_params={"TauM": 15.0,
                                                                                            "Vthresh": -52.0}))


def test_the_input_rule_option_reaches_the_encoder(monkeypatch, tmp_path):
    # needs LatencyEncode(input_rule=...), which the lead adds to transform.py
    monkeypatch.setenv("SPIKE_ENCODE_CACHE", str(tmp_path / "cache"))
    folder = _image_folder(tmp_path / "pics", "RGB")
    for rule in ("sum", "contrast"):
        assert main(["encode", "--dataset", "ImageFolder", "--data-root", str(folder), "--no-progress",
                     "--input-rule", rule, "--out", str(tmp_path / f"{rule}.spikes")]) == 0
        enc = LatencyEncode(backend="torch", input_rule=rule)
        assert enc.spec.input_rule == rule
        assert_same_sparse(SpikeDataset(tmp_path / f"{rule}.spikes", enc).get_batch(range(6))[0],
                           enc(_folder_images(folder)))


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
                         cwd=tmp_path, env=_python_env())
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
    (["encode", "--out", ""], "--out: '' is empty"),
    (["demo", "--out", " "], "--out: ' ' is empty"),
    (["demo", "--batch-size", "99999999999999999999"],
     f"--batch-size: '99999999999999999999' is not a positive integer up to {sys.maxsize}"),
    (["encode", "--lif", "TauX=3"], "--lif: 'TauX=3' is not NAME=VALUE with NAME one of C, TauM"),
    (["encode", "--lif", "TauM"], "--lif: 'TauM' is not NAME=VALUE"),
    (["encode", "--lif", "TauM=fast"], "--lif: 'fast' is not a finite number (in 'TauM=fast')"),
    (["encode", "--lif", "TauM=-1"], "lif_params['TauM'] must be > 0"),
    (["encode", "--size", "0", "8"], "--size: '0' is not a positive integer"),
    (["encode", "--size", "3000000000", "1"], "--size: '3000000000' is not a positive integer up to 65,535"),
    (["plot", "--size", "8", "65536"], "--size: '65536' is not a positive integer up to 65,535"),
    (["plot", "--cache", "", "--dataset", "KMNIST", "--data-root", "/no/such/folder"], "--cache: '' is empty"),
    (["encode", "--data-root", " "], "--data-root: ' ' is empty"),  # not the current folder
    (["encode", "--channels", "grey"], "--channels: invalid choice: 'grey'"),
    (["encode", "--input-rule", "tutorial"], "--input-rule: invalid choice: 'tutorial'"),
])
def test_user_errors_are_one_line_exit_2(argv, words, capsys):
    assert words in _fails(argv, capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="PyTorch sees a GPU here")
def test_cuda_without_a_gpu_is_a_one_line_error(capsys, data_root):
    line = _fails(["encode", "--device", "cuda", "--data-root", str(data_root), "--limit", "5"], capsys)
    assert "cuda" in line and "no CUDA GPU" in line


@pytest.mark.parametrize("device", ["meta", "mps", "ipu"])
def test_a_device_that_cannot_encode_is_a_one_line_error(device, capsys, data_root, tmp_path):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this PyTorch has MPS")
    for command in ("demo", "encode"):
        line = _fails([command, "--device", device, "--data-root", str(data_root), "--limit", "5",
                       "--out", str(tmp_path / command)], capsys)
        assert f"device={device!r}: spike_encode computes on 'cpu' or 'cuda' devices" in line
    assert not (tmp_path / "encode").exists()


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


def test_failed_commands_leave_no_folders_behind(capsys, tmp_path):
    good = _image_folder(tmp_path / "good", "L", size=(8, 8), per_class=1)
    cache = tmp_path / "c.spikes"
    assert main(["encode", "--dataset", "ImageFolder", "--data-root", str(good), "--no-progress",
                 "--out", str(cache)]) == 0
    corrupt = _image_folder(tmp_path / "corrupt", "L", size=(8, 8), per_class=1)
    (corrupt / "dog" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    new = tmp_path / "new"
    data = ["--dataset", "ImageFolder", "--data-root", str(corrupt)]
    for argv in (["encode", *data, "--no-progress", "--out", str(new / "e" / "o.spikes")],
                 ["plot", *data, "--images", "1", "--out", str(new / "p" / "r.png")],
                 ["demo", *data, "--out", str(new / "d")],
                 ["plot", "--cache", str(cache), "--images", "99", "--out", str(new / "c" / "r.png")]):
        _fails(argv, capsys)
        assert not new.exists(), argv
    assert main(["plot", "--cache", str(cache), "--images", "1", "--out", str(new / "c" / "r.png")]) == 0
    assert [p.name for p in (new / "c").iterdir()] == ["r.png"] and _png_size(new / "c" / "r.png") == (500, 350)


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
    read, write = os.pipe()
    os.close(read)  # as `spike-encode info | head -1` once head has exited
    try:
        run = subprocess.run([sys.executable, "-m", "spike_encode", "info"], stdout=write, stderr=subprocess.PIPE,
                             text=True, env=_python_env())
    finally:
        os.close(write)
    assert run.returncode == 1 and run.stderr == "", run.stderr


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_encode_an_image_folder(mode, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPIKE_ENCODE_CACHE", str(tmp_path / "cache"))
    folder = _image_folder(tmp_path / f"pics-{mode}", mode)
    assert main(["encode", "--dataset", "ImageFolder", "--data-root", str(folder), "--no-progress",
                 "--batch-size", "4"]) == 0
    enc = LatencyEncode(backend="torch")
    (path,) = (tmp_path / "cache" / "datasets").glob("*.spikes")
    assert path.name == f"imagefolder-pics-{mode}-{enc.spec.digest()[:12]}.spikes"
    spikes, targets = SpikeDataset(path, enc).get_batch(range(6))
    images = _folder_images(folder)  # as stored: RGB, or L
    assert images.dtype == torch.uint8
    assert spikes.shape == (6, enc.num_steps, 3 * 12 * 10)  # torchvision reads every file as RGB
    assert_same_sparse(spikes, enc(images.expand(-1, 3, -1, -1)))
    assert targets.tolist() == [0, 0, 0, 1, 1, 1]
    png = tmp_path / "folder.png"
    assert main(["plot", "--dataset", "imagefolder", "--data-root", str(folder), "--images", "0", "-1",
                 "--out", str(png)]) == 0
    assert _png_size(png) == (1000, 350)
    assert "has no splits" in _fails(["encode", "--dataset", "ImageFolder", "--data-root", str(folder),
                                      "--split", "train"], capsys)


def test_a_folder_mixing_grey_and_colour_files_encodes_as_torchvision_reads_it(tmp_path, capsys):
    from PIL import Image

    folder = _image_folder(tmp_path / "mixed", "RGB", per_class=2)
    grey = np.random.default_rng(1).integers(1, 255, (12, 10), dtype=np.uint8)
    Image.fromarray(grey, "L").save(folder / "dog" / "9.png")
    out = tmp_path / "gray.spikes"
    assert main(["encode", "--dataset", "ImageFolder", "--data-root", str(folder), "--no-progress",
                 "--channels", "gray", "--out", str(out)]) == 0
    gray = LatencyEncode(backend="torch", channels="gray")
    spikes, _ = SpikeDataset(out, gray).get_batch(range(5))
    assert spikes.shape == (5, gray.num_steps, 12 * 10)
    grey_file = spikes.index_select(0, torch.tensor([4]))
    assert_same_sparse(grey_file, gray(torch.from_numpy(grey)[None, None]))  # the grey file's own spikes
    colour = [Image.open(p) for p in sorted(folder.glob("*/*.png"))[:4]]
    expected = torch.stack([torch.from_numpy(np.array(image.convert("L")))[None] for image in colour])
    assert_same_sparse(spikes.index_select(0, torch.arange(4)), gray(expected))  # PIL's convert("L") of the others


def test_images_of_different_sizes_name_two_sizes_and_resize_with_size(tmp_path, capsys):
    from PIL import Image

    folder = _image_folder(tmp_path / "sizes", "RGB", per_class=2)
    Image.fromarray(np.full((20, 16, 3), 99, dtype=np.uint8)).save(folder / "dog" / "big.png")
    line = _fails(["encode", "--dataset", "ImageFolder", "--data-root", str(folder), "--no-progress",
                   "--out", str(tmp_path / "x.spikes")], capsys)
    assert "(3, 12, 10)" in line and "(3, 20, 16)" in line and "--size H W" in line
    out = tmp_path / "resized.spikes"
    assert main(["encode", "--dataset", "ImageFolder", "--data-root", str(folder), "--no-progress",
                 "--size", "24", "20", "--out", str(out)]) == 0
    assert SpikeDataset(out).get_batch(range(5))[0].shape[2] == 3 * 24 * 20


def test_plot_refuses_images_of_different_sizes_in_one_line(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "sizes"
    (folder / "a").mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 50, dtype=np.uint8)).save(folder / "a" / "0.png")
    Image.fromarray(np.full((10, 6), 90, dtype=np.uint8)).save(folder / "a" / "1.png")
    line = _fails(["plot", "--dataset", "ImageFolder", "--data-root", str(folder), "--images", "0", "1",
                   "--out", str(tmp_path / "r.png")], capsys)
    assert "(3, 8, 8)" in line and "(3, 10, 6)" in line and "--size H W" in line
    assert not (tmp_path / "r.png").exists()


def test_plot_names_the_dataset_index_of_a_refused_image(tmp_path, capsys):
    from PIL import Image

    folder = _image_folder(tmp_path / "pics", "L", size=(8, 8), per_class=2)
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(folder / "dog" / "0.png")  # dataset index 2
    line = _fails(["plot", "--dataset", "ImageFolder", "--data-root", str(folder), "--images", "3", "2",
                   "--out", str(tmp_path / "r.png")], capsys)
    assert "dataset index 2: the image has all-zero pixels" in line


@pytest.mark.skipif(sys.platform != "linux", reason="limits the address space with RLIMIT_AS")
@pytest.mark.parametrize("size, failing", [
    (65535, "PIL's resize (MemoryError)"),  # one RGB image of 12.9 GB
    (20000, "torch's CPU allocator (RuntimeError)"),  # 1.2 GB resized, 4.8 GB as float32 currents
])
def test_a_size_too_large_for_memory_is_a_one_line_error(size, failing, tmp_path):
    import resource

    folder = _image_folder(tmp_path / "pics", "RGB", size=(8, 8), per_class=1)
    limit = 8 * 2**30
    run = subprocess.run(
        [sys.executable, "-m", "spike_encode", "plot", "--dataset", "ImageFolder", "--data-root", str(folder),
         "--size", str(size), str(size), "--images", "0", "--out", str(tmp_path / "r.png")],
        capture_output=True, text=True, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
        env=_python_env())
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith(f"spike-encode: error: out of memory with --size {size} {size}"), run.stderr
    assert ("DefaultCPUAllocator" in run.stderr) == failing.startswith("torch"), f"expected to fail in {failing}"
    assert not (tmp_path / "r.png").exists()


@pytest.mark.parametrize("rule, advice", [
    ("contrast", "under --input-rule contrast an image with nothing brighter than its background, such as a "
                 "uniform one, gets no current; a larger --input-scale gives the others stronger currents"),
    ("sum", "a larger --input-scale gives them stronger currents; so does --input-rule contrast, except to a "
            "uniform image"),
])
def test_demo_advice_on_silent_images_follows_the_input_rule(rule, advice, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "flat"
    (folder / "a").mkdir(parents=True)
    Image.fromarray(np.full((40, 40), 128, dtype=np.uint8)).save(folder / "a" / "0.png")  # 4,800 neurons: silent
    assert main(["demo", "--dataset", "ImageFolder", "--data-root", str(folder), "--input-rule", rule,
                 "--out", str(tmp_path / "o")]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "images are silent" in line)
    assert line == f"1 of 1 images are silent: no neuron fired within 20 ms ({advice})"


def test_demo_says_which_images_are_silent(tmp_path, capsys):
    from PIL import Image

    folder = _image_folder(tmp_path / "flat", "RGB", per_class=1)
    Image.fromarray(np.full((12, 10, 3), 128, dtype=np.uint8)).save(folder / "cat" / "0.png")  # uniform
    assert main(["demo", "--dataset", "ImageFolder", "--data-root", str(folder), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out
    assert "     0     0      0      0.0   silent        -" in out
    assert "over the 1 images that spike" in out and "1 of 2 images are silent" in out
    row = next(line for line in out.splitlines() if line.startswith("     1     1"))
    assert f"mean latency {row.split()[-1]} ms" in out  # the silent image does not count as 0 ms


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
                         env=_python_env())
    assert run.stdout.split() == ["Figure", "4", "svg", "False"], run.stderr
    no_mpl = "import sys; sys.modules['matplotlib'] = None\nimport spike_encode\nspike_encode.plot_rasters"
    run = subprocess.run([sys.executable, "-c", no_mpl], capture_output=True, text=True, cwd=tmp_path,
                         env=_python_env())
    assert run.returncode == 0, run.stderr  # importing works without matplotlib
    run = subprocess.run([sys.executable, "-c", no_mpl + "(None, 0.1)"], capture_output=True, text=True,
                         cwd=tmp_path, env=_python_env())
    assert 'pip install "spike_encode[plot]"' in run.stderr


def test_save_rasters_writes_the_suffixs_format_whole_and_leaves_nothing_when_it_fails(tmp_path, enc):
    from spike_encode import save_rasters

    spikes = enc(torch.full((2, 1, 4, 4), 9, dtype=torch.uint8))
    png = save_rasters(spikes, 0.1, tmp_path / "new" / "deep" / "r.png")
    assert png.read_bytes().startswith(b"\x89PNG") and sorted(p.name for p in png.parent.iterdir()) == ["r.png"]
    assert b"<svg" in save_rasters(spikes, 0.1, tmp_path / "r.svg").read_bytes()[:400]
    with pytest.raises(ValueError, match="xyz"):  # matplotlib knows no such format
        save_rasters(spikes, 0.1, tmp_path / "other" / "r.xyz")
    assert not (tmp_path / "other").exists()
