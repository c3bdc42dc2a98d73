"""The CLI's exit codes and health answers against a real proxy, run as subprocesses.

Exit code 3 means the proxy could not be used at all (unreachable, key refused, bad
configuration); a proxy that answered one request with an error is exit code 1.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from _cli_run import run_cli

from trio_litellm.testing._devstack import Stack


def cli(*args: str, stack: Stack, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, proxy_url=stack.proxy_url, api_key=stack.api_key, timeout=timeout)


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


def test_health_with_a_refused_key_says_so_and_exits_3(stack: Stack) -> None:
    run = cli("health", "--api-key", "sk-wrong-71d3", stack=stack)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "refused the API key" in run.stdout + run.stderr
    assert "sk-wrong-71d3" not in run.stdout + run.stderr


def test_health_with_the_right_key_says_it_is_accepted(stack: Stack) -> None:
    run = cli("health", stack=stack)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "key accepted" in run.stdout


def test_deep_health_with_an_unhealthy_deployment_exits_1_naming_model_groups(
    stack: Stack,
) -> None:
    run = cli("health", "--deep", stack=stack, timeout=240)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "failing-gpt" in run.stdout
    assert "local-gpt" in run.stdout
    assert "status=500" not in run.stdout  # the upstream's name, not the model group's


def test_batch_into_a_missing_directory_exits_2_and_creates_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    requests = tmp_path / "in.jsonl"
    requests.write_text(
        '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", '
        '"body": {"model": "local-gpt", "messages": [{"role": "user", "content": "hi"}]}}\n'
    )
    target = tmp_path / "missing" / "dir" / "out.jsonl"
    run = cli("batch", str(requests), "-o", str(target), stack=stack)
    assert run.returncode == 2, run.stderr
    assert "missing" in run.stderr
    assert not (tmp_path / "missing").exists()
