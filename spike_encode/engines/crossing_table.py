"""The exact first-crossing step of GeNN's float32 LIF recurrence, tabulated over ``alpha``.

From ``V = Vreset``, with a constant input, a neuron's float32 trajectory depends on one
float32 number, the potential ``alpha`` it relaxes towards (:func:`~.lif.lif_alpha`). The
step at which it first reaches threshold is therefore a fixed, piecewise-constant function
of ``alpha`` for each parameter set, and this module tabulates it once, as sorted float32
breakpoints and the step of each piece. Encoding a batch is then one ``searchsorted``.

How the table is made exact:

- In exact arithmetic ``V_n = alpha - (alpha - Vreset) * ExpTC**n``. Each of the
  recurrence's three float32 operations is correctly rounded, so after ``n`` steps the
  float32 ``V`` is within ``k * (1 - ExpTC**n)`` of the exact one (:func:`error_scale`; with
  ``arithmetic="fma"`` a step rounds twice, not three times, and the bound holds a fortiori).
  For every step ``n`` this certifies an ``alpha`` (``P_n``) from which ``V_n >= Vthresh``
  for sure, and one (``Q_n``) up to which ``V_m < Vthresh`` for sure for all ``m <= n``.
- Between ``Q_n`` and ``P_n`` lies a narrow band (a few hundred float32 values with the
  tutorial's parameters) where only the float32 recurrence can tell. Every float32 value
  in the bands is run through it once, when the table is made, as long as that takes at
  most ``ENUMERATION_BUDGET`` neuron-steps; beyond that (very long windows) the bands stay
  marked unknown and the engine replays the neurons that land in them, batch by batch.
- For ``alpha <= Vreset`` the float32 ``V`` never rises (:func:`_falling_never_fires`),
  so those neurons never fire. ``inf`` and NaN are left to the replay.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..params import EncoderParams
from .lif import ArrayT, LIFConstants, lif_step
from .stepper import PROGRESS_NEURON_STEPS

__all__ = ["CrossingTable", "crossing_table", "replay_first_crossing", "error_scale", "ENUMERATION_BUDGET"]

_U = 2.0**-24  # unit roundoff of float32
# The bound below is first order: terms of relative size u and e_n/|V| (both < 1e-6 here)
# are neglected; this margin covers them, and float64's own rounding, many times over.
_SAFETY = 1.25
ENUMERATION_BUDGET = 200_000_000
"""Most neuron-steps spent running band values through the recurrence when a table is made."""

UNKNOWN = 0
"""Step code of a table piece the engine must replay."""

_STEP_COST = 1_000
"""Fixed cost of one replay step (its Python and NumPy/torch calls), in neuron-steps: a
long window of a few neurons is slow for its number of steps, not of neurons."""


def _long_replay(neurons: int, num_steps: int) -> bool:
    """Whether replaying ``neurons`` for ``num_steps`` takes long enough (about ten seconds)
    to show a progress bar."""
    return (neurons + _STEP_COST) * num_steps > PROGRESS_NEURON_STEPS


def error_scale(a: np.ndarray, v0: float, e: float) -> np.ndarray:
    """``k`` (mV) such that ``|float32 V_n - exact V_n| <= k * (1 - e**n)`` for relaxation
    from ``v0`` towards ``a > v0``: each step's three correctly rounded operations add at most
    ``u*max(|a|,|v0|) + e*(a - v0)*2u``, and earlier errors shrink by ``e`` per step."""
    c1 = _SAFETY * _U * (1 + 2 * _U) / (1 - e)
    c2 = _SAFETY * e * (2 * _U + _U * _U) / (1 - e)
    return c1 * np.maximum(np.abs(a), abs(v0)) + c2 * (a - v0) + 1e-30


def replay_first_crossing(alpha: ArrayT, c: LIFConstants, num_steps: int) -> ArrayT:
    """First step (1-based) at which the float32 recurrence from ``Vreset`` reaches threshold,
    ``num_steps + 1`` where it does not within the window; int64, a tensor on ``alpha``'s
    device or an ndarray, as ``alpha`` is.

    On CPU the steps run on NumPy float32 arrays (the same IEEE operations with a fraction
    of torch's per-call overhead).
    """
    if isinstance(alpha, np.ndarray):
        return _replay_numpy(alpha, c.numpy(), num_steps)
    if alpha.device.type == "cpu":
        return torch.from_numpy(_replay_numpy(alpha.numpy(), c.numpy(), num_steps))
    return _replay_torch(alpha, c, num_steps)


def _replay_torch(alpha: torch.Tensor, c: LIFConstants, num_steps: int) -> torch.Tensor:
    v = torch.full_like(alpha, float(c.v_reset))
    first = torch.full(alpha.shape, num_steps + 1, dtype=torch.int64, device=alpha.device)
    long_run = _long_replay(alpha.numel(), num_steps)
    for n in tqdm(range(1, num_steps + 1), desc="replaying steps", unit="step", disable=not long_run, leave=False):
        v = lif_step(v, alpha, c)
        first = torch.where((v >= c.v_thresh) & (first > n), n, first)
    return first


def _replay_numpy(alpha: np.ndarray, c: LIFConstants, num_steps: int) -> np.ndarray:
    v = np.full_like(alpha, c.v_reset)
    first = np.full(alpha.shape, num_steps + 1, dtype=np.int64)
    never = np.int64(num_steps + 1)
    long_run = _long_replay(alpha.size, num_steps)  # a very long window: show progress
    for n in tqdm(range(1, num_steps + 1), desc="replaying steps", unit="step", disable=not long_run, leave=False):
        v = lif_step(v, alpha, c)
        np.minimum(first, np.where(v >= c.v_thresh, np.int64(n), never), out=first)
    return first


@dataclass(frozen=True, eq=False)
class CrossingTable:
    """First-crossing step of the float32 recurrence from ``Vreset`` as a function of ``alpha``.

    Attributes:
        bounds: ``(K,)`` float32 ascending ``alpha`` breakpoints (mV); piece ``i`` covers
            ``bounds[i-1] <= alpha < bounds[i]``.
        steps: ``(K+1,)`` int64 step of each piece: ``1..num_steps``, ``num_steps + 1`` for
            never within the window, :data:`UNKNOWN` where the engine must replay.
        v_reset: the float32 ``Vreset`` (mV) the buckets measure ``alpha`` from.
        enumerated: float32 values run through the recurrence to make the table.
        buckets: the CPU lookup's index over ``bounds`` (:class:`Buckets`).
    """

    bounds: np.ndarray
    steps: np.ndarray
    v_reset: float
    enumerated: int
    buckets: "Buckets"

    def lookup(self, alpha: ArrayT) -> ArrayT:
        """The step code (see :attr:`steps`) of each float32 ``alpha``, int64, a tensor on
        ``alpha``'s device or an ndarray, as ``alpha`` is.

        On CPU, :attr:`buckets` answer for all but a fraction of a percent of the neurons
        (those whose bucket holds a breakpoint), which ``searchsorted`` looks up (it is slow
        on unordered input).

        Raises:
            TypeError: ``alpha`` is not float32.
        """
        if isinstance(alpha, torch.Tensor):
            if alpha.device.type == "cpu":
                return torch.from_numpy(self.lookup(alpha.numpy()))
            return self._searchsorted(alpha)
        if alpha.dtype != np.float32:
            raise TypeError(f"alpha must be float32 (the recurrence's type), got {alpha.dtype}")
        code = self.buckets.codes(alpha - np.float32(self.v_reset))
        step = code.astype(np.int64)
        missed = np.flatnonzero(code == 0)
        step[missed] = self.steps[np.searchsorted(self.bounds, alpha[missed], side="right")]
        return step

    def _searchsorted(self, alpha: torch.Tensor) -> torch.Tensor:
        """The lookup on accelerators: one ``searchsorted`` over all of ``alpha``."""
        bounds, steps = _on_device(self, alpha.device)
        return steps[torch.searchsorted(bounds, alpha, right=True)]


@functools.lru_cache(maxsize=8)
def _on_device(table: CrossingTable, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(table.bounds).to(device), torch.from_numpy(table.steps).to(device)


_INF_BITS = 0x7F800000  # float32 +inf's bits as an int32; NaN's are larger
_BUCKETS_MAX = 1 << 16
"""Most buckets of a table's CPU index (64 KB of uint8 codes for windows of up to 254 steps)."""


@dataclass(frozen=True, eq=False)
class Buckets:
    """A direct index over ``u = fl(alpha - Vreset)``: the bits of a positive float32 grow
    with its value, so their top bits (exponent and ``23 - shift`` bits of mantissa) make
    buckets of equal relative width, fine near threshold and coarse far above it.

    ``u`` rises with ``alpha`` (rounding is monotone), so each bucket holds the float32
    ``alpha`` of one interval, found exactly when the table is made; where that interval
    lies in one piece of the table, the bucket holds its step code, else 0 (look it up).
    Bucket 0 takes everything below the first breakpoint's bucket (``u < 0`` included),
    the last everything above the last one's; ``u = inf`` and NaN always get 0.

    Attributes:
        shift: bits of ``u`` dropped.
        base: the top bits of ``u`` in bucket 0.
        code: ``(L,)`` step code per bucket (0: look up), the smallest unsigned type.
    """

    shift: int
    base: int
    code: np.ndarray

    def codes(self, u: np.ndarray) -> np.ndarray:
        """The bucket code of each float32 ``u`` (a new array; ``u`` is overwritten)."""
        index = u.view(np.int32)
        np.right_shift(index, self.shift, out=index)
        index -= np.int32(self.base)
        np.clip(index, 0, len(self.code) - 1, out=index)
        return np.take(self.code, index)

    @classmethod
    def build(cls, bounds: np.ndarray, steps: np.ndarray, v_reset: float) -> "Buckets":
        """The index of a table's ``bounds`` and ``steps`` for ``Vreset = v_reset`` (float32)."""
        v0 = np.float32(v_reset)
        u = bounds[np.isfinite(bounds)] - v0
        bits = u[np.isfinite(u) & (u > 0)].view(np.int32)
        low, high = int(bits.min()), int(bits.max())
        octaves = (high >> 23) - (low >> 23) + 1
        shift = 23 - min(23, max(0, (_BUCKETS_MAX // octaves).bit_length() - 1))
        base, top = (low >> shift) - 1, (high >> shift) + 1
        # first[i]: the smallest alpha of bucket i >= 1, the first whose u reaches its lower edge
        edge = ((base + np.arange(1, top - base + 2, dtype=np.int64)) << shift).astype(np.uint32).view(np.float32)
        below = np.full(len(edge), int(_keys(v0)), dtype=np.int64)  # u = 0 here, below every edge
        beyond = np.full(len(edge), int(_keys(np.float32(np.inf))), dtype=np.int64)
        with np.errstate(over="ignore", invalid="ignore"):
            first = _first_true(lambda keys: (_floats(keys) - v0) >= edge, below, beyond)
        # bucket i holds alpha keys [start[i], start[i + 1]); bucket 0 from -inf
        start = np.concatenate([[_keys(np.float32(-np.inf))], first])
        piece_lo = np.searchsorted(bounds, _floats(start[:-1]), side="right")
        piece_hi = np.searchsorted(bounds, _floats(np.maximum(start[1:] - 1, start[:-1])), side="right")
        code = np.where(piece_lo == piece_hi, steps[piece_lo], UNKNOWN)
        code = np.append(code, UNKNOWN)  # above the last edge, always looked up
        # u = inf starts a bucket (its bits end in zeros) that alpha = inf shares with the finite
        # alphas whose u overflows (Vreset far below 0): looked up too, as NaN
        code[max(0, (_INF_BITS >> shift) - base):] = UNKNOWN
        dtype = np.uint8 if code.max() <= 255 else np.uint16 if code.max() <= 65535 else np.uint32
        return cls(shift=shift, base=base, code=code.astype(dtype))


def _keys(x: np.ndarray) -> np.ndarray:
    """float32 values as int64 keys in the same order, consecutive floats one apart."""
    bits = np.asarray(x, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def _floats(keys: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_keys`."""
    keys = np.asarray(keys, dtype=np.int64)
    return np.where(keys < 0, (-keys) | 0x80000000, keys).astype(np.uint32).view(np.float32)


def _falling_never_fires(e: float) -> bool:
    """Whether neurons with ``alpha <= Vreset`` can be proven never to fire.

    With ``d = fl(alpha - V) <= 0``: ``|fl(e*d)| <= e*(1+u)**2*|alpha - V| < |alpha - V|``
    when ``e*(1+u)**2 < 1``, so ``alpha - fl(e*d)`` lies in ``[alpha, V)`` and its rounding
    cannot exceed the float32 ``V``: ``V`` never rises above ``Vreset < Vthresh``.
    """
    return e <= 1.0 - 4 * _U


def _first_true(pred, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per row, the smallest key in ``[lo, hi)`` where the monotone ``pred(keys)`` holds (``hi``: none)."""
    lo, hi = lo.copy(), hi.copy()
    while bool((lo < hi).any()):
        mid = (lo + hi) // 2
        true = pred(mid) & (lo < hi)
        hi = np.where(true, mid, hi)
        lo = np.where(true | (lo >= hi), lo, mid + 1)
    return hi


@functools.lru_cache(maxsize=64)
def crossing_table(params: EncoderParams) -> CrossingTable:
    """The exact table for ``params``, made once per parameter set and process (a fraction
    of a second with the tutorial's parameters; ``benchmarks/bench_encode.py`` times it).

    Needs ``Vreset < Vthresh`` and ``0 < ExpTC < 1`` in float32 (the engine steps otherwise).
    """
    c = LIFConstants.build(params, "cpu").numpy()
    v0, vt, e = float(c.v_reset), float(c.v_thresh), float(c.exp_tc)
    T = params.num_steps
    n = np.arange(1, T + 1, dtype=np.float64)
    e_n = np.exp(n * math.log(e))

    def certified_crossed(keys: np.ndarray) -> np.ndarray:  # V_n >= Vthresh for sure
        a = _floats(keys).astype(np.float64)
        k = error_scale(a, v0, e)
        return (a - vt - k) >= (a - v0 - k) * e_n

    def maybe_crossed(keys: np.ndarray) -> np.ndarray:  # not certified V_m < Vthresh for all m <= n
        a = _floats(keys).astype(np.float64)
        k = error_scale(a, v0, e)
        return ~((a - v0 + k) * e_n > a - vt + k)

    k_lo = int(_keys(np.float32(v0))) + 1  # rising neurons: Vreset < alpha <= FLT_MAX
    k_hi = int(_keys(np.float32(np.finfo(np.float32).max)))
    lo, hi = np.full(T, k_lo, dtype=np.int64), np.full(T, k_hi + 1, dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore"):  # the search touches FLT_MAX
        p = _first_true(certified_crossed, lo, hi)  # P_n: crossed by step n for sure from here up
        q = _first_true(maybe_crossed, lo, hi) - 1  # Q_n: silent through step n for sure up to here
    # uncertain bands [q+1, p-1], merged where they overlap or touch
    keep = q + 1 <= p - 1
    bands = np.array(_merge(sorted(zip((q + 1)[keep].tolist(), (p - 1)[keep].tolist()))), dtype=np.int64)
    bands = bands.reshape(-1, 2)
    count = int((bands[:, 1] - bands[:, 0] + 1).sum())
    enumerate_bands = count * T <= ENUMERATION_BUDGET

    # outside the bands the step is certain: the first n with alpha >= P_n; it changes
    # only at some P_n or where a band ends
    starts = np.unique(np.concatenate([[k_lo], p, bands[:, 1] + 1]))
    starts = starts[(starts <= k_hi) & ~_inside(starts, bands)]
    certain = T + 1 - np.searchsorted(np.sort(p), starts, side="right")
    if enumerate_bands:
        band_keys = np.concatenate([np.arange(s, t + 1, dtype=np.int64) for s, t in bands] or [np.zeros(0, np.int64)])
        band_steps = np.concatenate([_replay_band(start, end, int((start >= p).sum()), c, T) for start, end in bands]
                                    or [np.zeros(0, np.int64)])
    else:
        band_keys, band_steps = bands[:, 0], np.full(len(bands), UNKNOWN, dtype=np.int64)
    falling = T + 1 if _falling_never_fires(e) else UNKNOWN
    keys = np.concatenate([[_keys(np.float32(-np.inf))], starts, band_keys, [k_hi + 1]])  # k_hi + 1: +inf
    steps = np.concatenate([[falling], certain, band_steps, [UNKNOWN]]).astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys, steps = keys[order], steps[order]
    change = np.concatenate([[True], steps[1:] != steps[:-1]])
    keys, steps = keys[change], steps[change]
    bounds = _floats(keys[1:])
    return CrossingTable(bounds=bounds, steps=steps, v_reset=v0,
                         enumerated=count if enumerate_bands else 0, buckets=Buckets.build(bounds, steps, v0))


def _replay_band(start: int, end: int, certain_by: int, c: LIFConstants, num_steps: int) -> np.ndarray:
    """Replay the band's float32 values; from ``start`` up, each has crossed for sure by step
    ``num_steps + 1 - certain_by``, so the replay stops there (unless that fails: then all steps)."""
    alpha = _floats(np.arange(start, end + 1, dtype=np.int64))
    last = num_steps - certain_by + 1 if certain_by else num_steps
    steps = _replay_numpy(alpha, c, last)
    if last < num_steps and bool((steps > last).any()):
        steps = _replay_numpy(alpha, c, num_steps)
    return steps


def _inside(keys: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """Which ``keys`` lie in one of the sorted, disjoint ``[start, end]`` rows of ``bands``."""
    i = np.searchsorted(bands[:, 0], keys, side="right") - 1
    return (i >= 0) & (keys <= bands[np.maximum(i, 0), 1]) if len(bands) else np.zeros(len(keys), dtype=bool)


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in intervals:
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
