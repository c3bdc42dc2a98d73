"""Run the ``trio-litellm`` command as a user would: a subprocess of this Python, its proxy URL and
key in the environment (or left out), its output captured as text."""

from __future__ import annotations

import os
import subprocess
import sys


def cli_env(proxy_url: str | None, api_key: str | None, **extra: str) -> dict[str, str]:
    """This process's environment with ``LITELLM_PROXY_URL``/``LITELLM_API_KEY`` set, or removed
    when None, plus ``extra``."""
    env = {**os.environ, **extra}
    for name, value in (("LITELLM_PROXY_URL", proxy_url), ("LITELLM_API_KEY", api_key)):
        env.pop(name, None)
        if value is not None:
            env[name] = value
    return env


def run_cli(
    *args: str,
    proxy_url: str | None,
    api_key: str | None,
    timeout: float = 300,
    **extra_env: str,
) -> subprocess.CompletedProcess[str]:
    """``python -m trio_litellm ARGS``, waited for (``timeout`` seconds at most)."""
    return subprocess.run(
        [sys.executable, "-m", "trio_litellm", *args],
        env=cli_env(proxy_url, api_key, **extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
