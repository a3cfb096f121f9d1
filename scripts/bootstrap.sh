#!/usr/bin/env bash
# Create .venv and install Vocalis with the given extras, only when pyproject.toml changed.
# Usage: source-free; call as: scripts/bootstrap.sh EXTRAS   (e.g. "dev")
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.vocalis-installed-${extras:-core}"
# reinstall when the dependencies or this script's install steps change
want="$(cat pyproject.toml "$0" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[vocalis] installing into .venv (extras: ${extras:-none}) ..." >&2
  .venv/bin/python -m pip install -q --upgrade pip >&2
  spec="."
  [ -n "$extras" ] && spec=".[${extras}]"
  # torch is pinned to the CPU build (2.13.0) in pyproject; pip finds it in the configured wheel dir/index.
  .venv/bin/python -m pip install -q -e "$spec" >&2
  # Silero VAD's ONNX model for streaming; its package metadata asks for an unpinned torch, so no deps.
  .venv/bin/python -m pip install -q --no-deps "silero-vad==6.2.3" >&2
  echo "$want" > "$stamp"
fi
