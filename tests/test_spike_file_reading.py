"""A SpikeDataset reads only the file it opened, from one descriptor: a file changed,
truncated or replaced under it, crafted headers, huge declared sizes, FIFOs and devices all
end in a SpikeFileError (or the original data), never a signal, a hang or a wrong tensor."""

from __future__ import annotations

import builtins
import json
import multiprocessing as mp
import os
import pickle
import shutil
import tracemalloc

import numpy as np
import pytest
import torch

from spike_encode import LatencyEncode
from spike_encode.data import SpikeDataset, SpikeFileError
from spike_encode.spec import spec_digest

from .loader_helpers import assert_same_sparse
from .spike_file_helpers import container, encoded, forged, images, sealed

ENC = LatencyEncode(backend="torch")
OTHER = LatencyEncode(backend="torch", input_scale=70.0)


@pytest.fixture
def files(tmp_path):
    """Two different files: 8 small images (64 neurons), and 30 larger ones (784 neurons, other params)."""
    small = encoded(tmp_path / "small.spikes", images(8, (1, 8, 8), seed=1))
    large = encoded(tmp_path / "large.spikes", images(30, (1, 28, 28), seed=2), OTHER)
    return small, large


def _everything(ds: SpikeDataset) -> tuple[torch.Tensor, torch.Tensor]:
    return ds.get_batch(range(len(ds)))


def _assert_same(got: tuple, expected: tuple) -> None:
    assert_same_sparse(got[0], expected[0])
    assert torch.equal(got[1], expected[1])


def _truncate_and_read(path: str, mmap: bool) -> None:
    ds = SpikeDataset(path, mmap=mmap)
    os.truncate(path, 0)
    try:
        ds[0]
        ds.get_batch(range(len(ds)))
    except SpikeFileError as err:
        os._exit(0 if "changed since it was opened" in str(err) or mmap is False else 3)
    os._exit(0 if mmap is False else 4)  # read into memory on open: still whole


@pytest.mark.slow  # forks
@pytest.mark.parametrize("mmap", [True, False])
def test_a_file_truncated_under_an_open_dataset_raises_instead_of_killing_the_process(files, mmap):
    child = mp.get_context("fork").Process(target=_truncate_and_read, args=(str(files[1]), mmap))
    child.start()
    child.join(60)
    assert child.exitcode == 0  # not -7: SIGBUS


def test_a_file_rewritten_in_place_under_an_open_dataset_raises(files):
    small, large = files
    ds = SpikeDataset(small)
    shutil.copyfile(large, small)  # as `cp large.spikes small.spikes`: same file, new contents
    with pytest.raises(SpikeFileError, match="small.spikes changed since it was opened"):
        ds[0]
    with pytest.raises(SpikeFileError, match="changed since it was opened"):
        ds.get_batch([1, 2])


def test_spikes_changed_in_place_with_the_times_restored_are_caught_by_the_item_checks(files):
    small = files[0]
    ds = SpikeDataset(small)
    before = os.stat(small)
    data = small.read_bytes()
    table, _ = container(data)
    with open(small, "r+b") as f:  # every neuron id 255 of 64, same size
        f.seek(8 + int.from_bytes(data[:8], "little") + table["neuron"]["data_offsets"][0])
        f.write(b"\xff" * table["neuron"]["shape"][0])
    os.utime(small, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(SpikeFileError, match="damaged or changed since it was opened: a spike of neuron 255 of 64"):
        ds.get_batch(range(8))


def test_reading_into_memory_is_immune_to_later_changes(files):
    small, large = files
    ds = SpikeDataset(small, mmap=False)
    expected = _everything(SpikeDataset(small))
    shutil.copyfile(large, small)
    _assert_same(_everything(ds), expected)


def test_a_file_replaced_right_after_it_is_opened_is_read_whole(files, tmp_path, monkeypatch):
    small, large = files
    path = tmp_path / "p.spikes"
    shutil.copyfile(small, path)
    expected = _everything(SpikeDataset(small))

    def replace_after_first(fn):
        def opener(name, *args, **kwargs):
            out = fn(name, *args, **kwargs)
            if not done and os.fspath(name) == str(path):
                done.append(name)
                shutil.copyfile(large, tmp_path / "new")
                os.replace(tmp_path / "new", path)  # what an atomic publisher does
            return out
        return opener

    done: list = []
    monkeypatch.setattr(os, "open", replace_after_first(os.open))
    monkeypatch.setattr(builtins, "open", replace_after_first(builtins.open))
    ds = SpikeDataset(path, verify=False)
    monkeypatch.undo()
    assert done and ds.params == ENC.params and len(ds) == 8
    _assert_same(_everything(ds), expected)  # the file it opened, whole, though the path now names another
    assert len(SpikeDataset(path)) == 30


def test_a_pickled_dataset_refuses_a_file_replaced_since(files, tmp_path):
    small, large = files
    path = tmp_path / "p.spikes"
    shutil.copyfile(small, path)
    ds = SpikeDataset(path)
    same = pickle.loads(pickle.dumps(ds))
    _assert_same(_everything(same), _everything(ds))
    state = pickle.dumps(ds)
    shutil.copyfile(large, tmp_path / "new")
    os.replace(tmp_path / "new", path)
    again = pickle.loads(state)
    with pytest.raises(SpikeFileError, match="p.spikes is no longer the file this dataset was opened with"):
        again[0]
    _assert_same(_everything(ds), _everything(same))  # the open one still reads its own file


@pytest.mark.slow  # spawns a worker
def test_a_spawned_worker_refuses_a_file_replaced_since_the_dataset_opened_it(files, tmp_path):
    small, large = files
    path = tmp_path / "p.spikes"
    shutil.copyfile(small, path)
    ds = SpikeDataset(path)
    expected = _everything(ds)
    shutil.copyfile(large, tmp_path / "new")
    os.replace(tmp_path / "new", path)
    with pytest.raises(SpikeFileError, match="no longer the file this dataset was opened with"):
        list(ds.loader(batch_size=4, num_workers=1, multiprocessing_context="spawn"))
    forked = list(ds.loader(batch_size=8, num_workers=1, multiprocessing_context="fork"))
    _assert_same(forked[0], expected)  # forked workers share the open descriptor
    fresh = SpikeDataset(path)
    (spawned,) = list(fresh.loader(batch_size=30, num_workers=1, multiprocessing_context="spawn"))
    _assert_same(spawned, _everything(fresh))


@pytest.mark.parametrize("where", ["container", "header"])
def test_deeply_nested_json_is_a_spike_file_error(files, tmp_path, where):
    data = files[0].read_bytes()
    nested = "[" * 100_000 + "]" * 100_000
    if where == "container":
        crafted = len(nested).to_bytes(8, "little") + nested.encode()
    else:
        table, rest = container(data)
        table["__metadata__"]["header"] = nested
        crafted = sealed(table, rest)
    path = tmp_path / "deep.spikes"
    path.write_bytes(crafted)
    with pytest.raises(SpikeFileError, match="deep.spikes is not a valid spike file: its .* is not valid JSON"):
        SpikeDataset(path)


@pytest.mark.parametrize("edit, match", [
    ({"num_neurons": 2**62, "image_shape": None}, "num_neurons is 4611686018427387904"),
    ({"num_steps": 2**40}, "num_steps is 1099511627776"),
    ({"num_samples": True}, "num_samples is True"),
    ({"engine": ["x"]}, "engine is"),
])
def test_forged_headers_with_impossible_sizes_are_refused_on_open(files, tmp_path, edit, match):
    path = tmp_path / "forged.spikes"
    path.write_bytes(forged(files[0].read_bytes(), lambda header: header.update(edit)))
    with pytest.raises(SpikeFileError, match=f"forged.spikes has a damaged header .*{match}"):
        SpikeDataset(path)


@pytest.mark.parametrize("verify", [False, True])
def test_validating_a_file_declaring_many_spikes_needs_little_memory(files, tmp_path, verify):
    spikes = 20_000_000  # 60 MB of step (uint8) and neuron (uint16) ids: all zero, a sparse file
    table, _ = container(files[1].read_bytes())
    header = json.loads(table["__metadata__"]["header"])
    header.update(num_samples=1, image_shape=None)
    table["__metadata__"]["header"] = json.dumps(header, sort_keys=True)
    table["offsets"] = {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}
    table["targets"] = {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}
    table["step"] = {"dtype": "U8", "shape": [spikes], "data_offsets": [24, 24 + spikes]}
    table["neuron"] = {"dtype": "U16", "shape": [spikes], "data_offsets": [24 + spikes, 24 + 3 * spikes]}
    head = sealed(table, np.array([0, spikes, 3], np.int64).tobytes())  # header checksum right, the rest not
    path = tmp_path / "huge.spikes"
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + 3 * spikes - 8)
    tracemalloc.start()
    try:
        with pytest.raises(SpikeFileError, match="huge.spikes is damaged"):
            SpikeDataset(path, verify=verify)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"validating took {peak / 2**20:.0f} MiB"


def _open_fifo(path: str) -> None:
    try:
        SpikeDataset(path)
    except SpikeFileError as err:
        os._exit(0 if "pipe.spikes is a FIFO, not a spike file" in str(err) else 3)
    os._exit(4)


@pytest.mark.slow  # forks
def test_a_fifo_is_refused_at_once_instead_of_waited_on(tmp_path):
    fifo = tmp_path / "pipe.spikes"
    os.mkfifo(fifo)
    child = mp.get_context("fork").Process(target=_open_fifo, args=(str(fifo),))
    child.start()
    child.join(20)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("SpikeDataset waited on a FIFO")
    assert child.exitcode == 0


def test_devices_and_folders_are_not_spike_files(tmp_path):
    with pytest.raises(SpikeFileError, match="/dev/zero is a character device, not a spike file"):
        SpikeDataset("/dev/zero")
    with pytest.raises(IsADirectoryError, match="is a folder, not a spike file"):
        SpikeDataset(tmp_path)


def test_bool_and_float_indices_are_refused_and_numpy_integers_work(files):
    ds = SpikeDataset(files[0])
    for bad in (True, np.bool_(False), torch.tensor(True), 1.0, torch.tensor(1.0), torch.tensor([1, 2])):
        with pytest.raises(TypeError, match="indices are integers"):
            ds[bad]
    for good in (np.int64(1), np.uint8(1), torch.tensor(1), -7):
        assert_same_sparse(ds[good][0], ds[1][0])
    with pytest.raises(TypeError, match="indices must be integers"):
        ds.get_batch([True, False])


def _drop(key):
    return lambda spec: spec.pop(key)


def _neuron(value):
    return lambda spec: spec.update(neuron=value)


@pytest.mark.parametrize("edit, match", [
    (_drop("channels"), "an encoding spec has the entries"),
    (lambda spec: spec.update(extra=1), "an encoding spec has the entries"),
    (lambda spec: spec.update(input_rule="bogus"), "input_rule='bogus' is not one of"),
    (lambda spec: spec.update(channels=["all"]), "channels=\\['all'\\] is not one of"),
    (lambda spec: spec.update(precision="half"), "precision='half' is not one of"),
    (lambda spec: spec.update(version=7), "encoding spec version 7 is not 1"),
    (_neuron("LIF"), "neuron is LIF, not a model's description"),
    (_neuron({"model": {"builtin": "LIF"}, "params": {"C": "x"}, "vars": {}}), "neuron is"),
    (_neuron({"model": {}, "params": {}, "vars": {}}), "neuron is"),
], ids=["no channels", "an extra entry", "input_rule", "channels a list", "precision", "version", "neuron a string",
        "neuron parameter a string", "neuron model empty"])
def test_a_recorded_spec_that_is_not_an_encoding_spec_is_refused_on_open(files, tmp_path, edit, match):
    def forge(header):
        edit(header["spec"])
        header["digest"] = spec_digest(header["spec"])  # consistent: only the spec's contents are wrong

    path = tmp_path / "forged.spikes"
    path.write_bytes(forged(files[0].read_bytes(), forge))
    with pytest.raises(SpikeFileError, match=f"forged.spikes has a damaged header .*{match}"):
        SpikeDataset(path)


def test_a_recorded_custom_neuron_model_still_opens(files, tmp_path):
    custom = {"model": {"type": "NeuronModel", "get_sim_code": "'V += Isyn;'"}, "params": {"C": 0.2},
              "vars": {"V": -60.0}}

    def forge(header):
        header["spec"]["neuron"] = custom
        header["digest"] = spec_digest(header["spec"])

    path = tmp_path / "custom.spikes"
    path.write_bytes(forged(files[0].read_bytes(), forge))
    assert SpikeDataset(path).spec_dict["neuron"] == custom
