#!/usr/bin/env bash
# Run the demo: set up the venvs if needed, then `python -m trio_litellm.cli.demo` with any
# arguments.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m trio_litellm.cli.demo "$@"
