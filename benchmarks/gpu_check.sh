#!/usr/bin/env bash
# The prepared GPU check, for a machine with a CUDA GPU: the test modules whose tests depend
# on a GPU (the CUDA tests run there, and the GeNN CUDA tests where PyGeNN was built with its
# CUDA backend), then bench_encode.py and bench_genn.py on the GPU, bench_encode.py and
# bench_loader.py on two of the machine's CPU cores (taskset), and bench_peers.py's GPU rows.
# Each step has a time limit, so the check ends within about 8 minutes whatever happens. The
# log, the tests' log and the benchmarks' JSON go to LOG_DIR.
#
#     bash benchmarks/gpu_check.sh [LOG_DIR]      # PYTHON=python3, WORKERS=8 by default
set -u
cd "$(dirname "$0")/.."
log_dir=${1:-benchmarks/results/gpu-check}
mkdir -p "$log_dir"
py=${PYTHON:-python3}
log="$log_dir/gpu-check.log"

step() {  # step NAME SECONDS COMMAND...: run into $log, report; a failing step does not stop the rest
    local name=$1 limit=$2 start rc
    shift 2
    echo "== $name (limit ${limit} s): $*" | tee -a "$log"
    start=$(date +%s)
    PYTHONUNBUFFERED=1 timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
    rc=$?
    echo "== $name: exit $rc after $(($(date +%s) - start)) s" | tee -a "$log"
    return $rc
}

step environment 60 "$py" -c "import torch, numpy, spike_encode
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))
print('numpy', numpy.__version__, 'spike_encode', spike_encode.__version__)
from spike_encode.engines.genn_engine import genn_backends
print('PyGeNN backends:', genn_backends())"
# two threads per test worker: 12 workers with torch's 16 threads each did not finish in 240 s
modules=$(grep -l cuda tests/test_*.py | grep -v -e test_bench_scripts -e test_packaging)
options=()  # pytest-xdist and pytest-timeout where installed
"$py" -c "import xdist" 2>/dev/null && options+=(-n "${WORKERS:-8}")
"$py" -c "import pytest_timeout" 2>/dev/null && options+=(--timeout 100)
log="$log_dir/gpu-check-tests.log" step tests 240 env OMP_NUM_THREADS=2 "$py" -m pytest $modules -v \
    -p no:cacheprovider -p no:benchmark -rfEs --tb=short "${options[@]}"
step bench_encode_cuda 70 "$py" benchmarks/bench_encode.py --device cuda --repeats 5 \
    --out "$log_dir/encode-cuda.json"
step bench_genn_cuda 120 "$py" benchmarks/bench_genn.py --device cuda --out "$log_dir/genn-cuda.json"
step bench_encode_2_cores 45 taskset -c 0,1 "$py" benchmarks/bench_encode.py --threads 2 \
    --out "$log_dir/encode-cpu-2-cores.json"
step bench_loader_2_cores 75 taskset -c 0,1 "$py" benchmarks/bench_loader.py --pairs 9 \
    --out "$log_dir/loader-cpu-2-cores.json"
step bench_peers_cuda 90 "$py" benchmarks/bench_peers.py --devices cuda --peer-device cuda --quick \
    --only spike_encode:torch:cuda,step_loop,spike_encode:genn,seed_loop --out "$log_dir/peers-cuda.json"
tail -n 3 "$log"
