"""SpikeLoader's batches carry their own dataset indices: an error names the right item after
earlier batches failed, with two live iterators, out of order, and the dataset's exception
keeps its type where it can (else a RuntimeError chained to it)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import IterableDataset, Subset
from torch.utils.data.distributed import DistributedSampler

from spike_encode import ImageError, LatencyEncode
from spike_encode.data import SpikeLoader

from .loader_helpers import SyntheticImages, drain

WORKERS = [0, pytest.param(2, marks=pytest.mark.slow)]


def _truncated_file():
    raise OSError("truncated file")


def _expect_epoch(outcomes: list, enc, images: torch.Tensor) -> None:
    """Batches of 2 over 10 items: [2, 3] failed to load, [6, 7] holds item 7's NaN pixel."""
    assert len(outcomes) == 5
    failed, refused = outcomes[1], outcomes[3]
    assert isinstance(refused, ImageError)
    assert str(refused).startswith("dataset index 7: the image"), str(refused)
    assert isinstance(failed, OSError) and "dataset index 2: truncated file" in str(failed)
    for batch, first in zip((outcomes[0], outcomes[2], outcomes[4]), (0, 4, 8)):
        spikes, targets = batch
        assert targets.tolist() == [first, first + 1]
        assert torch.equal(spikes.to_dense(), enc(images[first:first + 2]).to_dense())


@pytest.mark.parametrize("workers", WORKERS)
def test_an_image_is_named_by_its_index_after_an_earlier_batch_failed(workers, enc):
    ds = SyntheticImages(10, raising={2: _truncated_file}, nan=[7])
    loader = SpikeLoader(ds, enc, batch_size=2, num_workers=workers)
    _expect_epoch(drain(iter(loader)), enc, ds.images)


@pytest.mark.parametrize("workers", WORKERS)
def test_two_live_iterators_each_name_their_own_items(workers, enc):
    ds = SyntheticImages(10, raising={2: _truncated_file}, nan=[7])
    loader = SpikeLoader(ds, enc, batch_size=2, num_workers=workers)
    first = iter(loader)
    early = [next(first)]
    with pytest.raises(OSError) as failed:
        next(first)
    early.append(failed.value)
    _expect_epoch(drain(iter(loader)), enc, ds.images)  # a whole second epoch in between
    _expect_epoch(early + drain(first), enc, ds.images)


@pytest.mark.slow
def test_batches_finishing_out_of_order_keep_their_indices(enc):
    ds = SyntheticImages(16, nan=[9], delay=0.05)  # even items load slowly
    loader = SpikeLoader(ds, enc, batch_size=1, num_workers=2, in_order=False)
    outcomes = drain(iter(loader))
    targets = [b[1].item() for b in outcomes if not isinstance(b, Exception)]
    assert targets != sorted(targets), "the batches came in order: the test shows nothing"
    for batch in outcomes:
        if isinstance(batch, Exception):
            assert isinstance(batch, ImageError) and str(batch).startswith("dataset index 9: the image")
        else:
            spikes, target = batch
            assert torch.equal(spikes.to_dense(), enc(ds.images[target]).to_dense())
    assert sum(isinstance(b, Exception) for b in outcomes) == 1 and len(targets) == 15


class _Stream(IterableDataset):
    def __init__(self, images: torch.Tensor):
        self.images = images

    def __iter__(self):
        return ((image, i) for i, image in enumerate(self.images))


def test_an_iterable_dataset_is_encoded_in_its_order(enc):
    images = SyntheticImages(7, nan=[5]).images
    outcomes = drain(iter(SpikeLoader(_Stream(images), enc, batch_size=3)))
    spikes, targets = outcomes[0]
    assert targets.tolist() == [0, 1, 2]
    assert torch.equal(spikes.to_dense(), enc(images[:3]).to_dense())
    assert isinstance(outcomes[1], ImageError)
    assert str(outcomes[1]).startswith("image 2 of the batch"), "an iterable dataset has no indices to name"


def _undecodable():
    b"\xff\xfe".decode("utf-8")


def _bad_json():
    json.loads('{"label": ')


def _blank_image():
    LatencyEncode(backend="torch")(torch.zeros(1, 4, 4))  # all-zero: refused


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("fail, kind", [(_undecodable, UnicodeDecodeError), (_bad_json, json.JSONDecodeError),
                                        (_blank_image, ImageError)])
def test_an_exception_that_cannot_be_rebuilt_becomes_a_runtime_error_naming_it(fail, kind, workers, enc):
    with pytest.raises(kind) as original:
        fail()
    loader = SpikeLoader(SyntheticImages(6, raising={3: fail}), enc, batch_size=2, num_workers=workers)
    with pytest.raises(RuntimeError) as raised:
        list(loader)
    message = str(raised.value)
    assert f"{kind.__name__}: dataset index 3: {original.value}" in message
    if workers == 0:
        assert isinstance(raised.value.__cause__, kind)  # the original, chained
        assert str(raised.value.__cause__) == str(original.value)


def _missing_key():
    raise KeyError("label")


def _bad_value():
    int("seven")


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("fail, kind", [(_bad_value, ValueError), (_missing_key, KeyError),
                                        (_truncated_file, OSError)])
def test_an_exception_that_can_be_rebuilt_keeps_its_type(fail, kind, workers, enc):
    loader = SpikeLoader(SyntheticImages(6, raising={3: fail}), enc, batch_size=2, num_workers=workers)
    with pytest.raises(kind) as raised:
        list(loader)
    assert type(raised.value) is kind
    assert "dataset index 3: " in str(raised.value)


def _exhausted_iterator():
    next(iter(()))


def _async_end():
    raise StopAsyncIteration("no more")


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("fail", [_exhausted_iterator, _async_end])
def test_a_dataset_raising_stop_iteration_fails_the_epoch_instead_of_ending_it(fail, workers, enc):
    loader = SpikeLoader(SyntheticImages(6, raising={3: fail}), enc, batch_size=2, num_workers=workers)
    with pytest.raises(RuntimeError, match="dataset index 3"):
        list(loader)  # a StopIteration kept as it is would end the epoch after 2 of 6 items


def test_a_collate_fn_raising_stop_iteration_on_an_iterable_dataset_fails_the_epoch(enc):
    def collate(items):
        raise StopIteration

    with pytest.raises(RuntimeError, match="collate_fn raised StopIteration"):
        list(SpikeLoader(_Stream(torch.rand(4, 1, 8, 8) + 0.1), enc, batch_size=2, collate_fn=collate))


def test_an_encoder_raising_stop_iteration_fails_the_epoch(enc):
    def encoder(images):
        return next(iter(()))

    with pytest.raises(RuntimeError, match="the encoder raised StopIteration"):
        list(SpikeLoader(SyntheticImages(4), encoder, batch_size=2))


def test_a_dataset_fetching_whole_batches_still_names_the_failing_item(enc):
    ds = Subset(SyntheticImages(12, raising={9: _truncated_file}), range(2, 12))  # Subset fetches batches; its item 7 fails
    loader = SpikeLoader(ds, enc, batch_size=4)
    with pytest.raises(OSError, match="^dataset index 7: truncated file$"):
        list(loader)


def test_len_and_a_distributed_samplers_epochs_behave_as_in_a_dataloader(enc):
    ds = SyntheticImages(20)
    sampler = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=0)
    loader = SpikeLoader(ds, enc, batch_size=4, sampler=sampler, drop_last=True)
    assert len(loader) == len(iter(loader)) == 2
    orders = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        order = [i for spikes, targets in loader for i in targets.tolist()]
        sampler.set_epoch(epoch)
        assert order == list(sampler)[:8]  # the shard, in the sampler's order, the last part dropped
        orders.append(order)
    assert orders[0] != orders[1]
