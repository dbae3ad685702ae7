#!/usr/bin/env bash
# The whole test suite, from a fresh clone: system packages, .venv, ruff (lint and format) and
# mypy, a throwaway PostgreSQL server on loopback, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system_deps.sh
scripts/install.sh test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
eval "$(scripts/pg_temp.sh start)"
trap 'scripts/pg_temp.sh stop "$DRAFTROOM_PG_DIR"' EXIT
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m pytest "$@"
