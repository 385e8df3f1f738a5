"""encode_dataset / SpikeDataset on real MNIST test images: an exact round trip, items as
the encoder returns them, one batch of everything, parameters that differ refused; and
datasets whose images change shape or whose items fall short, refused."""

from __future__ import annotations

import pickle
import re

import pytest
import torch
from torch.utils.data import DataLoader

from spike_encode import EncoderParams, LatencyEncode
from spike_encode.data import SpikeDataset, SpikeFileError, collate_spikes, encode_dataset
from spike_encode.errors import SpecMismatchError

from .loader_helpers import MNISTItems, SpikeIdentifier, assert_same_sparse

COUNT = 2000  # the first COUNT test images: enough to be real, quick on a shared 2-core machine


@pytest.fixture(scope="module")
def enc() -> LatencyEncode:
    return LatencyEncode(backend="torch")


@pytest.fixture(scope="module")
def mnist_items(data_root):
    from torch.utils.data import Subset
    from torchvision.datasets import MNIST

    return Subset(MNIST(root=str(data_root), train=False, download=False), range(COUNT))  # (PIL, int) items


@pytest.fixture(scope="module")
def reference(mnist_test, enc) -> torch.Tensor:
    """The images encoded directly, one batch."""
    return enc(mnist_test[0][:COUNT])


@pytest.fixture(scope="module")
def cache(tmp_path_factory, mnist_items, enc):
    path = tmp_path_factory.mktemp("cache") / "mnist-test.spikes"
    assert encode_dataset(mnist_items, enc, path, batch_size=500, num_workers=2, progress=False) == path
    return path


def test_round_trip_is_exact(cache, reference, mnist_test):
    ds = SpikeDataset(cache)
    assert len(ds) == COUNT and ds.num_spikes == reference._nnz()
    spikes, targets = ds.get_batch(torch.arange(COUNT))
    assert_same_sparse(spikes, reference)
    assert torch.equal(targets, mnist_test[1][:COUNT])
    assert not list(cache.parent.glob("*.partial"))


@pytest.mark.parametrize("i", [0, 1, 1234, COUNT - 1, -1])
def test_item_is_exactly_what_the_encoder_returns_for_that_image(i, cache, enc, mnist_items):
    image, label = mnist_items[i]
    spikes, target = SpikeDataset(cache, enc)[i]
    expected = enc(image)
    assert spikes.shape == expected.shape == (enc.num_steps, 784) and spikes.is_coalesced()
    assert_same_sparse(spikes, expected)
    assert target == label and isinstance(target, int)


@pytest.mark.parametrize("kwargs", [dict(output="dense", time_first=True), dict(output="times"), dict(output="events"),
                                    dict(output="dense", dtype=torch.bool), dict(flatten=False),
                                    dict(output="dense", time_first=True, flatten=False), dict(output="tonic")])
def test_items_follow_the_encoders_output_format(kwargs, cache, mnist_items):
    other = LatencyEncode(backend="torch", **kwargs)
    ds = SpikeDataset(cache, other)
    image, _ = mnist_items[17]
    got, expected = ds[17][0], other(image)
    if kwargs.get("output") == "events":
        assert all(torch.equal(g, e) and g.dtype == e.dtype for g, e in zip(got, expected))
    elif kwargs.get("output") == "tonic":
        import numpy as np

        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    elif got.is_sparse:
        assert_same_sparse(got, expected)
    else:
        assert got.dtype == expected.dtype and torch.equal(got, expected)


def test_dataloader_with_workers_and_shuffle_yields_aligned_sparse_batches(cache, reference, mnist_test):
    loader = DataLoader(SpikeDataset(cache), batch_size=250, shuffle=True, num_workers=2,
                        collate_fn=collate_spikes, generator=torch.Generator().manual_seed(0))
    identify = SpikeIdentifier(reference)
    seen = []
    for b, (spikes, targets) in enumerate(loader):
        assert spikes.shape == (250, 200, 784)
        which = identify(spikes)
        assert targets.tolist() == mnist_test[1][which].tolist()
        seen += which
        if b == 3:
            break
    assert len(set(seen)) == 1000 and seen != sorted(seen)


@pytest.mark.parametrize("drop_last", [False, True])
def test_batched_loader_shuffles_and_keeps_targets_aligned(drop_last, cache, reference, mnist_test):
    ds = SpikeDataset(cache)
    loader = ds.loader(batch_size=300, shuffle=True, drop_last=drop_last, generator=torch.Generator().manual_seed(1))
    assert len(loader) == (COUNT // 300 if drop_last else -(-COUNT // 300))
    identify = SpikeIdentifier(reference)
    seen = []
    for spikes, targets in loader:
        assert spikes.is_sparse and spikes.is_coalesced() and spikes.shape[1:] == (200, 784)
        which = identify(spikes)
        assert targets.tolist() == mnist_test[1][which].tolist()
        seen += which
    assert len(set(seen)) == len(seen) == ((COUNT // 300) * 300 if drop_last else COUNT)
    assert seen != sorted(seen)


def test_batched_loader_follows_a_distributed_sampler(cache, reference):
    from torch.utils.data.distributed import DistributedSampler

    ds = SpikeDataset(cache)
    identify = SpikeIdentifier(reference)
    shards = []
    for rank in (0, 1):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=5)
        shards.append([i for spikes, _ in ds.loader(batch_size=256, sampler=sampler) for i in identify(spikes)])
        assert shards[-1] == list(sampler)
    assert sorted(shards[0] + shards[1]) == list(range(COUNT))
    with pytest.raises(ValueError, match="not both"):
        ds.loader(sampler=sampler, shuffle=True)


def test_one_batch_of_every_sample_read_into_memory_is_the_reference(cache, reference):
    ds = SpikeDataset(cache, mmap=False)  # reads every array into memory
    spikes, targets = ds.get_batch(range(len(ds)))
    assert spikes._nnz() == ds.num_spikes
    assert_same_sparse(spikes, reference)
    assert targets.tolist() == [ds[i][1] for i in range(len(ds))]


class _Items(torch.utils.data.Dataset):
    """``(image, 0)`` items of the given images."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], 0


def test_images_changing_shape_between_batches_are_refused_and_nothing_is_written(tmp_path, enc):
    square, wide = torch.randint(1, 256, (2, 1, 28, 28), dtype=torch.uint8), torch.randint(1, 256, (2, 1, 14, 56), dtype=torch.uint8)
    path = tmp_path / "mixed.spikes"  # the same 784 neurons, another layout: the file records one shape
    with pytest.raises(ValueError, match=r"images change shape within the dataset: \(1, 28, 28\) before, then \(1, 14, 56\)"):
        encode_dataset(_Items([*square, *wide]), enc, path, batch_size=2, progress=False)
    assert list(tmp_path.iterdir()) == []


class _ShortStream(torch.utils.data.IterableDataset):
    """An iterable dataset whose ``len()`` promises more images than it yields."""

    def __init__(self, images, claimed):
        self.images, self.claimed = images, claimed

    def __iter__(self):
        return ((image, 0) for image in self.images)

    def __len__(self):
        return self.claimed


def test_a_dataset_giving_fewer_items_than_its_len_writes_nothing(tmp_path, enc, mnist_test):
    path = tmp_path / "short.spikes"
    with pytest.raises(ValueError, match="the dataset gave 3 items, but its len\\(\\) is 5: nothing written"):
        encode_dataset(_ShortStream(mnist_test[0][:3], claimed=5), enc, path, batch_size=2, progress=False)
    assert list(tmp_path.iterdir()) == []


class _ShortBatches(_Items):
    """A dataset whose batched fetch drops the last item of each batch."""

    def __getitems__(self, indices):
        return [self[i] for i in indices[:-1]]


def test_a_batched_fetch_returning_fewer_items_is_refused(tmp_path, enc, mnist_test):
    with pytest.raises(ValueError, match=r"__getitems__ returned 1 items for the 2 dataset indices \[0, 1\]"):
        encode_dataset(_ShortBatches(mnist_test[0][:4]), enc, tmp_path / "x.spikes", batch_size=2, progress=False)


def test_file_is_compact(cache):
    ds = SpikeDataset(cache)
    # 1 byte per step, 2 per neuron id; 16 per sample (offset + target); a header
    assert cache.stat().st_size <= 3 * ds.num_spikes + 16 * (len(ds) + 1) + 8192
    assert ds.spec_dict == ds.header["spec"] == LatencyEncode().spec.as_dict()
    assert ds.digest == LatencyEncode().spec.digest() and ds.digest[:12] in repr(ds)


@pytest.mark.parametrize("change, field, there, here", [(dict(input_scale=70.0), "params.input_scale", 80.0, 70.0),
                                                     (dict(lif_params={"TauM": 10.0}), "params.TauM", 20.0, 10.0)])
def test_opening_with_other_parameters_is_refused_naming_the_field_and_both_values(change, field, there, here,
                                                                                   cache, enc):
    other = LatencyEncode(backend="torch", **change)
    with pytest.raises(SpecMismatchError, match=re.escape(f"{field}={there!r}, but the encoder has {field}={here!r}")):
        SpikeDataset(cache, other)
    with pytest.raises(SpecMismatchError, match=re.escape(f"{field}={there!r}, but params= has {field}={here!r}")):
        SpikeDataset(cache, params=other.params.as_dict())
    with pytest.raises(SpecMismatchError, match=re.escape(f"{field}={there!r}, but spec= has")):
        SpikeDataset(cache, spec=other.spec)
    assert len(SpikeDataset(cache, params=EncoderParams())) == len(SpikeDataset(cache, spec=enc.spec)) == COUNT


def test_dataset_pickles_small_and_reopens(cache):
    ds = SpikeDataset(cache)
    data = pickle.dumps(ds)
    assert len(data) < 4096, "the arrays were copied into the pickle"
    again = pickle.loads(data)
    assert_same_sparse(again[123][0], ds[123][0])


def test_other_files_and_bad_indices_are_refused(tmp_path, cache):
    bogus = tmp_path / "x.spikes"
    bogus.write_bytes(b"not a cache at all")
    with pytest.raises(SpikeFileError, match="x.spikes is not a valid spike file"):
        SpikeDataset(bogus)
    with pytest.raises(IndexError, match=f"{COUNT} is out of range"):
        SpikeDataset(cache)[COUNT]


def test_encode_dataset_shows_progress(tmp_path, mnist_test, enc, capsys):
    images, labels = mnist_test
    path = encode_dataset(MNISTItems(images[:50], labels[:50]), enc, tmp_path / "a" / "b.spikes", batch_size=20)
    assert "50/50" in capsys.readouterr().err
    assert_same_sparse(SpikeDataset(path).get_batch(range(50))[0], enc(images[:50]))
