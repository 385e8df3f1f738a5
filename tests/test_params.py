"""Parameters: the tutorial's defaults, partial overrides, validation, hashing."""

from __future__ import annotations

import math

import pytest
import torch

from spike_encode import TUTORIAL_LIF_PARAMS, EncoderParams, LatencyEncode, LIFParams


def test_defaults_are_the_tutorials():
    enc = LatencyEncode()
    p = enc.params
    assert (p.dt, p.present_time_ms, p.input_scale) == (0.1, 20.0, 80.0)
    assert p.lif.as_dict() == TUTORIAL_LIF_PARAMS
    assert enc.num_steps == 200 and p.at_most_one_spike


def test_partial_lif_params_override_only_the_names_given():
    p = LatencyEncode(lif_params={"TauRefrac": 2.0, "Vthresh": -52.0}).params.lif
    assert p.TauRefrac == 2.0 and p.Vthresh == -52.0
    assert p.C == TUTORIAL_LIF_PARAMS["C"] and p.TauM == TUTORIAL_LIF_PARAMS["TauM"]


def test_derived_constants_are_geNNs_float32_literals():
    p = EncoderParams()
    assert p.exp_tc == pytest.approx(math.exp(-0.005), rel=1e-7) and p.exp_tc == float(torch.tensor(math.exp(-0.005)))
    assert p.r_membrane == 100.0


def test_refractory_steps_replay_geNNs_float32_countdown():
    # 2 ms of 0.1 ms steps: float32 0.1 is slightly more than 0.1, so 20 decrements reach <= 0
    assert EncoderParams(lif=LIFParams(TauRefrac=2.0)).refractory_steps == 20
    assert EncoderParams(lif=LIFParams(TauRefrac=0.0)).refractory_steps == 0
    assert EncoderParams(lif=LIFParams(TauRefrac=1e9)).refractory_steps == 201  # capped


@pytest.mark.parametrize("kwargs, match", [
    ({"dt": 0.0}, "dt must be"),
    ({"dt": -0.1}, "dt must be"),
    ({"present_time_ms": 0.05}, "shorter than one time step"),
    ({"input_scale": float("nan")}, "input_scale must be"),
    ({"lif_params": {"tau": 1.0}}, "unknown name"),
    ({"lif_params": {"C": 0.0}}, r"lif_params\['C'\] must be > 0"),
    ({"lif_params": {"TauRefrac": -1.0}}, "TauRefrac"),
    ({"lif_params": {"Vthresh": float("inf")}}, "finite"),
    ({"output": "raster"}, "output='raster'"),
    ({"backend": "brian2"}, "backend='brian2'"),
    ({"output": "times", "lif_params": {"TauRefrac": 2.0}}, "at most one spike"),
])
def test_bad_arguments_are_refused_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LatencyEncode(**kwargs)


def test_non_numeric_parameter_is_a_type_error():
    with pytest.raises(TypeError, match="lif_params"):
        LatencyEncode(lif_params={"C": "0.2"})


def test_params_are_hashable_and_digest_is_stable():
    a, b = EncoderParams(), EncoderParams.from_dict(EncoderParams().as_dict())
    assert a == b and hash(a) == hash(b) and a.digest() == b.digest()
    assert EncoderParams(input_scale=81.0).digest() != a.digest()


def test_minus_zero_is_zero_so_equal_specs_share_their_digest():
    from spike_encode.spec import EncodingSpec

    plus, minus = (EncodingSpec(EncoderParams(lif=LIFParams(Ioffset=zero))) for zero in (0.0, -0.0))
    assert plus == minus and hash(plus) == hash(minus) and plus.digest() == minus.digest()


@pytest.mark.parametrize("kwargs, match", [
    ({"dt": 1e-300}, "float32's smallest normal"),
    ({"dt": 1e-7}, "2e\\+08 time steps, more than the 1,000,000"),
    ({"present_time_ms": 1e6}, "1e\\+07 time steps"),
    ({"input_scale": 1e300}, "input_scale must be finite in float32"),
    ({"input_scale": 1e37}, "input_scale=1e\\+37 nA drives a neuron towards"),
    ({"lif_params": {"C": 1e-40}}, "input_scale"),  # Rmembrane overflows float32
    ({"lif_params": {"Vthresh": 1e39}}, r"lif_params\['Vthresh'\] must be finite in float32"),
])
def test_parameters_beyond_float32_or_sensible_windows_are_refused_before_any_work(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LatencyEncode(backend="torch", **kwargs)


def test_numpy_scalars_are_numbers_like_python_floats():
    import numpy as np

    enc = LatencyEncode(backend="torch", dt=np.float32(0.5), present_time_ms=np.int64(20),
                        input_scale=np.float64(80), lif_params={"TauM": np.float32(20)})
    assert enc.params == EncoderParams(dt=float(np.float32(0.5)), present_time_ms=20.0, input_scale=80.0)
    with pytest.raises(TypeError, match="dt must be a number"):
        LatencyEncode(backend="torch", dt=np.bool_(True))
