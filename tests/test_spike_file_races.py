"""The one promise of spike files, under writers, atomic replacements, in-place overwrites,
truncations, flipped bytes and writer processes killed with SIGKILL: every read is exactly
the data of the complete file the reader opened, or a SpikeFileError, and no process dies
by a signal. A Hypothesis state machine interleaves the actions (readers that may crash run
in forked processes); a second test runs readers in processes while the files change under them."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, precondition, rule

from spike_encode import LatencyEncode
from spike_encode.data import SpikeDataset, SpikeFileError, encode_dataset

from .loader_helpers import per_image_keys
from .spike_file_helpers import images

pytestmark = pytest.mark.slow  # forks processes; about 40 s in all

ENCODERS = {"base": LatencyEncode(backend="torch"), "other": LatencyEncode(backend="torch", input_scale=70.0)}
DATASETS = {  # name: (items, encoder); "twin" has a's images (so a's size) and other labels
    "a": (images(6, (1, 6, 6), seed=1), "base"),
    "twin": ([(image, (label + 1) % 10) for image, label in images(6, (1, 6, 6), seed=1)], "base"),
    "b": (images(9, (1, 7, 7), seed=2), "other"),
    "c": (images(4, (1, 6, 6), seed=3), "base"),
}
NAMES = sorted(DATASETS)


def _truth(name: str) -> tuple[list[bytes], list[int]]:
    """Each sample's spikes (as bytes) and targets, encoded directly (not read from a file)."""
    items, encoder = DATASETS[name]
    spikes = ENCODERS[encoder](torch.stack([image for image, _ in items]))
    return per_image_keys(spikes), [label for _, label in items]


TRUTH = {name: _truth(name) for name in NAMES}


def _pristine() -> dict[str, bytes]:
    folder = Path(tempfile.mkdtemp(prefix="pristine-"))
    try:
        for name in NAMES:
            items, encoder = DATASETS[name]
            encode_dataset(items, ENCODERS[encoder], folder / name, progress=False)
        return {name: (folder / name).read_bytes() for name in NAMES}
    finally:
        shutil.rmtree(folder)


PRISTINE = _pristine()


def _matches(name: str, indices: list[int], spikes: torch.Tensor, targets: list[int]) -> bool:
    keys, labels = TRUTH[name]
    return per_image_keys(spikes) == [keys[i] for i in indices] and targets == [labels[i] for i in indices]


def _origin(ds: SpikeDataset) -> str | None:
    """Which original ``ds`` reads, from one whole read (SpikeFileError propagates); None: none of them."""
    spikes, targets = ds.get_batch(range(len(ds)))
    found = [name for name in NAMES if len(TRUTH[name][1]) == len(ds)
             and _matches(name, list(range(len(ds))), spikes, targets.tolist())]
    return found[0] if found else None


def _read_some(ds: SpikeDataset, origin: str, rng: random.Random) -> bool:
    """A batch and an item at random; True if both are exactly ``origin``'s (SpikeFileError propagates)."""
    n = len(ds)
    indices = [rng.randrange(n) for _ in range(rng.randint(1, 2 * n))]
    spikes, targets = ds.get_batch(indices)
    i = rng.randrange(-n, n)
    item, target = ds[i]
    return _matches(origin, indices, spikes, targets.tolist()) and _matches(
        origin, [i % n], item.unsqueeze(0), [target])


class _Slow(torch.utils.data.Dataset):
    """A dataset's items, each after a short pause (a writer to kill mid-way)."""

    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        time.sleep(0.002)
        return self.items[i]


def _write(path: str, name: str) -> None:
    items, encoder = DATASETS[name]
    encode_dataset(_Slow(items), ENCODERS[encoder], path, progress=False, batch_size=2)
    os._exit(0)


def _read_across(path: str, mmap: bool, verify: bool, opened, go) -> None:
    """Open ``path``, say so, wait while the parent changes it, then read: exit 0 if every
    read is the original it opened or a SpikeFileError, 1 if not. (A file with a flipped
    byte opened with verify=False has no original: it is only read, to see nothing crashes.)"""
    try:
        ds = SpikeDataset(path, mmap=mmap, verify=verify)
        origin = _origin(ds)
    except (SpikeFileError, FileNotFoundError):
        ds = None
    opened.set()
    if ds is None:
        os._exit(0)
    if origin is None and verify:
        os._exit(1)
    go.wait(30)
    try:
        ok = _read_some(ds, origin or NAMES[0], random.Random(0)) or origin is None
    except SpikeFileError:
        ok = True
    os._exit(0 if ok else 1)


class _Reader:
    def __init__(self, ds: SpikeDataset, origin: str) -> None:
        self.ds, self.origin = ds, origin


class SpikeFiles(RuleBasedStateMachine):
    """Two paths, their contents (an original's name, or None for anything else), and open readers."""

    readers = Bundle("readers")

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="spike-races-"))
        self.paths = [self.folder / "0.spikes", self.folder / "1.spikes"]
        self.state: list[str | None] = [None, None]  # None: missing, or not a whole original
        self.flipped = [False, False]  # a byte flipped in place: verify=False need not notice
        self.open_readers: list[_Reader] = []
        self.rng = random.Random(0)

    def teardown(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    @initialize(slot=st.integers(0, 1), name=st.sampled_from(NAMES))
    def start(self, slot: int, name: str) -> None:
        self.paths[slot].write_bytes(PRISTINE[name])
        self._now(slot, name)

    def _now(self, slot: int, name: str | None) -> None:
        self.state[slot], self.flipped[slot] = name, False

    @rule(slot=st.integers(0, 1), name=st.sampled_from(NAMES), overwrite=st.booleans())
    def publish(self, slot: int, name: str, overwrite: bool) -> None:
        items, encoder = DATASETS[name]
        existed = os.path.lexists(self.paths[slot])
        try:
            encode_dataset(items, ENCODERS[encoder], self.paths[slot], progress=False, overwrite=overwrite)
        except FileExistsError:
            assert existed and not overwrite
            return
        assert overwrite or not existed
        self._now(slot, name)

    @rule(slot=st.integers(0, 1), name=st.sampled_from(NAMES))
    def replace(self, slot: int, name: str) -> None:
        temporary = self.folder / "incoming"
        temporary.write_bytes(PRISTINE[name])
        os.replace(temporary, self.paths[slot])
        self._now(slot, name)

    @rule(slot=st.integers(0, 1), name=st.sampled_from(NAMES), truncate=st.booleans())
    def overwrite_in_place(self, slot: int, name: str, truncate: bool) -> None:
        path = self.paths[slot]
        old = path.stat().st_size if path.exists() else 0
        with open(path, "wb" if truncate or not path.exists() else "r+b") as f:
            f.write(PRISTINE[name])
        if truncate or old <= len(PRISTINE[name]):
            self._now(slot, name)
        else:  # a tail of the old file is left: the sizes no longer match
            self.state[slot] = None

    @rule(slot=st.integers(0, 1), fraction=st.floats(0, 0.999))
    def truncate(self, slot: int, fraction: float) -> None:
        if self.paths[slot].exists():
            os.truncate(self.paths[slot], int(self.paths[slot].stat().st_size * fraction))
            self.state[slot] = None

    @rule(slot=st.integers(0, 1), where=st.floats(0, 0.999), xor=st.integers(1, 255))
    def flip_a_byte(self, slot: int, where: float, xor: int) -> None:
        path = self.paths[slot]
        if path.exists() and path.stat().st_size:
            with open(path, "r+b") as f:
                f.seek(int(path.stat().st_size * where))
                byte = f.read(1)[0]
                f.seek(-1, os.SEEK_CUR)
                f.write(bytes([byte ^ xor]))
            self.state[slot], self.flipped[slot] = None, True

    @rule(target=readers, slot=st.integers(0, 1), mmap=st.booleans(), verify=st.booleans())
    def open_reader(self, slot: int, mmap: bool, verify: bool):
        expected = self.state[slot]
        try:
            ds = SpikeDataset(self.paths[slot], mmap=mmap, verify=verify)
            origin = _origin(ds)
        except (SpikeFileError, FileNotFoundError):
            assert expected is None, f"a whole {expected} file was refused"
            return None
        if origin is None:
            assert self.flipped[slot] and not verify, "a reader returned data of no original file"
            return None
        assert expected in (None, origin), f"the path holds {expected}, the reader read {origin}"
        reader = _Reader(ds, origin)
        self.open_readers.append(reader)
        return reader

    @rule(reader=readers)
    def read(self, reader: _Reader | None) -> None:
        if reader is None:
            return
        try:
            assert _read_some(reader.ds, reader.origin, self.rng), f"a reader of {reader.origin} read other data"
        except SpikeFileError:
            pass

    @rule(reader=readers)
    def pickle_and_read(self, reader: _Reader | None) -> None:
        import pickle

        if reader is None:
            return
        again = pickle.loads(pickle.dumps(reader.ds))  # as a spawned DataLoader worker gets it
        try:
            assert _read_some(again, reader.origin, self.rng)
        except SpikeFileError:
            pass

    @rule(slot=st.integers(0, 1), name=st.sampled_from(NAMES), delay=st.floats(0, 0.06))
    def kill_a_writer(self, slot: int, name: str, delay: float) -> None:
        writer = mp.get_context("fork").Process(target=_write, args=(str(self.paths[slot]), name))
        writer.start()
        time.sleep(delay)
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(30)
        assert writer.exitcode in (0, -signal.SIGKILL)
        try:  # the path holds what it held before, or the writer's whole file
            origin = _origin(SpikeDataset(self.paths[slot]))
        except (SpikeFileError, FileNotFoundError):
            origin = None
        assert origin in (self.state[slot], name), f"after a killed writer the path holds {origin}"
        if origin == name:
            self._now(slot, name)

    @precondition(lambda self: any(p.exists() for p in self.paths))
    @rule(slot=st.integers(0, 1), change=st.sampled_from(["truncate", "overwrite", "replace"]),
          name=st.sampled_from(NAMES), mmap=st.booleans(), verify=st.booleans())
    def crash_a_reader(self, slot: int, change: str, name: str, mmap: bool, verify: bool) -> None:
        ctx = mp.get_context("fork")
        opened, go = ctx.Event(), ctx.Event()
        path = self.paths[slot]
        reader = ctx.Process(target=_read_across, args=(str(path), mmap, verify, opened, go))
        reader.start()
        assert opened.wait(30)
        if change == "truncate" and path.exists():
            os.truncate(path, 0)
            self._now(slot, None)
        elif change == "overwrite":
            self.overwrite_in_place(slot, name, truncate=True)
        else:
            self.replace(slot, name)
        go.set()
        reader.join(30)
        assert reader.exitcode == 0, f"the reader ended with {reader.exitcode} (negative: killed by that signal)"


def test_every_read_is_the_file_opened_or_an_error():
    run = settings(max_examples=60, stateful_step_count=30, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])(SpikeFiles)
    run.TestCase().runTest()


def _hammer(path: str, seconds: float, seed: int) -> None:
    """Open and read ``path`` over and over for ``seconds``; exit 1 on any wrong read, 2 if
    nothing was ever read (the test would prove nothing). (No bytes are flipped here: with
    verify=False a flipped spike need not be noticed; the state machine covers flips.)"""
    rng, deadline, good = random.Random(seed), time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        try:
            ds = SpikeDataset(path, mmap=rng.random() < 0.7, verify=rng.random() < 0.5)
            origin = _origin(ds)
            if origin is None:
                os._exit(1)
            for _ in range(3):
                if not _read_some(ds, origin, rng):
                    os._exit(1)
                good += 1
        except (SpikeFileError, FileNotFoundError):
            continue
    os._exit(0 if good else 2)


def test_readers_in_processes_see_whole_files_while_they_change_under_them(tmp_path):
    path = tmp_path / "x.spikes"
    path.write_bytes(PRISTINE["a"])
    ctx = mp.get_context("fork")
    readers = [ctx.Process(target=_hammer, args=(str(path), 6.0, seed)) for seed in range(3)]
    for reader in readers:
        reader.start()
    rng, deadline = random.Random(1), time.monotonic() + 6.0
    while time.monotonic() < deadline:
        name, action = rng.choice(NAMES), rng.random()
        if action < 0.6:  # atomic replacement, as encode_dataset publishes
            (tmp_path / "new").write_bytes(PRISTINE[name])
            os.replace(tmp_path / "new", path)
        elif action < 0.8:  # in place, truncating first (as cp does)
            with open(path, "wb") as f:
                f.write(PRISTINE[name])
        else:
            os.truncate(path, rng.randrange(max(path.stat().st_size, 1)))
        time.sleep(rng.uniform(0, 0.01))
    for reader in readers:
        reader.join(60)
    assert [reader.exitcode for reader in readers] == [0, 0, 0]  # 1: a wrong read; negative: a signal
