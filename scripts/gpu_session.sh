#!/usr/bin/env bash
# One command for a GPU machine lent for 15 minutes in all (start-up and transfers included).
#
#   scripts/gpu_session.sh [OUTDIR]          the real-size GPU benchmark (bench/gpu.py): it measures for at most
#                                            BUDGET_S seconds (default 420) and writes gpu_bench.json,
#                                            gpu_bench.md, gpu_bench.log and gpu.txt (the card) into OUTDIR;
#                                            the models run as `serve` runs them on a GPU (fp16, SDPA
#                                            attention); further arguments go to bench/gpu.py (e.g. --compile);
#   scripts/gpu_session.sh train [OUTDIR]    continues the shipped model on the GPU: the decoder fine-tunes and
#                                            the upsampler trains side by side for TRAIN_MINUTES each (default
#                                            6), then the model is exported as fp16 safetensors and evaluated
#                                            with one decoder candidate and --upscale (EVAL_PROMPTS, default
#                                            100). OUTDIR gets decoder.log, upsampler.log, their report.json
#                                            files, eval.json, eval.log and weights.tgz.part-* (the exported
#                                            folder in 15 MB parts: cat them | tar xz).
# OUTDIR defaults to $OUT (the folder a lent machine sends back), else bench-out. PRESET (default gpu) picks the
# training sizes; DEVICE=cpu with PRESET=tiny and a small TRAIN_MINUTES runs the train path on a CPU, to check
# the script before a device is lent.
#
# Nothing is installed beyond requirements.txt. The Python that runs it is the first of:
#  1. .venv/bin/python, if it imports CUDA torch, diffusers and transformers (a venv built from requirements.txt
#     on Linux x86-64: PyPI's torch==2.13.0 wheel there is a CUDA build);
#  2. python3 with the wheels in .whl/ laid over it, when .whl/ holds any: for a GPU image that has CUDA torch
#     but not this project's diffusers/transformers and no package registry. Fetch them beforehand with
#       pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 transformers==5.23.0 importlib_metadata
#     (carry .whl with the working tree; add any other pin from requirements.txt the image lacks);
#  3. python3 as it is, if it already has all three;
#  4. a fresh venv built from requirements.txt, which needs a reachable package registry (torch with its CUDA
#     libraries is a few GB: minutes of the budget).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=bench
if [[ ${1:-} == train ]]; then mode=train; shift; fi
out=${1:-${OUT:-bench-out}}
device=${DEVICE:-cuda}
budget=${BUDGET_S:-420}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error

ready() {  # ready PYTHON: it has torch (with a GPU unless DEVICE=cpu), diffusers and transformers
  "$1" -c "import torch, diffusers, transformers; assert '$device' == 'cpu' or torch.cuda.is_available()" 2>/dev/null
}
py=
if [[ -x .venv/bin/python ]] && ready .venv/bin/python; then
  py=.venv/bin/python
elif compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site && ready python3 && py=python3
elif ready python3; then
  py=python3
else
  python3 -m venv /tmp/draftroom-venv && /tmp/draftroom-venv/bin/pip install -q -r requirements.txt \
    && ready /tmp/draftroom-venv/bin/python && py=/tmp/draftroom-venv/bin/python
fi
if [[ -z $py ]]; then
  echo "no Python with CUDA torch, diffusers and transformers; see the comments at the top of $0" >&2
  exit 1
fi

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no GPU: $device"
  "$py" -c 'import torch, diffusers, transformers
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), diffusers {diffusers.__version__}, "
      f"transformers {transformers.__version__}")'
} 2>&1 | tee "$out/gpu.txt"
if [[ $mode == train ]]; then
  run=${RUN_DIR:-/tmp/draftroom-gpu-run}; minutes=${TRAIN_MINUTES:-6}; preset=${PRESET:-gpu}
  train() {  # train STAGE: one stage of the run, its log and report copied into OUTDIR as it finishes
    "$py" -m model.train --stage "$1" --out "$run" --preset "$preset" --device "$device" --minutes "$minutes" \
      > "$out/$1.log" 2>&1
    echo "[$1] exit $?"; tail -n 2 "$out/$1.log"; cp "$run/$1/report.json" "$out/$1_report.json" 2>/dev/null
  }
  "$py" -m model.train --out "$run" --init-from model/weights/embedded || exit 1
  # the two stages share the GPU: neither fills it at these sizes
  train decoder & train upsampler & wait
  "$py" -m model.train --stage export --out "$run" --export "$run/embedded" 2>&1 | tail -n 1 || exit 1
  tar czf - -C "$run" embedded | split -b 15m - "$out/weights.tgz.part-"
  "$py" -m model.evaluate --model "$run/embedded" --device "$device" --prompts "${EVAL_PROMPTS:-100}" \
    --two-object-prompts 0 --unseen "${EVAL_PROMPTS:-100}" --decoder-candidates 1 --upscale --json "$out/eval.json" 2>&1 | tee "$out/eval.log"
  exit 0
fi
# bench/gpu.py skips figures that would end after the budget and rewrites its results after each family; the
# timeout is the backstop that keeps the lease, whatever a figure costs
timeout --signal=INT --kill-after=20 $((budget + 90)) \
  "$py" bench/gpu.py --out "$out" --budget-s "$budget" --dtype fp16 "${@:2}" 2>&1 | tee "$out/gpu_bench.log"
