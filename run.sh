#!/usr/bin/env bash
# Vocalis main job. First run sets up .venv (Python >= 3.10); then runs the vocalis CLI on the bundled model.
#   ./run.sh predict clip.wav other.webm --json
#   ./run.sh --help
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/scripts/bootstrap.sh" ""
exec "$here/.venv/bin/vocalis" "${@:---help}"
