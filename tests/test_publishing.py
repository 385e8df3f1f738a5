"""encode_dataset and `spike-encode encode` publish a whole file or nothing: without
overwrite a file that appears while encoding is kept, devices and FIFOs are never replaced,
a full disk is named, and nothing is left behind (temporaries, folders, killed writers')."""

from __future__ import annotations

import fcntl
import multiprocessing as mp
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
import torch

from spike_encode import LatencyEncode, cli
from spike_encode.data import SpikeDataset, encode_dataset

from .spike_file_helpers import images

ENC = LatencyEncode(backend="torch")


class _Appears(torch.utils.data.Dataset):
    """Images that, when first loaded, make someone else's file appear at ``path``."""

    def __init__(self, path: Path, count: int = 6) -> None:
        self.path, self.items = path, images(count)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        if not self.path.exists():
            self.path.write_text("theirs")
        return self.items[i]


@pytest.fixture(params=["unnamed", "named"])
def temporaries(request, monkeypatch, tmp_path):
    """Both kinds of temporary file: O_TMPFILE, and a named one (as where /proc is missing)."""
    if request.param == "named":
        monkeypatch.setattr("spike_encode.data.files.PROC_FD", str(tmp_path / "no-proc"))
    return request.param


def test_without_overwrite_a_file_that_appears_while_encoding_is_kept(tmp_path, temporaries):
    out = tmp_path / "out" / "x.spikes"
    out.parent.mkdir()
    with pytest.raises(FileExistsError, match="x.spikes appeared while it was being written; it was kept"):
        encode_dataset(_Appears(out), ENC, out, progress=False, overwrite=False)
    assert out.read_text() == "theirs" and os.listdir(out.parent) == ["x.spikes"]
    with pytest.raises(FileExistsError, match="x.spikes exists; not overwritten"):
        encode_dataset(_Appears(out), ENC, out, progress=False, overwrite=False)
    encode_dataset(_Appears(out), ENC, out, progress=False)  # overwrite=True: 0.2's behaviour
    assert len(SpikeDataset(out)) == 6 and os.listdir(out.parent) == ["x.spikes"]


def test_the_cli_without_force_keeps_a_file_that_appears_and_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "x.spikes"
    monkeypatch.setattr(cli, "_dataset", lambda args: (_Appears(out), "synthetic"))
    assert cli.main(["encode", "--backend", "torch", "--no-progress", "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"spike-encode: error: {out} appeared while encoding; it was kept and the new spikes "
                     "discarded (pass --force to overwrite it)"]
    assert out.read_text() == "theirs" and os.listdir(tmp_path) == ["x.spikes"]
    assert cli.main(["encode", "--backend", "torch", "--no-progress", "--out", str(out), "--force"]) == 0
    assert len(SpikeDataset(out)) == 6


class _Together(torch.utils.data.Dataset):
    """Images whose first load waits until every writer has started encoding."""

    def __init__(self, barrier) -> None:
        self.barrier, self.items, self.waited = barrier, images(6), False

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        if not self.waited:
            self.barrier.wait(60)
            self.waited = True
        return self.items[i]


def _run_cli(out: str, barrier) -> None:
    cli._dataset = lambda args: (_Together(barrier), "synthetic")
    os._exit(cli.main(["encode", "--backend", "torch", "--no-progress", "--out", out]))


@pytest.mark.slow  # forks
def test_of_two_concurrent_cli_runs_to_one_out_exactly_one_succeeds(tmp_path):
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    runs = [ctx.Process(target=_run_cli, args=(str(tmp_path / "x.spikes"), barrier)) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(120)
    assert sorted(run.exitcode for run in runs) == [0, 2]
    assert len(SpikeDataset(tmp_path / "x.spikes")) == 6 and os.listdir(tmp_path) == ["x.spikes"]


def _special_files(tmp_path: Path) -> list[Path]:
    fifo = tmp_path / "fifo.spikes"
    os.mkfifo(fifo)
    found = [fifo]
    try:  # a character device node like /dev/null (made here, so the real one is never at risk)
        os.mknod(tmp_path / "null.spikes", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        found.append(tmp_path / "null.spikes")
    except (PermissionError, OSError):
        pass
    return found


def test_devices_and_fifos_are_never_replaced(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_dataset", lambda args: (images(3), "synthetic"))
    for special in _special_files(tmp_path):
        mode = os.lstat(special).st_mode
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a character device"
        with pytest.raises(OSError, match=f"cannot write the spike file {special}: it is {kind}, not a regular file"):
            encode_dataset(images(3), ENC, special, progress=False)
        for force in (["--force"], []):  # without --force too: never "pass --force to overwrite it"
            assert cli.main(["encode", "--backend", "torch", "--out", str(special), *force]) == 2
            assert f"--out {special} is {kind}, not a regular file" in capsys.readouterr().err
        assert os.lstat(special).st_mode == mode  # still that device or FIFO


def test_a_folder_as_out_is_named_as_a_folder_with_or_without_force(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_dataset", lambda args: (images(3), "synthetic"))
    for force in ([], ["--force"]):
        assert cli.main(["encode", "--backend", "torch", "--out", str(tmp_path), *force]) == 2
        assert capsys.readouterr().err.strip() == f"spike-encode: error: --out {tmp_path} is a folder, not a file"


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (needs root and mount; skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_named_and_leaves_nothing(tiny_disk, temporaries):
    out = tiny_disk / "x.spikes"
    with pytest.raises(OSError, match=f"cannot write the spike file {out}: No space left on device") as err:
        encode_dataset(images(200, (1, 28, 28)), ENC, out, progress=False, batch_size=100)  # ~110 KB
    assert err.value.errno == 28 and os.listdir(tiny_disk) == []


def test_a_failed_encode_removes_the_folders_it_made_and_no_others(tmp_path):
    kept = tmp_path / "kept"
    kept.mkdir()
    bad = images(3) + [(torch.zeros(1, 8, 8, dtype=torch.uint8), 0)]  # an all-zero image
    with pytest.raises(ValueError, match="all-zero"):
        encode_dataset(bad, ENC, kept / "a" / "b" / "x.spikes", progress=False, batch_size=2)
    assert os.listdir(tmp_path) == ["kept"] and os.listdir(kept) == []
    encode_dataset(images(3), ENC, kept / "a" / "b" / "x.spikes", progress=False)
    assert os.listdir(kept / "a" / "b") == ["x.spikes"]


def test_killed_writers_temporaries_are_removed_by_a_later_writer_and_live_ones_kept(tmp_path):
    from spike_encode.data.files import STALE_AFTER_S

    old = time.time() - 2 * STALE_AFTER_S
    names = {
        "stale": ".x.spikes.0123456789ab.partial",
        "fresh": ".x.spikes.00000000000a.partial",  # may be a writer that has not locked it yet
        "live": ".x.spikes.00000000000b.partial",  # a writer holds its lock
        "other file's": ".y.spikes.0123456789ab.partial",
        "not ours": ".x.spikes.partial",
    }
    for key, name in names.items():
        (tmp_path / name).write_text(key)
        if key != "fresh":
            os.utime(tmp_path / name, (old, old))
    with open(tmp_path / names["live"], "rb") as live:
        fcntl.flock(live, fcntl.LOCK_EX)
        encode_dataset(images(3), ENC, tmp_path / "x.spikes", progress=False)
    assert sorted(os.listdir(tmp_path)) == sorted(["x.spikes"] + [n for k, n in names.items() if k != "stale"])


def test_without_proc_the_named_temporary_is_chosen_before_encoding(tmp_path, monkeypatch):
    monkeypatch.setattr("spike_encode.data.files.PROC_FD", str(tmp_path / "no-proc"))
    seen = []

    class Watch(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int):
            seen.append(sorted(p.name for p in (tmp_path / "out").iterdir()))
            return images(3)[i]

    for overwrite in (True, False):
        out = tmp_path / "out" / f"x{overwrite}.spikes"
        seen.clear()
        encode_dataset(Watch(), ENC, out, progress=False, overwrite=overwrite)
        assert [n for n in seen[0] if n.startswith(f".{out.name}.") and n.endswith(".partial")]  # named
        assert len(SpikeDataset(out)) == 3
    assert sorted(os.listdir(tmp_path / "out")) == ["xFalse.spikes", "xTrue.spikes"]
