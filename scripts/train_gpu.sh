#!/usr/bin/env bash
# Train the embedded model end to end on one GPU in under ten minutes, then export, evaluate and pack the
# results into OUTDIR (the weights as 15 MB parts, logs/reports/sample grids as one archive).
# Usage: scripts/train_gpu.sh OUTDIR [preset] [python]
# Stages that are independent run side by side on the one GPU (tiny models leave it mostly idle otherwise).
# On a lent GPU machine whose Python lacks this project's diffusers/transformers (the device tool's image has
# transformers 5.17 and no diffusers), carry wheels of the pinned versions (diffusers, transformers, regex, built
# for its Python) in .whl/ and prefix the call with:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
set -u
out=$1; preset=${2:-gpu}; py=${3:-python3}
run=${RUN_DIR:-/tmp/draftroom-run}; export_dir=${EXPORT_DIR:-model/weights/embedded}; n=${EVAL_PROMPTS:-100}
mkdir -p "$run" "$out"
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
pack() {
  for f in "$run"/*/report.json "$run"/eval_*.json; do [[ -f $f ]] && { echo "== $f"; cat "$f"; }; done
  tar czf "$out/run.tgz" -C "$run" --exclude='checkpoint*' --exclude='*.safetensors' . 2>/dev/null
  if [[ -f $export_dir/draftroom.json ]]; then
    tar czf - -C "$(dirname "$export_dir")" "$(basename "$export_dir")" | split -b 15m - "$out/weights.tgz.part-"
  fi
  ls -la "$out"
}
trap pack EXIT
trap "exit 143" TERM
stage() { $py -m model.train --stage "$1" --out "$run" --preset "$preset" > "$run/$1.log" 2>&1; echo "[$1] exit $?"; tail -n 3 "$run/$1.log"; }
stage tokenizer
stage clip & stage autoencoder & wait
stage prior & stage decoder & wait
$py -m model.train --stage export --out "$run" --export "$export_dir" 2>&1 | tail -n 2
ev() { $py -m model.evaluate --model "$export_dir" --prompts "$n" --two-object-prompts $((n / 2)) "$@" 2>&1 | grep "^|"; }
ev --json "$run/eval_ddim25.json" --sheet "$run/eval.png"
