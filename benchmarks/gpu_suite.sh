#!/usr/bin/env bash
# Every GPU measurement uda3d has, in one run on a lent GPU machine (aimed at < 8 minutes on one
# H100/H200), so a single session with a GPU measures everything:
#   1. backbone_gpu.py  — backbone step at 144x192x192: peak memory and volumes/s, fp32 vs AMP
#   2. adapt_gpu.py     — adaptation iteration at 144x192x192: peak memory and s/iteration, fp32 vs AMP
#   3. memory.py --device cuda — max_memory_allocated with AMP, checkpointing off and on
#   4. the whole pipeline on a synthetic cohort at BraTS size (155x240x240 -> 144x192x192 crops,
#      the method's widths, 256^2 slices) for one epoch per stage, on the GPU
#   5. DDP: train-backbone with 2 workers, one GPU each, where 2 GPUs exist (skipped, and said so, else)
# Results: benchmarks/results/gpu_suite/ (each script's JSON/Markdown, the pipeline's report, one log).
# Fails loudly (exit 2, one line on stderr) where torch sees no CUDA device: nothing is measured.
#
#   bash benchmarks/gpu_suite.sh            # from the repository root, with uda3d installed
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
OUT=benchmarks/results/gpu_suite
WORK="${TMPDIR:-/tmp}/uda3d-gpu-suite"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_suite.sh: torch sees no CUDA device (a CPU-only torch build, or no GPU here): nothing measured" >&2
    exit 2
fi
mkdir -p "$OUT"
rm -rf "$WORK" && mkdir -p "$WORK"
LOG="$OUT/gpu_suite.log"
: > "$LOG"
step() { echo "== $1 ($(date -u +%H:%M:%S))" | tee -a "$LOG"; }
"$PY" -c 'import torch; print("device:", torch.cuda.get_device_name(), "count:", torch.cuda.device_count(), "torch:", torch.__version__)' | tee -a "$LOG"

step "1. backbone step at 144x192x192"
"$PY" benchmarks/backbone_gpu.py --steps 5 2>&1 | tee -a "$LOG"
cp benchmarks/results/backbone_gpu.json "$OUT/"

step "2. adaptation iteration at 144x192x192"
"$PY" benchmarks/adapt_gpu.py --steps 3 2>&1 | tee -a "$LOG"
cp benchmarks/results/adapt_gpu.json "$OUT/"

step "3. peak memory with and without checkpointing (AMP)"
"$PY" benchmarks/memory.py --device cuda --out "$OUT" 2>&1 | tee -a "$LOG"

step "4. the pipeline at BraTS size, one epoch per stage"
"$PY" -m uda3d cohort "$WORK/root" --sites site-a site-b --subjects-per-site 5 --shape 240 240 155 --quiet 2>&1 | tee -a "$LOG"
"$PY" -m uda3d pipeline --dataroot "$WORK/root" --workdir "$WORK/pipeline" --use-gpu --amp --device cuda \
    --backbone-epochs 1 --backbone-epochs-decay 0 --robust-epochs 1 --supervised-epochs 1 --vae-epochs 1 \
    --adapt-epochs 1 --no-tracking --quiet 2>&1 | tee -a "$LOG"
cp "$WORK/pipeline/report.json" "$OUT/pipeline_report.json"

step "5. DDP, 2 workers"
if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    "$PY" -m uda3d train-backbone --dataroot "$WORK/root" --workdir "$WORK/ddp" --num-workers 2 --use-gpu --amp \
        --epochs 1 --epochs-decay 0 --no-tracking --quiet 2>&1 | tee -a "$LOG"
else
    echo "one GPU here: DDP with 2 workers not measured" | tee -a "$LOG"
fi
step "done"
