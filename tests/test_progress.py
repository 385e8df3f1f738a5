"""Long replays show a progress bar, judged by their steps as well as their neurons; the
tutorial's encoding shows none."""

from __future__ import annotations

import numpy as np

from spike_encode import EncoderParams, LatencyEncode
from spike_encode.engines import crossing_table as ct
from spike_encode.engines.lif import LIFConstants


def test_a_long_window_of_few_neurons_shows_progress(monkeypatch, capfd):
    params = EncoderParams(present_time_ms=2_000.0)  # 20,000 steps
    c = LIFConstants.build(params, "cpu").numpy()
    alpha = np.linspace(-60.0, -50.0, 150, dtype=np.float32)
    # as a 1,000,000-step window of one image's driven neurons (about ten seconds) compares
    # with the real threshold: the per-step cost counts, not only neurons x steps
    monkeypatch.setattr(ct, "PROGRESS_NEURON_STEPS", 20_000 * 1_000)
    ct.replay_first_crossing(alpha, c, params.num_steps)
    assert "replaying steps" in capfd.readouterr().err


def test_the_tutorials_encoding_shows_no_progress(mnist_test, capfd):
    LatencyEncode(backend="torch")(mnist_test[0][:1000])
    out, err = capfd.readouterr()
    assert out == "" and err == ""
