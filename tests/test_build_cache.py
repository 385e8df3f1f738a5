"""The build cache: atomic entries, safe concurrent builders, recovery from killed builds."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest
import torch

from spike_encode.build_cache import cache_key, cached_build, is_complete


def _slow_build(path: Path) -> None:
    (path / "part1").write_text("a")
    time.sleep(0.5)
    (path / "part2").write_text("b")
    with open(path.parent / "builds.log", "a") as log:
        log.write("built\n")


def _quick_build(path: Path) -> None:
    (path / "part1").write_text("a")
    (path / "part2").write_text("b")


def _worker(root: str, queue) -> None:
    entry, built = cached_build(Path(root), {"k": 1}, _slow_build)
    queue.put((str(entry), built, (entry / "part2").read_text()))


def test_second_request_reuses_the_entry(tmp_path):
    entry, built = cached_build(tmp_path, {"k": 1}, _quick_build)
    assert built and is_complete(entry)
    again, built_again = cached_build(tmp_path, {"k": 1}, _quick_build)
    assert again == entry and not built_again
    other, _ = cached_build(tmp_path, {"k": 2}, _quick_build)
    assert other != entry and cache_key({"k": 1}) != cache_key({"k": 2})


@pytest.mark.slow  # spawns processes
def test_concurrent_builders_build_once_and_all_see_a_whole_entry(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert len({r[0] for r in results}) == 1
    assert sorted(r[1] for r in results) == [False, False, True]
    assert all(r[2] == "b" for r in results)
    assert (tmp_path / "builds.log").read_text() == "built\n"
    assert not list(tmp_path.glob("*.tmp-*"))


def test_half_written_entry_of_a_killed_builder_is_rebuilt(tmp_path):
    key = cache_key({"k": 1})
    (tmp_path / key).mkdir()
    (tmp_path / key / "part1").write_text("a")  # no completion marker: the builder died
    (tmp_path / f"{key}.tmp-dead").mkdir()
    entry, built = cached_build(tmp_path, {"k": 1}, _quick_build)
    assert built and (entry / "part2").read_text() == "b"
    assert not (tmp_path / f"{key}.tmp-dead").exists()


def test_failed_build_leaves_nothing_behind(tmp_path):
    def broken(path: Path) -> None:
        (path / "x").write_text("x")
        raise RuntimeError("compiler crashed")

    try:
        cached_build(tmp_path, {"k": 3}, broken)
    except RuntimeError:
        pass
    assert not is_complete(tmp_path / cache_key({"k": 3}))
    assert not list(tmp_path.glob("*.tmp-*"))


def test_an_entry_whose_files_changed_since_the_build_is_rebuilt(tmp_path):
    entry, _ = cached_build(tmp_path, {"k": 4}, _quick_build)
    (entry / "part2").write_text("")  # truncated after the build, e.g. by a full disk
    assert not is_complete(entry)
    again, built = cached_build(tmp_path, {"k": 4}, _quick_build)
    assert again == entry and built and (entry / "part2").read_text() == "b"
    (entry / "part1").unlink()  # a file missing
    assert cached_build(tmp_path, {"k": 4}, _quick_build)[1]
    (entry / "COMPLETE.json").write_text("{not json")  # a damaged marker
    assert cached_build(tmp_path, {"k": 4}, _quick_build)[1]


def _planted(tmp_path: Path, what: str) -> Path:
    """The cache root with ``what`` in the place of entry {"k": 5} (or of its lock)."""
    root = tmp_path / "root"
    root.mkdir()
    key = cache_key({"k": 5})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").write_text("keep")
    if what == "file":
        (root / key).write_text("not a folder")
    elif what == "dangling link":
        (root / key).symlink_to(tmp_path / "missing")
    elif what == "link to an incomplete folder":
        (root / key).symlink_to(elsewhere)
    elif what == "link to a complete entry":
        built, _ = cached_build(tmp_path / "other-root", {"k": 5}, _quick_build)
        (root / key).symlink_to(built)
    elif what == "folder as lock":
        (root / f"{key}.lock").mkdir()
    elif what == "full folder as lock":
        (root / f"{key}.lock").mkdir()
        (root / f"{key}.lock" / "x").write_text("x")
    elif what == "deeply nested marker":
        (root / key).mkdir()
        (root / key / "COMPLETE.json").write_text("[" * 100_000 + "]" * 100_000)
    elif what == "linked marker":
        built, _ = cached_build(tmp_path / "other-root", {"k": 5}, _quick_build)
        (root / key).mkdir()
        for name in ("part1", "part2"):
            (root / key / name).write_text((built / name).read_text())
        (root / key / "COMPLETE.json").symlink_to(built / "COMPLETE.json")
    return root


@pytest.mark.parametrize("what", ["file", "dangling link", "link to an incomplete folder", "link to a complete entry",
                                  "folder as lock", "full folder as lock", "deeply nested marker", "linked marker"])
def test_anything_in_place_of_an_entry_or_its_lock_is_removed_and_rebuilt(tmp_path, what):
    root = _planted(tmp_path, what)
    entry, built = cached_build(root, {"k": 5}, _quick_build)
    assert built and entry == root / cache_key({"k": 5}) and is_complete(entry)
    assert not entry.is_symlink() and (entry / "part2").read_text() == "b"
    assert (tmp_path / "elsewhere" / "precious").read_text() == "keep"  # a link is never followed into
    assert (root / f"{cache_key({'k': 5})}.lock").is_file() or not (root / f"{cache_key({'k': 5})}.lock").exists()
    assert cached_build(root, {"k": 5}, _quick_build) == (entry, False)


@pytest.mark.slow  # builds GeNN models
def test_genn_rebuilds_over_a_link_in_place_of_its_entry_and_a_folder_in_place_of_its_lock(tmp_path, mnist_test):
    pytest.importorskip("pygenn", reason="PyGeNN is not installed")
    import os

    from spike_encode import LatencyEncode

    images = mnist_test[0][:2]
    first = LatencyEncode(backend="genn", cache_dir=tmp_path / "a")
    expected = first(images).to_dense()
    built = first.engine.last_build[0]
    key = built.name
    (tmp_path / "b").mkdir()
    os.symlink(built, tmp_path / "b" / key)  # someone's link to a complete entry elsewhere
    (tmp_path / "b" / f"{key}.lock").mkdir()
    again = LatencyEncode(backend="genn", cache_dir=tmp_path / "b")
    assert torch.equal(again(images).to_dense(), expected)
    assert again.engine.last_build == (tmp_path / "b" / key, True)
    assert not (tmp_path / "b" / key).is_symlink() and is_complete(built)  # the linked entry is untouched
