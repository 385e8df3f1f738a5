"""The straightforward engine: every neuron, every step, exactly GeNN's float32 loop.

It is the reference the fast engine is measured against, and the fallback for parameter
sets outside the fast engine's assumptions.
"""

from __future__ import annotations

import torch

from ..params import EncoderParams
from .events import SpikeEvents
from .lif import LIFConstants, lif_alpha, lif_step

__all__ = ["simulate_steps"]


def simulate_steps(currents: torch.Tensor, params: EncoderParams) -> SpikeEvents:
    """Simulate the window step by step for all ``(B, N)`` neurons with input ``currents`` (nA).

    State starts at ``V = Vreset``, ``RefracTime = 0`` for every image, as the tutorial
    resets it between images.
    """
    batch, neurons = currents.shape
    c = LIFConstants.build(params, currents.device)
    alpha = lif_alpha(currents, c)
    v = torch.full_like(alpha, float(c.v_reset))
    refrac = torch.zeros_like(alpha)
    raster = torch.empty((params.num_steps, batch, neurons), dtype=torch.bool, device=alpha.device)
    for step in range(params.num_steps):
        active = refrac <= 0
        v = torch.where(active, lif_step(v, alpha, c), v)
        refrac = torch.where(active, refrac, refrac - c.dt)
        spike = (refrac <= 0) & (v >= c.v_thresh)
        v = torch.where(spike, c.v_reset, v)
        refrac = torch.where(spike, c.tau_refrac, refrac)
        raster[step] = spike
    step, sample, neuron = raster.nonzero(as_tuple=True)
    return SpikeEvents.from_unsorted(sample, step, neuron, batch, params.num_steps, neurons)
