#!/usr/bin/env python
"""Train a small spiking network on latency-coded MNIST, fed by ``SpikeLoader``.

The images are encoded on the fly by :class:`spike_encode.LatencyEncode` (GeNN LIF projection
neurons, 200 steps of 0.1 ms, at most one spike per pixel) and the network is plain PyTorch:

    784 input spikes --W1--> H LIF neurons (spiking) --W2--> 10 leaky integrators (no spikes)

trained with surrogate-gradient backpropagation through all 200 steps of the window. The
class is read from the **output membrane potential**: logits are each output neuron's
maximum potential over the window (``--readout max``, default) or its mean
(``--readout mean``), trained with cross-entropy.

Sparse input, used as such: the encoder's sparse ``(B, T, 784)`` batch holds ~125 spikes per
image (at most one per pixel), so at each step the hidden layer's input current is the sum
of the weight rows of the few pixels that fire then: an ``index_add`` of those rows inside
the LIF loop, never a dense matmul over 784 zeros, and no ``(T, B, H)`` current tensor.

The hidden layer is one custom autograd function (:func:`sparse_lif`): forward steps
through time without building a graph; backward is the linear reverse-time recurrence of
the surrogate gradient (the reset is detached, as in SpyTorch and snnTorch) and one sparse
product for the weight gradient, which only touches the rows of pixels that fired. A
200-step batch costs a few hundred small tensor operations either way.

With ``--net snntorch`` or ``--net norse`` (when installed) the same 784 -> H -> 10 network
is built from that library's neurons (``snntorch.Leaky`` with ``surrogate.fast_sigmoid``;
Norse's ``LIFBoxCell`` and ``LIBoxCell``) and fed the encoder's ``output="dense",
time_first=True`` batches, ``(200, B, 784)``, bool or float. ``W1`` is an ``nn.Linear``
applied to all 200 steps at once (one dense product over the mostly-zero raster); the
neurons then step through time with one library call per step, recorded by autograd. Same
initialisation, optimiser, learning-rate schedule and defaults as the plain network. How
each differs from it:

- snnTorch: a spike is ``u > threshold`` (not ``>=``), and the subtractive reset lands at
  the next step undecayed (it removes ``threshold``, not ``beta * threshold``). Same
  surrogate, same detached reset.
- Norse: forward-Euler leak, ``1 - dt/tau`` per step (0.99, against ``exp(-dt/tau)`` =
  0.99005), with the currents scaled by ``tau / dt`` so the weights mean the same; a spike
  is ``v > threshold``; the subtractive reset is not detached (gradients flow through it);
  the surrogate is ``1 / (1 + |v - threshold|)**2``, slope 1 whatever ``--slope`` says.

Run ``python examples/train_snn.py --help``; the README gives the command and timings.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO))

from spike_encode import BackendUnavailableError, LatencyEncode  # noqa: E402
from spike_encode.data.files import check_writable  # noqa: E402
from spike_encode.datasets import mnist_dataset  # noqa: E402

RESULTS = HERE / "results"
NETS = ("torch", "snntorch", "norse")
#: Errors that say what was asked cannot be done: one line on stderr, exit status 2.
USER_ERRORS = (ValueError, TypeError, OSError, BackendUnavailableError)


# --------------------------------------------------------------------------- the network

def leaky_integrate(x: torch.Tensor, beta: float) -> torch.Tensor:
    """``v[t] = beta * v[t-1] + x[t]`` over the first (time) axis, from ``v[-1] = 0``."""
    return _LeakyIntegrate.apply(x, beta)


class _LeakyIntegrate(torch.autograd.Function):
    """The linear leaky integrator; its adjoint is the same recurrence run backwards."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, beta: float) -> torch.Tensor:
        ctx.beta = beta
        v = x.clone()
        for t in range(1, v.shape[0]):
            v[t].add_(v[t - 1], alpha=beta)
        return v

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _reverse_integrate(grad.clone(), ctx.beta), None


def _reverse_integrate(g: torch.Tensor, beta: float) -> torch.Tensor:
    """In place: ``g[t] += beta * g[t+1]`` from the last step down."""
    for t in range(g.shape[0] - 2, -1, -1):
        g[t].add_(g[t + 1], alpha=beta)
    return g


def sparse_lif(spikes: torch.Tensor, weight: torch.Tensor, beta: float, threshold: float,
               slope: float) -> torch.Tensor:
    """Spikes ``(T, B, H)`` of ``H`` LIF neurons driven through ``weight`` ``(N, H)`` by a
    sparse ``(B, T, N)`` input spike batch; differentiable in ``weight``.

    Per step ``t``: ``u[t] = beta * v[t-1] + I[t]``, spike ``s[t] = u[t] >= threshold``,
    ``v[t] = u[t] - threshold * s[t]`` (subtractive reset), where the input current ``I[t]``
    of each sample is the sum of the weight rows of the pixels that fire at ``t``: an
    ``index_add`` of a few rows, never a dense ``(B, 784) @ (784, H)`` product of mostly zeros.

    Backward replaces ``ds/du`` by the fast-sigmoid surrogate
    ``1 / (1 + slope * |u - threshold|)**2`` and treats the reset as a constant (as SpyTorch
    and snnTorch do), so ``dL/du[t] = dL/ds[t] * surrogate(u[t]) + beta * dL/du[t+1]``, a
    linear recurrence run backwards in time; the weight gradient is then one sparse
    product, ``raster^T @ dL/du``, which touches only the rows of pixels that fired.
    """
    return _SparseLIF.apply(weight, spikes, beta, threshold, slope)


class _SparseLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: torch.Tensor, spikes: torch.Tensor, beta: float, threshold: float,
                slope: float) -> torch.Tensor:
        batch, steps, num_inputs = spikes.shape
        sample, step, neuron = spikes._indices()
        values = spikes._values().to(weight.dtype)
        row = step * batch + sample                       # row of the (T*B, N) raster
        order = torch.argsort(row)
        row, sample, neuron, values = row[order], sample[order], neuron[order], values[order]
        counts = torch.bincount(step, minlength=steps).tolist()
        unit = bool((values == 1).all())
        per_step = zip(sample.split(counts), neuron.split(counts), values.split(counts))

        u = weight.new_empty(steps, batch, weight.shape[1])  # potential before reset
        out = torch.empty_like(u)
        v = weight.new_zeros(batch, weight.shape[1])
        for t, (who, pixels, vals) in enumerate(per_step):
            ut = torch.mul(v, beta, out=u[t])
            if pixels.numel():
                rows = weight.index_select(0, pixels)
                ut.index_add_(0, who, rows if unit else rows * vals.unsqueeze(1))
            st = torch.ge(ut, threshold, out=out[t])  # float 0/1
            torch.sub(ut, st, alpha=threshold, out=v)
        ctx.save_for_backward(u, row, neuron, values)
        ctx.constants = (beta, threshold, slope, num_inputs)
        return out

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor):
        u, row, neuron, values = ctx.saved_tensors
        beta, threshold, slope, num_inputs = ctx.constants
        g = (u - threshold).abs_().mul_(slope).add_(1.0).pow_(-2).mul_(grad_spikes)
        g = _reverse_integrate(g, beta)                   # dL/du = dL/dI, (T, B, H)
        steps, batch, width = g.shape
        raster_t = torch.sparse_coo_tensor(torch.stack([neuron, row]), values,
                                           (num_inputs, steps * batch), check_invariants=False)
        return torch.sparse.mm(raster_t, g.view(steps * batch, width)), None, None, None, None


class SpikingMLP(nn.Module):
    """784 -> ``hidden`` LIF -> 10 leaky integrators, read out by membrane potential.

    Args:
        num_inputs, hidden, num_outputs: layer sizes.
        dt: the encoder's step (ms), to turn the time constants into per-step decays.
        tau_mem: hidden LIF membrane time constant (ms).
        tau_out: output integrator time constant (ms).
        threshold: hidden firing threshold (reset subtracts it).
        slope: steepness of the fast-sigmoid surrogate gradient.
        readout: ``"max"`` or ``"mean"`` of the output potential over time.
        weight_scale: scale of the input weights at initialisation (times 1/sqrt(fan-in)).
    """

    def __init__(self, num_inputs: int = 784, hidden: int = 256, num_outputs: int = 10, *,
                 dt: float = 0.1, tau_mem: float = 10.0, tau_out: float = 10.0,
                 threshold: float = 1.0, slope: float = 10.0, readout: str = "max",
                 weight_scale: float = 2.0) -> None:
        super().__init__()
        if readout not in ("max", "mean"):
            raise ValueError(f"readout must be 'max' or 'mean', got {readout!r}")
        scale1 = weight_scale / math.sqrt(num_inputs)
        self.w1 = nn.Parameter(torch.randn(num_inputs, hidden) * scale1)
        self.w2 = nn.Parameter(torch.randn(hidden, num_outputs) * (1.0 / math.sqrt(hidden)))
        self.beta = math.exp(-dt / tau_mem)
        self.beta_out = math.exp(-dt / tau_out)
        self.threshold, self.slope, self.readout = threshold, slope, readout
        self.hidden_spikes = float("nan")  # mean spikes per hidden neuron and image, last batch

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 10)`` from a sparse ``(B, T, N)`` spike batch."""
        hidden = sparse_lif(spikes, self.w1, self.beta, self.threshold, self.slope)  # (T, B, H)
        steps, batch, width = hidden.shape
        self.hidden_spikes = float(hidden.detach().mean()) * steps
        out_current = (hidden.view(steps * batch, width) @ self.w2).view(steps, batch, -1)
        potential = leaky_integrate(out_current, self.beta_out)        # (T, B, 10)
        return potential.amax(0) if self.readout == "max" else potential.mean(0)


# ----------------------------------------------------------------- library variants (dense)

def dense_layers(num_inputs: int, hidden: int, num_outputs: int,
                 weight_scale: float) -> tuple[nn.Linear, nn.Linear]:
    """The library variants' input and output layers, initialised like the sparse network's."""
    fc1 = nn.Linear(num_inputs, hidden, bias=False)
    fc2 = nn.Linear(hidden, num_outputs, bias=False)
    with torch.no_grad():
        fc1.weight.normal_(0.0, weight_scale / math.sqrt(num_inputs))
        fc2.weight.normal_(0.0, 1.0 / math.sqrt(hidden))
    return fc1, fc2


def _readout(potentials: list[torch.Tensor], readout: str) -> torch.Tensor:
    """Logits ``(B, 10)``: the max or mean over time of the per-step output potentials."""
    potential = torch.stack(potentials)
    return potential.amax(0) if readout == "max" else potential.mean(0)


class SnnTorchMLP(nn.Module):
    """The same network from ``snntorch.Leaky`` neurons, fed dense ``(T, B, N)`` spikes (bool
    or float).

    Differences from the plain-PyTorch network: a spike is ``u > threshold`` (not ``>=``),
    and the subtractive reset is applied at the next step without the decay, so it removes
    ``threshold`` rather than ``beta * threshold`` (``beta`` = 0.99 here). The surrogate
    (``surrogate.fast_sigmoid``) and the detached reset are the same.
    """

    def __init__(self, num_inputs: int = 784, hidden: int = 256, num_outputs: int = 10, *,
                 dt: float = 0.1, tau_mem: float = 10.0, tau_out: float = 10.0,
                 threshold: float = 1.0, slope: float = 10.0, readout: str = "max",
                 weight_scale: float = 2.0) -> None:
        super().__init__()
        import snntorch as snn
        from snntorch import surrogate

        self.fc1, self.fc2 = dense_layers(num_inputs, hidden, num_outputs, weight_scale)
        self.lif = snn.Leaky(beta=math.exp(-dt / tau_mem), threshold=threshold,
                             spike_grad=surrogate.fast_sigmoid(slope=slope),
                             reset_mechanism="subtract")
        self.out = snn.Leaky(beta=math.exp(-dt / tau_out), reset_mechanism="none")
        self.readout = readout
        self.hidden_spikes = float("nan")  # mean spikes per hidden neuron and image, last batch

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 10)`` from a dense time-first ``(T, B, N)`` spike batch."""
        current = self.fc1(spikes.to(self.fc1.weight.dtype))  # (T, B, H): one product
        mem1, mem2 = self.lif.init_leaky(), self.out.init_leaky()
        spikes_out = []
        for i in current:
            spk, mem1 = self.lif(i, mem1)
            spikes_out.append(spk)
        hidden = torch.stack(spikes_out)                       # (T, B, H)
        self.hidden_spikes = float(hidden.detach().sum(0).mean())
        out_current = self.fc2(hidden)
        potentials = []
        for i in out_current:
            _, mem2 = self.out(i, mem2)
            potentials.append(mem2)
        return _readout(potentials, self.readout)


class NorseMLP(nn.Module):
    """The same network from Norse's ``LIFBoxCell`` and ``LIBoxCell``, fed dense ``(T, B, N)``
    spikes (bool or float).

    Norse integrates ``v += dt / tau * (v_leak - v + i)`` (forward Euler: a decay of
    ``1 - dt/tau`` = 0.99 per step, against ``exp(-dt/tau)`` = 0.99005). With Norse's ``dt``
    set to the encoder's step the leak matches, and the layer outputs are multiplied by
    ``tau / dt`` so that one input spike moves the potential by its weight, as in the
    plain-PyTorch network, with weights (and Adam's steps) of the same size. The reset is
    Norse's ``reset_subtract`` (subtracts ``threshold``, as in the other two), but Norse does
    not detach it, so gradients also flow through the reset. Norse 1.1's ``"super"``
    surrogate is ``1 / (1 + |v - v_th|)**2`` whatever ``alpha`` says, so ``slope`` is fixed
    at 1 here (10 in the other two).
    """

    def __init__(self, num_inputs: int = 784, hidden: int = 256, num_outputs: int = 10, *,
                 dt: float = 0.1, tau_mem: float = 10.0, tau_out: float = 10.0,
                 threshold: float = 1.0, slope: float = 10.0, readout: str = "max",
                 weight_scale: float = 2.0) -> None:
        super().__init__()
        import norse.torch as norse
        from norse.torch.functional.reset import reset_subtract

        self.fc1, self.fc2 = dense_layers(num_inputs, hidden, num_outputs, weight_scale)
        self.gain1, self.gain2 = tau_mem / dt, tau_out / dt
        zero = torch.tensor(0.0)
        lif = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(1.0 / tau_mem), v_leak=zero,
                                     v_th=torch.tensor(threshold), v_reset=zero, method="super",
                                     reset_method=reset_subtract)
        li = norse.LIBoxParameters(tau_mem_inv=torch.tensor(1.0 / tau_out), v_leak=zero)
        self.lif = norse.LIFBoxCell(lif, dt=dt)
        self.out = norse.LIBoxCell(li, dt=dt)
        self.readout = readout
        self.hidden_spikes = float("nan")  # mean spikes per hidden neuron and image, last batch

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 10)`` from a dense time-first ``(T, B, N)`` spike batch."""
        current = self.fc1(spikes.to(self.fc1.weight.dtype)) * self.gain1  # (T, B, H)
        state = None
        spikes_out = []
        for i in current:
            z, state = self.lif(i, state)
            spikes_out.append(z)
        hidden = torch.stack(spikes_out)                                    # (T, B, H)
        self.hidden_spikes = float(hidden.detach().sum(0).mean())
        state, potentials = None, []
        for i in self.fc2(hidden) * self.gain2:
            v, state = self.out(i, state)
            potentials.append(v)
        return _readout(potentials, self.readout)


# ------------------------------------------------------------------------ training helpers

def build_encoder(net: str = "torch", device: str | None = None, backend: str = "torch") -> LatencyEncode:
    """The tutorial encoder, in the layout the network takes: sparse ``(B, T, N)`` for the
    plain-PyTorch network, dense ``(T, B, N)`` for snnTorch and Norse. The torch engine
    by default: the same spikes as GeNN, and far faster than GeNN's single-threaded CPU
    backend."""
    if net == "torch":
        return LatencyEncode(output="sparse", device=device, backend=backend)
    return LatencyEncode(output="dense", time_first=True, device=device, backend=backend)


def build_model(net: str = "torch", **kwargs: Any) -> nn.Module:
    """The 784 -> hidden LIF -> 10 network, from plain PyTorch or the named library."""
    if net not in NETS:
        raise ValueError(f"net must be one of {NETS}, got {net!r}")
    cls = {"torch": SpikingMLP, "snntorch": SnnTorchMLP, "norse": NorseMLP}[net]
    try:
        return cls(**kwargs)
    except ImportError as err:
        raise SystemExit(f"--net {net} needs the {net} package ({err}); pip install {net}") from err


def _bar(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    # tqdm.auto's bar calls iter() on the loader once more than it iterates, which starts a
    # shuffled epoch that is thrown away and changes the batch order; the plain bar does not
    from tqdm import tqdm

    return tqdm(iterable, leave=False, dynamic_ncols=True, **kwargs)


def train_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, *,
                scheduler: Any = None, progress: bool = False,
                desc: str = "train") -> dict[str, float]:
    """One pass over ``loader``'s ``(spikes, targets)``, one optimiser step per batch
    (and one ``scheduler`` step, if given); mean loss, accuracy and images/s."""
    model.train()
    total_loss, correct, seen, waiting = 0.0, 0, 0, 0.0
    start = time.perf_counter()
    bar = _bar(loader, progress, desc=desc)
    batches = iter(bar)
    while True:
        tick = time.perf_counter()
        try:
            spikes, targets = next(batches)  # SpikeLoader encodes here, in this process
        except StopIteration:
            break
        waiting += time.perf_counter() - tick
        logits = model(spikes)
        loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n = targets.shape[0]
        total_loss += float(loss.detach()) * n
        correct += int((logits.argmax(1) == targets).sum())
        seen += n
        if progress:
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}",
                            hidden_spikes=f"{model.hidden_spikes:.2f}")
    seconds = time.perf_counter() - start
    return {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1),
            "images": seen, "seconds": seconds, "images_per_s": seen / seconds,
            "loader_s": waiting}


@torch.no_grad()
def evaluate(model: nn.Module, loader, *, progress: bool = False,
             desc: str = "test") -> dict[str, float]:
    """Mean loss and accuracy over ``loader``, and images/s."""
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    for spikes, targets in _bar(loader, progress, desc=desc):
        logits = model(spikes)
        total_loss += float(F.cross_entropy(logits, targets, reduction="sum"))
        correct += int((logits.argmax(1) == targets).sum())
        seen += targets.shape[0]
    seconds = time.perf_counter() - start
    return {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1),
            "images": seen, "seconds": seconds, "images_per_s": seen / seconds}


def make_loaders(data_root: str | Path | None, encoder: LatencyEncode, *, batch_size: int = 128,
                 num_workers: int = 2, train_subset: int | None = None,
                 test_subset: int | None = None, seed: int = 0):
    """``SpikeLoader``s over MNIST train (shuffled) and test; subsets take the first images."""
    from torch.utils.data import Subset

    from spike_encode.data import SpikeLoader

    train_set = mnist_dataset(data_root, train=True)
    test_set = mnist_dataset(data_root, train=False)
    if train_subset:
        train_set = Subset(train_set, range(min(train_subset, len(train_set))))
    if test_subset:
        test_set = Subset(test_set, range(min(test_subset, len(test_set))))
    generator = torch.Generator().manual_seed(seed)
    common = dict(num_workers=num_workers, persistent_workers=num_workers > 0)
    train = SpikeLoader(train_set, encoder, batch_size=batch_size, shuffle=True,
                        generator=generator, **common)
    test = SpikeLoader(test_set, encoder, batch_size=batch_size, shuffle=False, **common)
    return train, test


def machine_info() -> dict[str, Any]:
    """CPU, thread count, versions and the load average (other work slows the run)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(),
            "load_average_1_5_15min": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def _git_state() -> dict[str, Any] | None:
    """The checkout's commit, and whether tracked files differ from it."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"),
                "modified": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except Exception:
        return None


# ------------------------------------------------------------------------------------- main

class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none or the help text says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _check_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse numbers the run cannot use, naming the option (argparse's one-line error)."""
    for name in ("epochs", "batch_size", "hidden", "train_subset", "test_subset", "lr", "tau_mem", "tau_out"):
        value = getattr(args, name)
        if value is not None and not 0 < value < math.inf:  # NaN fails too
            parser.error(f"--{name.replace('_', '-')} must be a positive number, got {value!r}")
    for name in ("num_workers", "threads"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")



def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = _Parser(description=__doc__.split("\n\n")[0], formatter_class=_HelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("SPIKE_ENCODE_DATA"),
                   help="folder holding MNIST/raw (default: $SPIKE_ENCODE_DATA or ./data)")
    p.add_argument("--net", choices=NETS, default="torch",
                   help="plain PyTorch on sparse input, or snnTorch / Norse on dense (T, B, N)")
    p.add_argument("--backend", choices=("torch", "genn", "auto"), default="torch",
                   help="spike_encode engine (all give GeNN's spikes)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--lr-decay", choices=("cosine", "none"), default="cosine",
                   help="cosine: anneal the learning rate to 0 over all steps of the run")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--tau-mem", type=float, default=10.0,
                   help="hidden LIF time constant (ms)")
    p.add_argument("--tau-out", type=float, default=10.0,
                   help="output integrator time constant (ms)")
    p.add_argument("--threshold", type=float, default=1.0)
    p.add_argument("--slope", type=float, default=10.0,
                   help="fast-sigmoid surrogate steepness (Norse 1.1's surrogate has slope 1)")
    p.add_argument("--weight-scale", type=float, default=2.0,
                   help="input weight init: standard deviation x sqrt(784)")
    p.add_argument("--readout", choices=("max", "mean"), default="max",
                   help="logits: max or mean of the output membrane potential over time")
    p.add_argument("--train-subset", type=int, default=None,
                   help="use only the first N training images")
    p.add_argument("--test-subset", type=int, default=None,
                   help="use only the first N test images")
    p.add_argument("--num-workers", type=int, default=2,
                   help="DataLoader workers (image loading)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads in the main process; 0: torch's default. The "
                        "per-step tensors are small, so more threads mostly add synchronisation "
                        "(and, on a busy machine, slow every operation down)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None,
                   help="results JSON (default: examples/results/train_snn_<net>.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    _check_numbers(p, args)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    began = time.perf_counter()
    machine_at_start = machine_info()
    git_at_start = _git_state()  # the code that runs, whatever is committed meanwhile
    args = parse_args(argv)
    out = check_writable(args.out or RESULTS / f"train_snn_{args.net}.json", "--out")  # before training
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    encoder = build_encoder(args.net, backend=args.backend)
    model = build_model(args.net, hidden=args.hidden, dt=encoder.params.dt, tau_mem=args.tau_mem,
                        tau_out=args.tau_out, threshold=args.threshold, slope=args.slope,
                        readout=args.readout, weight_scale=args.weight_scale)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    train_loader, test_loader = make_loaders(
        args.data_root, encoder, batch_size=args.batch_size, num_workers=args.num_workers,
        train_subset=args.train_subset, test_subset=args.test_subset, seed=args.seed)
    scheduler = None
    if args.lr_decay == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, args.epochs * len(train_loader)))
    print(f"encoder: {encoder}")
    print(f"network: {args.net}, 784 -> {args.hidden} LIF -> 10 LI, readout {args.readout} "
          f"membrane potential; {len(train_loader.dataset)} train / {len(test_loader.dataset)} "
          f"test images; torch threads {torch.get_num_threads()}")
    progress = not args.no_progress
    epochs = []
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        train = train_epoch(model, train_loader, optimizer, scheduler=scheduler,
                            progress=progress, desc=f"epoch {epoch}")
        test = evaluate(model, test_loader, progress=progress)
        epochs.append({"epoch": epoch, "train": train, "test": test,
                       "elapsed_s": time.perf_counter() - start})
        print(f"epoch {epoch}: loss {train['loss']:.4f} (test {test['loss']:.4f})  "
              f"train acc {100 * train['accuracy']:.2f}%  test acc {100 * test['accuracy']:.2f}%  "
              f"train {train['images_per_s']:.0f} img/s  test {test['images_per_s']:.0f} img/s  "
              f"({train['seconds']:.0f} + {test['seconds']:.0f} s)", flush=True)
    training = time.perf_counter() - start
    wall = time.perf_counter() - began
    script = sys.argv[0] if argv is None else "examples/train_snn.py"
    result = {
        "test_accuracy": epochs[-1]["test"]["accuracy"],
        "test_accuracy_per_epoch": [e["test"]["accuracy"] for e in epochs],
        "training_time_s": training,
        "wall_time_s": wall,
        "epochs": epochs,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "encoder": repr(encoder),
        "command": " ".join(["python", script, *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine_info(),
        "load_average_at_start": machine_at_start["load_average_1_5_15min"],
        "git": git_at_start,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"test accuracy {100 * result['test_accuracy']:.2f}% after {args.epochs} epochs; "
          f"{training:.0f} s training and testing, {wall:.0f} s in all; results in {out}")
    return result


if __name__ == "__main__":
    try:
        main()
    except USER_ERRORS as err:
        message = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"{Path(sys.argv[0]).name}: error: {message or type(err).__name__}", file=sys.stderr)
        sys.exit(2)
