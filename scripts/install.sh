#!/usr/bin/env bash
# Create or refresh .venv from requirements*.txt (run: requirements.txt; test: requirements-test.txt, which
# adds requirements-ray.txt, so the Ray engine tests run). A stamp keyed on the requirement files'
# hash makes a second run instant. Usage: scripts/install.sh run|test
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
req=requirements.txt
[[ $mode == test ]] && req=requirements-test.txt
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
stamp=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-$mode"
if [[ ! -f $stamp ]]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "$req"
  touch "$stamp"
fi
