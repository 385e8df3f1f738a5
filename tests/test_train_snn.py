"""examples/train_snn.py: the network's pieces, a few optimisation steps, the script end to end.

No full training run here: a few steps on 256 real MNIST images (for the plain-PyTorch,
snnTorch and Norse networks), a one-epoch run of the script on a small subset with each, and
exact checks of the hand-written forward/backward passes. The snnTorch and Norse tests skip
only where that library is not installed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_snn.py"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """As the script does by default: its per-step tensors are small, and extra intra-op
    threads on a busy machine make every operation many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def train_snn():
    spec = importlib.util.spec_from_file_location("train_snn", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_batches(train_snn, data_root):
    """256 training images through SpikeLoader, as two (sparse spikes, targets) batches."""
    from torch.utils.data import Subset

    from spike_encode.data import SpikeLoader
    from spike_encode.datasets import mnist_dataset

    subset = Subset(mnist_dataset(data_root, train=True), range(256))
    loader = SpikeLoader(subset, train_snn.build_encoder("torch"), batch_size=128, shuffle=False)
    return list(loader)


def _need(net: str) -> None:
    """Skip unless ``net``'s library is importable (plain PyTorch always is)."""
    if net != "torch":
        pytest.importorskip(net, reason=f"--net {net} needs the {net} package (pip install {net})")


@pytest.fixture(scope="module", params=["snntorch", "norse"])
def library_net(request) -> str:
    _need(request.param)
    return request.param


@pytest.fixture(scope="module")
def dense_batches(train_snn, data_root):
    """The same 256 images as ``small_batches``, through the library variants' encoder:
    dense time-first ``(200, 128, 784)`` batches."""
    from torch.utils.data import Subset

    from spike_encode.data import SpikeLoader
    from spike_encode.datasets import mnist_dataset

    subset = Subset(mnist_dataset(data_root, train=True), range(256))
    encoder = train_snn.build_encoder("snntorch")
    assert encoder.output == "dense" and encoder.time_first
    return list(SpikeLoader(subset, encoder, batch_size=128, shuffle=False))


class _Spike(torch.autograd.Function):
    """Reference: Heaviside forward, fast-sigmoid surrogate backward, through plain autograd."""

    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (1 + ctx.slope * x.abs()) ** 2, None


def _reference_lif(current, beta, thr, slope):
    v = torch.zeros_like(current[0])
    out = []
    for t in range(current.shape[0]):
        u = beta * v + current[t]
        s = _Spike.apply(u - thr, slope)
        v = u - thr * s.detach()
        out.append(s)
    return torch.stack(out)


def _reference_layer(spikes, weight, beta, thr, slope):
    """Dense input currents and the LIF loop in plain autograd."""
    current = torch.einsum("btn,nh->tbh", spikes.to_dense().to(weight.dtype), weight)
    return _reference_lif(current, beta, thr, slope)


def _check_against_reference(train_snn, spikes, weight, beta=0.99, thr=1.0, slope=10.0):
    ours = train_snn.sparse_lif(spikes, weight, beta, thr, slope)
    ref = _reference_layer(spikes, weight, beta, thr, slope)
    assert torch.equal(ours.detach(), ref.detach())
    upstream = torch.randn(ref.shape, dtype=weight.dtype, generator=torch.Generator().manual_seed(1))
    g_ours, = torch.autograd.grad((ours * upstream).sum(), weight)
    g_ref, = torch.autograd.grad((ref * upstream).sum(), weight)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-12)
    return ours


def test_sparse_lif_matches_dense_autograd_reference(train_snn):
    """Random input (at most one spike per input neuron, as the encoder gives), float64."""
    gen = torch.Generator().manual_seed(0)
    batch, steps, inputs, hidden = 5, 60, 40, 7
    first = torch.randint(-steps, steps, (batch, inputs), generator=gen)  # < 0: silent
    sample, neuron = (first >= 0).nonzero(as_tuple=True)
    indices = torch.stack([sample, first[sample, neuron], neuron])
    spikes = torch.sparse_coo_tensor(indices, torch.ones(indices.shape[1]), (batch, steps, inputs),
                                     check_invariants=True).coalesce()
    weight = (torch.randn(inputs, hidden, dtype=torch.float64, generator=gen) * 0.6 + 0.1)
    out = _check_against_reference(train_snn, spikes, weight.requires_grad_(), beta=0.95)
    assert 0.01 < float(out.detach().mean()) < 0.5  # spikes and resets are exercised


def test_sparse_lif_on_mnist_batch(train_snn, small_batches):
    spikes, _ = small_batches[0]
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(784, 32, dtype=torch.float64, generator=gen) * 0.2
    out = _check_against_reference(train_snn, spikes, weight.requires_grad_())
    assert float(out.detach().sum()) > 0


def test_leaky_integrate_gradcheck(train_snn):
    x = torch.randn(25, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: train_snn.leaky_integrate(x, 0.8), (x,))
    v = train_snn.leaky_integrate(x.detach(), 0.8)
    torch.testing.assert_close(v[1], 0.8 * x[0].detach() + x[1].detach())


def _mean_loss(model, batches) -> float:
    """Cross-entropy over all images of ``batches``, without gradients."""
    with torch.no_grad():
        total = sum(float(F.cross_entropy(model(s), y, reduction="sum")) for s, y in batches)
    return total / sum(len(y) for _, y in batches)


def _assert_reaches_only_fired_pixels(per_pixel: torch.Tensor, fired: torch.Tensor) -> None:
    """The input-weight gradient (summed per pixel) is zero for silent pixels and reaches
    almost every pixel that fired."""
    assert bool((per_pixel[~fired] == 0).all())
    assert float((per_pixel[fired] > 0).float().mean()) > 0.9


def _assert_eight_steps_lower_the_loss(train_snn, model, optimizer, batches, before: float) -> None:
    """Four passes over the two batches (8 Adam steps) cut the mean loss by over 30%."""
    stats = train_snn.train_epoch(model, batches * 4, optimizer)
    after = _mean_loss(model, batches)
    assert stats["images"] == 1024
    assert after < 0.7 * before, (before, after)
    for p in model.parameters():
        assert bool(torch.isfinite(p).all())


def test_few_steps_loss_falls_and_first_layer_gets_gradients(train_snn, small_batches):
    torch.manual_seed(0)
    model = train_snn.build_model("torch", hidden=128)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)

    before = _mean_loss(model, small_batches)
    # first step: gradients reach the input weights, only the rows of pixels that fired
    spikes, targets = small_batches[0]
    F.cross_entropy(model(spikes), targets).backward()
    grad = model.w1.grad
    assert grad is not None and bool(torch.isfinite(grad).all())
    fired = torch.zeros(784, dtype=torch.bool)
    fired[spikes.coalesce().indices()[2]] = True
    _assert_reaches_only_fired_pixels(grad.abs().sum(1), fired)
    optimizer.zero_grad()
    _assert_eight_steps_lower_the_loss(train_snn, model, optimizer, small_batches, before)


@pytest.mark.parametrize("net", ["torch", "snntorch", "norse"])
def test_script_end_to_end_on_a_subset(train_snn, data_root, tmp_path, net):
    _need(net)
    out = tmp_path / "result.json"
    result = train_snn.main(["--data-root", str(data_root), "--net", net, "--train-subset", "512",
                             "--test-subset", "256", "--epochs", "1", "--hidden", "64",
                             "--num-workers", "0", "--threads", "0", "--no-progress",
                             "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["test_accuracy"] == result["test_accuracy"]
    assert 0.0 <= saved["test_accuracy"] <= 1.0
    epoch = saved["epochs"][0]
    assert epoch["train"]["images"] == 512 and epoch["test"]["images"] == 256
    assert epoch["train"]["images_per_s"] > 0
    assert saved["settings"]["hidden"] == 64 and saved["settings"]["net"] == net
    assert "cpu" in saved["machine"]


def test_library_variant_few_steps_loss_falls(train_snn, dense_batches, library_net):
    """snnTorch / Norse: the encoder's dense time-first batches in, the loss over the 256
    images falls within 8 Adam steps, and the first step's input-weight gradient is finite
    and reaches (only) the pixels that fired."""
    torch.manual_seed(0)
    model = train_snn.build_model(library_net, hidden=128)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)

    before = _mean_loss(model, dense_batches)
    spikes, targets = dense_batches[0]
    assert spikes.shape == (200, 128, 784)
    logits = model(spikes)
    assert logits.shape == (128, 10)
    F.cross_entropy(logits, targets).backward()
    grad = model.fc1.weight.grad                        # (hidden, 784)
    assert grad is not None and bool(torch.isfinite(grad).all())
    fired = spikes.bool().any(0).any(0)                 # pixels that spiked in the batch
    _assert_reaches_only_fired_pixels(grad.abs().sum(0), fired)
    optimizer.zero_grad()
    _assert_eight_steps_lower_the_loss(train_snn, model, optimizer, dense_batches, before)
    assert model.hidden_spikes > 0


def test_library_variant_takes_bool_or_float_spikes(train_snn, dense_batches, library_net):
    """The encoder's dense output may be bool or float32: the logits are the same."""
    torch.manual_seed(0)
    model = train_snn.build_model(library_net, hidden=32)
    spikes = dense_batches[0][0][:, :16]
    with torch.no_grad():
        assert torch.equal(model(spikes.bool()), model(spikes.float()))


def test_the_progress_bar_leaves_the_batch_order_alone(train_snn, data_root):
    # tqdm.auto's bar starts one extra iteration of the loader, so with it on, the run saw
    # other shuffled batches than with --no-progress; the script's bar must not
    def first_targets(progress: bool) -> list[int]:
        enc = train_snn.build_encoder("torch")
        train, _ = train_snn.make_loaders(str(data_root), enc, batch_size=16, num_workers=0,
                                          train_subset=200, test_subset=16, seed=0)
        return next(iter(train_snn._bar(train, progress, disable=False)))[1].tolist()

    assert first_targets(True) == first_targets(False)
