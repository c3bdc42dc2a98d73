#!/usr/bin/env bash
# Run the test suite: set up the venvs if needed, then pytest with any arguments given
# (e.g. `bash scripts/test.sh -q`, `bash scripts/test.sh tests/unit -x`). Exits with pytest's status.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
