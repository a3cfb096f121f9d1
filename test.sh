#!/usr/bin/env bash
# Vocalis test suite: sets up .venv with the dev extras on first run, then lint, types and tests.
# Corpus tests read ../shared/data and skip with a reason where it is absent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
scripts/bootstrap.sh dev
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
