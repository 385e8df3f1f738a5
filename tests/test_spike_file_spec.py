"""A spike file records the encoder's whole EncodingSpec and refuses another; its checksums
cover every byte, header included; old format versions get a one-line message."""

from __future__ import annotations

import json

import pytest
import torch

from spike_encode import LatencyEncode
from spike_encode.spec import EncodingSpec, spec_digest
from spike_encode.data import SpikeDataset, SpikeFileError
from spike_encode.errors import SpecMismatchError

from .loader_helpers import assert_same_sparse
from .spike_file_helpers import container, edit_header, encoded, forged, images, rebuilt

GRAY = LatencyEncode(backend="torch", channels="gray")
ALL = LatencyEncode(backend="torch")


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    items = images(6, (3, 10, 10), seed=1)
    return encoded(tmp_path_factory.mktemp("rgb") / "gray.spikes", items, GRAY), items


def test_a_gray_file_refuses_an_all_channels_encoder(rgb):
    path, items = rgb
    spikes, _ = SpikeDataset(path, GRAY)[2]
    assert spikes.shape == (200, 100) == GRAY(items[2][0]).shape
    assert_same_sparse(spikes, GRAY(items[2][0]))
    assert ALL(items[2][0]).shape == (200, 300)
    with pytest.raises(SpecMismatchError, match="gray.spikes was encoded with channels='gray', but the encoder "
                                                "has channels='all'"):
        SpikeDataset(path, ALL)
    with pytest.raises(SpecMismatchError, match="channels='gray', but spec= has channels='all'"):
        SpikeDataset(path, spec=ALL.spec.as_dict())
    with pytest.raises(SpecMismatchError):
        SpikeDataset(path, spec=ALL.spec)
    assert len(SpikeDataset(path, spec=GRAY.spec)) == len(SpikeDataset(path, spec=GRAY.spec.as_dict())) == 6
    assert len(SpikeDataset(path, params=ALL.params)) == 6  # 0.2's argument compares the parameters only


def test_the_first_differing_field_and_both_values_are_named(rgb):
    other = LatencyEncode(backend="torch", channels="gray", input_scale=70.0, lif_params={"TauM": 10.0})
    with pytest.raises(SpecMismatchError) as err:
        SpikeDataset(rgb[0], other)
    message = str(err.value)
    assert "params.TauM=20.0, but the encoder has params.TauM=10.0" in message
    assert "also different: params.input_scale" in message and "\n" not in message
    with pytest.raises(SpecMismatchError, match="params.input_scale=80.0, but params= has params.input_scale=70.0"):
        SpikeDataset(rgb[0], params=LatencyEncode(input_scale=70.0).params.as_dict())
    with pytest.raises(ValueError, match="not several"):
        SpikeDataset(rgb[0], GRAY, spec=GRAY.spec)


def test_the_whole_spec_its_digest_and_the_neurons_shape_are_recorded(rgb):
    ds = SpikeDataset(rgb[0])
    assert ds.spec_dict == GRAY.spec.as_dict() and ds.spec_dict["channels"] == "gray"
    assert ds.digest == GRAY.spec.digest() != ALL.spec.digest()
    assert EncodingSpec.from_dict(ds.spec_dict) == GRAY.spec
    assert ds.header["image_shape"] == [1, 10, 10] and ds.params == GRAY.params
    assert f"digest={ds.digest[:12]}" in repr(ds)


def _shape(header: dict) -> None:
    assert header["image_shape"] == [1, 28, 28]
    header["image_shape"] = [4, 14, 14]


def _neurons(header: dict) -> None:
    header["num_neurons"], header["image_shape"] = 1000, None  # more neurons: every spike still in range


def _params(header: dict) -> None:
    header["spec"]["params"]["input_scale"] = 70.0
    header["digest"] = EncodingSpec.from_dict(header["spec"]).digest()  # consistent, as a forger would make it


@pytest.mark.parametrize("edit", [_shape, _neurons, _params])
@pytest.mark.parametrize("verify", [True, False])
def test_an_edited_header_is_refused_with_or_without_verify(tmp_path, edit, verify):
    path = encoded(tmp_path / "a.spikes", images(3, (1, 28, 28)))
    edited = tmp_path / "edited.spikes"
    edited.write_bytes(edit_header(path.read_bytes(), edit))
    with pytest.raises(SpikeFileError, match="edited.spikes is damaged: its header does not match its checksum"):
        SpikeDataset(edited, verify=verify)


def test_the_file_is_still_a_safetensors_container(tmp_path):
    from safetensors import safe_open

    path = encoded(tmp_path / "a.spikes", images(3))
    with safe_open(str(path), framework="np") as f:
        assert sorted(f.keys()) == ["neuron", "offsets", "step", "targets"]
        assert f.metadata()["version"] == "3" and json.loads(f.metadata()["header"])["spec"] == ALL.spec.as_dict()
        assert torch.equal(torch.from_numpy(f.get_tensor("targets")), SpikeDataset(path).targets)


@pytest.mark.parametrize("version", ["1", "2"])
def test_an_older_version_gets_a_one_line_message(tmp_path, version):
    table, rest = container(encoded(tmp_path / "a.spikes", images(3)).read_bytes())
    table["__metadata__"]["version"] = version
    table["__metadata__"].pop("header_checksum", None)  # 0.2 wrote none
    old = tmp_path / "old.spikes"
    old.write_bytes(rebuilt(table, rest))
    with pytest.raises(SpikeFileError) as err:
        SpikeDataset(old)
    assert str(err.value) == (f"{old} is a version-{version} spike file, which this spike_encode no longer reads; "
                              "encode the dataset again with encode_dataset")


def test_options_that_do_not_apply_to_the_items_format_are_refused(rgb):
    path, _ = rgb
    with pytest.raises(ValueError, match="output='events' does not take flatten=False"):
        SpikeDataset(path, output="events", flatten=False)
    with pytest.raises(ValueError, match="output='sparse' does not take time_first=True"):
        SpikeDataset(path, time_first=True)


def test_an_output_format_that_cannot_represent_the_files_encoding_is_refused_on_open(rgb, tmp_path):
    def huge_steps(header):  # the same 200 steps, each 1e14 ms: times beyond Tonic's int64 µs
        header["spec"]["params"].update(dt=1e14, present_time_ms=2e16)
        header["digest"] = spec_digest(header["spec"])

    path = tmp_path / "huge-dt.spikes"
    path.write_bytes(forged(rgb[0].read_bytes(), huge_steps))
    assert len(SpikeDataset(path)) == 6  # sparse items are fine
    with pytest.raises(ValueError, match="output='tonic' needs times that fit int64"):
        SpikeDataset(path, output="tonic")  # its timestamps would wrap negative
    assert SpikeDataset(rgb[0], output="tonic")[0][0].dtype.names == ("x", "y", "t", "p")
