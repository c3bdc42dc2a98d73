"""The debug recorder and the usage command through the real proxy: entries hold what the fake
provider served, bodies are cut and the ring is bounded, the dump round-trips without the key,
failures carry their error, and a batch run writes its recording however it ends."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from _cli_run import cli_env, run_cli

from trio_litellm import InternalServerError, open_client, read_dump
from trio_litellm.testing._devstack import Stack

encoder = msgspec.json.Encoder()


async def test_recorded_entries_hold_what_the_proxy_served(stack: Stack, tmp_path: Path) -> None:
    secret_text = f"my key is {stack.api_key}"  # the echo model sends it back
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, max_retries=0, record_last=20
    ) as client:
        reply = await client.complete(
            model="local-gpt", messages=[{"role": "user", "content": "one two three"}]
        )
        async with client.stream(
            model="local-gpt", messages=[{"role": "user", "content": "a b"}]
        ) as stream:
            async for _ in stream:
                pass
        await client.embed(model="local-embed", input=["x", "y"])
        with pytest.raises(InternalServerError):
            await client.complete(model="failing-gpt", messages=[{"role": "user", "content": "x"}])
        echoed = await client.complete(
            model="local-gpt", messages=[{"role": "user", "content": secret_text}]
        )
        assert stack.api_key in echoed.text
        assert client.recorder is not None
        entries = client.recorder.entries()
        client.recorder.dump(tmp_path / "dump.jsonl")

    assert [entry.record.model for entry in entries] == [
        "local-gpt",
        "local-gpt",
        "local-embed",
        "failing-gpt",
        "local-gpt",
    ]
    completion, streamed, embedding, failure, echo = entries

    assert completion.status == 200 and completion.ok
    served = msgspec.json.decode(completion.response_body or "")
    assert served["choices"][0]["message"]["content"] == "Echo: one two three"
    assert served["id"] == reply.id
    assert completion.response_headers["x-litellm-model-group"] == "local-gpt"
    assert completion.response_headers["x-litellm-call-id"] == reply.meta.call_id
    assert completion.record.call_id == reply.meta.call_id
    sent = msgspec.json.decode(completion.request_body)
    assert sent["messages"] == [{"role": "user", "content": "one two three"}]

    assert streamed.record.stream and streamed.status == 200
    assembled = msgspec.json.decode(streamed.response_body or "")
    assert assembled["choices"][0]["message"]["content"] == "Echo: a b"
    assert assembled["usage"]["completion_tokens"] == 3

    assert embedding.path == "/v1/embeddings"
    assert len(msgspec.json.decode(embedding.response_body or "")["data"]) == 2

    assert failure.record.outcome == "InternalServerError" and not failure.ok
    assert failure.status == 500 and failure.error_type == "InternalServerError"
    assert failure.error_message is not None and "fake upstream error 500" in failure.error_message
    proxy_said = msgspec.json.decode(failure.response_body or "")  # the proxy's own error body
    assert "fake upstream error 500" in proxy_said["error"]["message"]
    assert failure.response_headers.get("x-litellm-call-id") == failure.record.call_id

    assert "my key is ***" in echo.request_body
    assert "***" in (echo.response_body or "")

    dump = (tmp_path / "dump.jsonl").read_bytes()
    assert stack.api_key.encode() not in dump
    assert b"authorization" not in dump.lower()
    assert read_dump(tmp_path / "dump.jsonl") == entries


async def test_bodies_are_cut_and_only_the_last_requests_kept(stack: Stack) -> None:
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, record_last=3, record_body_limit=64
    ) as client:
        for index in range(5):
            await client.complete(
                model="local-gpt",
                messages=[{"role": "user", "content": f"request {index} " + "word " * 40}],
            )
        assert client.recorder is not None
        entries = client.recorder.entries()
        statistics = client.recorder.statistics()
    assert (statistics.held, statistics.recorded, statistics.evicted) == (3, 5, 2)
    for index, entry in zip((2, 3, 4), entries, strict=True):
        assert len(entry.request_body.encode()) == 64 and entry.request_body_cut > 150
        assert len((entry.response_body or "").encode()) == 64 and entry.response_body_cut > 150
        assert entry.record.prompt_tokens == 42  # the record is whole: only bodies are cut
        assert f"request {index}" not in entry.request_body  # cut before the message
    assert all(entry.ok for entry in entries)


# --- the command line -------------------------------------------------------------------------------


def write_input(path: Path, lines: list[tuple[str, str, str]]) -> None:
    with path.open("wb") as file:
        for custom_id, model, content in lines:
            body = {"model": model, "messages": [{"role": "user", "content": content}]}
            record = {
                "custom_id": custom_id,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
            }
            file.write(encoder.encode(record) + b"\n")


def cli(*args: str, stack: Stack) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, proxy_url=stack.proxy_url, api_key=stack.api_key, COLUMNS="200")


def test_a_batch_records_its_requests_and_usage_reads_its_output(
    stack: Stack, tmp_path: Path
) -> None:
    requests, results, dump, summary = (
        tmp_path / "in.jsonl",
        tmp_path / "out.jsonl",
        tmp_path / "dump.jsonl",
        tmp_path / "summary.json",
    )
    lines = [(f"ok-{i}", "local-gpt", f"line {i}") for i in range(12)]
    lines += [(f"bad-{i}", "failing-gpt", f"line {i}") for i in range(3)]
    write_input(requests, lines)
    run = cli(
        "batch",
        str(requests),
        "-o",
        str(results),
        "--max-retries",
        "0",
        "--summary-json",
        str(summary),
        "--record-to",
        str(dump),
        "--record-last",
        "10",
        stack=stack,
    )
    assert run.returncode == 1, run.stderr  # the failing-gpt lines failed
    assert "recorded the last 10 requests" in run.stderr
    entries = read_dump(dump)
    assert len(entries) == 10
    assert stack.api_key.encode() not in dump.read_bytes()

    usage = cli("usage", str(results), "--input", str(requests), "--json", stack=stack)
    assert usage.returncode == 0, usage.stderr
    figures: dict[str, Any] = msgspec.json.decode(usage.stdout)
    ran = msgspec.json.decode(summary.read_bytes())
    assert (figures["requests"], figures["succeeded"], figures["failed"]) == (15, 12, 3)
    assert (figures["tokens_in"], figures["tokens_out"]) == (ran["tokens_in"], ran["tokens_out"])
    assert figures["outcomes"] == {"succeeded": 12, "http_500": 3}
    assert figures["per_model"]["failing-gpt"]["failed"] == 3

    table = cli("usage", str(results), "--recorded", str(dump), "--failed-only", stack=stack)
    assert table.returncode == 0, table.stderr
    assert "15 · 12 succeeded · 3 failed" in table.stdout
    assert "InternalServerError" in table.stdout

    shown = cli("recorded", str(dump), stack=stack)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("local-gpt") + shown.stdout.count("failing-gpt") >= 10


def test_an_interrupted_batch_still_writes_its_recording(stack: Stack, tmp_path: Path) -> None:
    requests, results, dump = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "dump.jsonl"
    lines = [(f"fast-{i}", "local-gpt", f"line {i}") for i in range(10)]
    lines += [(f"slow-{i}", "local-gpt", f"line {i} [fake latency=60]") for i in range(4)]
    write_input(requests, lines)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_litellm",
            "batch",
            str(requests),
            "-o",
            str(results),
            "--record-to",
            str(dump),
        ],
        env=cli_env(stack.proxy_url, stack.api_key),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if results.exists() and results.read_bytes().count(b"\n") >= 10:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # the slow requests are in flight at the proxy
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:  # never left running for a later test to trip over
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    entries = read_dump(dump)
    outcomes = sorted(entry.record.outcome for entry in entries)
    assert outcomes == ["ClientClosedError"] * 4 + ["ok"] * 10
    cancelled = [entry for entry in entries if not entry.ok]
    assert all("[fake latency=60]" in entry.request_body for entry in cancelled)
