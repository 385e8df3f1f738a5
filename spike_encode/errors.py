"""The package's errors, one family under :class:`SpikeEncodeError`.

Each also derives from the builtin it replaced, so ``except ValueError`` (or
``RuntimeError``) around spike_encode calls keeps working.
"""

from __future__ import annotations

__all__ = ["SpikeEncodeError", "ImageError", "ItemKeyError", "SpikeFileError", "BackendUnavailableError",
           "SpecMismatchError"]


class SpikeEncodeError(Exception):
    """Base of every error spike_encode raises on purpose."""


class ImageError(SpikeEncodeError, ValueError):
    """An image the encoder refuses (NaN/inf, negative, all-zero or overflowing pixels).

    Attributes:
        image: its position in the batch.
        problem: what is wrong with it, e.g. ``"has all-zero pixels: ..."``.
    """

    def __init__(self, image: int, problem: str, where: str | None = None) -> None:
        self.image, self.problem = image, problem
        super().__init__(f"{where or f'image {image} of the batch'} {problem}")

    def __reduce__(self):  # survives pickling (DataLoader workers) with its attributes
        return type(self), (self.image, self.problem, str(self)[: -len(self.problem) - 1])


class ItemKeyError(SpikeEncodeError, KeyError):
    """A key the dataset's items lack (``image_key=``, ``target_key=``); its message reads as a
    sentence (a plain ``KeyError`` quotes it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class SpikeFileError(SpikeEncodeError, ValueError):
    """A spike file that is not one, is damaged, changed under its reader, or does not fit
    its own header; nothing is returned from it."""


class SpecMismatchError(SpikeEncodeError, ValueError):
    """Spikes encoded with one :class:`~spike_encode.EncodingSpec` asked for with another."""


class BackendUnavailableError(SpikeEncodeError, RuntimeError):
    """A backend, device or library (a GPU, PyGeNN) was asked for explicitly but cannot run here."""
