"""Property-based checks (Hypothesis) of what users hand the package: images and spike
conversions. Every input gives either a clear ValueError/TypeError or correct spikes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from spike_encode import LatencyEncode, events_to_sparse, times_to_sparse, to_events, to_times
from spike_encode.engines import simulate_steps
from spike_encode.inputs import background_levels, contrast_currents, normalised_currents

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T, N, DT = 20, 6, 0.5
ENC = LatencyEncode(backend="torch", dt=DT, present_time_ms=T * DT)

pixels = st.floats(allow_nan=True, allow_infinity=True, width=32)


@FAST
@given(hnp.arrays(np.float32, (3, 2, 3), elements=pixels))
def test_any_float_batch_is_refused_clearly_or_encoded_exactly(images):
    batch = torch.from_numpy(images).unsqueeze(1)
    x = torch.from_numpy(images).reshape(3, -1).double()
    x32 = x.float()
    excess = (x32 - background_levels(x32)[0]).clamp(min=0)  # what the default "contrast" rule sums
    valid = bool(torch.isfinite(x).all() and (x >= 0).all() and (x.sum(1) > 0).all()
                 and torch.isfinite(excess.sum(1)).all())
    if not valid:
        with pytest.raises(ValueError, match="image"):
            ENC(batch)
        return
    spikes = ENC(batch)
    reference = simulate_steps(contrast_currents(batch.reshape(3, -1), ENC.params.input_scale), ENC.params)
    assert spikes._nnz() == len(reference)
    assert torch.equal(spikes.coalesce().indices(), torch.stack([reference.sample, reference.step, reference.neuron]))


@FAST
@given(hnp.arrays(np.float32, (4, 784), elements=st.floats(0, 1e6, width=32)),
       hnp.arrays(np.bool_, (4, 784)), st.floats(0.01, 1000))
def test_contrast_is_the_tutorials_rule_bit_for_bit_where_half_the_pixels_are_zero(pixels, black, scale):
    pixels[black] = 0
    pixels[:, :392] = 0  # at least half of each image black, as in every MNIST digit
    pixels[:, -1] = 1.0  # none all zero
    x = torch.from_numpy(pixels)
    assert torch.equal(contrast_currents(x, scale).view(torch.int32), normalised_currents(x, scale).view(torch.int32))


steps = st.integers(min_value=-3, max_value=T + 3)


@FAST
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 3), st.just(N)), elements=steps))
def test_times_to_sparse_accepts_exactly_the_steps_of_the_window(times):
    t = torch.from_numpy(times)
    if ((t < -1) | (t >= T)).any():
        bad = t.reshape(-1)[((t < -1) | (t >= T)).reshape(-1)][0]
        with pytest.raises(ValueError, match=f"holds {int(bad)} at position"):
            times_to_sparse(t, T)
        return
    assert torch.equal(to_times(times_to_sparse(t, T)), t)


@FAST
@given(st.lists(st.tuples(st.one_of(st.floats(min_value=-5, max_value=15), st.just(math.nan)),
                          st.integers(-2, N + 2)), max_size=12))
def test_events_to_sparse_refuses_what_lies_outside_the_window_or_the_neurons(pairs):
    times = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    ids = torch.tensor([p[1] for p in pairs], dtype=torch.int64)
    with np.errstate(invalid="ignore"):
        step = [None if math.isnan(t) else math.floor(t / DT + 1e-9) for t, _ in pairs]
    valid = all(s is not None and t >= 0 and s < T for s, (t, _) in zip(step, pairs)) and all(0 <= i < N for _, i in pairs)
    unique = len({(s, i) for s, (_, i) in zip(step, pairs)}) == len(pairs)
    if not (valid and unique):
        with pytest.raises(ValueError, match=r"events\[0\]"):
            events_to_sparse([(times, ids)], DT, T, N)
        return
    spikes = events_to_sparse([(times, ids)], DT, T, N)
    got_t, got_i = to_events(spikes, DT)[0]
    expected = sorted(zip(step, (int(i) for i in ids)))
    assert [(round(float(t) / DT), int(i)) for t, i in zip(got_t, got_i)] == expected
