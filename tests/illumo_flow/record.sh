#!/usr/bin/env bash
# Regenerate flows/, contexts/, copied modules/, expected/ and MANIFEST.md from the
# illumo-flow snapshot.  Needs Python 3.10 (illumo-flow 0.1.5 does not import on 3.11+:
# policy.py:26 uses a mutable dataclass default) and PyPI access for pytest (and openai
# when --openai-probe is given).  Never touches anything outside tests/illumo_flow/ and
# $ILLUMO_FLOW_SCRATCH.
#
#   tests/illumo_flow/record.sh [--openai-probe]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PY310="${PY310:-$HOME/.pyenv/versions/3.10.13/bin/python}"
export ILLUMO_FLOW_SNAPSHOT="${ILLUMO_FLOW_SNAPSHOT:-/work/.mirror/kitfactory+illumo-flow/repo}"
export ILLUMO_FLOW_SCRATCH="${ILLUMO_FLOW_SCRATCH:-/tmp/illumo_flow_record}"
S="$ILLUMO_FLOW_SCRATCH"
mkdir -p "$S"
rm -rf "$S/pkgsrc" && git clone --quiet "$ILLUMO_FLOW_SNAPSHOT" "$S/pkgsrc"

# venv with exactly the declared dependencies (PyYAML) + pytest (coding_assistant runs `pytest -q`,
# tests/test_flow_examples.py imports pytest).  No openai SDK: that is how `pip install` of the
# snapshot behaves, and Agent nodes then use illumo_flow.llm._FallbackOpenAI.
if [ ! -x "$S/venv/bin/illumo" ]; then
  "$PY310" -m venv "$S/venv"
  "$S/venv/bin/pip" install -q "$S/pkgsrc" "pytest==9.2.0"
fi
if [[ " $* " == *" --openai-probe "* ]] && [ ! -x "$S/venv-openai/bin/illumo" ]; then
  "$PY310" -m venv "$S/venv-openai"
  "$S/venv-openai/bin/pip" install -q "$S/pkgsrc" openai
fi
exec "$S/venv/bin/python" "$HERE/record.py" "$@"
