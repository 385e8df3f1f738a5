"""GeNN's LIF update in float32, operation by operation as GeNN's CPU backend computes it.

GeNN's ``LIF`` sim code is::

    if (RefracTime <= 0.0) {
      scalar alpha = ((Isyn + Ioffset) * Rmembrane) + Vrest;
      V = alpha - (ExpTC * (alpha - V));
    } else { RefracTime -= dt; }

with threshold ``RefracTime <= 0.0 && V >= Vthresh`` and reset ``V = Vreset;
RefracTime = TauRefrac``. Each operation here is one float32 tensor operation (no fused
multiply-add), so the results are bit-identical to GeNN's single-threaded CPU backend. With
``arithmetic="fma"`` (``LIFConstants.fused``) the two multiply-adds are fused instead, as nvcc
compiles GeNN's CUDA code by default (:func:`fma32`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from ..params import EncoderParams

__all__ = ["LIFConstants", "lif_alpha", "lif_step"]

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


@dataclass(frozen=True)
class LIFConstants:
    """The float32 constants of GeNN's generated LIF code, as 0-d tensors on one device, and
    whether its multiply-adds are fused (``fused``: GeNN's default CUDA build)."""

    exp_tc: torch.Tensor
    r_membrane: torch.Tensor
    v_rest: torch.Tensor
    v_reset: torch.Tensor
    v_thresh: torch.Tensor
    i_offset: torch.Tensor
    tau_refrac: torch.Tensor
    dt: torch.Tensor
    fused: bool = False

    @classmethod
    def build(cls, params: EncoderParams, device: torch.device | str) -> "LIFConstants":
        """Round every constant to float32 as GeNN writes them into its generated code."""
        return _build_constants(params, torch.device(device))

    def numpy(self) -> "LIFConstants":
        """The same constants as NumPy float32 scalars, for :func:`lif_step` on ndarrays."""
        return self._as_numpy

    @functools.cached_property
    def _as_numpy(self) -> "LIFConstants":  # made once per instance (instances are cached)
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return LIFConstants(**{name: value if isinstance(value, bool) else np.float32(value.item())
                               for name, value in values.items()})


@functools.lru_cache(maxsize=64)
def _build_constants(params: EncoderParams, device: torch.device) -> LIFConstants:
    lif = params.lif

    def f32(value: float) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.float32, device=device)

    return LIFConstants(
        exp_tc=f32(params.exp_tc),
        r_membrane=f32(params.r_membrane),
        v_rest=f32(lif.Vrest),
        v_reset=f32(lif.Vreset),
        v_thresh=f32(lif.Vthresh),
        i_offset=f32(lif.Ioffset),
        tau_refrac=f32(lif.TauRefrac),
        dt=f32(params.dt),
        fused=params.arithmetic == "fma",
    )


def fma32(a: ArrayT, b: ArrayT, c: ArrayT) -> ArrayT:
    """``a * b + c`` rounded once to float32, as a fused multiply-add (``fma.rn.f32``) does.

    Computed in float64: the product of two float32 values is exact there, and the sum is
    rounded to odd (TwoSum gives its exact error) before the final rounding to float32, so
    no double rounding can occur (53 >= 24 + 2 bits). ndarrays or tensors, float32 in and out.
    """
    if not isinstance(a, torch.Tensor):
        p = np.multiply(a, b, dtype=np.float64)
        c64 = np.asarray(c, dtype=np.float64)
        s = np.asarray(p + c64)
        bp = s - p
        err = (p - (s - bp)) + (c64 - bp)
        inexact_even = (err != 0) & ((s.view(np.int64) & 1) == 0)
        s = np.where(inexact_even, np.nextafter(s, np.copysign(np.inf, err)), s)
        return s.astype(np.float32)
    p = a.double() * b.double()
    c64 = c.double()
    s = p + c64
    bp = s - p
    err = (p - (s - bp)) + (c64 - bp)
    inexact_even = (err != 0) & ((s.view(torch.int64) & 1) == 0)
    s = torch.where(inexact_even, torch.nextafter(s, torch.copysign(torch.full_like(s, torch.inf), err)), s)
    return s.float()


def lif_alpha(currents: ArrayT, c: LIFConstants) -> ArrayT:
    """The potential (mV) each neuron relaxes towards: ``((I + Ioffset) * Rmembrane) + Vrest``
    (the multiply-add fused where ``c.fused``)."""
    if c.fused:
        return fma32(currents + c.i_offset, c.r_membrane, c.v_rest)
    return ((currents + c.i_offset) * c.r_membrane) + c.v_rest


def lif_step(v: ArrayT, alpha: ArrayT, c: LIFConstants) -> ArrayT:
    """One integration step of a non-refractory neuron: ``alpha - (ExpTC * (alpha - V))``
    (as ``fma(alpha - V, -ExpTC, alpha)`` where ``c.fused``).

    Works on float32 tensors, and on float32 ndarrays with :meth:`LIFConstants.numpy`.
    """
    if c.fused:
        return fma32(alpha - v, -c.exp_tc, alpha)
    return alpha - (c.exp_tc * (alpha - v))
