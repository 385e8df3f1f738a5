"""SpikeLoader on real MNIST: spikes equal direct encoding, targets stay with their images
through shuffling, workers and drop_last, and it behaves as a DataLoader does."""

from __future__ import annotations

import math
import multiprocessing
import os
import time

import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from spike_encode import LatencyEncode
from spike_encode.data import SpikeLoader, collate_images

from .loader_helpers import MNISTItems, SpikeIdentifier, assert_same_sparse

pytestmark = pytest.mark.slow  # real MNIST, and most tests start worker processes

COUNT = 600


@pytest.fixture(scope="module")
def subset(mnist_test):
    images, labels = mnist_test
    return images[:COUNT], labels[:COUNT]


@pytest.fixture(scope="module")
def identify(subset, enc) -> SpikeIdentifier:
    return SpikeIdentifier(enc(subset[0]))


class RecordingEncoder:
    """Wraps an encoder; records what each call received, and in which process."""

    def __init__(self, enc: LatencyEncode):
        self.enc, self.device, self.calls = enc, enc.device, []

    def __call__(self, images):
        self.calls.append((images.dtype, tuple(images.shape), images.device, os.getpid(), torch.get_num_threads()))
        return self.enc(images)


@pytest.mark.parametrize("drop_last", [False, True])
def test_shuffled_workers_keep_targets_with_their_spikes(drop_last, subset, enc, identify):
    images, labels = subset
    loader = SpikeLoader(MNISTItems(images, labels), enc, batch_size=128, shuffle=True,
                         num_workers=2, drop_last=drop_last)
    expected_batches = COUNT // 128 if drop_last else math.ceil(COUNT / 128)
    assert len(loader) == expected_batches
    seen = []
    for spikes, targets in loader:
        assert spikes.is_sparse and spikes.shape[1:] == (enc.num_steps, 784)
        which = identify(spikes)  # every sample's spikes are exactly one image's encoding
        assert targets.tolist() == labels[which].tolist(), "a target left its image"
        assert_same_sparse(spikes, enc(images[which]))
        seen += which
    assert len(seen) == ((COUNT // 128) * 128 if drop_last else COUNT)
    assert len(set(seen)) == len(seen), "an image came twice in one epoch"
    assert seen != sorted(seen), "shuffle=True did not shuffle"


def test_encoding_runs_whole_batches_of_uint8_in_the_main_process(subset, enc):
    images, labels = subset
    recorder = RecordingEncoder(enc)
    loader = SpikeLoader(MNISTItems(images[:100], labels[:100]), recorder, batch_size=32, num_workers=2)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [32, 32, 32, 4]
    assert [c[:2] for c in recorder.calls] == [(torch.uint8, (n, 1, 28, 28)) for n in (32, 32, 32, 4)]
    assert {c[3] for c in recorder.calls} == {os.getpid()}
    assert_same_sparse(torch.cat([s for s, _ in batches]), enc(images[:100]))


@pytest.mark.parametrize("kind", ["ndarray", "tensor"])
def test_ndarray_and_tensor_images_give_the_same_spikes(kind, subset, enc):
    images, labels = subset
    loader = SpikeLoader(MNISTItems(images[:64], labels[:64], kind), enc, batch_size=64)
    (spikes, targets), = list(loader)
    assert_same_sparse(spikes, enc(images[:64]))
    assert torch.equal(targets, labels[:64])


def test_restart_and_len_behave_as_a_dataloader(subset, enc):
    images, labels = subset
    loader = SpikeLoader(MNISTItems(images[:100], labels[:100]), enc, batch_size=30, persistent_workers=True,
                         num_workers=1)
    assert len(loader) == 4 and len(iter(loader)) == 4
    first = [s for s, _ in loader]
    it = iter(loader)
    next(it)  # abandon an epoch half way
    second = [s for s, _ in loader]
    assert len(first) == len(second) == 4
    for a, b in zip(first, second):
        assert_same_sparse(a, b)


def test_augmentation_is_encoded_afresh_every_epoch(subset, enc):
    from torchvision.transforms import RandomAffine

    images, labels = subset
    ds = MNISTItems(images[:64], labels[:64], "pil", transform=RandomAffine(degrees=20, translate=(0.1, 0.1)))
    spike_loader = SpikeLoader(ds, enc, batch_size=32, num_workers=2, generator=torch.Generator().manual_seed(3))
    image_loader = DataLoader(ds, batch_size=32, num_workers=2, collate_fn=collate_images,
                              generator=torch.Generator().manual_seed(3))
    epochs = []
    for _ in range(2):
        pairs = list(zip(spike_loader, image_loader))
        for (spikes, targets), (augmented, image_targets) in pairs:
            assert_same_sparse(spikes, enc(augmented))  # the augmented images, encoded
            assert torch.equal(targets, image_targets)
        epochs.append(torch.cat([spikes for (spikes, _), _ in pairs]).coalesce())
    first, second = (e.indices() for e in epochs)
    assert first.shape != second.shape or not torch.equal(first, second), "epoch 2 reused epoch 1's spikes"
    assert not torch.equal(torch.cat([a for _, (a, _) in pairs]), images[:64]), "no augmentation happened"


def test_set_epoch_of_a_distributed_sampler_reshuffles_the_shard(subset, enc, identify):
    images, labels = subset
    ds = MNISTItems(images[:200], labels[:200])
    sampler = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=0)
    loader = SpikeLoader(ds, enc, batch_size=50, sampler=sampler)
    orders = []
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        order = [i for spikes, _ in loader for i in identify(spikes)]
        sampler.set_epoch(epoch)
        assert order == list(sampler)  # exactly the shard, in the sampler's order
        orders.append(order)
    assert orders[0] != orders[1]


@pytest.mark.parametrize("setting, workers", [(1, 2), ("auto", 2), ("auto", 0), (None, 2)])
def test_cpu_encoding_leaves_the_cores_to_the_workers(setting, workers, subset, enc, monkeypatch):
    images, labels = subset
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(3)), raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        recorder = RecordingEncoder(enc)
        loader = SpikeLoader(MNISTItems(images[:40], labels[:40]), recorder, batch_size=20, num_workers=workers,
                             encode_threads=setting)
        spikes = torch.cat([s for s, _ in loader])
        used = {c[4] for c in recorder.calls}
        # 3 cores, 2 of them loading: "auto" encodes with 1 thread; without workers it keeps 4
        expected = {(1, 2): 1, ("auto", 2): 1, ("auto", 0): 4, (None, 2): 4}[(setting, workers)]
        assert used == {expected}
        assert torch.get_num_threads() == 4, "torch's thread setting was not restored"
        assert_same_sparse(spikes, enc(images[:40]))
    finally:
        torch.set_num_threads(before)


class CountingItems(MNISTItems):
    """MNIST items that count, across worker processes, how many were loaded."""

    def __init__(self, images, labels):
        super().__init__(images, labels)
        self.loaded = multiprocessing.get_context("fork").Value("i", 0)

    def __getitem__(self, i: int):
        with self.loaded.get_lock():
            self.loaded.value += 1
        return super().__getitem__(i)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="counts loads across forked workers")
@pytest.mark.parametrize("prefetch, batches_ahead", [(None, 4), (2, 2), (3, 3)])
def test_cpu_encoding_lets_each_worker_load_four_batches_ahead_unless_told(prefetch, batches_ahead, subset, enc):
    """While the main process encodes on the CPU, each worker keeps up to 4 batches loaded
    (PyTorch's default is 2); a prefetch_factor of the user's own is kept."""
    images, labels = subset
    ds = CountingItems(images[:400], labels[:400])
    options = {} if prefetch is None else {"prefetch_factor": prefetch}
    loader = SpikeLoader(ds, enc, batch_size=10, num_workers=2, multiprocessing_context="fork", **options)
    assert loader.prefetch_factor == batches_ahead
    batches = iter(loader)
    next(batches)  # one batch taken: one more asked for in its place
    expected = (2 * batches_ahead + 1) * 10
    deadline = time.monotonic() + 30
    while ds.loaded.value < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # time to load more, were more asked for
    assert ds.loaded.value == expected
    del batches


def test_encoding_on_a_gpu_keeps_pytorchs_prefetch(subset):
    class OnGPU:  # constructing the loader touches no GPU
        device = torch.device("cuda")

        def __call__(self, images):
            raise AssertionError("not called")

    assert SpikeLoader(MNISTItems(*subset), OnGPU(), batch_size=10, num_workers=2).prefetch_factor == 2
    assert SpikeLoader(MNISTItems(*subset), OnGPU(), batch_size=10, num_workers=0).prefetch_factor is None


def test_bad_arguments_are_refused(subset, enc):
    ds = MNISTItems(*subset)
    with pytest.raises(ValueError, match="batch_size=None"):
        SpikeLoader(ds, enc, batch_size=None)
    with pytest.raises(TypeError, match="encoder must be callable"):
        SpikeLoader(ds, "torch")
    with pytest.raises(ValueError, match="encode_threads must be"):
        SpikeLoader(ds, enc, encode_threads=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")
def test_batches_are_encoded_on_the_gpu(subset):
    images, labels = subset
    gpu = LatencyEncode(backend="torch", device="cuda")
    loader = SpikeLoader(MNISTItems(images[:256], labels[:256]), gpu, batch_size=128, num_workers=2, pin_memory=True)
    batches = list(loader)
    assert all(s.device.type == "cuda" and t.device.type == "cuda" for s, t in batches)
    cpu = LatencyEncode(backend="torch")
    assert_same_sparse(torch.cat([s.cpu() for s, _ in batches]), cpu(images[:256]))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_refused_image_is_named_by_its_dataset_index(num_workers, mnist_test):
    from torch.utils.data import TensorDataset

    images = mnist_test[0][:64].clone()
    images[37] = 0  # all-zero: cannot be normalised
    images[50, 0, 3, 3] = 0  # fine
    loader = SpikeLoader(TensorDataset(images, mnist_test[1][:64]), LatencyEncode(backend="torch"),
                         batch_size=16, shuffle=True, num_workers=num_workers,
                         generator=torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match=r"^dataset index 37: the image has all-zero pixels"):
        for _ in loader:
            pass


@pytest.mark.parametrize("num_workers", [0, 1])
def test_an_item_collation_refuses_is_reported_with_its_batchs_dataset_indices(num_workers, mnist_test):
    items = [(mnist_test[0][i], int(mnist_test[1][i])) for i in range(12)]
    items[6] = (torch.zeros((1, 20, 20), dtype=torch.uint8), 0)  # another size
    loader = SpikeLoader(items, LatencyEncode(backend="torch"), batch_size=4, num_workers=num_workers)
    with pytest.raises(ValueError, match=r"image 2 is \(1, 20, 20\)[\s\S]*dataset indices \[4, 5, 6, 7\]"):
        for _ in loader:
            pass
