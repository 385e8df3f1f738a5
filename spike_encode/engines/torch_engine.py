"""The exact PyTorch engine: GeNN's float32 LIF spikes without stepping every neuron.

With a constant input current a LIF neuron relaxes towards ``alpha`` along
``V_n = alpha - (alpha - Vreset) * ExpTC**n``, so the step where it first reaches threshold
has a closed form. GeNN computes the recurrence in float32, whose rounding can move that
step by one (about 1 spike in 80,000 on MNIST). This engine therefore bounds the float32
rounding error of the recurrence rigorously (each of its three operations is correctly
rounded, so after ``n`` steps the float32 ``V`` is within
``delta * (1 - ExpTC**n) / (1 - ExpTC)`` of the exact one), accepts the closed form only where
threshold lies outside that bound on both sides of the crossing, and replays the float32
recurrence step by step for the few neurons where it does not. The result is the float32
recurrence's answer, for any parameters.

After a spike a neuron is frozen for ``refractory_steps`` and restarts from ``Vreset``, the
same state it started from, so every later spike follows at a fixed period.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ..params import EncoderParams
from .events import SpikeEvents
from .lif import LIFConstants, lif_alpha, lif_step
from .stepper import simulate_steps

__all__ = ["simulate_exact", "first_crossings"]

_U = 2.0**-24  # unit roundoff of float32
# The bound below is first order: terms of relative size u and e_n/|V| (both < 1e-6 here)
# are neglected; this margin covers them, and float64's own rounding, many times over.
_SAFETY = 1.25


def _fast_path_applies(params: EncoderParams) -> bool:
    exp_tc = params.exp_tc
    return params.lif.Vreset < params.lif.Vthresh and 0.0 < exp_tc < 1.0


def _error_scale(a: torch.Tensor, v0: float, e: float) -> torch.Tensor:
    """``k`` (mV) such that ``|float32 V_n - exact V_n| <= k * (1 - e**n)`` for relaxation
    from ``v0`` towards ``a > v0``: each step's three correctly rounded operations add at most
    ``u*max(|a|,|v0|) + e*(a - v0)*2u``, and earlier errors shrink by ``e`` per step."""
    c1 = _SAFETY * _U * (1 + 2 * _U) / (1 - e)
    c2 = _SAFETY * e * (2 * _U + _U * _U) / (1 - e)
    return c1 * a.abs().clamp(min=abs(v0)) + c2 * (a - v0) + 1e-30


def _replay(alpha: torch.Tensor, c: LIFConstants, num_steps: int) -> torch.Tensor:
    """First step (1-based) at which the float32 recurrence from ``Vreset`` reaches threshold,
    ``num_steps + 1`` where it does not within the window.

    On CPU the steps run on NumPy float32 arrays (the same IEEE operations with a fraction
    of torch's per-call overhead on these small arrays).
    """
    if alpha.numel() == 0:
        return torch.full(alpha.shape, num_steps + 1, dtype=torch.int64, device=alpha.device)
    on_cpu = alpha.device.type == "cpu"
    a, consts = (alpha.numpy(), c.numpy()) if on_cpu else (alpha, c)
    v = a.copy() if on_cpu else a.clone()
    v[:] = consts.v_reset
    hits = [None] * num_steps
    for n in range(num_steps):
        v = lif_step(v, a, consts)
        hits[n] = v >= consts.v_thresh
    hit = torch.from_numpy(np.stack(hits)) if on_cpu else torch.stack(hits)
    crossed = hit.any(dim=0)
    first = hit.to(torch.uint8).argmax(dim=0) + 1
    return torch.where(crossed, first, num_steps + 1).to(alpha.device)


def first_crossings(alpha: torch.Tensor, params: EncoderParams, c: LIFConstants) -> tuple[torch.Tensor, torch.Tensor]:
    """Neurons that reach threshold within the window, and after how many integration steps.

    Args:
        alpha: ``(M,)`` float32 relaxation potentials (mV) from :func:`lif_alpha`.

    Returns:
        ``(index, steps)``: int64 positions in ``alpha`` and the number of float32 steps
        (``1..num_steps``) from ``Vreset`` until ``V >= Vthresh``, exactly as GeNN computes.
    """
    T = params.num_steps
    v0, vt, e = float(c.v_reset), float(c.v_thresh), float(c.exp_tc)
    ln_e, e_T = math.log(e), e**T
    empty = alpha.new_empty(0, dtype=torch.int64)
    if alpha.numel() == 0:
        return empty, empty

    rising = alpha > c.v_reset
    idx = rising.nonzero(as_tuple=True)[0]
    a = alpha[idx].double()
    amp = a - v0
    k = _error_scale(a, v0, e)
    # The exact V_n = a - amp * e**n; the float32 V_n lies between the trajectories
    # lo_n = a - k - (amp - k) * e**n and hi_n = a + k - (amp + k) * e**n. In terms of
    # gap = a - Vthresh: lo_n >= Vthresh  <=>  gap - k >= (amp - k) * e**n, and
    # hi_n < Vthresh  <=>  (amp + k) * e**n > gap + k.
    gap = a - vt
    lo_amp, hi_amp, gap_lo, gap_hi = amp - k, amp + k, gap - k, gap + k
    # closed-form crossing step; NaN where a <= Vthresh, which fails every test below
    n_est = torch.ceil(torch.log(gap / amp) * (1.0 / ln_e))
    e_n = torch.exp(n_est * ln_e)
    # crossed by step n_est for sure, and not yet at n_est - 1 (hi_0 = Vreset < Vthresh)
    sure = (n_est <= T) & (gap_lo >= lo_amp * e_n) & (hi_amp * (e_n * (1.0 / e)) > gap_hi)
    silent = hi_amp * e_T > gap_hi  # below threshold through the whole window, for sure
    settled = sure.nonzero(as_tuple=True)[0]
    replay = idx[(~(sure | silent)).nonzero(as_tuple=True)[0]]

    # Neurons relaxing downwards (alpha <= Vreset) stay at or below Vreset in exact
    # arithmetic; only rounding could lift them, by less than this bound.
    a_max = torch.stack(torch.aminmax(alpha)).abs().max().double().reshape(1)
    if v0 + float(_error_scale(a_max + abs(v0), v0, e)) * (1 - e_T) >= vt:
        replay = torch.cat([replay, (~rising).nonzero(as_tuple=True)[0]])

    steps = _replay(alpha[replay], c, T)
    crossed = steps <= T
    return (torch.cat([idx[settled], replay[crossed]]),
            torch.cat([n_est[settled].to(torch.int64), steps[crossed]]))


@functools.lru_cache(maxsize=64)
def _undriven_crossing(params: EncoderParams) -> int:
    """First-crossing step of a neuron with zero input current (``num_steps + 1``: never)."""
    c = LIFConstants.build(params, "cpu")
    _, steps = first_crossings(lif_alpha(torch.zeros(1), c), params, c)
    return int(steps[0]) if steps.numel() else params.num_steps + 1


def simulate_exact(currents: torch.Tensor, params: EncoderParams) -> SpikeEvents:
    """Spikes of ``(B, N)`` LIF neurons driven by constant ``currents`` (nA), exactly as GeNN.

    Equal, spike for spike, to :func:`~spike_encode.engines.stepper.simulate_steps` and to
    GeNN's single-threaded CPU backend; falls back to stepping for parameter sets outside the
    closed form's assumptions (``Vreset >= Vthresh``, or ``ExpTC`` rounding to 0 or 1).
    """
    if not _fast_path_applies(params):
        return simulate_steps(currents, params)
    batch, neurons = currents.shape
    T = params.num_steps
    c = LIFConstants.build(params, currents.device)
    # Neurons without input current (most pixels of a digit) share one trajectory: settle it
    # once per parameter set, and run the per-neuron analysis on the others only.
    sample, neuron = currents.nonzero(as_tuple=True)
    fired, n1 = first_crossings(lif_alpha(currents[sample, neuron], c), params, c)
    sample, neuron = sample[fired], neuron[fired]
    n0 = _undriven_crossing(params)
    if n0 <= T:  # undriven neurons fire too (a large Ioffset)
        s0, i0 = (currents == 0).nonzero(as_tuple=True)
        sample, neuron = torch.cat([sample, s0]), torch.cat([neuron, i0])
        n1 = torch.cat([n1, torch.full_like(s0, n0)])
    k1 = n1 - 1
    if params.at_most_one_spike:
        return SpikeEvents.from_unsorted(sample, k1, neuron, batch, T, neurons)
    period = n1 + params.refractory_steps
    count = 1 + torch.div(T - 1 - k1, period, rounding_mode="floor")
    if bool((count > 1).any()):
        owner = torch.repeat_interleave(torch.arange(n1.numel(), device=n1.device), count)
        starts = torch.cumsum(count, 0) - count
        repeat = torch.arange(owner.numel(), device=n1.device) - starts[owner]
        sample, neuron, k1 = sample[owner], neuron[owner], k1[owner] + repeat * period[owner]
    return SpikeEvents.from_unsorted(sample, k1, neuron, batch, T, neurons)
