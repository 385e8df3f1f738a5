"""What training code takes: shape-kept spikes for convolutional SNNs, Tonic events, and the
encoder as an nn.Module / torchvision v2 transform."""

from __future__ import annotations

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
    enc = LatencyEncode(backend="torch")
    assert enc.to("cpu") is enc and enc.device == torch.device("cpu")
    nn.Sequential(enc).to(torch.float64)  # a dtype move leaves the encoder alone
    assert enc.device == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            enc.to("cuda")
        assert enc.device == torch.device("cpu")


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


def test_module_pickles_with_its_options(colour):
    enc = LatencyEncode(backend="torch", output="dense", dtype=torch.bool, flatten=False,
                        channels="gray", input_scale=200.0)
    clone = pickle.loads(pickle.dumps(enc))
    assert repr(clone) == repr(enc)
    assert torch.equal(clone(colour), enc(colour))
