#!/usr/bin/env bash
# Vocalis test suite: sets up .venv with the dev extras on first run, starts a throwaway PostgreSQL
# (Debian package; installed if missing and running as root) for the storage tests, then lint, types, tests.
# Corpus tests read ../shared/data and skip with a reason where it is absent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
scripts/bootstrap.sh dev
scripts/browser.sh   # Debian chromium for the end-to-end browser tests (installed if missing and root)
scripts/speech.sh    # Debian espeak-ng: synthetic speech with known words for the triage tests
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
if [[ -z "${VOCALIS_TEST_POSTGRES_URL:-}" ]] && pg_env="$(scripts/postgres.sh)"; then
  eval "$pg_env"
  trap 'scripts/postgres.sh stop "$VOCALIS_TEST_POSTGRES_DIR" >/dev/null 2>&1' EXIT
fi
.venv/bin/python -m pytest -p no:cacheprovider "$@"
