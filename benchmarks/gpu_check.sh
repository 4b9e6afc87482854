#!/usr/bin/env bash
# GPU check of issue 15, one script of at most about 5 minutes on one GPU:
#   (a)-(d) on files (2048 JPEGs), CLIPEncoder vs the model alone (goal >= 0.9x),
#   ViT-B-32 and ViT-L-14 model-only throughput in fp32 / fp16 / bf16 weights / autocast,
#   OTI rows/s, and checkpoint loading. Random weights (nothing is downloaded).
# Usage: bash benchmarks/gpu_check.sh [python]   (run from the repository root)
set -euo pipefail
PY=${1:-python}
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
B=benchmarks/bench_encoders.py
run() { echo; echo "== $*"; timeout "${STEP_TIMEOUT:-150}" "$PY" "$@" || echo "(step failed or timed out: $?)"; }
uptime
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'capability', torch.cuda.get_device_capability(0))"
run $B --device cuda --only files --n 2048 --batch-size 256
run $B --device cuda --only model --model ViT-B-32 --batch-size 256
run $B --device cuda --only model --model ViT-L-14 --batch-size 128
run $B --device cuda --only oti --model ViT-B-32
run $B --device cuda --only load --model ViT-L-14
uptime
