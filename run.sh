#!/usr/bin/env bash
# Vocalis main job. First run sets up .venv (Python >= 3.10) with the service extras.
#   ./run.sh                          # the service on http://127.0.0.1:8000 (API docs at /docs), bundled model, SQLite in ./vocalis-data
#   ./run.sh predict clip.wav --json  # any vocalis CLI command instead
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/scripts/bootstrap.sh" serve
if [[ $# -eq 0 ]]; then
  exec "$here/.venv/bin/vocalis" serve --host "${VOCALIS_HOST:-127.0.0.1}" --port "${VOCALIS_PORT:-8000}"
fi
exec "$here/.venv/bin/vocalis" "$@"
