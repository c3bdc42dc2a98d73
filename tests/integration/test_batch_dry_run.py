"""`batch --dry-run` against the real proxy: the cost it would have, per model and in total, from
the proxy's prices; a plan without the proxy; an output that belongs to another job.

fake-gpt is gpt-4o-mini to LiteLLM, priced at 1.5e-07 per prompt token and 6e-07 per completion
token in `/v1/model/info`; the fake provider's models (local-gpt) have no price there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from _cli_run import run_cli

from trio_litellm.testing._devstack import Stack, free_port

encoder = msgspec.json.Encoder()

PROMPT = "hello world!"  # 12 characters: 12 // 4 + 1 = 4 estimated prompt tokens


def write_lines(path: Path, lines: list[tuple[str, str, dict[str, Any]]]) -> None:
    with path.open("wb") as file:
        for custom_id, model, extra in lines:
            body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], **extra}
            record = {
                "custom_id": custom_id,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
            }
            file.write(encoder.encode(record) + b"\n")


def dry_run(
    *args: str, proxy_url: str, api_key: str | None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "batch",
        *args,
        "--dry-run",
        proxy_url=proxy_url,
        api_key=api_key,
        timeout=timeout,
        COLUMNS="200",
    )


def last_number(line: str) -> str:
    return re.findall(r"\d[\d,]*", line)[-1]


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


@pytest.fixture
def mixed_input(tmp_path: Path) -> Path:
    """10 fake-gpt lines at max_tokens 100, 5 local-gpt lines without max_tokens."""
    path = tmp_path / "in.jsonl"
    write_lines(
        path,
        [(f"priced-{i}", "fake-gpt", {"max_tokens": 100}) for i in range(10)]
        + [(f"unpriced-{i}", "local-gpt", {}) for i in range(5)],
    )
    return path


def test_the_plan_prices_each_model_from_the_proxy_and_says_unknown_for_the_unpriced(
    stack: Stack, mixed_input: Path, tmp_path: Path
) -> None:
    run = dry_run(
        str(mixed_input),
        "-o",
        str(tmp_path / "out.jsonl"),
        proxy_url=stack.proxy_url,
        api_key=stack.api_key,
    )
    assert run.returncode == 0, run.stderr
    # fake-gpt: 10 x 4 prompt tokens at 1.5e-07 + 10 x 100 completion tokens at 6e-07
    [priced] = lines_with(run.stdout, "model fake-gpt")
    assert "10" in priced and "$0.000606" in priced
    # local-gpt: no price in /v1/model/info, and its completion at the stated default (256)
    [unpriced] = lines_with(run.stdout, "model local-gpt")
    assert "unknown" in unpriced and "$0" not in unpriced
    assert "256" in run.stdout
    [total] = lines_with(run.stdout, "estimated cost")
    assert "$0.000606" in total and "local-gpt" in total  # a known part, and what it leaves out


def test_the_plan_prints_without_the_proxy_and_says_why_the_cost_is_unknown(
    mixed_input: Path, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    run = dry_run(
        str(mixed_input), "-o", str(tmp_path / "out.jsonl"), proxy_url=closed, api_key="sk-x"
    )
    assert run.returncode == 0, run.stderr
    assert "15" in run.stdout and "nothing was sent" in run.stdout
    [total] = lines_with(run.stdout, "estimated cost")
    assert "unknown" in total and "cannot reach" in total
    assert "$" not in total


def test_offline_plans_without_asking_the_proxy(
    stack: Stack, mixed_input: Path, tmp_path: Path
) -> None:
    run = dry_run(
        str(mixed_input),
        "-o",
        str(tmp_path / "out.jsonl"),
        "--offline",
        proxy_url=stack.proxy_url,
        api_key=stack.api_key,
    )
    assert run.returncode == 0, run.stderr
    [total] = lines_with(run.stdout, "estimated cost")
    assert "unknown" in total and "--offline" in total


def test_without_a_key_the_plan_says_the_proxy_refused_the_price_lookup(
    stack: Stack, mixed_input: Path, tmp_path: Path
) -> None:
    run = dry_run(
        str(mixed_input), "-o", str(tmp_path / "out.jsonl"), proxy_url=stack.proxy_url, api_key=None
    )
    assert run.returncode == 0, run.stderr
    [total] = lines_with(run.stdout, "estimated cost")
    assert "unknown" in total and "no key" in total


def test_an_output_of_another_job_is_named_not_counted_as_done(
    stack: Stack, mixed_input: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.jsonl"
    with other.open("wb") as file:
        for index in range(7):
            record = {
                "id": f"batch_req_{index}",
                "custom_id": f"elsewhere-{index}",
                "response": {"status_code": 200, "request_id": "r", "body": {}},
                "error": None,
            }
            file.write(encoder.encode(record) + b"\n")
    run = dry_run(
        str(mixed_input), "-o", str(other), proxy_url=stack.proxy_url, api_key=stack.api_key
    )
    assert run.returncode == 0, run.stderr
    [done] = lines_with(run.stdout, "already in the output")
    assert last_number(done) == "0"
    [to_run] = lines_with(run.stdout, "to run")
    assert last_number(to_run) == "15"
    [foreign] = lines_with(run.stdout, "not in the input")
    assert "7" in foreign and "elsewhere-0" in foreign


def test_offline_without_dry_run_is_a_usage_error(mixed_input: Path, tmp_path: Path) -> None:
    env = {**os.environ, "LITELLM_PROXY_URL": f"http://127.0.0.1:{free_port()}"}
    results = str(tmp_path / "out.jsonl")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "trio_litellm",
            "batch",
            str(mixed_input),
            "-o",
            results,
            "--offline",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "--offline goes with --dry-run" in run.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_the_plan_as_json_has_the_cost_per_model_null_where_unknown(
    stack: Stack, mixed_input: Path, tmp_path: Path
) -> None:
    run = dry_run(
        str(mixed_input),
        "-o",
        str(tmp_path / "out.jsonl"),
        "--json",
        proxy_url=stack.proxy_url,
        api_key=stack.api_key,
    )
    assert run.returncode == 0, run.stderr
    plan = msgspec.json.decode(run.stdout)
    assert plan["to_run"] == 15
    priced, unpriced = plan["per_model"]["fake-gpt"], plan["per_model"]["local-gpt"]
    assert priced["cost"] == pytest.approx(0.000606)
    assert (priced["prompt_tokens"], priced["completion_tokens"]) == (40, 1000)
    assert unpriced["cost"] is None and unpriced["cost_unknown_because"]
    assert plan["cost"]["known"] == pytest.approx(0.000606)
    assert plan["cost"]["unknown_models"] == ["local-gpt"]
