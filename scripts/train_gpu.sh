#!/usr/bin/env bash
# Train the embedded model end to end on one GPU in under ten minutes, then export, evaluate and pack the
# results into OUTDIR (the weights as 15 MB parts, logs/reports/sample grids as one archive).
# Usage: scripts/train_gpu.sh OUTDIR [preset] [python]
# Stages that are independent run side by side on the one GPU (tiny models leave it mostly idle otherwise).
# INIT_FROM=MODEL INIT_PARTS=tokenizer,autoencoder,decoder starts from those parts of a shipped model: stages whose
# result is taken as is (tokenizer, clip, autoencoder, prior) are skipped, the decoder fine-tunes from its UNet,
# and the rest train fresh. A rerun with the same RUN_DIR likewise skips the stages that finished.
# CLIP_CANDIDATES="8x128 4x128 ..." trains one fresh CLIP per image-encoder shape (patch x width) side by side and
# keeps the one whose embedding best encodes shape on held-out pictures (clip/report.json's probe_shape).
# The verifier (which judges decoder candidates) reads the text encoder's embedding: it trains after CLIP.
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
  for f in "$run".*/clip/report.json "$run"/*/report.json "$run"/eval_*.json; do
    [[ -f $f ]] && { echo "== $f"; cat "$f"; }
  done
  tar czf "$out/run.tgz" -C "$(dirname "$run")" --exclude='checkpoint*' --exclude='*.safetensors' \
    $(cd "$(dirname "$run")" && ls -d "$(basename "$run")"*) 2>/dev/null
  if [[ -f $export_dir/draftroom.json ]]; then
    tar czf - -C "$(dirname "$export_dir")" "$(basename "$export_dir")" | split -b 15m - "$out/weights.tgz.part-"
  fi
  ls -la "$out"
}
trap pack EXIT
trap "exit 143" TERM
stage() {  # stage NAME [RUN] [extra model.train options]
  local name=$1 dir=${2:-$run}; shift; shift || true
  $py -m model.train --stage "$name" --out "$dir" --preset "$preset" "$@" > "$dir/$name.log" 2>&1
  echo "[$name $dir $*] exit $?"; tail -n 3 "$dir/$name.log"
}
clip_candidates() {  # train each candidate in a copy of the run folder, then move the best one's clip/ into it
  local c best
  for c in $CLIP_CANDIDATES; do
    cp -r "$run" "$run.$c"
    stage clip "$run.$c" --vision-patch "${c%x*}" --vision-width "${c#*x}" &
  done
  wait
  best=$($py -c 'import json, sys
scores = {}
for c in sys.argv[2:]:
    try: scores[c] = json.load(open(f"{sys.argv[1]}.{c}/clip/report.json"))["probe_shape"]
    except (OSError, KeyError): pass
print(max(scores, key=scores.get) if scores else "")' "$run" $CLIP_CANDIDATES)
  echo "[clip] candidates trained; kept ${best:-none}"
  [[ -n $best ]] && cp -r "$run.$best/clip" "$run/clip" && cp "$run.$best/clip.log" "$run/clip.log"
}
train_clip() { if [[ -n ${CLIP_CANDIDATES:-} ]]; then clip_candidates; else stage clip; fi; }
have() { [[ -e $run/$1 ]]; }
if [[ -n ${CONTINUE:-} ]]; then
  $py -m model.train --out "$run" --init-from "$CONTINUE"
  { stage clip "$run" --minutes "${MINUTES_CLIP:-3}"; stage prior "$run" --minutes "${MINUTES_PRIOR:-3}"
    stage verifier "$run"; } &  # the verifier reads the retrained text encoder, so it is retrained too
  stage decoder "$run" --minutes "${MINUTES_DECODER:-6.5}" & wait
else
  if [[ -n ${INIT_FROM:-} ]]; then
    $py -m model.train --out "$run" --init-from "$INIT_FROM" --init-parts "${INIT_PARTS:-tokenizer,autoencoder,decoder}"
  fi
  have tokenizer || stage tokenizer
  { have clip/image_encoder || train_clip; } & { have autoencoder/movq || stage autoencoder; } & wait
  { have prior/prior || stage prior; have verifier/model || stage verifier; } & stage decoder & wait
fi
$py -m model.train --stage export --out "$run" --export "$export_dir" 2>&1 | tail -n 2
ev() { $py -m model.evaluate --model "$export_dir" --prompts "$n" --two-object-prompts $((n / 2)) "$@" 2>&1 | grep "^|"; }
ev --json "$run/eval_ddim25.json" --sheet "$run/eval.png"
