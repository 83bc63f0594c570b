#!/usr/bin/env bash
# Run ON the GPU machine, from the repository root, after benchmarks/gpu_prepare.sh here:
# installs the carried wheels outside the tree, puts src/ on the path (nothing is fetched),
# and runs benchmarks/gpu_check.py. Results go to $OUT (a folder to bring back) or
# benchmarks/results/. Extra arguments go to gpu_check.py (e.g. --skip quality).
set -uo pipefail
out=${OUT:-benchmarks/results}
mkdir -p "$out"
source benchmarks/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
    >"$out/nvidia_smi.csv" 2>&1
timeout 500 python3 -m benchmarks.gpu_check --out "$out/gpu_check.json" "$@" 2>&1 \
    | tee "$out/gpu_check.log"
