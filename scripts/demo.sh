#!/usr/bin/env bash
# The main job: set up .venv (with the plot and fast extras), encode an MNIST split, print spike
# statistics, write out/raster.png.
# Arguments go to `spike-encode demo` (e.g. --data-root ../shared/data, --device cuda).
set -euo pipefail
python="$("$(dirname "${BASH_SOURCE[0]}")/venv.sh" plot,fast)"
exec "$python" -m spike_encode demo "$@"
