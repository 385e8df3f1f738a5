#!/usr/bin/env bash
# The whole test suite: set up .venv with the test extras, then run pytest from the repo root.
# MNIST and the golden files are read from ../shared (override: SPIKE_ENCODE_SHARED).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$("$root/scripts/venv.sh" test)"
cd "$root"
exec "$python" -m pytest "$@"
