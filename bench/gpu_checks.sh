#!/usr/bin/env bash
# Every GPU check in one run, for a lent H100/H200 (random weights, no hub needed):
#   1. bench/train_lam.py --device cuda : data path vs preallocated tensor; 8-model ensemble vs 1 run
#   2. bench/vision_attention.py        : Qwen2.5-VL-7B vision tower, stock vs packed attention
#   3. bench/embed_gpu.py               : Qwen2.5-VL-7B / Molmo2-8B shapes, our embed path vs stock
# Wheels the machine lacks travel in .whl/ (transformers 5.24, zarr, numcodecs, donfig, crc32c).
# Logs and JSON land in $OUT. SMOKE=1 runs tiny CPU versions here to check the script itself.
set -uo pipefail
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
if [ "${SMOKE:-0}" = 1 ]; then
  PY=${PYTHON:-.venv/bin/python}; DEV=cpu; EMBED_ARGS="--smoke --frames 16 --batch 4 --iters 1 --warmup 1 --workers 1"
  LAM_ARGS="--steps 4 --warmup 1 --members 2 --img-size 32"; VIS_ARGS="--device cpu --images 2 --depth 2 --iters 1"
else
  PY=python3; DEV=cuda; EMBED_ARGS=""; LAM_ARGS="--steps 200 --warmup 20 --batch-size 256"
  VIS_ARGS="--device cuda --dtype bfloat16 --images 32 --depth 32 --iters 3"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi -L | tee "$OUT/gpu.txt"
fi
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:$PWD
status=0
echo "== train-lam on $DEV"
[ "${SKIP_LAM:-0}" = 1 ] || timeout "${LAM_TIMEOUT:-150}" $PY bench/train_lam.py --device $DEV $LAM_ARGS 2>&1 | tee "$OUT/train_lam.log" || status=1
echo "== vision attention on $DEV"
timeout "${VIS_TIMEOUT:-90}" $PY bench/vision_attention.py $VIS_ARGS 2>&1 | tee "$OUT/vision_attention.log" || status=1
echo "== embed on $DEV"
timeout "${EMBED_TIMEOUT:-400}" $PY bench/embed_gpu.py --out "$OUT" $EMBED_ARGS 2>&1 | tee "$OUT/embed_gpu.log" || status=1
exit $status
