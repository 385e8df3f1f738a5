"""The build cache: atomic entries, safe concurrent builders, recovery from killed builds."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

from spike_encode.build_cache import cache_key, cached_build, is_complete


def _slow_build(path: Path) -> None:
    (path / "part1").write_text("a")
    time.sleep(0.5)
    (path / "part2").write_text("b")
    with open(path.parent / "builds.log", "a") as log:
        log.write("built\n")


def _worker(root: str, queue) -> None:
    entry, built = cached_build(Path(root), {"k": 1}, _slow_build)
    queue.put((str(entry), built, (entry / "part2").read_text()))


def test_second_request_reuses_the_entry(tmp_path):
    entry, built = cached_build(tmp_path, {"k": 1}, _slow_build)
    assert built and is_complete(entry)
    again, built_again = cached_build(tmp_path, {"k": 1}, _slow_build)
    assert again == entry and not built_again
    other, _ = cached_build(tmp_path, {"k": 2}, _slow_build)
    assert other != entry and cache_key({"k": 1}) != cache_key({"k": 2})


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
    entry, built = cached_build(tmp_path, {"k": 1}, _slow_build)
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
    entry, _ = cached_build(tmp_path, {"k": 4}, _slow_build)
    (entry / "part2").write_text("")  # truncated after the build, e.g. by a full disk
    assert not is_complete(entry)
    again, built = cached_build(tmp_path, {"k": 4}, _slow_build)
    assert again == entry and built and (entry / "part2").read_text() == "b"
    (entry / "part1").unlink()  # a file missing
    assert cached_build(tmp_path, {"k": 4}, _slow_build)[1]
    (entry / "COMPLETE.json").write_text("{not json")  # a damaged marker
    assert cached_build(tmp_path, {"k": 4}, _slow_build)[1]
