"""spike_encode: images to latency-coded spike trains of GeNN LIF neurons, in PyTorch."""

from typing import TYPE_CHECKING

from .errors import BackendUnavailableError, ImageError, ItemKeyError, SpecMismatchError, SpikeEncodeError, SpikeFileError
from .events import SpikeEvents
from .formats import (
    events_to_sparse,
    times_to_sparse,
    to_dense,
    to_events,
    to_sparse,
    to_times,
)
from .functional import clear_engine_cache, latency_encode
from .outputs import Dense, Events, OutputFormat, Sparse, Times, Tonic
from .outputs.tonic import TONIC_DTYPE, time_step_us, tonic_frames
from .params import TUTORIAL_LIF_PARAMS, EncoderParams, LIFParams
from .spec import EncodingSpec
from .transform import LatencyEncode

if TYPE_CHECKING:  # the plotting helpers are imported lazily, see __getattr__
    from .plots import plot_rasters, save_rasters

__version__ = "0.3.0"

_PLOTTING = ("plot_rasters", "save_rasters")


def __getattr__(name: str):
    """Plotting helpers, imported on first use so ``import spike_encode`` needs no matplotlib."""
    if name in _PLOTTING:
        from . import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BackendUnavailableError",
    "Dense",
    "EncoderParams",
    "EncodingSpec",
    "Events",
    "ImageError",
    "ItemKeyError",
    "LIFParams",
    "LatencyEncode",
    "OutputFormat",
    "Sparse",
    "SpecMismatchError",
    "SpikeEncodeError",
    "SpikeEvents",
    "SpikeFileError",
    "TONIC_DTYPE",
    "TUTORIAL_LIF_PARAMS",
    "Times",
    "Tonic",
    "clear_engine_cache",
    "events_to_sparse",
    "latency_encode",
    "plot_rasters",
    "save_rasters",
    "time_step_us",
    "times_to_sparse",
    "to_dense",
    "to_events",
    "to_sparse",
    "to_times",
    "tonic_frames",
]
