"""What every output format is: a small frozen object that checks its own options when it is
made and renders an engine's :class:`~spike_encode.events.SpikeEvents`."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from ..events import SpikeEvents
from ..spec import EncodingSpec

__all__ = ["OutputFormat", "check_image_shape"]


def check_image_shape(image_shape: Any, num_neurons: int) -> tuple[int, int, int]:
    """``image_shape`` as a ``(C, H, W)`` tuple holding exactly ``num_neurons`` neurons
    (``None``: unknown, e.g. a spike file that does not record it: a ``ValueError``)."""
    if image_shape is None:
        raise ValueError("this output keeps the image's (C, H, W), which is not known here")
    shape = tuple(int(n) for n in image_shape)
    if len(shape) != 3 or shape[0] * shape[1] * shape[2] != num_neurons:
        raise ValueError(f"image_shape must be the (C, H, W) of the {num_neurons} neurons, got {tuple(image_shape)}")
    return shape


@dataclasses.dataclass(frozen=True)
class OutputFormat:
    """Base of the output formats. Subclasses are frozen dataclasses whose fields are their
    options (checked in ``__post_init__``) and set :attr:`name`."""

    name: ClassVar[str] = ""

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """The keyword options this format takes."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def check_spec(self, spec: EncodingSpec) -> None:
        """Refuse an encoding this format cannot represent (default: any is fine)."""

    def render(self, ev: SpikeEvents, *, dt: float, image_shape: tuple[int, int, int] | None,
               batched: bool) -> Any:
        """The spikes of ``ev`` in this format.

        Args:
            ev: the engine's spikes, sorted by (sample, step, neuron).
            dt: the time step (ms), for timestamps.
            image_shape: ``(C, H, W)`` of the neurons (neuron ``(c * H + h) * W + w``), or
                ``None`` where unknown (formats that keep the shape then refuse).
            batched: ``False`` drops the batch dimension of a single image.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        options = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)]
        return f"{type(self).__name__}({', '.join(options)})"
