"""A batch run whose stderr is not a terminal (a log file, a CI job) prints plain progress lines
as it goes, not one bar at the end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec

from trio_litellm.testing._devstack import Stack


def test_a_batch_into_a_log_file_prints_a_plain_line_every_interval(
    stack: Stack, tmp_path: Path
) -> None:
    requests, results, log = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "log.txt"
    with requests.open("wb") as file:
        for index in range(20):
            # Each answer takes 0.3 s, two at a time: the run lasts about 3 s.
            text = f"n {index} [fake latency=0.3]"
            body = {"model": "local-gpt", "messages": [{"role": "user", "content": text}]}
            line = {"custom_id": f"r{index}", "method": "POST", "url": "/v1/chat/completions"}
            file.write(msgspec.json.encode({**line, "body": body}) + b"\n")
    env = {**os.environ, "LITELLM_PROXY_URL": stack.proxy_url, "LITELLM_API_KEY": stack.api_key}
    with log.open("w") as stderr:
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
                "2",
                "--progress-interval",
                "0.5",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            timeout=120,
            check=False,
        )
    text = log.read_text()
    assert run.returncode == 0, text
    lines = [line for line in text.splitlines() if line.startswith("progress ")]
    assert len(lines) >= 2, text
    assert "/20 (" in lines[0] and "req/s" in lines[0] and "eta " in lines[0]
    assert "\x1b" not in text  # plain text in a file
