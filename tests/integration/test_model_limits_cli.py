"""``trio-litellm batch --model-limit`` through the real proxy: a mixed file where one model may
run only one request at a time, and the other model's requests are not held up by it."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import msgspec

from trio_litellm import read_dump
from trio_litellm.testing._devstack import Stack

encoder = msgspec.json.Encoder()


def write_input(path: Path, lines: list[tuple[str, str, str]]) -> None:
    with path.open("wb") as file:
        for custom_id, model, content in lines:
            body = {"model": model, "messages": [{"role": "user", "content": content}]}
            line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions"}
            file.write(encoder.encode({**line, "body": body}) + b"\n")


def test_a_model_concurrency_limit_serialises_that_model_only(stack: Stack, tmp_path: Path) -> None:
    requests, results, dump = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "d.jsonl"
    # The slow model first in the file: its waiting requests must not hold up the fast one's.
    lines = [(f"slow-{i}", "local-gpt", f"[fake latency=0.5] line {i}") for i in range(4)]
    lines += [(f"fast-{i}", "fake-gpt", f"line {i}") for i in range(4)]
    write_input(requests, lines)
    env = {**os.environ, "LITELLM_PROXY_URL": stack.proxy_url, "LITELLM_API_KEY": stack.api_key}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "trio_litellm",
            "batch",
            str(requests),
            "-o",
            str(results),
            "--concurrency",
            "8",
            "--model-limit",
            "local-gpt=concurrency:1",
            "--record-to",
            str(dump),
            "--record-last",
            "100",
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    records = [exchange.record for exchange in read_dump(dump)]
    assert sorted(r.outcome for r in records) == ["ok"] * 8, records
    slow = sorted((r for r in records if r.model == "local-gpt"), key=lambda r: r.started_at)
    fast = [r for r in records if r.model == "fake-gpt"]
    assert len(slow) == len(fast) == 4
    for before, after in itertools.pairwise(slow):  # one at a time, each 0.5 s or more
        assert after.started_at >= before.started_at + before.latency - 0.01, (before, after)
    assert slow[-1].started_at - slow[0].started_at >= 1.5
    assert all(r.started_at < slow[1].started_at for r in fast), (slow, fast)
