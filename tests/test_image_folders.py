"""One image, one spike train: torchvision ImageFolder datasets of RGB and grayscale PNGs give
the same spikes through the transform, SpikeLoader, EncodeCollate and encode_dataset; folders
mixing grey and colour files encode as torchvision reads them, and sizes must agree or be resized."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from spike_encode import LatencyEncode
from spike_encode.data import EncodeCollate, SpikeDataset, SpikeLoader, encode_dataset
from spike_encode.datasets import image_dataset

from .loader_helpers import assert_same_sparse

COUNT, HEIGHT, WIDTH = 7, 12, 10


def _write_folder(root, mode: str) -> torch.Tensor:
    """Two class folders of PNGs in ``mode``; returns the images ``(B, C, H, W)`` uint8 in
    ImageFolder's order (class, then file name)."""
    rng = np.random.default_rng(5)
    channels = 3 if mode == "RGB" else 1
    images = []
    for i in range(COUNT):
        pixels = (rng.random((HEIGHT, WIDTH, channels)) ** 8 * 255).round().astype(np.uint8)
        folder = root / ("a" if i < 4 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels if channels == 3 else pixels[:, :, 0]).save(folder / f"{i}.png")
        images.append(torch.from_numpy(pixels).permute(2, 0, 1))
    return torch.stack(images)


def _open_as_stored(path) -> Image.Image:
    """An ImageFolder loader keeping the file's mode (the default converts to RGB)."""
    with Image.open(path) as image:
        return image.copy()


@pytest.fixture(scope="module", params=["RGB", "L"])
def folder(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"images-{request.param}")
    images = _write_folder(root, request.param)
    # torchvision's default RGB loader for colour; grayscale files read as they are stored
    loader = None if request.param == "RGB" else _open_as_stored
    dataset = ImageFolder(root) if loader is None else ImageFolder(root, loader=loader)
    return dataset, images


@pytest.fixture(scope="module")
def enc():
    return LatencyEncode(backend="torch", input_scale=200.0)


def test_every_path_gives_the_encoders_spikes_for_the_image_batch(folder, enc):
    dataset, images = folder
    expected = enc(images)
    assert expected.shape == (COUNT, 200, images[0].numel()) and expected._nnz() > COUNT
    per_item = torch.stack([ImageFolder(dataset.root, transform=enc, loader=dataset.loader)[i][0].to_dense()
                            for i in range(COUNT)])
    assert torch.equal(per_item, expected.to_dense())
    loaded = list(SpikeLoader(dataset, enc, batch_size=3))
    assert_same_sparse(torch.cat([s for s, _ in loaded]), expected)
    collated = list(DataLoader(dataset, batch_size=3, collate_fn=EncodeCollate(enc)))
    assert_same_sparse(torch.cat([s for s, _ in collated]), expected)
    assert torch.equal(torch.cat([t for _, t in loaded]), torch.tensor(dataset.targets))


def test_encode_dataset_stores_the_same_spikes(folder, enc, tmp_path):
    dataset, images = folder
    path = encode_dataset(dataset, enc, tmp_path / "spikes.bin", batch_size=3, progress=False)
    stored = SpikeDataset(path, enc)
    for i in range(COUNT):
        assert_same_sparse(stored[i][0], enc(images[i]))


def _pil_luma(root) -> torch.Tensor:
    """PIL's convert("L") of every file, in ImageFolder's order, ``(B, 1, H, W)``."""
    return torch.stack([torch.from_numpy(np.array(Image.open(path).convert("L")))[None]
                        for path, _ in ImageFolder(root).samples])


def test_gray_policy_on_colour_folders_matches_pil_convert_l(tmp_path, enc):
    _write_folder(tmp_path, "RGB")
    gray = LatencyEncode(backend="torch", input_scale=200.0, channels="gray")
    loaded = torch.cat([s for s, _ in SpikeLoader(ImageFolder(tmp_path), gray, batch_size=4)])
    assert loaded.shape == (COUNT, 200, HEIGHT * WIDTH)
    assert_same_sparse(loaded, enc(_pil_luma(tmp_path)))


def test_a_folder_mixing_grey_and_colour_files_encodes_as_torchvision_reads_it(tmp_path, enc):
    _write_folder(tmp_path, "RGB")
    grey = (np.random.default_rng(6).random((HEIGHT, WIDTH)) ** 8 * 255).round().astype(np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "b" / "grey.png")
    dataset = image_dataset("ImageFolder", tmp_path)
    shapes = {tuple(dataset[i][0].shape) for i in range(len(dataset))}
    assert shapes == {(3, HEIGHT, WIDTH)}  # torchvision's loader: every file RGB
    gray = LatencyEncode(backend="torch", input_scale=200.0, channels="gray")
    loaded = torch.cat([s for s, _ in SpikeLoader(dataset, gray, batch_size=3)])
    assert_same_sparse(loaded, enc(_pil_luma(tmp_path)))
    index = [path for path, _ in dataset.samples].index(str(tmp_path / "b" / "grey.png"))
    assert_same_sparse(loaded.index_select(0, torch.tensor([index])), enc(torch.from_numpy(grey)[None, None]))


def test_images_of_different_sizes_are_refused_naming_both_sizes_or_resized(tmp_path, enc):
    _write_folder(tmp_path, "RGB")
    Image.fromarray(np.full((20, 16, 3), 7, dtype=np.uint8)).save(tmp_path / "a" / "big.png")
    with pytest.raises(ValueError, match=r"image 0 is \(3, 12, 10\), image \d is \(3, 20, 16\).*resize"):
        list(SpikeLoader(image_dataset("ImageFolder", tmp_path), enc, batch_size=COUNT + 1))
    resized = image_dataset("ImageFolder", tmp_path, size=(24, 20))
    assert {tuple(resized[i][0].shape) for i in range(len(resized))} == {(3, 24, 20)}
    assert sum(s._nnz() for s, _ in SpikeLoader(resized, enc, batch_size=COUNT + 1)) > 0
    for bad in [(0, 5), (5,), "55", (2.0, 3), (True, 4)]:
        with pytest.raises(ValueError, match="size must be"):
            image_dataset("ImageFolder", tmp_path, size=bad)
