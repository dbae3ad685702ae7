#!/usr/bin/env bash
# The real-size GPU benchmark (bench/gpu.py) in one command, sized for a GPU machine lent for 15 minutes in all
# (start-up and transfers included): it measures for at most BUDGET_S seconds (default 420) and writes
# gpu_bench.json, gpu_bench.md, gpu_bench.log and gpu.txt (the card) into OUTDIR. The models run as `serve` runs
# them by default on a GPU: fp16, SDPA attention; further arguments go to bench/gpu.py (e.g. --compile,
# --channels-last, --families sd15) and the table's header names the configuration.
# Usage: scripts/gpu_session.sh [OUTDIR [BENCH-FLAGS...]]
#        (OUTDIR default: $OUT, the folder a lent machine sends back, else bench-out)
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
out=${1:-${OUT:-bench-out}}
budget=${BUDGET_S:-420}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error

ready() {  # ready PYTHON: it has CUDA torch with a GPU, diffusers and transformers
  "$1" -c 'import torch, diffusers, transformers; assert torch.cuda.is_available()' 2>/dev/null
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
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$py" -c 'import torch, diffusers, transformers
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), diffusers {diffusers.__version__}, "
      f"transformers {transformers.__version__}")'
} 2>&1 | tee "$out/gpu.txt"
# bench/gpu.py skips figures that would end after the budget and rewrites its results after each family; the
# timeout is the backstop that keeps the lease, whatever a figure costs
timeout --signal=INT --kill-after=20 $((budget + 90)) \
  "$py" bench/gpu.py --out "$out" --budget-s "$budget" --dtype fp16 "${@:2}" 2>&1 | tee "$out/gpu_bench.log"
