"""spike_encode: images to latency-coded spike trains of GeNN LIF neurons, in PyTorch."""

from typing import TYPE_CHECKING

from .backends import BackendUnavailableError
from .formats import (
    events_to_sparse,
    times_to_sparse,
    to_dense,
    to_events,
    to_sparse,
    to_times,
)
from .inputs import ImageError
from .params import TUTORIAL_LIF_PARAMS, EncoderParams, LIFParams
from .tonic_format import TONIC_DTYPE
from .transform import LatencyEncode, latency_encode

if TYPE_CHECKING:  # the plotting helpers are imported lazily, see __getattr__
    from .plots import plot_rasters, save_rasters

__version__ = "0.2.0"

_PLOTTING = ("plot_rasters", "save_rasters")


def __getattr__(name: str):
    """Plotting helpers, imported on first use so ``import spike_encode`` needs no matplotlib."""
    if name in _PLOTTING:
        from . import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BackendUnavailableError",
    "EncoderParams",
    "ImageError",
    "LIFParams",
    "LatencyEncode",
    "TONIC_DTYPE",
    "TUTORIAL_LIF_PARAMS",
    "events_to_sparse",
    "latency_encode",
    "plot_rasters",
    "save_rasters",
    "times_to_sparse",
    "to_dense",
    "to_events",
    "to_sparse",
    "to_times",
]
