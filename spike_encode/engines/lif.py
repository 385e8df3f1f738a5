"""GeNN's LIF update in float32, operation by operation as GeNN's CPU backend computes it.

GeNN's ``LIF`` sim code is::

    if (RefracTime <= 0.0) {
      scalar alpha = ((Isyn + Ioffset) * Rmembrane) + Vrest;
      V = alpha - (ExpTC * (alpha - V));
    } else { RefracTime -= dt; }

with threshold ``RefracTime <= 0.0 && V >= Vthresh`` and reset ``V = Vreset;
RefracTime = TauRefrac``. Each operation here is one float32 tensor operation (no fused
multiply-add), so the results are bit-identical to GeNN's single-threaded CPU backend.
"""

from __future__ import annotations

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
    """The float32 constants of GeNN's generated LIF code, as 0-d tensors on one device."""

    exp_tc: torch.Tensor
    r_membrane: torch.Tensor
    v_rest: torch.Tensor
    v_reset: torch.Tensor
    v_thresh: torch.Tensor
    i_offset: torch.Tensor
    tau_refrac: torch.Tensor
    dt: torch.Tensor

    @classmethod
    def build(cls, params: EncoderParams, device: torch.device | str) -> "LIFConstants":
        """Round every constant to float32 as GeNN writes them into its generated code."""
        return _build_constants(params, torch.device(device))

    def numpy(self) -> "LIFConstants":
        """The same constants as NumPy float32 scalars, for :func:`lif_step` on ndarrays."""
        return LIFConstants(**{name: np.float32(value.item()) for name, value in vars(self).items()})


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
    )


def lif_alpha(currents: torch.Tensor, c: LIFConstants) -> torch.Tensor:
    """The potential (mV) each neuron relaxes towards: ``((I + Ioffset) * Rmembrane) + Vrest``."""
    return ((currents + c.i_offset) * c.r_membrane) + c.v_rest


def lif_step(v: ArrayT, alpha: ArrayT, c: LIFConstants) -> ArrayT:
    """One integration step of a non-refractory neuron: ``alpha - (ExpTC * (alpha - V))``.

    Works on float32 tensors, and on float32 ndarrays with :meth:`LIFConstants.numpy`.
    """
    return alpha - (c.exp_tc * (alpha - v))
