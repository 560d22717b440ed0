#!/usr/bin/env bash
# The GPU bench in one call, for the GPU benchmark machine (torch, transformers, scipy, pyarrow;
# no Ray, no MLflow, nothing installed from this repository): run from the repository root,
#
#   bash scripts/gpu_bench.sh [OUT_DIR]        (default: $OUT, else reports/bench)
#
# It runs `slmscale bench --gpu` (sections data, train, tokenize, eval; docs/bench.md): MFU of
# the paper's 20M / 85M / 309M at context 2050 with torch.compile and bf16, their peak memory
# against slmscale.train.memory's prediction, 4 x 20M trials sharing the GPU against one alone,
# HuBERT-base (random weights) + k-means throughput, the loader against the GPU's consumption,
# and pairs/s of the scorer.  Budget: under 10 minutes on one H100/H200 (not yet measured: no
# run on a GPU so far); BENCH_TIMEOUT (seconds, default 570) stops it before a 600 s limit, and
# the rows measured by then are still written (each section writes when it ends).
set -euo pipefail
out="${1:-${OUT:-reports/bench}}"
mkdir -p "$out"
export SLMSCALE_HOME="$out"    # reports/bench/<machine>.json and .md land under it
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python - <<'PY'
import sys
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU {torch.cuda.is_available()}")
if not torch.cuda.is_available():
    sys.exit("gpu_bench: torch sees no GPU")
PY
timeout --signal=INT "${BENCH_TIMEOUT:-570}" \
    python -m slmscale.cli bench --gpu --json "$out/gpu-bench.json"
