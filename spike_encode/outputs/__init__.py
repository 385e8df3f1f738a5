"""Output formats: one small frozen class per format, each checking its own options and
rendering the engines' :class:`~spike_encode.events.SpikeEvents`.

=========  =================================================================
``sparse`` :class:`Sparse`: coalesced sparse COO ``(B, T, N)`` (the default)
``dense``  :class:`Dense`: 0/1 raster ``(B, T, N)`` or ``(T, B, N)``, float32 by default
``times``  :class:`Times`: ``(B, N)`` first-spike step, ``-1`` for silent neurons
``events`` :class:`Events`: per image ``(times_ms, ids)``, as PyGeNN records them
``tonic``  :class:`Tonic`: per image Tonic's ``(x, y, t, p)`` event array
=========  =================================================================

A new format is one class here (a frozen dataclass subclass of :class:`OutputFormat` with a
``name``) and its tests; ``LatencyEncode(output=...)`` and ``SpikeDataset`` find it by name.
"""

from __future__ import annotations

from typing import Any

from .base import OutputFormat
from .dense import Dense
from .events import Events
from .sparse import Sparse
from .times import Times
from .tonic import Tonic

__all__ = ["OUTPUT_FORMATS", "Dense", "Events", "OutputFormat", "Sparse", "Times", "Tonic", "output_format"]

#: Every output format by name.
OUTPUT_FORMATS: dict[str, type[OutputFormat]] = {cls.name: cls for cls in (Sparse, Dense, Times, Events, Tonic)}


def output_format(output: str | OutputFormat = "sparse", **options: Any) -> OutputFormat:
    """The output format ``output`` (a name or a format object) with ``options``.

    An option the format does not take is refused, naming the formats it applies to;
    options given as ``None`` are left at the format's default.

    Raises:
        ValueError: an unknown format name, or an option that does not apply to it.
    """
    options = {name: value for name, value in options.items() if value is not None}
    if isinstance(output, OutputFormat):
        if options:
            raise ValueError(f"give the options of output={output!r} in the object, not as {sorted(options)}")
        return output
    if output not in OUTPUT_FORMATS:
        raise ValueError(f"output={output!r} is not one of {tuple(OUTPUT_FORMATS)}")
    cls = OUTPUT_FORMATS[output]
    for name in options:
        if name not in cls.options():
            takers = [n for n, c in OUTPUT_FORMATS.items() if name in c.options()]
            raise ValueError(f"output={output!r} does not take {name}={options[name]!r}"
                             + (f"; it applies to output={' or '.join(map(repr, takers))}" if takers else ""))
    return cls(**options)
