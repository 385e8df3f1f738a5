"""The straightforward engine: every neuron, every step, exactly GeNN's float32 loop.

It is the reference the fast engine is measured against, and the fallback for parameter
sets outside the fast engine's assumptions.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..params import EncoderParams
from ..events import SpikeEvents
from .lif import LIFConstants, lif_alpha, lif_step

__all__ = ["simulate_steps", "PROGRESS_NEURON_STEPS"]

#: Above this many neuron-steps (about ten seconds on one CPU core) a progress bar is shown.
PROGRESS_NEURON_STEPS = 1_000_000_000


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
    T = params.num_steps
    long_run = T * batch * neurons > PROGRESS_NEURON_STEPS
    steps, flat = [], []  # spikes as they come: memory grows with spikes, not with T * B * N
    for step in tqdm(range(T), desc="simulating steps", unit="step", disable=not long_run, leave=False):
        active = refrac <= 0
        v = torch.where(active, lif_step(v, alpha, c), v)
        refrac = torch.where(active, refrac, refrac - c.dt)
        spike = (refrac <= 0) & (v >= c.v_thresh)
        v = torch.where(spike, c.v_reset, v)
        refrac = torch.where(spike, c.tau_refrac, refrac)
        where = spike.reshape(-1).nonzero(as_tuple=True)[0]
        flat.append(where)
        steps.append(torch.full_like(where, step))
    where = torch.cat(flat)
    sample = torch.div(where, neurons, rounding_mode="floor")
    return SpikeEvents.from_unsorted(sample, torch.cat(steps), where - sample * neurons, batch, T, neurons)
