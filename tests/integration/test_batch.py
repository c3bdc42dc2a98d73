"""Batch jobs through the real proxy: round trip, kill -9 and resume, invalid files, shards.

The CLI is run as a real subprocess (`python -m trio_litellm batch ...`) where the test is about
the command; the library entry point `run_batch` elsewhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import pytest
from _cli_run import run_cli

from trio_litellm import open_client
from trio_litellm.batch import run_batch
from trio_litellm.testing._devstack import Stack

encoder = msgspec.json.Encoder()


def write_input(
    path: Path, count: int, *, prefix: str = "req", model: str = "local-gpt"
) -> list[str]:
    ids = []
    with path.open("wb") as file:
        for index in range(count):
            custom_id = f"{prefix}-{index}"
            ids.append(custom_id)
            body = {"model": model, "messages": [{"role": "user", "content": f"line {index}"}]}
            file.write(
                encoder.encode(
                    {
                        "custom_id": custom_id,
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": body,
                    }
                )
                + b"\n"
            )
    return ids


def read_output(path: Path) -> list[dict[str, Any]]:
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]


def cli(*args: str, stack: Stack, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, proxy_url=stack.proxy_url, api_key=stack.api_key, timeout=timeout)


def upstream_requests(stack: Stack) -> int:
    assert stack.fake_provider_url is not None
    stats = httpx2.get(f"{stack.fake_provider_url}/_stats").json()
    return int(stats["requests"])


async def test_a_thousand_lines_round_trip_through_the_proxy(stack: Stack, tmp_path: Path) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = write_input(requests, 1000)
    async with open_client(proxy_url=stack.proxy_url, api_key=stack.api_key) as client:
        summary = await run_batch(client, requests, results)
    lines = read_output(results)
    assert sorted(line["custom_id"] for line in lines) == sorted(ids)
    for line in lines:
        index = line["custom_id"].split("-")[1]
        assert line["error"] is None
        assert line["id"].startswith("batch_req_")
        assert line["response"]["status_code"] == 200
        assert line["response"]["body"]["choices"][0]["message"]["content"] == f"Echo: line {index}"
        assert line["response"]["body"]["usage"]["prompt_tokens"] == 2
    assert summary.succeeded == 1000 and summary.failed == 0
    assert summary.tokens_in == 2000


def test_kill_minus_nine_mid_run_then_resume_gives_every_id_exactly_once(
    stack: Stack, tmp_path: Path
) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = write_input(requests, 1500)
    env = {**os.environ, "LITELLM_PROXY_URL": stack.proxy_url, "LITELLM_API_KEY": stack.api_key}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_litellm",
            "batch",
            str(requests),
            "-o",
            str(results),
            "--concurrency",
            "16",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if results.exists() and results.read_bytes().count(b"\n") >= 200:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    written = results.read_bytes().count(b"\n")
    assert 200 <= written < 1500, "the batch must be killed mid-run"
    with results.open("ab") as file:  # a torn last line, as a kill during a write leaves it
        file.write(b'{"id":"batch_req_torn","custom_id":"req-')

    again = cli("batch", str(requests), "-o", str(results), stack=stack)
    assert again.returncode == 0, again.stderr
    lines = read_output(results)
    counts = Counter(line["custom_id"] for line in lines)
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1
    assert all(line["response"]["status_code"] == 200 for line in lines)


def test_a_second_run_sends_nothing_when_all_is_done(stack: Stack, tmp_path: Path) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, 20)
    assert cli("batch", str(requests), "-o", str(results), stack=stack).returncode == 0
    before = upstream_requests(stack)
    again = cli("batch", str(requests), "-o", str(results), stack=stack)
    assert again.returncode == 0, again.stderr
    assert upstream_requests(stack) == before
    assert len(read_output(results)) == 20


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"{not json", "not valid JSON"),
        (
            b'{"method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "messages": [{"role": "user"}]}}',
            "custom_id",
        ),
        (
            b'{"custom_id": "req-0", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "messages": [{"role": "user"}]}}',
            "line 1",
        ),
        (
            b'{"custom_id": "x", "method": "POST", "url": "/v1/images/generations", "body": {"model": "m"}}',
            "not supported",
        ),
        (
            b'{"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user"}]}}',
            "model",
        ),
        (
            b'{"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}',
            "messages",
        ),
    ],
    ids=[
        "malformed-json",
        "missing-custom-id",
        "duplicate-custom-id",
        "unsupported-url",
        "missing-model",
        "missing-messages",
    ],
)
def test_an_invalid_file_names_the_line_and_sends_nothing(
    stack: Stack, tmp_path: Path, line: bytes, message: str
) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, 3)
    content = requests.read_bytes().splitlines(keepends=True)
    content.insert(2, line + b"\n")  # the bad line is line 3
    requests.write_bytes(b"".join(content))
    before = upstream_requests(stack)
    run = cli("batch", str(requests), "-o", str(results), stack=stack)
    assert run.returncode == 2
    assert ":3:" in run.stderr and message in run.stderr, run.stderr
    assert upstream_requests(stack) == before
    assert not results.exists() or results.read_bytes() == b""


def test_skip_invalid_writes_bad_lines_as_errors_and_runs_the_rest(
    stack: Stack, tmp_path: Path
) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, 4)
    with requests.open("ab") as file:
        file.write(
            b'{"custom_id": "bad", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}\n'
        )
    run = cli("batch", str(requests), "-o", str(results), "--skip-invalid", stack=stack)
    assert run.returncode == 1, run.stderr
    by_id = {line["custom_id"]: line for line in read_output(results)}
    assert by_id["bad"]["response"] is None and by_id["bad"]["error"]["code"] == "invalid_line"
    assert all(by_id[f"req-{i}"]["response"]["status_code"] == 200 for i in range(4))


def test_failed_requests_are_written_and_retry_failed_reruns_only_them(
    stack: Stack, tmp_path: Path
) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, 6)
    with requests.open("ab") as file:
        body = {"model": "failing-gpt", "messages": [{"role": "user", "content": "x"}]}
        file.write(
            encoder.encode(
                {
                    "custom_id": "doomed",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": body,
                }
            )
            + b"\n"
        )
    first = cli("batch", str(requests), "-o", str(results), "--max-retries", "0", stack=stack)
    assert first.returncode == 1
    by_id = {line["custom_id"]: line for line in read_output(results)}
    assert by_id["doomed"]["response"]["status_code"] == 500
    assert by_id["doomed"]["response"]["body"]["error"]["message"]
    before = upstream_requests(stack)
    retried = cli(
        "batch",
        str(requests),
        "-o",
        str(results),
        "--max-retries",
        "0",
        "--retry-failed",
        stack=stack,
    )
    assert retried.returncode == 1
    assert upstream_requests(stack) - before == 1  # only the failed one ran again
    lines = read_output(results)
    assert Counter(line["custom_id"] for line in lines)["doomed"] == 1
    assert len(lines) == 7


async def test_two_shards_together_cover_the_file_exactly_once(
    stack: Stack, tmp_path: Path
) -> None:
    requests = tmp_path / "in.jsonl"
    ids = write_input(requests, 200)
    outputs = [tmp_path / "shard0.jsonl", tmp_path / "shard1.jsonl"]
    async with open_client(proxy_url=stack.proxy_url, api_key=stack.api_key) as client:
        for index, output in enumerate(outputs):
            await run_batch(client, requests, output, shard=(index, 2))
    per_shard = [[line["custom_id"] for line in read_output(output)] for output in outputs]
    assert all(per_shard)
    assert not set(per_shard[0]) & set(per_shard[1])
    assert sorted(per_shard[0] + per_shard[1]) == sorted(ids)


def test_dry_run_prints_the_plan_and_sends_nothing(stack: Stack, tmp_path: Path) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, 50)
    before = upstream_requests(stack)
    run = cli("batch", str(requests), "-o", str(results), "--dry-run", "--rpm", "10", stack=stack)
    assert run.returncode == 0, run.stderr
    assert "50" in run.stdout and "nothing was sent" in run.stdout
    assert "5.0 min" in run.stdout
    assert upstream_requests(stack) == before


def test_the_summary_json_has_the_figures(stack: Stack, tmp_path: Path) -> None:
    requests, results, summary = (
        tmp_path / "in.jsonl",
        tmp_path / "out.jsonl",
        tmp_path / "summary.json",
    )
    write_input(requests, 30)
    run = cli(
        "batch", str(requests), "-o", str(results), "--summary-json", str(summary), stack=stack
    )
    assert run.returncode == 0, run.stderr
    figures = msgspec.json.decode(summary.read_bytes())
    assert figures["succeeded"] == 30
    assert figures["tokens_in"] == 60
    assert figures["latency"]["p50"] > 0
    assert "local-gpt" in figures["per_model"]
    assert "sk-test" not in run.stdout + run.stderr


def test_the_cli_commands_answer(stack: Stack) -> None:
    assert "local-gpt" in cli("models", stack=stack).stdout
    info = cli("model-info", "fake-gpt", stack=stack)
    assert info.returncode == 0 and "128000" in info.stdout
    assert "healthy" in cli("health", stack=stack).stdout
    chat = cli("chat", "hello there", "--model", "local-gpt", stack=stack)
    assert chat.returncode == 0 and "Echo: hello there" in chat.stdout
    missing = cli("model-info", "nope", stack=stack)
    assert missing.returncode == 1 and "nope" in missing.stderr


def test_an_unreachable_proxy_exits_3(tmp_path: Path) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, 2)
    env = {
        **os.environ,
        "LITELLM_PROXY_URL": "http://127.0.0.1:9",
        "LITELLM_API_KEY": "sk-secret-x",
    }
    run = subprocess.run(
        [sys.executable, "-m", "trio_litellm", "batch", str(requests), "-o", str(results)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 3
    assert "not ready" in run.stderr
    assert "sk-secret-x" not in run.stdout + run.stderr


def test_a_refused_key_exits_3_before_any_line_is_written(stack: Stack, tmp_path: Path) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, 5)
    env = {**os.environ, "LITELLM_PROXY_URL": stack.proxy_url, "LITELLM_API_KEY": "sk-not-the-key"}
    run = subprocess.run(
        [sys.executable, "-m", "trio_litellm", "batch", str(requests), "-o", str(results)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 3
    assert "refused the API key" in run.stderr
    assert "sk-not-the-key" not in run.stdout + run.stderr
    assert not results.exists() or results.read_bytes() == b""


def test_a_rerun_exits_1_while_the_output_still_holds_failures(
    stack: Stack, tmp_path: Path
) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, 2)
    with requests.open("ab") as file:
        body = {"model": "failing-gpt", "messages": [{"role": "user", "content": "x"}]}
        line = {"custom_id": "doomed", "method": "POST", "url": "/v1/chat/completions"}
        file.write(encoder.encode({**line, "body": body}) + b"\n")
    first = cli("batch", str(requests), "-o", str(results), "--max-retries", "0", stack=stack)
    assert first.returncode == 1, first.stderr
    before = upstream_requests(stack)
    again = cli("batch", str(requests), "-o", str(results), stack=stack)
    assert upstream_requests(stack) == before  # nothing was left to run
    assert again.returncode == 1, again.stderr
    assert "3 already done" in again.stderr and "0 ran" in again.stderr
    assert "1 failed line remains" in again.stderr and "--retry-failed" in again.stderr


def test_a_second_run_on_the_same_output_exits_2_naming_the_first(
    stack: Stack, tmp_path: Path
) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, 3)
    with requests.open("ab") as file:  # keeps the first run busy until it is stopped
        body = {
            "model": "local-gpt",
            "messages": [{"role": "user", "content": "slow [fake latency=60]"}],
        }
        line = {"custom_id": "slow", "method": "POST", "url": "/v1/chat/completions"}
        file.write(encoder.encode({**line, "body": body}) + b"\n")
    env = {**os.environ, "LITELLM_PROXY_URL": stack.proxy_url, "LITELLM_API_KEY": stack.api_key}
    first = subprocess.Popen(
        [sys.executable, "-m", "trio_litellm", "batch", str(requests), "-o", str(results)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if results.exists() and results.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.05)
        assert results.read_bytes().count(b"\n") == 3
        started = time.monotonic()
        second = cli("batch", str(requests), "-o", str(results), stack=stack, timeout=30)
        assert second.returncode == 2, second.stderr
        assert time.monotonic() - started < 15
        assert f"PID {first.pid}" in second.stderr, second.stderr
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait(timeout=10)
    assert len(read_output(results)) == 3  # the second run wrote nothing


@pytest.mark.parametrize("delay", [0.0, 0.2, 0.5, 1.0])
def test_ctrl_c_with_requests_in_flight_prints_and_writes_the_summary_marked_interrupted(
    stack: Stack, tmp_path: Path, delay: float
) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    summary = tmp_path / "summary.json"
    write_input(requests, 10)
    with requests.open("ab") as file:
        for index in range(4):  # in flight at the proxy when the interrupt comes
            body = {
                "model": "local-gpt",
                "messages": [{"role": "user", "content": f"slow {index} [fake latency=60]"}],
            }
            line = {"custom_id": f"slow-{index}", "method": "POST", "url": "/v1/chat/completions"}
            file.write(encoder.encode({**line, "body": body}) + b"\n")
    env = {**os.environ, "LITELLM_PROXY_URL": stack.proxy_url, "LITELLM_API_KEY": stack.api_key}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_litellm",
            "batch",
            str(requests),
            "-o",
            str(results),
            "--summary-json",
            str(summary),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if results.exists() and results.read_bytes().count(b"\n") >= 10:
            break
        time.sleep(0.05)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert "interrupted: what finished is saved" in stderr, stderr
    assert "14 in input" in stderr and "10 ran" in stderr, stderr
    figures = msgspec.json.decode(summary.read_bytes())
    assert figures["interrupted"] is True
    assert figures["succeeded"] == 10 and figures["failed"] == 0
    assert len(read_output(results)) == 10  # the cancelled requests run again next time


def test_the_proxys_cost_is_kept_in_the_output_and_summed_over_every_run(
    stack: Stack, tmp_path: Path
) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    summary = tmp_path / "summary.json"
    write_input(requests, 3, model="fake-gpt")
    first = cli("batch", str(requests), "-o", str(results), stack=stack)
    assert first.returncode == 0, first.stderr
    for line in read_output(results):
        proxy = line["litellm"]
        assert proxy["response_cost"] > 0
        assert proxy["call_id"] and proxy["model_id"]
        assert proxy["model_group"] == "fake-gpt" and proxy["attempts"] == 1
    each = read_output(results)[0]["litellm"]["response_cost"]

    write_input(requests, 5, model="fake-gpt")  # the job grows: two more requests
    again = cli(
        "batch", str(requests), "-o", str(results), "--summary-json", str(summary), stack=stack
    )
    assert again.returncode == 0, again.stderr
    figures = msgspec.json.decode(summary.read_bytes())
    assert figures["ran"] == 2 and figures["cost"] == pytest.approx(2 * each)
    job = figures["job"]
    assert (job["requests"], job["succeeded"], job["failed"]) == (5, 5, 0)
    assert job["cost"] == pytest.approx(5 * each) and job["cost_complete"] is True
    assert job["tokens_in"] == 5 * figures["tokens_in"] // 2

    usage = cli("usage", str(results), "--json", stack=stack)
    assert usage.returncode == 0, usage.stderr
    totals = msgspec.json.decode(usage.stdout)
    assert totals["cost"] == pytest.approx(5 * each) and totals["cost_complete"] is True


def test_a_run_on_an_output_with_duplicate_ids_says_so_and_sends_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, 4)
    assert cli("batch", str(requests), "-o", str(results), stack=stack).returncode == 0
    first_line = results.read_bytes().splitlines(keepends=True)[0]
    with results.open("ab") as file:  # as two runs at once left it
        file.write(first_line)
    before = upstream_requests(stack)
    again = cli("batch", str(requests), "-o", str(results), stack=stack)
    assert again.returncode == 2, again.stderr
    assert ":5:" in again.stderr and "also on line 1" in again.stderr, again.stderr
    assert "two runs wrote to it at once" in again.stderr
    assert upstream_requests(stack) == before
    usage = cli("usage", str(results), stack=stack)
    assert "1 repeat a custom_id" in usage.stdout, usage.stdout


def test_a_base64_embedding_answer_is_kept_whole_in_the_output(
    stack: Stack, tmp_path: Path
) -> None:
    # The openai SDK's default encoding: the answer's vectors are base64 strings. The output keeps
    # the proxy's answer as it came, with its figures, never "response": null.
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    line = {
        "custom_id": "emb-1",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "local-embed", "input": ["a", "b"], "encoding_format": "base64"},
    }
    requests.write_bytes(encoder.encode(line) + b"\n")
    run = cli("batch", str(requests), "-o", str(results), stack=stack)
    assert run.returncode == 0, run.stderr
    [record] = read_output(results)
    assert record["error"] is None
    response = record["response"]
    assert response["status_code"] == 200
    vectors = [item["embedding"] for item in response["body"]["data"]]
    assert len(vectors) == 2
    assert all(isinstance(vector, str) and vector for vector in vectors)  # base64, as sent
    assert record["litellm"]["model_group"] == "local-embed"
