"""Two ranks (gloo, CPU processes) with DistributedSampler: each rank encodes its own shard
through SpikeLoader on its own device, and together they cover every image exactly once."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = pytest.mark.slow  # spawns two ranks, each with a worker process

COUNT = 400
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, images: torch.Tensor, labels: torch.Tensor, out: str) -> None:
    from torch.utils.data.distributed import DistributedSampler

    from spike_encode import LatencyEncode
    from spike_encode.data import SpikeLoader
    from tests.loader_helpers import MNISTItems, SpikeIdentifier

    torch.set_num_threads(1)  # as torchrun sets OMP_NUM_THREADS=1 for several processes per node
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        device = f"cuda:{rank}" if torch.cuda.device_count() >= world else "cpu"
        enc = LatencyEncode(backend="auto", device=device)
        identify = SpikeIdentifier(LatencyEncode(backend="torch")(images))  # direct encoding, on CPU
        ds = MNISTItems(images, labels)
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(1)
        # mp.spawn makes "spawn" the children's default; fork the loader's worker as under torchrun
        fork = "fork" if "fork" in mp.get_all_start_methods() else None
        loader = SpikeLoader(ds, enc, batch_size=64, sampler=sampler, num_workers=1, multiprocessing_context=fork)
        seen = []
        for spikes, targets in loader:
            assert spikes.device == torch.device(device), f"rank {rank} encoded on {spikes.device}"
            which = identify(spikes.cpu())  # KeyError unless each sample equals a direct encoding
            assert targets.cpu().tolist() == labels[which].tolist(), f"rank {rank}: targets misaligned"
            seen += which
        assert seen == list(sampler), f"rank {rank} did not get its sampler's shard in order"
        gathered: list[list[int]] = [[] for _ in range(world)]
        dist.all_gather_object(gathered, seen)
        if rank == 0:
            Path(out).write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_cover_each_sample_exactly_once(tmp_path, mnist_test):
    out = tmp_path / "seen.json"
    images, labels = (t[:COUNT].clone() for t in mnist_test)  # real MNIST, sent to each rank
    context = mp.spawn(_rank_main, args=(WORLD, _free_port(), images, labels, str(out)),
                       nprocs=WORLD, join=False)
    deadline = time.monotonic() + 120
    while not context.join(timeout=2):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the 2-rank run did not finish within 120 s")
    shards = json.loads(out.read_text())
    assert [len(s) for s in shards] == [COUNT // WORLD] * WORLD
    assert sorted(i for shard in shards for i in shard) == list(range(COUNT))
