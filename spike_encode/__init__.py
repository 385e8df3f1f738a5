"""spike_encode: images to latency-coded spike trains of GeNN LIF neurons, in PyTorch."""

from .backends import BackendUnavailableError
from .formats import (
    events_to_sparse,
    times_to_sparse,
    to_dense,
    to_events,
    to_sparse,
    to_times,
)
from .params import TUTORIAL_LIF_PARAMS, EncoderParams, LIFParams
from .tonic_format import TONIC_DTYPE
from .transform import LatencyEncode, latency_encode

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "EncoderParams",
    "LIFParams",
    "LatencyEncode",
    "TONIC_DTYPE",
    "TUTORIAL_LIF_PARAMS",
    "events_to_sparse",
    "latency_encode",
    "times_to_sparse",
    "to_dense",
    "to_events",
    "to_sparse",
    "to_times",
]
