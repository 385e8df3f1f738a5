"""Resolving the ``device`` argument, with a clear error when a GPU is asked for but absent."""

from __future__ import annotations

import torch

from .errors import BackendUnavailableError

__all__ = ["resolve_device"]


def resolve_device(device: torch.device | str | None) -> torch.device | None:
    """``None`` stays ``None`` (compute where the input lives); anything else must be usable.

    Raises:
        BackendUnavailableError: (a ``RuntimeError``) a CUDA device is asked for and PyTorch
            sees no such GPU, or a device type spike_encode cannot compute on (``meta``, ``mps``).
        ValueError: for a string that is not a device name.
    """
    if device is None:
        return None
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a torch device name") from err
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"device={device!r} was asked for, but PyTorch sees no CUDA GPU "
                "(torch.cuda.is_available() is False)"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"device={device!r} was asked for, but only {torch.cuda.device_count()} "
                "CUDA device(s) are visible"
            )
    elif resolved.type != "cpu":
        raise BackendUnavailableError(
            f"device={device!r}: spike_encode computes on 'cpu' or 'cuda' devices, not {resolved.type!r}")
    return resolved
