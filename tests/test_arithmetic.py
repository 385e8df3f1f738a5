"""``arithmetic="fma"``: GeNN's default CUDA build, where nvcc fuses the LIF update's multiply-adds."""

from __future__ import annotations

import os
import shutil
import subprocess
from fractions import Fraction

import numpy as np
import pytest
import torch

from spike_encode import EncoderParams, LatencyEncode
from spike_encode.engines import simulate_exact, simulate_steps
from spike_encode.engines.lif import fma32
from spike_encode.inputs import normalised_currents

from .test_engines import random_params


def exact_fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """a*b + c in exact rationals, rounded to the nearest float32 (ties to even)."""
    out = []
    for x, y, z in zip(a.tolist(), b.tolist(), c.tolist()):
        exact = Fraction(x) * Fraction(y) + Fraction(z)
        near = np.float32(float(exact))
        candidates = [np.nextafter(near, np.float32(-np.inf)), near, np.nextafter(near, np.float32(np.inf))]
        best = min(abs(Fraction(float(q)) - exact) for q in candidates)
        ties = [q for q in candidates if abs(Fraction(float(q)) - exact) == best]
        out.append(ties[0] if len(ties) == 1 else next(q for q in ties if not np.float32(q).view(np.int32) & 1))
    return np.array(out, dtype=np.float32)


def hard_fma_cases(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.uniform(-100, 100, n).astype(np.float32)
    b = rng.uniform(-2, 2, n).astype(np.float32)
    c = np.concatenate([
        rng.uniform(-100, 100, n // 2).astype(np.float32),
        (-(a[n // 2:].astype(np.float64) * b[n // 2:])).astype(np.float32),  # near-total cancellation
    ])
    # products that land just past a float32 rounding tie: double rounding through float64 fails here
    k = np.arange(1, 200, dtype=np.float32)
    a = np.concatenate([a, 1 + k * 2.0**-12]).astype(np.float32)
    b = np.concatenate([b, 1 + k * 2.0**-12]).astype(np.float32)
    c = np.concatenate([c, np.zeros_like(k)]).astype(np.float32)
    return a, b, c


def test_fma32_rounds_once_like_a_fused_multiply_add():
    a, b, c = hard_fma_cases(4000)
    want = exact_fma(a, b, c)
    plain = ((a * b) + c).view(np.int32)
    got = fma32(a, b, c)
    assert np.array_equal(got.view(np.int32), want.view(np.int32))
    assert (plain != want.view(np.int32)).sum() > 100, "the cases do not tell a fused from a plain multiply-add"
    got_torch = fma32(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c))
    assert torch.equal(got_torch, torch.from_numpy(want))


@pytest.mark.parametrize("seed", range(4))
def test_fma_engine_equals_the_fma_step_loop(seed, mnist_test):
    rng = np.random.default_rng(300 + seed)
    params = EncoderParams(**{**vars(random_params(rng)), "arithmetic": "fma"})
    images = mnist_test[0][rng.choice(10000, 48, replace=False)]
    currents = normalised_currents(images.reshape(48, -1), params.input_scale)
    fast, slow = simulate_exact(currents, params), simulate_steps(currents, params)
    assert len(fast) > 0
    for name in ("sample", "step", "neuron"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name


def test_fma_moves_the_neurons_genn_cuda_moved(mnist_test):
    # GENN_FACTS.md: GeNN 5.4's CUDA build on an H100 fired 58 of the test set's 7,840,000
    # neurons a step away from its CPU backend (one step, or across the window's edge)
    images = mnist_test[0]
    ieee = LatencyEncode(backend="torch", output="times")(images)
    fma = LatencyEncode(backend="torch", output="times", arithmetic="fma")(images)
    moved = ieee != fma
    assert int(moved.sum()) == 58
    edge = (ieee[moved] == -1) | (fma[moved] == -1)
    assert ((ieee[moved] - fma[moved]).abs()[~edge] == 1).all()
    assert ((ieee[moved][edge] == 199) | (fma[moved][edge] == 199)).all()


def test_arithmetic_is_part_of_the_parameters():
    assert EncoderParams(arithmetic="fma").digest() != EncoderParams().digest()
    assert "arithmetic" not in EncoderParams().as_dict()  # the golden files' layout, unchanged
    fma = EncoderParams(arithmetic="fma")
    assert EncoderParams.from_dict(fma.as_dict()) == fma
    with pytest.raises(ValueError, match="arithmetic='fast'"):
        EncoderParams(arithmetic="fast")
    with pytest.raises(ValueError, match="arithmetic='fast'"):
        LatencyEncode(arithmetic="fast")
    assert "arithmetic='fma'" in repr(LatencyEncode(backend="torch", arithmetic="fma"))


# GeNN's LIF update as its CUDA backend writes it (constants as float literals)
_LIF_KERNEL = """
extern "C" __global__ void update(float *V, const float *magnitude) {
    const unsigned int id = blockIdx.x * blockDim.x + threadIdx.x;
    float Isyn = 0;
    Isyn += magnitude[id];
    const float alpha = ((Isyn + (0.000000000e+00f)) * (1.000000000e+02f)) + (-6.000000000e+01f);
    V[id] = alpha - ((9.950124621e-01f) * (alpha - V[id]));
}
"""


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (the CUDA toolkit) is not installed")
def test_nvcc_fuses_the_lif_update_unless_the_genn_engine_says_not_to(tmp_path):
    from spike_encode.engines.genn_engine import _NO_FMAD, _nvcc_flags

    source = tmp_path / "lif.cu"
    source.write_text(_LIF_KERNEL)

    def ptx() -> str:
        subprocess.run(["nvcc", "-ptx", "-arch", "sm_90", str(source), "-o", str(tmp_path / "lif.ptx")],
                       check=True, capture_output=True, timeout=300)
        return (tmp_path / "lif.ptx").read_text()

    assert ptx().count("fma.rn.f32") == 2  # nvcc's default: both multiply-adds fused
    before = os.environ.get("NVCC_APPEND_FLAGS")
    with _nvcc_flags(_NO_FMAD):
        plain = ptx()
    assert "fma" not in plain and plain.count("mul.rn.f32") == 2
    assert os.environ.get("NVCC_APPEND_FLAGS") == before  # restored
