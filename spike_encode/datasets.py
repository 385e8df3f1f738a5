"""Image datasets by name, as torchvision reads them, with uint8 ``(C, H, W)`` images.

torchvision's MNIST, FashionMNIST, KMNIST, EMNIST, QMNIST, CIFAR10, CIFAR100 and SVHN, and
``ImageFolder`` for a folder of one's own images (one sub-folder per class, read as torchvision
reads them: every file as RGB). Images reach the encoder as uint8 tensors (``PILToTensor``,
not ``ToTensor``), so currents stay exactly GeNN's; an optional resize comes first.
"""

from __future__ import annotations

import operator
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = [
    "DATASETS",
    "DATA_ENV",
    "EMNIST_SPLITS",
    "default_data_root",
    "image_dataset",
    "load_mnist",
    "mnist_dataset",
    "parse_dataset_name",
]

#: Environment variable naming the folder that holds (or receives) the datasets.
DATA_ENV = "SPIKE_ENCODE_DATA"

#: Dataset names :func:`image_dataset` accepts (any case); ``"EMNIST-<split>"`` names a split.
DATASETS = ("MNIST", "FashionMNIST", "KMNIST", "EMNIST", "QMNIST", "CIFAR10", "CIFAR100", "SVHN", "ImageFolder")

#: torchvision's EMNIST splits.
EMNIST_SPLITS = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")

_SPLITS = ("train", "test")


def default_data_root() -> Path:
    """``$SPIKE_ENCODE_DATA`` if set, else ``./data``."""
    return Path(os.environ.get(DATA_ENV, "data"))


def parse_dataset_name(name: str, emnist_split: str | None = None) -> tuple[str, str | None]:
    """Canonical dataset name and EMNIST split: ``"emnist-balanced"`` gives ``("EMNIST",
    "balanced")``, ``"fashionmnist"`` gives ``("FashionMNIST", None)``.

    Raises:
        ValueError: an unknown name, an EMNIST without a split (or with two different ones),
            an unknown EMNIST split, or a split given for another dataset.
    """
    base, _, suffix = str(name).partition("-")
    canonical = {n.lower(): n for n in DATASETS}.get(base.lower())
    if canonical is None or (suffix and canonical != "EMNIST"):
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)} (or EMNIST-<split>), got {name!r}")
    if canonical != "EMNIST":
        if emnist_split is not None:
            raise ValueError(f"emnist_split applies to EMNIST only, got {emnist_split!r} for {canonical}")
        return canonical, None
    if suffix and emnist_split is not None and suffix.lower() != emnist_split.lower():
        raise ValueError(f"dataset {name!r} and emnist_split {emnist_split!r} name different splits")
    split = (suffix or emnist_split or "").lower()
    if split not in EMNIST_SPLITS:
        raise ValueError(
            f"EMNIST needs a split, one of {', '.join(EMNIST_SPLITS)} (e.g. EMNIST-balanced), got {split or None!r}"
        )
    return canonical, split


def _check_size(size: Any) -> tuple[int, int] | None:
    """``size`` as ``(H, W)`` positive ints, or ``None``."""
    if size is None:
        return None
    try:
        if isinstance(size, (str, bytes)) or any(isinstance(n, bool) for n in size):
            raise TypeError
        height, width = (operator.index(n) for n in size)
    except (TypeError, ValueError):
        height = width = 0
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be (height, width) in pixels, two positive integers, got {size!r}")
    return height, width


def _build(name: str, root: Path, split: str, emnist_split: str | None, download: bool,
           transform: Callable | None) -> Dataset:
    import torchvision.datasets as tvd

    if name == "ImageFolder":  # torchvision's default loader: every file as RGB
        return tvd.ImageFolder(str(root), transform=transform)
    common: dict[str, Any] = {"root": str(root), "transform": transform, "download": download}
    train = split == "train"
    if name == "EMNIST":
        return tvd.EMNIST(split=emnist_split, train=train, **common)
    if name == "QMNIST":
        return tvd.QMNIST(what=split, compat=True, **common)
    if name == "SVHN":
        return tvd.SVHN(split=split, **common)
    return getattr(tvd, name)(train=train, **common)


def _new_entries(root: Path) -> Callable[[], None]:
    """A function that removes what appeared at ``root`` since this call (a failed download's
    empty or partial folders), leaving what was there before."""
    missing = next((p for p in reversed([root, *root.parents]) if not p.exists()), None)
    before = set(root.iterdir()) if missing is None and root.is_dir() else set()

    def remove() -> None:
        if missing is not None:
            shutil.rmtree(missing, ignore_errors=True)
            return
        for entry in set(root.iterdir()) - before if root.is_dir() else ():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    return remove


def _dataset(name: str, root: str | os.PathLike[str] | None, split: str | None, emnist_split: str | None,
             download: bool | None, transform: Callable | None) -> Dataset:
    name, emnist_split = parse_dataset_name(name, emnist_split)
    if name == "ImageFolder":
        if root is None:
            raise ValueError("ImageFolder needs root: the folder of class sub-folders of images")
        if split is not None:
            raise ValueError(f"ImageFolder has no splits (root is the folder), got split {split!r}")
        if download:
            raise ValueError("ImageFolder reads your own folder; there is nothing to download")
        if not Path(root).is_dir():
            raise FileNotFoundError(f"ImageFolder root {str(root)!r} is not a folder")
        return _build(name, Path(root), "", None, False, transform)
    split = "test" if split is None else split
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root) if root is not None else default_data_root()
    try:
        return _build(name, root, split, emnist_split, False, transform)
    except RuntimeError:  # torchvision: "Dataset not found ..."
        if download is False or (download is None and name != "MNIST"):
            raise FileNotFoundError(
                f"{name} {split} split not found under {str(root)!r}; pass the folder that "
                f"holds it, or download=True (spike-encode: --download) to fetch it there"
            ) from None
    remove_partial = _new_entries(root)
    try:
        return _build(name, root, split, emnist_split, True, transform)
    except Exception as err:  # torchvision raises several kinds when offline
        remove_partial()
        raise FileNotFoundError(
            f"{name} is not under {str(root)!r} and could not be downloaded "
            f"({type(err).__name__}: {err}); pass the folder that holds it"
        ) from None


def image_dataset(
    name: str = "MNIST",
    root: str | os.PathLike[str] | None = None,
    split: str | None = None,
    *,
    emnist_split: str | None = None,
    download: bool | None = None,
    transform: Callable[[torch.Tensor], Any] | None = None,
    size: tuple[int, int] | None = None,
) -> Dataset:
    """A torchvision dataset of ``(uint8 (C, H, W) image tensor, int target)`` items.

    ``ImageFolder`` reads every file as torchvision's own loader does, as RGB (``C = 3``,
    grey files too: give the encoder ``channels="gray"`` for one channel, which gives a grey
    file's own spikes exactly). Its images must share one size to be encoded in batches:
    pass ``size`` to resize them.

    Args:
        name: one of :data:`DATASETS` (any case), or ``"EMNIST-<split>"``.
        root: the folder torchvision reads the dataset from (default :func:`default_data_root`);
            for ``ImageFolder`` the folder of images itself (required).
        split: ``"train"`` or ``"test"`` (default ``"test"``); not for ``ImageFolder``.
        emnist_split: EMNIST's split, one of :data:`EMNIST_SPLITS`.
        download: fetch the dataset into ``root`` when it is missing. ``None`` (default):
            MNIST is downloaded when missing, other datasets are not. A failed download leaves
            no empty or partial folders behind.
        transform: applied to the uint8 tensor image (after ``PILToTensor``).
        size: ``(height, width)``: every image is resized to it first (torchvision's
            ``Resize``, bilinear with antialiasing), before ``PILToTensor``.

    Raises:
        ValueError: an unknown name or split, an option that does not apply, or a bad size.
        FileNotFoundError: the dataset is not under ``root`` and was not (or could not be)
            downloaded.
    """
    from torchvision.transforms import Compose, PILToTensor, Resize

    size = _check_size(size)
    steps = ([] if size is None else [Resize(size)]) + [PILToTensor()] + ([] if transform is None else [transform])
    return _dataset(name, root, split, emnist_split, download, steps[0] if len(steps) == 1 else Compose(steps))


def mnist_dataset(root: str | os.PathLike[str] | None = None, train: bool = False,
                  transform: Callable | None = None) -> Dataset:
    """``torchvision.datasets.MNIST`` (PIL image items, ``transform`` applied to them) from
    ``root`` (default :func:`default_data_root`), downloaded there when missing."""
    return _dataset("MNIST", root, "train" if train else "test", None, None, transform)


def load_mnist(root: str | os.PathLike[str] | None = None, train: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of an MNIST split as ``(B, 1, 28, 28)`` uint8 and their labels as ``(B,)`` int64."""
    ds = mnist_dataset(root, train)
    return ds.data.unsqueeze(1).contiguous(), ds.targets.clone()
