"""The first-crossing table equals the float32 recurrence, float for float, where it matters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spike_encode import EncoderParams, EncodingSpec, LIFParams
from spike_encode.currents import InputCurrents
from spike_encode.engines import crossing_table as ct
from spike_encode.engines import simulate_exact, simulate_steps
from spike_encode.engines.lif import LIFConstants, lif_alpha
from spike_encode.inputs import normalised_currents


def recurrence(alpha: np.ndarray, params: EncoderParams) -> np.ndarray:
    """The reference: GeNN's float32 update written out, step by step, from ``Vreset``."""
    c = LIFConstants.build(params, "cpu").numpy()
    v = np.full_like(alpha, c.v_reset)
    first = np.full(alpha.shape, params.num_steps + 1)
    with np.errstate(invalid="ignore"):
        for n in range(1, params.num_steps + 1):
            v = alpha - (c.exp_tc * (alpha - v))
            first[(v >= c.v_thresh) & (first > params.num_steps)] = n
    return first


def around_breakpoints(table: ct.CrossingTable, ulps: int, every: int = 1) -> np.ndarray:
    """Every float32 within ``ulps`` of every ``every``-th breakpoint (the finite ones)."""
    keys = ct._keys(table.bounds[np.isfinite(table.bounds)][::every])
    return ct._floats(np.unique((keys[:, None] + np.arange(-ulps, ulps + 1)[None, :]).ravel()))


PARAMS = [
    EncoderParams(),  # the tutorial's
    EncoderParams(dt=0.5, present_time_ms=30.0, input_scale=50.0,
                  lif=LIFParams(C=0.3, TauM=8.0, Vrest=-70.0, Vreset=-72.0, Vthresh=-52.0, TauRefrac=2.0)),
]


@pytest.mark.parametrize("params", PARAMS, ids=["tutorial", "other"])
def test_table_equals_the_recurrence_around_every_breakpoint(params):
    table = ct.crossing_table(params)
    assert table.enumerated > 0, "the bands were not enumerated: this test would only check the replay"
    alpha = around_breakpoints(table, ulps=40)
    assert np.array_equal(table.lookup(alpha), recurrence(alpha, params))
    # the recurrence is not monotone in alpha near a step boundary: more pieces than steps
    assert len(table.steps) > params.num_steps + 2


def test_table_equals_the_recurrence_on_random_and_special_alphas():
    params = PARAMS[0]
    rng = np.random.default_rng(1)
    alpha = np.concatenate([
        rng.uniform(-80, 3000, 300_000).astype(np.float32),
        np.float32([-np.inf, np.inf, np.nan, 0.0, -0.0, -60.0, -50.0, 3e38, -3e38]),
    ])
    got, want = ct.crossing_table(params).lookup(alpha), recurrence(alpha, params)
    unknown = got == ct.UNKNOWN
    assert np.array_equal(got[~unknown], want[~unknown])
    # +inf and NaN alone are left to the replay (the module's promise), which never fires them
    assert sorted(map(str, alpha[unknown])) == ["inf", "nan"]
    with np.errstate(invalid="ignore"):  # inf - inf
        never = ct.replay_first_crossing(alpha[unknown], LIFConstants.build(params, "cpu"), params.num_steps)
    assert (never == params.num_steps + 1).all()


def plain_lookup(table: ct.CrossingTable, alpha: np.ndarray) -> np.ndarray:
    """The table without its buckets: one searchsorted over the breakpoints."""
    return table.steps[np.searchsorted(table.bounds, alpha, side="right")]


def around_bucket_edges(table: ct.CrossingTable, ulps: int) -> np.ndarray:
    """Every float32 alpha within ``ulps`` of where ``fl(alpha - Vreset)`` enters a bucket."""
    b = table.buckets
    edges = ((b.base + np.arange(1, len(b.code), dtype=np.int64)) << b.shift).astype(np.uint32).view(np.float32)
    with np.errstate(over="ignore"):
        keys = ct._keys(edges + np.float32(table.v_reset))
    return ct._floats(np.unique((keys[:, None] + np.arange(-ulps, ulps + 1)[None, :]).ravel()))


@pytest.mark.parametrize("params", PARAMS + [EncoderParams(arithmetic="fma"), EncoderParams(present_time_ms=300.0)],
                         ids=["tutorial", "other", "fma", "3000 steps"])
def test_buckets_answer_as_the_breakpoints_do_at_every_bucket_edge(params):
    table = ct.crossing_table(params)
    alpha = np.concatenate([around_bucket_edges(table, ulps=3), around_breakpoints(table, ulps=3),
                            np.float32([-np.inf, -60.0, 0.0, -0.0, 3e38, -3e38])])
    assert np.array_equal(table.lookup(alpha), plain_lookup(table, alpha))
    assert table.buckets.code.dtype == (np.uint8 if params.num_steps < 255 else np.uint16)


@pytest.mark.slow  # reads MNIST
def test_buckets_settle_nearly_every_mnist_neuron(mnist_test):
    # the buckets, not searchsorted, must answer for the neurons of real images (speed)
    params = PARAMS[0]
    table = ct.crossing_table(params)
    currents = normalised_currents(mnist_test[0][:500].reshape(500, -1), params.input_scale)
    alpha = lif_alpha(currents[currents != 0], LIFConstants.build(params, "cpu")).numpy()
    codes = table.buckets.codes(alpha - np.float32(table.v_reset))
    assert (codes == 0).mean() < 0.01
    assert np.array_equal(table.lookup(alpha), plain_lookup(table, alpha))


def test_tensor_paths_match_the_ndarray_paths():
    # the accelerator code paths (searchsorted, the torch replay), run here on CPU tensors
    params = PARAMS[0]
    table = ct.crossing_table(params)
    alpha = np.concatenate([around_breakpoints(table, ulps=5, every=7), np.float32([np.inf, -np.inf])])
    want = table.lookup(alpha)
    got = table.lookup(torch.from_numpy(alpha))
    assert isinstance(got, torch.Tensor) and torch.equal(got, torch.from_numpy(want))
    assert torch.equal(table._searchsorted(torch.from_numpy(alpha)), torch.from_numpy(want))
    c = LIFConstants.build(params, "cpu")
    assert torch.equal(ct._replay_torch(torch.from_numpy(alpha), c, params.num_steps),
                       torch.from_numpy(recurrence(alpha, params)))


@pytest.mark.slow  # reads MNIST
def test_over_budget_bands_are_replayed_batch_by_batch(monkeypatch, mnist_test, cpu_path):
    params = EncoderParams(present_time_ms=25.0)  # a parameter set no other test tabulates
    monkeypatch.setattr(ct, "ENUMERATION_BUDGET", 0)
    ct.crossing_table.cache_clear()
    try:
        table = ct.crossing_table(params)
        assert table.enumerated == 0 and (table.steps == ct.UNKNOWN).sum() > params.num_steps // 2
        currents = normalised_currents(mnist_test[0][:32].reshape(32, -1), params.input_scale)
        alpha = lif_alpha(currents[currents != 0], LIFConstants.build(params, "cpu"))
        assert (table.lookup(alpha) == ct.UNKNOWN).sum() > 0, "no neuron needs the replay"
        fast, slow = simulate_exact(currents, params), simulate_steps(currents, params)
        for name in ("sample", "step", "neuron"):
            assert torch.equal(getattr(fast, name), getattr(slow, name)), name
        # from the pixels, the compiled loop hands the batch to NumPy's replay
        from_pixels = simulate_exact(InputCurrents(mnist_test[0][:32], EncodingSpec(params, input_rule="sum")), params)
        assert torch.equal(from_pixels.indices(), fast.indices())
    finally:
        ct.crossing_table.cache_clear()


def test_the_encoder_makes_its_table_when_it_is_constructed():
    from spike_encode import LatencyEncode

    params = EncoderParams(present_time_ms=21.0)  # a parameter set no other test tabulates
    before = ct.crossing_table.cache_info().misses
    LatencyEncode(backend="torch", present_time_ms=21.0)
    assert ct.crossing_table.cache_info().misses == before + 1
    ct.crossing_table(params)
    assert ct.crossing_table.cache_info().misses == before + 1  # already made


def test_alpha_inf_is_looked_up_even_when_finite_alphas_share_its_bucket():
    # Vreset = -2e38: u = alpha - Vreset overflows to inf for finite alphas too, and with a
    # breakpoint right below the overflow, the bucket above it holds both those finite alphas
    # (step 1) and alpha = inf (another piece): it must be looked up
    v0 = np.float32(-2e38)
    with np.errstate(over="ignore"):
        last_finite = np.float32(np.finfo(np.float32).max + np.float64(v0))  # the last alpha with finite u
        while np.isinf(last_finite - v0):
            last_finite = np.nextafter(last_finite, np.float32(0))
        bounds = np.float32([1.0, np.nextafter(last_finite, np.float32(0)), np.inf])
        steps = np.array([9, 5, 1, ct.UNKNOWN])
        buckets = ct.Buckets.build(bounds, steps, v0)
        alpha = np.float32([np.inf, np.nan, last_finite, 3e38, 1e38, 0.5])
        codes = buckets.codes(alpha - v0)
    plain = steps[np.searchsorted(bounds, alpha, side="right")]
    assert codes[0] == codes[1] == 0  # inf and NaN: looked up
    assert all(c in (0, p) for c, p in zip(codes, plain)), (codes, plain)


@pytest.mark.parametrize("lif", [LIFParams(Vrest=0.0, Vreset=0.0, Vthresh=10.0),
                                 LIFParams(Vrest=-1e3, Vreset=-1e3, Vthresh=-990.0)],
                         ids=["Vreset 0", "Vreset -1000"])
def test_buckets_are_exact_whatever_vreset(lif):
    params = EncoderParams(lif=lif)
    table = ct.crossing_table(params)
    v0 = np.float32(lif.Vreset)
    alpha = np.concatenate([around_bucket_edges(table, ulps=2), around_breakpoints(table, ulps=2),
                            ct._floats(ct._keys(v0) + np.arange(-3, 4)), np.float32([-0.0, 0.0])])
    assert np.array_equal(table.lookup(alpha), plain_lookup(table, alpha))
