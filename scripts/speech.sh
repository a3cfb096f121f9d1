#!/usr/bin/env bash
# Installs Debian's espeak-ng (a speech synthesiser) for the tests that need spoken words with known
# content (call triage, keyword spotting): only when it is missing and we are root. Never fails the
# caller: those tests skip with a reason when espeak-ng is absent.
set -uo pipefail
if ! command -v espeak-ng >/dev/null; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "speech.sh: installing Debian espeak-ng" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends espeak-ng) >&2 \
      || echo "speech.sh: could not install espeak-ng; the synthetic-speech tests will be skipped" >&2
  else
    echo "speech.sh: espeak-ng missing and not root; the synthetic-speech tests will be skipped" >&2
  fi
fi
exit 0
