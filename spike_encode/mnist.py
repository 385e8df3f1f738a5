"""MNIST as torchvision provides it, as whole uint8 tensors ready for batch encoding."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["DATA_ENV", "default_data_root", "mnist_dataset", "load_mnist"]

#: Environment variable naming the folder that holds (or receives) ``MNIST/raw``.
DATA_ENV = "SPIKE_ENCODE_DATA"


def default_data_root() -> Path:
    """``$SPIKE_ENCODE_DATA`` if set, else ``./data``."""
    return Path(os.environ.get(DATA_ENV, "data"))


def mnist_dataset(root: str | Path | None = None, train: bool = False, transform=None):
    """``torchvision.datasets.MNIST`` from ``root`` (default :func:`default_data_root`),
    downloading it there when it is missing, as torchvision does."""
    from torchvision.datasets import MNIST

    root = Path(root) if root is not None else default_data_root()
    try:
        return MNIST(root=str(root), train=train, download=False, transform=transform)
    except RuntimeError:
        pass
    try:
        return MNIST(root=str(root), train=train, download=True, transform=transform)
    except Exception as err:  # torchvision raises several kinds when offline
        raise RuntimeError(
            f"MNIST is not under {root}/MNIST/raw and could not be downloaded ({err}); "
            f"pass --data-root (or set {DATA_ENV}) to a folder that holds MNIST/raw"
        ) from err


def load_mnist(root: str | Path | None = None, train: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of a split as ``(B, 1, 28, 28)`` uint8 and their labels as ``(B,)`` int64."""
    ds = mnist_dataset(root, train)
    return ds.data.unsqueeze(1).contiguous(), ds.targets.clone()
