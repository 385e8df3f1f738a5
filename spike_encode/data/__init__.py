"""DataLoader pipeline: spike batches from image datasets, in workers, on the GPU, from disk.

- :class:`SpikeLoader`: workers load images, the main process encodes whole batches on
  the encoder's device.
- :func:`collate_images`, :class:`EncodeCollate`: collate functions for a plain DataLoader.
- :class:`ToCompact`, :class:`CompactSpikes`, :func:`collate_spikes`: ``LatencyEncode``
  inside a dataset's transform, with worker processes.
- :func:`encode_dataset`, :class:`SpikeDataset`: encode once to one file, read it back.
"""

from .cached_dataset import SpikeDataset, encode_dataset
from .spike_file import SpikeFileError
from .collation import CompactSpikes, EncodeCollate, ToCompact, collate_images, collate_spikes
from .loader import SpikeLoader

__all__ = [
    "CompactSpikes",
    "EncodeCollate",
    "SpikeDataset",
    "SpikeFileError",
    "SpikeLoader",
    "ToCompact",
    "collate_images",
    "collate_spikes",
    "encode_dataset",
]
