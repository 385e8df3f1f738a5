"""Collate functions: image batches keep their pixels, encoding in collate and the compact
per-sample form give exactly the encoder's spikes, with and without worker processes.
Synthetic 28 x 28 images: what is checked does not depend on their content."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from spike_encode import LatencyEncode
from spike_encode.data import CompactSpikes, EncodeCollate, ToCompact, collate_images, collate_spikes

from .loader_helpers import MNISTItems, assert_same_sparse


WORKERS = [0, pytest.param(2, marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def subset():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (200, 1, 28, 28), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 10, (200,), generator=generator)


@pytest.mark.parametrize("kind", ["pil", "ndarray", "tensor"])
def test_collate_images_stacks_uint8_pixels_unchanged(kind, subset):
    images, labels = subset
    ds = MNISTItems(images, labels, kind)
    batch_images, batch_targets = collate_images([ds[i] for i in range(5)])
    assert batch_images.dtype == torch.uint8
    assert torch.equal(batch_images, images[:5])  # (5, 1, 28, 28), the raw pixels
    assert torch.equal(batch_targets, labels[:5])


def test_a_batch_of_one_image_stays_a_batch(subset, enc):
    images, labels = subset
    batch_images, _ = collate_images([MNISTItems(images, labels)[3]])
    assert batch_images.shape == (1, 1, 28, 28)
    assert enc(batch_images).shape == (1, enc.num_steps, 784)


def test_collate_images_rejects_mixed_images_and_non_pairs(subset):
    images, labels = subset
    with pytest.raises(ValueError, match="image 1 is"):
        collate_images([(images[0], 0), (images[1].float(), 1)])
    with pytest.raises(ValueError, match="image 1 is"):
        collate_images([(images[0], 0), (images[1, :, :20], 1)])
    with pytest.raises(TypeError, match="dataset items must be tuples .* item 0 of the batch is Tensor"):
        collate_images([images[0]])
    with pytest.raises(ValueError, match="empty batch"):
        collate_images([])


@pytest.mark.parametrize("workers", WORKERS)
def test_encode_collate_in_a_plain_dataloader_equals_direct_encoding(workers, subset, enc):
    images, labels = subset
    loader = DataLoader(MNISTItems(images, labels), batch_size=64, num_workers=workers,
                        collate_fn=EncodeCollate(enc))
    batches = list(loader)
    assert [len(t) for _, t in batches] == [64, 64, 64, 8]
    assert_same_sparse(torch.cat([s for s, _ in batches]), enc(images))
    assert torch.equal(torch.cat([t for _, t in batches]), labels)


class _GPUEncoder:
    device = "cuda"

    def __call__(self, images):  # pragma: no cover - refused before it is called
        raise AssertionError("encoded inside a worker")


@pytest.mark.slow
def test_encode_collate_refuses_gpu_work_inside_workers(subset):
    images, labels = subset
    loader = DataLoader(MNISTItems(images[:4], labels[:4]), batch_size=2, num_workers=1,
                        collate_fn=EncodeCollate(_GPUEncoder()))
    with pytest.raises(RuntimeError, match="SpikeLoader"):
        next(iter(loader))


def test_compact_spikes_round_trip_one_image_exactly(subset, enc):
    images, _ = subset
    spikes = enc(images[7])
    compact = ToCompact()(spikes)
    assert isinstance(compact, CompactSpikes)
    assert compact.step.dtype == torch.int16 and compact.neuron.dtype == torch.int16
    assert compact.shape == (enc.num_steps, 784) and len(compact.step) == spikes._nnz()
    rebuilt = compact.to_sparse()
    assert rebuilt.is_coalesced()
    assert_same_sparse(rebuilt, spikes)


def test_to_compact_refuses_batches_and_dense_rasters(subset, enc):
    images, _ = subset
    with pytest.raises(ValueError, match=r"one image's \(T, N\)"):
        ToCompact()(enc(images[:2]))
    with pytest.raises(TypeError, match="layout torch.strided"):
        ToCompact()(torch.zeros(200, 784, dtype=torch.bool))


@pytest.mark.parametrize("workers", WORKERS)
def test_encoder_inside_dataset_transform_crosses_workers_in_compact_form(workers, subset, enc):
    images, labels = subset
    from torchvision.transforms import Compose

    ds = MNISTItems(images, labels, "pil", transform=Compose([enc, ToCompact()]))
    loader = DataLoader(ds, batch_size=50, shuffle=False, num_workers=workers, collate_fn=collate_spikes)
    batches = list(loader)
    for b, (spikes, targets) in enumerate(batches):
        assert spikes.is_sparse and spikes.is_coalesced() and spikes.shape == (50, enc.num_steps, 784)
        assert_same_sparse(spikes, enc(images[50 * b : 50 * (b + 1)]))
        assert torch.equal(targets, labels[50 * b : 50 * (b + 1)])


def test_collate_spikes_accepts_sparse_items_and_rejects_the_rest(subset, enc):
    images, _ = subset
    items = [(enc(images[i]), i) for i in range(3)]
    spikes, targets = collate_spikes(items)
    assert_same_sparse(spikes, enc(images[:3]))
    assert targets.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"must be 0 or 1, but item 0 holds \d+ \(for images use collate_images\)"):
        collate_spikes([(images[0], 0)])
    other = LatencyEncode(present_time_ms=10.0)
    with pytest.raises(ValueError, match="item 1 is"):
        collate_spikes([items[0], (other(images[1]), 1)])
