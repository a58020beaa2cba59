#!/usr/bin/env bash
# GPU benchmark: bert-base MLM + NSP pretraining at seq 128 with each lever on and off
# (bf16 autocast, TF32, SDPA attention, fused AdamW, masked-only logits, sync-free masked positions): tokens/s,
# MFU against the GPU's bf16 dense peak (H100/H200 SXM 989, NVL 835, H100 PCIe 756 TFLOP/s), peak GPU memory.
#
#   bash bench/gpu.sh                 # on a GPU box, from the repository root or anywhere
#   bash bench/gpu.sh --dry-run       # anywhere: CPU, tiny model, checks the script only
#
# One prepared command: a few minutes on an H200 (8 configs x 2 rounds x 60 steps within 5 minutes,
# then the strongest peer vs the engine within 4 minutes; the sync-free masked path is checked against the CPU first). Needs python3 with torch and transformers >= 5.
# Results: $OUT (or bench/out/) gpu_pretrain.json, gpu_pretrain.md, gpu_info.txt, memory_estimate.json/.md; fold them into
# BENCHMARKS.md with:  python bench/run.py --from-json bench/results/<run>.json --gpu-json bench/out/gpu_pretrain.json
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-bench/out}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
{
  date -u +"%Y-%m-%d %H:%M UTC"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__)"
  nproc
} | tee "$OUT_DIR/gpu_info.txt"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
timeout 300 "$PY" bench/gpu_pretrain.py --batch-size "${BATCH:-64}" --seq 128 --warmup-steps 10 --steps 50 --rounds 2 \
  --json "$OUT_DIR/gpu_pretrain.json" --markdown "$OUT_DIR/gpu_pretrain.md" "$@"
# The strongest peer on the GPU: the tuned HF Trainer (bf16, fused AdamW, group_by_length, SDPA) vs the
# engine (precision auto = bf16), same tokenised pairs of the embedded corpus, bert-base, batch 64, 10 + 50 steps,
# interleaved pairs; tokens/s and MFU of both sides. Needs accelerate (pip install 'accelerate>=1.1').
# The memory estimate (engine/models/memory.py) against torch.cuda.max_memory_allocated: bert-tiny and bert-base,
# pretraining, classification and QA at a few batch sizes and lengths, each in a fresh process (about a minute).
if [ "${1:-}" = "--dry-run" ]; then
  timeout 240 "$PY" bench/memory_estimate.py --dry-run --json "$OUT_DIR/memory_estimate.json"
else
  timeout 240 "$PY" bench/memory_estimate.py --device cuda --json "$OUT_DIR/memory_estimate.json" \
    --markdown "$OUT_DIR/memory_estimate.md" || echo "memory estimate: failed or timed out (rc $?)"
fi
if [ "${1:-}" != "--dry-run" ]; then
  timeout 240 "$PY" bench/run.py --gpu-peer --json "$OUT_DIR/gpu_peer.json" --out "$OUT_DIR/gpu_peer.md" || echo "gpu peer: failed or timed out (rc $?)"
fi
