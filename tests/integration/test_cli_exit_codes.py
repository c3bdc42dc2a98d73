"""The CLI's exit codes and health answers against a real proxy, run as subprocesses.

Exit code 3 means the proxy could not be used at all (unreachable, key refused, bad
configuration); a proxy that answered one request with an error is exit code 1.
"""

from __future__ import annotations

import os
import subprocess
import sys

from trio_litellm._devstack import Stack


def cli(*args: str, stack: Stack, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITELLM_PROXY_URL": stack.proxy_url, "LITELLM_API_KEY": stack.api_key}
    return subprocess.run(
        [sys.executable, "-m", "trio_litellm", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_chat_with_an_unknown_model_exits_1_with_the_proxys_words(stack: Stack) -> None:
    run = cli("chat", "hi", "--model", "no-such-model", stack=stack)
    assert run.returncode == 1, run.stderr
    assert "Invalid model name" in run.stderr


def test_chat_answered_500_upstream_exits_1(stack: Stack) -> None:
    run = cli("chat", "hi", "--model", "failing-gpt", stack=stack)
    assert run.returncode == 1, run.stderr
    assert "500" in run.stderr


def test_model_info_of_an_unknown_model_exits_1(stack: Stack) -> None:
    run = cli("model-info", "no-such-model", stack=stack)
    assert run.returncode == 1, run.stderr
    assert "no-such-model" in run.stderr
