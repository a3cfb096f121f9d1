#!/usr/bin/env bash
# Installs what the real-browser end-to-end tests (tests/e2e) need, without downloading browsers
# from Playwright's CDN: Debian's `chromium` (only when /usr/bin/chromium is missing and we are root)
# and the `playwright` Python package into .venv (when missing). Never fails the caller: the e2e
# tests skip with a reason when chromium or playwright is absent.
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
if [[ ! -x /usr/bin/chromium ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "browser.sh: installing Debian chromium" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) >&2 \
      || echo "browser.sh: could not install chromium; the e2e tests will be skipped" >&2
  else
    echo "browser.sh: /usr/bin/chromium missing and not root; the e2e tests will be skipped" >&2
  fi
fi
if [[ -x .venv/bin/python ]] && ! .venv/bin/python -c "import playwright" 2>/dev/null; then
  echo "browser.sh: installing playwright (Python package only; no browser download)" >&2
  .venv/bin/pip install -q "playwright>=1.44" >&2 || echo "browser.sh: could not install playwright" >&2
fi
exit 0
