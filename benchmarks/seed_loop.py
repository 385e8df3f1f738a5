"""The seed tutorial's own PyGeNN loop, one image at a time, as the reference baseline."""

from __future__ import annotations

import tempfile

import numpy as np

from spike_encode.params import EncoderParams


def tutorial_loop(images: np.ndarray, params: EncoderParams, backend: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Encode ``(B, 784)`` uint8 images exactly as the tutorial does; per image ``(steps, ids)``.

    One model, one image per window: set ``magnitude``, push, ``step_time`` for the whole
    window, reset ``V``/``RefracTime``, pull the recording and read ``spike_recording_data``.
    """
    from pygenn import GeNNModel, create_current_source_model

    model = GeNNModel("float", "tutorial_loop", backend=backend)
    model.dt = params.dt
    lif_init = {"V": params.lif.Vreset, "RefracTime": 0.0}
    pn = model.add_neuron_population("pn", images.shape[1], "LIF", params.lif.as_dict(), lif_init)
    pn.spike_recording_enabled = True
    cs_model = create_current_source_model("cs_model", vars=[("magnitude", "scalar")],
                                           injection_code="injectCurrent(magnitude);")
    pn_input = model.add_current_source("pn_input", cs_model, pn, {}, {"magnitude": 0.0})
    with tempfile.TemporaryDirectory() as build_dir:
        model.build(path_to_model=build_dir)
        model.load(num_recording_timesteps=params.num_steps)
        scale = np.float32(params.input_scale)
        out = []
        for image in images.astype(np.float32):
            pn_input.vars["magnitude"].view[:] = (image / image.sum()) * scale
            pn_input.vars["magnitude"].push_to_device()
            start = model.timestep
            for _ in range(params.num_steps):
                model.step_time()
            for name, value in lif_init.items():
                pn.vars[name].view[:] = value
                pn.vars[name].push_to_device()
            model.pull_recording_buffers_from_device()
            times, ids = pn.spike_recording_data[0]
            out.append((np.rint(times / params.dt).astype(np.int64) - start, ids.astype(np.int64)))
        model.unload()
    return out
