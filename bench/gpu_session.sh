#!/bin/bash
# The GPU measurements the README's "On a GPU" section reports, in one call, most telling first; each step
# is skipped when the time left would not hold it, and every result is written as soon as it exists.
#
#     bash bench/gpu_session.sh <commit> <anchor folder> [seconds, default 570]
#
# <anchor folder>: a copy of the TRL SDFT anchor benchmark (anchor_trl_sdft.py and smollm2_tok/), with trl
# and datasets importable (WHEELS=<folder of wheels> installs them into /tmp/site first). Results go to
# $OUT (default bench/results/gpu-<commit>/): machine.txt, rounds.jsonl (one line per round, the anchor's figures
# on the Qwen3-0.6B lines) and one log per step (lean; qwen3-0.6b, with the profile of its preset round's last
# step; smollm2, qwen3-1.7b, compile, layers; the GPU tests' summary goes into machine.txt): eight files, the
# most a device call brings back. All the steps do not fit one call's ten minutes; ONLY names the steps a second
# call runs:
#
#     ONLY="smollm2 qwen3-1.7b compile layers" bash bench/gpu_session.sh <commit> <anchor folder> 250
#
# Measured on an H100: a round of 5 steps ~40 s; TRL's anchor ~4 minutes for Qwen3-0.6B.
set -u
COMMIT=$1; ANCHOR=$2; LIMIT=${3:-570}
OUT=${OUT:-bench/results/gpu-$COMMIT}; mkdir -p "$OUT"
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 STEPS=3
left() { echo $((LIMIT - SECONDS)); }
stamp() { { echo "== $1 at ${SECONDS}s"; date; cat /proc/loadavg; nvidia-smi --query-gpu=name,memory.used --format=csv,noheader; } >> "$OUT/machine.txt" 2>&1; }
run() {   # run <name> <seconds it needs> <seconds it may take> <command...>: skipped, and said so, when less is left
  local name=$1 need=$2 cap=$3; shift 3
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  if [ "$(left)" -lt "$need" ]; then echo "skipped $name: $(left) s left, needs $need" | tee -a "$OUT/machine.txt"; return; fi
  [ "$(left)" -lt $((cap + 5)) ] && cap=$(( $(left) - 5 ))
  local log="$OUT/$name.log"; [ "$name" = gpu_tests ] && log="$OUT/machine.txt"
  timeout "$cap" "$@" >> "$log" 2>&1; echo "$name rc=$? at ${SECONDS}s"; stamp "$name"
}
stamp start
python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)" >> "$OUT/machine.txt" 2>&1
RT="python3 bench/round_throughput.py --steps 5 --commit $COMMIT --out $OUT/rounds.jsonl"
run gpu_tests 30 90 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_sampler_cuda.py tests/test_round_cuda.py
run lean 60 120 python3 bench/lean_adapters.py smollm2 --chains 64 --new-tokens 256 --repeats 2 --commit "$COMMIT"
run qwen3-0.6b 390 460 $RT qwen3-0.6b --steps 6 --profile-step 6 --variant sampler_step=fused --anchor-dir "$ANCHOR"
run smollm2 150 220 $RT smollm2 --steps 6 --warmup 2 --variant sampler_step=fused --variant student_compile=true
run qwen3-1.7b 170 240 $RT qwen3-1.7b --variant sampler_step=fused --variant micro_batch_size=32 \
  --variant chunk_size=256
run compile 90 150 $RT smollm2 --only-variants --variant sampler_compile=true
run layers 60 120 python3 bench/compiled_layers.py smollm2 --prompts 8 --chains 8 --new-tokens 256 --checkpointing \
  --repeats 3 --commit "$COMMIT"
stamp end
grep -h '^{' "$OUT"/rounds.jsonl "$OUT"/lean.log "$OUT"/layers.log 2>/dev/null | cut -c1-300
