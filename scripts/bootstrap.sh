#!/usr/bin/env bash
# Set up a fresh checkout: .venv (the package and its dev tools) and .proxy-venv (the LiteLLM proxy).
# Needs only Python 3.11+ (set PYTHON to choose one). Idempotent: a venv is (re)installed only when it
# is missing or its input (pyproject.toml, requirements/litellm-proxy.txt) changed since the last
# successful install, which leaves a copy of that input in the venv as a stamp.
# Quiet: one line per step; pip's output goes to run/bootstrap/*.log and is shown only on failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
log_dir=run/bootstrap
mkdir -p "$log_dir"

say() { printf 'bootstrap: %s\n' "$*" >&2; }

find_python() {
  local candidate
  for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  say "error: Python 3.11 or newer is needed (none found; set PYTHON=/path/to/python3.11)"
  return 1
}

# run_logged NAME CMD...: run CMD with its output in $log_dir/NAME.log; on failure show the log's end.
run_logged() {
  local name=$1
  shift
  if ! "$@" >"$log_dir/$name.log" 2>&1; then
    say "error: '$*' failed; the end of $log_dir/$name.log:"
    tail -n 40 "$log_dir/$name.log" >&2
    return 1
  fi
}

# ensure_venv DIR INPUT INSTALL-ARGS...: (re)create DIR and pip-install into it unless the stamp
# (a copy of INPUT) matches INPUT.
ensure_venv() {
  local venv=$1 input=$2
  shift 2
  local stamp="$venv/.bootstrap-stamp"
  if [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s "$input" "$stamp"; then
    return 0
  fi
  local start=$SECONDS
  if [[ ! -x "$venv/bin/python" ]]; then
    say "creating $venv"
    rm -rf "$venv"
    run_logged "${venv#.}-create" "$(find_python)" -m venv "$venv"
  fi
  say "installing into $venv (pip install $*) ..."
  rm -f "$stamp"
  run_logged "${venv#.}-install" "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"
  cp "$input" "$stamp"
  say "$venv ready ($((SECONDS - start)) s)"
}

ensure_venv .venv pyproject.toml -e '.[dev]'
ensure_venv .proxy-venv requirements/litellm-proxy.txt -r requirements/litellm-proxy.txt
