#!/usr/bin/env bash
# Train the default model's prefix LM and super-resolution stage on the synthetic world, from scratch:
# token shards (train + held-out, with MiniLM text), the per-task unigram baseline, the LM, the SR model,
# then a pipeline folder (the bundled tokenizers + the new LM and SR, int8 weight-only), and the held-out
# loss per task of the run's fp16 LM and of the pipeline's int8 one (RUN/eval_lm_fp16.md, eval_lm_int8.md).
#
#   bash scripts/train_default_model.sh RUN_DIR
#
# Every step resumes where it stopped and skips what is complete, so under a per-command time limit the
# same command is simply run again (`timeout 590 bash scripts/train_default_model.sh runs/default`, repeated
# until it prints "done"). A TERM or INT (the time limit's) stops the running step cleanly (the trainers
# checkpoint) and the script exits with 143; a trainer stopped by its config's max_minutes ends it with 3.
# Settings come from the environment (defaults: one GPU, the tiny configs):
#   VIDEOPOET_DEVICE (cuda), VIDEOPOET_WORKERS (15), VIDEOPOET_CLIPS (12000 train clips),
#   VIDEOPOET_HELDOUT (256), VIDEOPOET_TEXT (minilm), VIDEOPOET_TOKENIZE_ARGS (extra tokenize flags),
#   VIDEOPOET_LM_CONFIG (configs/lm_tiny.toml), VIDEOPOET_SR_CONFIG (configs/superres_tiny.toml; empty:
#   no SR), VIDEOPOET_LM_SET / VIDEOPOET_SR_SET (extra `--set k=v ...` for the trainers).
# The commands it runs, and what the runs measured: docs/pretrained.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="${1:?usage: bash scripts/train_default_model.sh RUN_DIR}"
DEVICE="${VIDEOPOET_DEVICE:-cuda}"
WORKERS="${VIDEOPOET_WORKERS:-15}"
CLIPS="${VIDEOPOET_CLIPS:-12000}"
HELDOUT="${VIDEOPOET_HELDOUT:-256}"
TEXT="${VIDEOPOET_TEXT:-minilm}"
LM_CONFIG="${VIDEOPOET_LM_CONFIG:-configs/lm_tiny.toml}"
SR_CONFIG="${VIDEOPOET_SR_CONFIG-configs/superres_tiny.toml}"
read -r -a TOKENIZE_ARGS <<<"${VIDEOPOET_TOKENIZE_ARGS:-}"
read -r -a LM_SET <<<"${VIDEOPOET_LM_SET:-}"
read -r -a SR_SET <<<"${VIDEOPOET_SR_SET:-}"
VP=("${PYTHON:-python3}" -m videopoet.cli)
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"  # runs from a checkout without installing

say() { printf '[train_default_model] %s\n' "$*"; }

# Every step runs in the background and the script waits for it, so a TERM or INT sent to the script (a
# time limit's) reaches the step: the trainers checkpoint at the end of their step and exit, the script
# stops with 143, and the next run resumes.
child=""
trap 'if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; wait "$child"; fi; exit 143' TERM INT
run() {
  local rc=0
  "$@" &
  child=$!
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

# up_to_date TARGET SOURCE...: TARGET exists and is newer than every SOURCE
up_to_date() {
  local target="$1" source
  shift
  [ -e "$target" ] || return 1
  for source in "$@"; do [ "$target" -nt "$source" ] || return 1; done
}

# finished DIR: the training run in DIR ended with reason "done" (its last step), not a time limit
finished() {
  "${PYTHON:-python3}" - "$1/metrics.jsonl" <<'PY'
import json, sys
reason = None
for line in open(sys.argv[1]):
    try:
        row = json.loads(line)
    except ValueError:
        continue  # a line cut short by a kill
    if row.get("event") == "end":
        reason = row.get("reason")
sys.exit(0 if reason == "done" else 1)
PY
}

# resume_flag DIR MARKER: --resume when DIR already holds MARKER (an earlier, maybe unfinished, set)
resume_flag() { if [ -e "$1/$2" ]; then echo --resume; fi; }

# run_flag DIR: --resume when the training run in DIR saved a complete checkpoint; --overwrite when DIR
# holds a run stopped before its first one (nothing to resume: it starts over); nothing for a new DIR
run_flag() {
  "${PYTHON:-python3}" - "$1" <<'PY'
import sys
from pathlib import Path
from videopoet.train.checkpoint import latest_checkpoint
from videopoet.train.loop import RUN_FILES
out = Path(sys.argv[1])
if latest_checkpoint(out / "checkpoints") is not None:
    print("--resume")
elif any((out / name).exists() for name in RUN_FILES):
    print(f"[train_default_model] {out} stopped before its first checkpoint: starting it over", file=sys.stderr)
    print("--overwrite")
PY
}

tokenize() {  # tokenize SPLIT NUM SHARD_SIZE
  local out="$RUN/shards/$1"
  say "token shards: $1 ($2 clips) -> $out"
  run "${VP[@]}" tokenize --data "synthetic:$1:$2" --out "$out" --text "$TEXT" --device "$DEVICE" \
    --workers "$WORKERS" --batch-size 32 --shard-size "$3" "${TOKENIZE_ARGS[@]}" \
    $(resume_flag "$out" tokens.json)
}

train() {  # train KIND CONFIG OUT SET...
  local kind="$1" config="$2" out="$3"
  shift 3
  if [ -f "$out/metrics.jsonl" ] && finished "$out"; then
    say "train $kind: $out reached its last step, skipped"
    return
  fi
  say "train $kind ($config) -> $out"
  local flag
  flag=$(run_flag "$out")
  run "${VP[@]}" train "$kind" --config "$config" --set "out_dir=$out" "$@" $flag
  if ! finished "$out"; then
    say "$kind stopped before its last step (a time limit): run the script again to resume it"
    exit 3
  fi
}

evaluate() {  # evaluate NAME MODEL WEIGHTS: per-task held-out loss and unigram baseline -> RUN/eval_lm_NAME.*
  local out="$RUN/eval_lm_$1"
  if up_to_date "$out.json" "$3"; then  # newer than the weights it scored
    say "held-out loss ($1): $out.json is up to date, skipped"
    return
  fi
  say "held-out loss ($1: $2) -> $out.json"
  run "${VP[@]}" eval lm --overwrite --model "$2" --data "$RUN/shards/heldout" --baseline-data "$RUN/shards/train" \
    --baseline-num 1000 --num "$HELDOUT" --batch-size 32 --device "$DEVICE" --out "$out"
}

tokenize train "$CLIPS" 500
tokenize heldout "$HELDOUT" "$HELDOUT"
if [ ! -f "$RUN/unigram.json" ]; then
  say "unigram baseline -> $RUN/unigram.json"
  run "${PYTHON:-python3}" benchmarks/lm_unigram_baseline.py --train "$RUN/shards/train" \
    --heldout "$RUN/shards/heldout" --train-items 1000 --out "$RUN/unigram.json"
fi
train lm "$LM_CONFIG" "$RUN/lm" --set "data=$RUN/shards/train" --set "eval_data=$RUN/shards/heldout" \
  --set "device=$DEVICE" "${LM_SET[@]}"
sr_args=()
if [ -n "$SR_CONFIG" ]; then
  train superres "$SR_CONFIG" "$RUN/sr" --set "device=$DEVICE" "${SR_SET[@]}"
  sr_args=(--super-resolution "$RUN/sr/final")
fi
sources=("$RUN/lm/final/model.safetensors")
if [ -n "$SR_CONFIG" ]; then sources+=("$RUN/sr/final/model.safetensors"); fi
if up_to_date "$RUN/pipeline/model_index.json" "${sources[@]}"; then
  say "pipeline: $RUN/pipeline is up to date, skipped"
else
  say "pipeline (int8) -> $RUN/pipeline"
  run "${VP[@]}" assemble --video-tokenizer src/videopoet/pretrained/video_tokenizer \
    --audio-tokenizer src/videopoet/pretrained/audio_tokenizer --transformer "$RUN/lm/final" \
    "${sr_args[@]}" --text "$TEXT" --int8 --out "$RUN/pipeline" --overwrite
fi
evaluate fp16 "$RUN/lm/final" "$RUN/lm/final/model.safetensors"
evaluate int8 "$RUN/pipeline" "$RUN/pipeline/transformer/model.safetensors"
say "done: videopoet generate \"a red circle bouncing on a striped background\" --model $RUN/pipeline"
