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

import torch

from ..params import EncoderParams
from .events import SpikeEvents
from .lif import LIFConstants, lif_alpha, lif_step
from .stepper import simulate_steps

__all__ = ["simulate_exact", "first_crossing_steps"]

_U = 2.0**-24  # unit roundoff of float32
_SAFETY = 2.0  # margin on the first-order error bound


def _fast_path_applies(params: EncoderParams) -> bool:
    exp_tc = params.exp_tc
    return params.lif.Vreset < params.lif.Vthresh and 0.0 < exp_tc < 1.0


def _error_bound(a: torch.Tensor, amp: torch.Tensor, v0: float, e: float, n: torch.Tensor) -> torch.Tensor:
    """Upper bound (mV) on |float32 V_n - exact V_n| for relaxation towards ``a`` from ``v0``."""
    per_step = _U * (1 + 2 * _U) * torch.maximum(a.abs(), torch.full_like(a, abs(v0)))
    per_step = per_step + e * amp.abs() * (2 * _U + _U * _U)
    growth = -torch.expm1(n * torch.log(torch.tensor(e, dtype=torch.float64))) / (1.0 - e)
    return _SAFETY * per_step * growth + 1e-12 * (a.abs() + abs(v0) + 1.0) + 1e-30 * n


def _replay(alpha: torch.Tensor, c: LIFConstants, num_steps: int) -> torch.Tensor:
    """First step (1-based) at which the float32 recurrence from ``Vreset`` reaches threshold."""
    v = torch.full_like(alpha, float(c.v_reset))
    first = torch.full(alpha.shape, num_steps + 1, dtype=torch.int64, device=alpha.device)
    for n in range(1, num_steps + 1):
        v = lif_step(v, alpha, c)
        first = torch.where((v >= c.v_thresh) & (first > num_steps), n, first)
        if n % 32 == 0 and bool((first <= num_steps).all()):
            break
    return first


def first_crossing_steps(alpha: torch.Tensor, params: EncoderParams, c: LIFConstants) -> torch.Tensor:
    """Integration steps from ``Vreset`` until ``V >= Vthresh``, exactly as float32 GeNN.

    Args:
        alpha: ``(M,)`` float32 relaxation potentials (mV) from :func:`lif_alpha`.

    Returns:
        ``(M,)`` int64 in ``1..num_steps``, or ``num_steps + 1`` for neurons that do not
        reach threshold within the window.
    """
    T = params.num_steps
    v0, vt, e = float(c.v_reset), float(c.v_thresh), float(c.exp_tc)
    result = torch.full(alpha.shape, T + 1, dtype=torch.int64, device=alpha.device)
    if alpha.numel() == 0:
        return result
    horizon = torch.tensor(float(T), dtype=torch.float64, device=alpha.device)

    # Neurons relaxing downwards (alpha <= Vreset) stay at or below Vreset in exact
    # arithmetic; only rounding could lift them, by less than the bound at the window's end.
    rising = alpha > c.v_reset
    falling_alpha = alpha[~rising].double()
    uncertain = torch.zeros_like(rising)
    if falling_alpha.numel():
        worst = _error_bound(falling_alpha.abs().max().reshape(1), (falling_alpha - v0).abs().max().reshape(1), v0, e, horizon)
        if v0 + float(worst) >= vt:
            uncertain = ~rising

    idx = rising.nonzero(as_tuple=True)[0]
    a = alpha[idx].double()
    amp = a - v0
    reach = a > vt
    ratio = torch.where(reach, (a - vt) / amp, torch.ones_like(a))
    n_est = torch.ceil(torch.log(ratio) / torch.log(torch.tensor(e, dtype=torch.float64)))
    n_est = torch.where(reach, n_est.clamp(1, T + 1), torch.full_like(a, T + 1))

    def v_exact(n: torch.Tensor) -> torch.Tensor:
        return a - amp * torch.exp(n * torch.log(torch.tensor(e, dtype=torch.float64)))

    above = v_exact(n_est) - _error_bound(a, amp, v0, e, n_est) >= vt
    prev = n_est - 1
    below = (prev < 1) | (v_exact(prev) + _error_bound(a, amp, v0, e, prev) < vt)
    sure = reach & (n_est <= T) & above & below
    # A rising neuron that is not sure to cross at n_est is replayed unless it is sure to stay
    # below threshold for the whole window.
    silent = v_exact(horizon) + _error_bound(a, amp, v0, e, horizon) < vt
    result[idx[sure]] = n_est[sure].to(torch.int64)
    uncertain[idx[~sure & ~silent]] = True

    replay_idx = uncertain.nonzero(as_tuple=True)[0]
    if replay_idx.numel():
        result[replay_idx] = _replay(alpha[replay_idx], c, T)
    return result


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
    alpha = lif_alpha(currents, c).reshape(-1)
    first = first_crossing_steps(alpha, params, c)
    fired = (first <= T).nonzero(as_tuple=True)[0]
    n1 = first[fired]
    k1 = n1 - 1
    period = n1 + params.refractory_steps
    count = 1 + torch.div(T - 1 - k1, period, rounding_mode="floor")
    if bool((count > 1).any()):
        owner = torch.repeat_interleave(torch.arange(fired.numel(), device=fired.device), count)
        starts = torch.cumsum(count, 0) - count
        repeat = torch.arange(owner.numel(), device=fired.device) - starts[owner]
        fired, steps = fired[owner], k1[owner] + repeat * period[owner]
    else:
        steps = k1
    return SpikeEvents.from_unsorted(
        torch.div(fired, neurons, rounding_mode="floor"), steps, fired % neurons, batch, T, neurons
    )
