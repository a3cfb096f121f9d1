#!/usr/bin/env bash
# Rebuild the bundled default model from ../shared/data (RAVDESS + TESS), speaker-independent CV in its manifest.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data}"
.venv/bin/vocalis train "$data/ravdess" "$data/tess" --recipe whisper-span-aug-logreg --cv 6 \
  --out src/vocalis/data/default.vocalis --json
