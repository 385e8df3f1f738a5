"""The GeNN tutorial "Presenting latency-coded inputs", rewritten with spike_encode.

The tutorial builds a layer of 784 LIF "projection neurons", injects each MNIST pixel (the
image normalised to sum to 1, times 80 nA) as a constant current into its neuron, simulates
20 ms, resets the neurons and plots the spikes of the first four training images. Here the
whole model is one transform, and a batch of images is encoded in one call.

    python examples/tutorial.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import sys

from spike_encode import BackendUnavailableError, LatencyEncode, save_rasters
from spike_encode.datasets import load_mnist


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(args: argparse.Namespace) -> None:
    # The tutorial's parameters are the defaults; spelled out here for reference.
    encoder = LatencyEncode(
        dt=0.1,                 # simulation time step (ms)
        present_time_ms=20.0,   # how long each image is presented (ms)
        input_scale=80.0,       # current (nA) of a whole normalised image
        lif_params={"C": 0.2, "TauM": 20.0, "Vrest": -60.0, "Vreset": -60.0,
                    "Vthresh": -50.0, "Ioffset": 0.0, "TauRefrac": 100.0},  # spike once per image
    )
    print(encoder)

    # Load the training images (uint8, so currents are exactly GeNN's) and encode the first four.
    images, labels = load_mnist(args.data_root, train=True)
    spikes = encoder(images[:4])            # sparse (4, 200, 784): (image, step, neuron)
    print("spikes per image:", [int(spikes[i].coalesce()._nnz()) for i in range(4)])

    # The tutorial reads pn.spike_recording_data: per image, spike times (ms) and neuron ids.
    for i, (times, ids) in enumerate(LatencyEncode(output="events")(images[:4])):
        print(f"image {i} (label {int(labels[i])}): first spike at {times[0]:.1f} ms by neuron {int(ids[0])}")

    # One figure with the tutorial's four raster plots.
    path = save_rasters(spikes, encoder.params.dt, args.out,
                        [f"training image {i}, label {int(labels[i])}" for i in range(4)])
    print("saved", path)


parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data-root", default=None, help="folder holding MNIST/raw (downloaded if missing)")
parser.add_argument("--out", default="out/tutorial.png")
args = parser.parse_args()
try:
    main(args)
except (ValueError, TypeError, OSError, BackendUnavailableError) as err:  # what was asked cannot be done
    message = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
    print(f"{parser.prog}: error: {message or type(err).__name__}", file=sys.stderr)
    sys.exit(2)
