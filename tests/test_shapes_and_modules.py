"""What training code takes: shape-kept spikes for convolutional SNNs, Tonic events, and the
encoder as an nn.Module / torchvision v2 transform."""

from __future__ import annotations

import collections
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2

import spike_encode as se
from spike_encode import LatencyEncode


@pytest.fixture(scope="module")
def colour():
    """Four (3, 12, 10) float images with a few bright pixels per channel (they fire)."""
    gen = torch.Generator().manual_seed(1)
    return (torch.rand((4, 3, 12, 10), generator=gen) ** 8).mul_(255).round_().to(torch.uint8)


def test_flatten_false_keeps_the_image_shape_dense_sparse_and_times(colour):
    flat = LatencyEncode(backend="torch", output="dense", input_scale=200.0)(colour)
    assert flat.shape == (4, 200, 360) and flat.sum() > 20
    shaped = LatencyEncode(backend="torch", output="dense", input_scale=200.0, flatten=False)(colour)
    assert shaped.shape == (4, 200, 3, 12, 10)
    assert torch.equal(shaped.reshape(4, 200, -1), flat)
    # neuron n is pixel (c, h, w) of the image: the brightest pixel of each image fires first
    times = LatencyEncode(backend="torch", output="times", input_scale=200.0, flatten=False)(colour)
    assert times.shape == (4, 3, 12, 10)
    fired = times >= 0
    for b in range(4):
        bright = colour[b] == colour[b].max()
        earliest = times[b][fired[b]].min()
        assert torch.all(times[b][bright] == earliest)
    tf = LatencyEncode(backend="torch", output="dense", input_scale=200.0, flatten=False, time_first=True)(colour)
    assert tf.shape == (200, 4, 3, 12, 10) and torch.equal(tf, shaped.transpose(0, 1))
    sparse = LatencyEncode(backend="torch", input_scale=200.0, flatten=False)(colour)
    assert sparse.shape == (4, 200, 3, 12, 10) and sparse.is_coalesced()
    assert torch.equal(sparse.to_dense(), shaped)
    one = LatencyEncode(backend="torch", input_scale=200.0, flatten=False)(colour[2])
    assert one.shape == (200, 3, 12, 10) and torch.equal(one.to_dense(), shaped[2])


def test_shape_kept_spikes_feed_a_conv_layer_without_reshape(colour):
    spikes = LatencyEncode(backend="torch", output="dense", time_first=True, flatten=False)(colour)
    conv = nn.Conv2d(3, 4, 3)
    assert conv(spikes[0]).shape == (4, 4, 10, 8)


def test_dtype_and_layout_options_are_checked():
    with pytest.raises(ValueError, match="dtype must be a real torch.dtype"):
        LatencyEncode(output="dense", dtype="float32")
    with pytest.raises(ValueError, match="output='events' does not take flatten=False"):
        LatencyEncode(output="events", flatten=False)
    with pytest.raises(ValueError, match="whole µs"):
        LatencyEncode(output="tonic", dt=0.0125)


def test_tonic_events_have_tonics_dtype_and_sensor_size(colour):
    enc = LatencyEncode(backend="torch", output="tonic", input_scale=200.0)
    events = enc(colour)
    assert len(events) == 4 and all(e.dtype == se.TONIC_DTYPE for e in events)
    dense = LatencyEncode(backend="torch", output="dense", flatten=False, input_scale=200.0)(colour)
    for b, ev in enumerate(events):
        assert len(ev) == int(dense[b].sum()) and np.all(np.diff(ev["t"]) >= 0)
        step = ev["t"] // 100  # dt = 0.1 ms = 100 µs
        assert torch.all(dense[b][step, ev["p"], ev["y"], ev["x"]] == 1)
    assert enc.sensor_size(colour.shape[1:]) == (10, 12, 3)
    assert enc(colour[0]).dtype == se.TONIC_DTYPE


def test_tonic_to_frame_reproduces_the_dense_raster(colour):
    tonic = pytest.importorskip("tonic")
    assert se.TONIC_DTYPE == tonic.datasets.NMNIST.dtype
    enc = LatencyEncode(backend="torch", output="tonic", input_scale=200.0)
    dense = LatencyEncode(backend="torch", output="dense", flatten=False, input_scale=200.0)(colour)
    dt_us = 100
    to_frame = tonic.transforms.ToFrame(enc.sensor_size((3, 12, 10)), time_window=dt_us,
                                        start_time=0, end_time=enc.num_steps * dt_us)
    for b in range(4):
        frames = to_frame(enc(colour[b]))
        assert frames.shape == (200, 3, 12, 10)
        assert np.array_equal(frames, dense[b].numpy())


def test_latency_encode_is_an_nn_module_in_sequential(colour):
    enc = LatencyEncode(backend="torch", output="dense", input_scale=200.0)
    assert isinstance(enc, nn.Module) and isinstance(enc, v2.Transform)
    linear = nn.Linear(360, 5)
    model = nn.Sequential(enc, nn.Flatten(0, 1), linear)
    out = model(colour)
    assert out.shape == (4 * 200, 5)
    assert torch.allclose(out, linear(enc(colour).flatten(0, 1)))
    assert "LatencyEncode(dt=0.1" in repr(model) and "dtype=torch.float32" in repr(model)


def test_v2_compose_on_image_label_encodes_the_image_and_passes_the_label(colour):
    enc = LatencyEncode(backend="torch", input_scale=200.0)
    pil = Image.fromarray(colour[1].permute(1, 2, 0).numpy())
    pipeline = v2.Compose([v2.PILToTensor(), enc])
    spikes, label = pipeline((pil, 7))
    assert label == 7 and spikes.shape == (200, 360)
    assert torch.equal(spikes.to_dense(), enc(colour[1]).to_dense())
    spikes, label = pipeline(pil, torch.tensor(3))  # v2's two-argument form
    assert int(label) == 3 and torch.equal(spikes.to_dense(), enc(colour[1]).to_dense())
    spikes, label = nn.Sequential(enc)((colour[1], 2))
    assert label == 2 and torch.equal(spikes.to_dense(), enc(colour[1]).to_dense())
    with pytest.raises(TypeError, match="images must be"):
        enc((1, 2))


def test_to_device_moves_the_encoder_and_refuses_a_missing_gpu(colour):
    enc = LatencyEncode(backend="torch", output="dense")
    nn.Sequential(enc).double()  # dtype moves leave the device to the input's
    enc.share_memory()
    assert enc.device is None and enc.dtype == torch.float64
    assert enc.to("cpu") is enc and enc.device == torch.device("cpu")
    nn.Sequential(enc).to(torch.float16)
    assert enc.device == torch.device("cpu") and enc.dtype == torch.float16
    if not torch.cuda.is_available():
        for move in (enc.cuda, lambda: enc.to("cuda", torch.float64), nn.Sequential(enc).cuda):
            with pytest.raises(se.BackendUnavailableError, match="cannot move to the device asked for"):
                move()
            assert enc.device == torch.device("cpu") and enc.dtype == torch.float16


@pytest.mark.parametrize("move", [
    lambda enc: enc.to("cpu"), lambda enc: enc.to(device="cpu"), lambda enc: enc.to(torch.zeros(1)),
    lambda enc: enc.cpu(), lambda enc: nn.Sequential(enc).to("cpu"), lambda enc: nn.Sequential(enc).cpu(),
], ids=["to", "to-device", "to-tensor", "cpu", "container-to", "container-cpu"])
def test_every_cpu_move_sets_the_device(move):
    enc = LatencyEncode(backend="torch", output="dense")
    move(enc)
    assert enc.device == torch.device("cpu")
    assert "device=cpu" in repr(enc)


@pytest.mark.filterwarnings("ignore:Complex modules")
def test_a_refused_move_changes_nothing():
    enc = LatencyEncode(backend="torch", output="dense")
    with pytest.raises(TypeError, match="dtype=torch.int32"):
        enc.to("cpu", torch.int32)
    with pytest.raises(ValueError, match="complex64"):
        enc.to("cpu", torch.complex64)
    with pytest.raises(se.BackendUnavailableError, match="device='meta'"):
        nn.Sequential(enc).to("meta", torch.float64)
    assert enc.device is None and enc.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")
def test_to_cuda_computes_on_the_gpu_with_the_same_spikes(colour):
    enc = LatencyEncode(backend="torch", input_scale=200.0)
    expected = enc(colour).to_dense()
    model = nn.Sequential(enc).cuda()
    spikes = model(colour)
    assert enc.device.type == "cuda" and spikes.device.type == "cuda"
    assert torch.equal(spikes.to_dense().cpu(), expected)
    model.cpu()
    assert enc.device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")
def test_model_cpu_encodes_cuda_images_on_the_cpu(colour):
    enc = LatencyEncode(backend="torch", output="dense", input_scale=200.0)
    model = nn.Sequential(enc, nn.Flatten(0, 1), nn.Linear(360, 5)).cpu()
    assert enc(colour.cuda()).device.type == "cpu"
    assert model(colour.cuda()).device.type == "cpu"


Point = collections.namedtuple("Point", ["image", "label"])


@pytest.mark.parametrize("make", [
    lambda image: {"image": image, "label": 3},
    lambda image: collections.OrderedDict([("label", 3), ("image", image)]),
    lambda image: collections.defaultdict(int, {"image": image, "label": 3}),
    lambda image: Point(image, 3),
], ids=["dict", "OrderedDict", "defaultdict", "namedtuple"])
def test_samples_keep_their_type_and_pass_the_rest_through(colour, make):
    enc = LatencyEncode(backend="torch", output="dense", input_scale=200.0)
    image = colour[1]
    sample = make(image)
    out = enc(sample)
    assert type(out) is type(sample)
    fields = out._asdict() if isinstance(out, tuple) else out
    before = sample._asdict() if isinstance(sample, tuple) else sample
    assert list(fields) == list(before)  # same keys, same order
    assert fields["label"] == 3 and torch.equal(fields["image"], enc(image))
    assert before["image"] is image  # the sample itself is left as it was
    if isinstance(out, collections.defaultdict):
        assert out.default_factory is int


def test_module_pickles_with_its_options(colour):
    enc = LatencyEncode(backend="torch", output="dense", dtype=torch.bool, flatten=False,
                        channels="gray", input_scale=200.0)
    clone = pickle.loads(pickle.dumps(enc))
    assert repr(clone) == repr(enc)
    assert torch.equal(clone(colour), enc(colour))
