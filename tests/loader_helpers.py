"""Helpers for the DataLoader tests: MNIST item datasets, exact spike comparison, and
finding which image a yielded sample's spikes belong to."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from spike_encode.formats import sparse_to_events


class MNISTItems(Dataset):
    """The first ``count`` MNIST images as ``(image, label)`` in one image type:
    ``"pil"`` (as torchvision's MNIST gives them), ``"ndarray"`` (H, W) or ``"tensor"`` (1, H, W)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, kind: str = "pil", transform=None):
        self.images, self.labels, self.kind, self.transform = images, labels, kind, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image = self.images[i]  # (1, 28, 28) uint8
        if self.kind == "pil":
            from PIL import Image

            image = Image.fromarray(image[0].numpy(), mode="L")
        elif self.kind == "ndarray":
            image = image[0].numpy()
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[i])


def assert_same_sparse(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal sparse rasters: same shape, same coalesced indices and values."""
    assert actual.is_sparse and expected.is_sparse
    assert actual.shape == expected.shape
    a, e = actual.coalesce(), expected.coalesce()
    assert torch.equal(a.indices().cpu(), e.indices().cpu()), "spike indices differ"
    assert torch.equal(a.values().cpu(), e.values().cpu())


def per_image_keys(spikes: torch.Tensor) -> list[bytes]:
    """One byte string per image of a ``(B, T, N)`` sparse batch: its (step, neuron) spikes."""
    ev = sparse_to_events(spikes.cpu())
    counts = torch.bincount(ev.sample, minlength=ev.batch_size).tolist()
    pairs = torch.stack([ev.step, ev.neuron], 1).numpy()
    return [chunk.tobytes() for chunk in np.split(pairs, np.cumsum(counts)[:-1])]


class SpikeIdentifier:
    """Which image (index into the reference batch) has exactly these spikes."""

    def __init__(self, reference: torch.Tensor):
        keys = per_image_keys(reference)
        self.index = {key: i for i, key in enumerate(keys)}
        assert len(self.index) == len(keys), "reference images with identical spikes: cannot identify"

    def __call__(self, spikes: torch.Tensor) -> list[int]:
        """Index of each image of a ``(B, T, N)`` batch; raises KeyError for unknown spikes."""
        return [self.index[key] for key in per_image_keys(spikes)]


class SyntheticImages(Dataset):
    """``count`` small random images ``(1, 8, 8)`` as ``(image, index)``, every pixel lit
    (1..255, as float32 so a NaN can be planted). ``raising`` maps an index to a function
    whose exception ``__getitem__`` lets through; ``nan`` holds indices with a NaN pixel;
    ``delay`` (s) slows the even indices, so that worker processes finish out of order."""

    def __init__(self, count: int = 10, raising=None, nan=(), delay: float = 0.0, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.randint(1, 256, (count, 1, 8, 8), generator=generator).float()
        for i in nan:
            self.images[i, 0, 3, 3] = float("nan")
        self.raising = dict(raising or {})
        self.delay = delay

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        if i in self.raising:
            self.raising[i]()
        if self.delay and i % 2 == 0:
            import time

            time.sleep(self.delay)
        return self.images[i], i


def drain(iterator) -> list:
    """Every outcome of an iterator that may raise and go on: batches and exceptions, in order."""
    outcomes = []
    while True:
        try:
            outcomes.append(next(iterator))
        except StopIteration:
            return outcomes
        except Exception as err:  # noqa: BLE001 - the outcome under test
            outcomes.append(err)
