"""The spike file is untrusted input: damage, crafted headers, truncation, old versions,
concurrent writers and unwritable places all end in a clear exception or the original data."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spike_encode import LatencyEncode
from spike_encode.data import SpikeDataset, SpikeFileError, encode_dataset
from spike_encode.data.spike_file import spike_file_bytes

from .loader_helpers import MNISTItems, assert_same_sparse

ENC = LatencyEncode(backend="torch")


@pytest.fixture(scope="module")
def small(tmp_path_factory, mnist_test) -> tuple[Path, torch.Tensor, torch.Tensor]:
    images, labels = mnist_test[0][:12], mnist_test[1][:12]
    path = encode_dataset(MNISTItems(images, labels), ENC, tmp_path_factory.mktemp("f") / "small.spikes",
                          batch_size=5, progress=False)
    return path, ENC(images), labels


def _read_all(path: Path, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    ds = SpikeDataset(path, **kwargs)
    return ds.get_batch(range(len(ds)))


def _rewrite(path: Path, out: Path, **change) -> Path:
    """The file again with arrays or header entries replaced (a crafted but well-formed file)."""
    from safetensors.numpy import load_file
    from safetensors import safe_open

    arrays = load_file(str(path))
    with safe_open(str(path), framework="np") as f:
        header = json.loads(f.metadata()["header"])
    arrays.update({k: v for k, v in change.items() if k in arrays})
    header.update({k: v for k, v in change.items() if k not in arrays})
    out.write_bytes(spike_file_bytes(arrays, header))
    return out


def test_a_valid_file_reads_back_exactly_with_and_without_mmap_and_checksum(small):
    path, spikes, labels = small
    for kwargs in (dict(), dict(mmap=False), dict(verify=False)):
        got, targets = _read_all(path, **kwargs)
        assert_same_sparse(got, spikes)
        assert torch.equal(targets, labels)


@pytest.mark.parametrize("change, match", [
    (dict(num_steps=100), "header says 100 steps"),
    (dict(num_neurons=700, image_shape=None), "a spike of neuron 7"),
    (dict(image_shape=[1, 28, 27]), "image_shape is \\[1, 28, 27\\] for 784 neurons"),
    (dict(num_samples=11), "13 offsets and 12 targets for 11 samples"),
    (dict(digest="0" * 64), "stored digest 0000"),
    (dict(params={"dt": "x"}), "damaged header"),
])
def test_edited_headers_are_refused_before_any_spike_is_returned(small, tmp_path, change, match):
    crafted = _rewrite(small[0], tmp_path / "c.spikes", **change)
    with pytest.raises(SpikeFileError, match=match):
        SpikeDataset(crafted)


def test_out_of_range_or_unsorted_arrays_are_refused_even_with_a_matching_checksum(small, tmp_path):
    from safetensors.numpy import load_file

    arrays = load_file(str(small[0]))
    step = arrays["step"].copy()
    step[3] = 250  # beyond the 200-step window
    with pytest.raises(SpikeFileError, match="a spike at step 250 of a 200-step window"):
        SpikeDataset(_rewrite(small[0], tmp_path / "a.spikes", step=step))
    neuron = arrays["neuron"].copy()
    neuron[[0, 1]] = neuron[[1, 0]]
    with pytest.raises(SpikeFileError, match="not sorted"):
        SpikeDataset(_rewrite(small[0], tmp_path / "b.spikes", neuron=neuron))
    offsets = arrays["offsets"].copy()
    offsets[2], offsets[3] = offsets[3], offsets[2]
    with pytest.raises(SpikeFileError, match="offsets decrease"):
        SpikeDataset(_rewrite(small[0], tmp_path / "c.spikes", offsets=offsets))


def test_an_object_dtype_or_foreign_array_is_refused_without_crashing(small, tmp_path):
    data = small[0].read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + length])
    header["step"]["dtype"] = "|O"  # what a hand-written container would hand to np.memmap
    text = json.dumps(header).encode()
    crafted = tmp_path / "o.spikes"
    crafted.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length :])
    with pytest.raises(SpikeFileError, match="o.spikes"):
        SpikeDataset(crafted)


def test_a_flipped_data_byte_fails_the_checksum_and_verify_false_still_checks_ranges(small, tmp_path):
    data = bytearray(small[0].read_bytes())
    length = struct.unpack("<Q", data[:8])[0]
    begin = json.loads(data[8 : 8 + length])["targets"]["data_offsets"][0]
    data[8 + length + begin] ^= 0x01  # the first target: a wrong label, all else valid
    damaged = tmp_path / "d.spikes"
    damaged.write_bytes(bytes(data))
    with pytest.raises(SpikeFileError, match="do not match their checksum"):
        SpikeDataset(damaged)
    SpikeDataset(damaged, verify=False)  # trusted: opens (targets are not range-checked)


def test_truncated_files_fail_on_open_with_or_without_mmap(small, tmp_path):
    data = small[0].read_bytes()
    for cut in (3, 8, 100, len(data) // 2, len(data) - 1):
        short = tmp_path / f"t{cut}.spikes"
        short.write_bytes(data[:cut])
        for mmap in (True, False):
            with pytest.raises(SpikeFileError, match=short.name):
                SpikeDataset(short, mmap=mmap)


def test_a_version_1_file_gets_a_clear_message(tmp_path):
    old = tmp_path / "old.spikes"
    old.write_bytes(b"SPKENC01" + (10).to_bytes(8, "little") + b'{"x": 1}  ')
    with pytest.raises(SpikeFileError, match="version-1 spike file.*encode the dataset again"):
        SpikeDataset(old)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_gives_a_clean_error_or_the_original_data(small, tmp_path, data):
    path, spikes, labels = small
    original = bytearray(path.read_bytes())
    damaged = bytearray(original)
    kind = data.draw(st.sampled_from(["flip", "truncate", "overwrite"]))
    if kind == "truncate":
        damaged = damaged[: data.draw(st.integers(0, len(damaged) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(damaged) - 1))
            damaged[at] = damaged[at] ^ data.draw(st.integers(1, 255)) if kind == "flip" else data.draw(st.integers(0, 255))
    target = tmp_path / "h.spikes"
    target.write_bytes(bytes(damaged))
    try:
        got, targets = _read_all(target, mmap=data.draw(st.booleans()))
    except SpikeFileError:
        return
    assert_same_sparse(got, spikes)  # whatever opened is the original data
    assert torch.equal(targets, labels)


def _write(path: str, offset: int, queue) -> None:
    from spike_encode.datasets import load_mnist

    images, labels = load_mnist(os.environ["SPIKE_ENCODE_TEST_DATA"])
    items = MNISTItems(images[offset : offset + 300], labels[offset : offset + 300])
    encode_dataset(items, LatencyEncode(backend="torch"), path, batch_size=50, progress=False)
    queue.put(offset)


@pytest.mark.slow  # spawns processes
def test_concurrent_writers_each_publish_a_whole_file(tmp_path, data_root, mnist_test, monkeypatch):
    monkeypatch.setenv("SPIKE_ENCODE_TEST_DATA", str(data_root))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    path = tmp_path / "same.spikes"
    procs = [ctx.Process(target=_write, args=(str(path), offset, queue)) for offset in (0, 1000, 2000)]
    for p in procs:
        p.start()
    done = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert done == [0, 1000, 2000]
    targets = SpikeDataset(path).targets  # one whole, valid file: one writer's data
    assert any(torch.equal(targets, mnist_test[1][o : o + 300]) for o in done)
    assert [p.name for p in tmp_path.iterdir()] == ["same.spikes"]  # no temporary left


def test_failures_leave_nothing_behind_and_a_planted_link_is_not_followed(tmp_path, mnist_test):
    images, labels = mnist_test
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "out.spikes.partial").symlink_to(victim)  # the old fixed temporary name
    bad = MNISTItems(torch.cat([images[:3], torch.zeros_like(images[:1])]), labels[:4])
    with pytest.raises(ValueError, match="all-zero"):
        encode_dataset(bad, ENC, tmp_path / "out.spikes", batch_size=2, progress=False)
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.spikes.partial", "victim.txt"]
    encode_dataset(MNISTItems(images[:3], labels[:3]), ENC, tmp_path / "out.spikes", progress=False)
    assert victim.read_text() == "keep me" and len(SpikeDataset(tmp_path / "out.spikes")) == 3
    assert oct((tmp_path / "out.spikes").stat().st_mode & 0o777) != oct(0o600)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to any folder")
def test_unwritable_folder_fails_before_encoding(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    with pytest.raises(PermissionError, match="cannot write the spike file"):
        encode_dataset(_Exploding(), ENC, folder / "x.spikes", progress=False)


def test_a_folder_or_an_impossible_place_fails_before_encoding(tmp_path):
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        encode_dataset(_Exploding(), ENC, tmp_path, progress=False)
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(OSError, match="cannot write the spike file"):
        encode_dataset(_Exploding(), ENC, tmp_path / "file.txt" / "x.spikes", progress=False)


class _Exploding(torch.utils.data.Dataset):
    """A dataset that fails if anything tries to encode it."""

    def __len__(self) -> int:
        return 5

    def __getitem__(self, i):
        raise AssertionError("encoding started before the destination was checked")


class _Stalls(torch.utils.data.Dataset):
    """Images that say when loading started, then take forever."""

    def __init__(self, started: str) -> None:
        self.started = started

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i):
        Path(self.started).touch()
        import time

        time.sleep(60)
        return torch.ones((1, 4, 4), dtype=torch.uint8), 0


def _encode_forever(path: str, started: str) -> None:
    encode_dataset(_Stalls(started), LatencyEncode(backend="torch"), path, progress=False)


@pytest.mark.slow  # spawns processes
def test_a_killed_writer_leaves_nothing_behind(tmp_path):
    import signal
    import time

    out, started = tmp_path / "out", tmp_path / "started"
    out.mkdir()
    proc = mp.get_context("spawn").Process(target=_encode_forever, args=(str(out / "x.spikes"), str(started)))
    proc.start()
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), "the writer never started encoding"
    os.kill(proc.pid, signal.SIGKILL)  # no exception handler runs
    proc.join(timeout=30)
    assert list(out.iterdir()) == []
