"""``trio-litellm status``: where a real run's output stands against its input, sending nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx2
import msgspec
from _cli_run import run_cli

from trio_litellm.testing._devstack import Stack

encoder = msgspec.json.Encoder()


def requests_file(path: Path, ids: list[str]) -> Path:
    with path.open("wb") as file:
        for custom_id in ids:
            body = {"model": "local-gpt", "messages": [{"role": "user", "content": custom_id}]}
            line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions"}
            file.write(encoder.encode({**line, "body": body}) + b"\n")
    return path


def trio_litellm(*args: str, proxy_url: str, api_key: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, proxy_url=proxy_url, api_key=api_key, timeout=120)


def upstream_requests(stack: Stack) -> int:
    assert stack.fake_provider_url is not None
    return int(httpx2.get(f"{stack.fake_provider_url}/_stats").json()["requests"])


def test_status_of_a_partial_run_counts_everything_and_sends_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    everything = requests_file(tmp_path / "all.jsonl", [f"r{i}" for i in range(5)])
    first_three = requests_file(tmp_path / "part.jsonl", ["r0", "r1", "r2"])
    results = tmp_path / "out.jsonl"
    ran = trio_litellm(
        "batch", str(first_three), "-o", str(results),
        proxy_url=stack.proxy_url, api_key=stack.api_key,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    lines = results.read_bytes().splitlines()
    stray = msgspec.json.decode(lines[0])
    stray["custom_id"] = "not-asked"
    stray["litellm"] = {"response_cost": 0.25}
    with results.open("ab") as file:
        file.write(lines[1] + b"\n" + encoder.encode(stray) + b"\n")
    before = upstream_requests(stack)

    # Pointed at nothing: the status command must not need the proxy.
    status = trio_litellm(
        "status", str(everything), str(results), "--json",
        proxy_url="http://127.0.0.1:9", api_key=stack.api_key,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    figures = msgspec.json.decode(status.stdout)
    assert (figures["input_requests"], figures["done"], figures["remaining"]) == (5, 3, 2)
    assert (figures["succeeded"], figures["failed"]) == (3, 0)
    assert figures["output_duplicates"] == 1
    assert figures["duplicate_ids"] == [msgspec.json.decode(lines[1])["custom_id"]]
    assert (figures["unknown"], figures["unknown_ids"]) == (1, ["not-asked"])
    assert figures["cost"] is not None and figures["cost"] >= 0.25
    assert upstream_requests(stack) == before

    table = trio_litellm(
        "status", str(everything), str(results), proxy_url="http://127.0.0.1:9", api_key="x"
    )
    assert table.returncode == 0, table.stderr
    assert "remaining" in table.stdout and "not-asked" in table.stdout


def test_status_of_a_corrupt_output_exits_2_naming_the_line(tmp_path: Path) -> None:
    everything = requests_file(tmp_path / "all.jsonl", ["a"])
    results = tmp_path / "out.jsonl"
    results.write_bytes(b"garbage\n")
    run = trio_litellm(
        "status", str(everything), str(results), proxy_url="http://127.0.0.1:9", api_key="x"
    )
    assert run.returncode == 2
    assert "out.jsonl:1:" in run.stderr
