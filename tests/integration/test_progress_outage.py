"""A batch run's plain progress lines through a real proxy outage: they say that the proxy is
down, for how long, and when it is back.

This module starts a stack of its own, since it kills its proxy.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import trio
from rich.console import Console

from trio_litellm import JobResult, open_client
from trio_litellm.batch import run_batch
from trio_litellm.cli import BatchProgress
from trio_litellm.testing._devstack import DevStack

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 600


@pytest.fixture(scope="module")
def own_stack() -> Iterator[DevStack]:
    with DevStack(
        log_dir=PROJECT_ROOT / "run" / "test-logs" / "progress-outage", project_root=PROJECT_ROOT
    ) as stack:
        yield stack


async def test_progress_lines_show_a_proxy_outage(own_stack: DevStack, tmp_path: Path) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    with requests.open("wb") as file:
        for index in range(REQUESTS):
            body = {"model": "local-gpt", "messages": [{"role": "user", "content": f"n {index}"}]}
            line = {"custom_id": f"r{index}", "method": "POST", "url": "/v1/chat/completions"}
            file.write(msgspec.json.encode({**line, "body": body}) + b"\n")
    log = io.StringIO()
    tenth_done = trio.Event()
    seen = 0

    def count(result: JobResult) -> None:
        nonlocal seen
        seen += 1
        if seen == REQUESTS // 10:
            tenth_done.set()

    async with open_client(
        proxy_url=own_stack.proxy_url,
        api_key=own_stack.api_key,
        max_in_flight=4,
        health_check_interval=0.5,
    ) as client:

        async def outage() -> None:
            await tenth_done.wait()
            await trio.to_thread.run_sync(own_stack.kill_proxy)
            await trio.sleep(3.0)  # the outage itself, not an ordering of steps
            await trio.to_thread.run_sync(own_stack.start_proxy)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(outage)
            summary = await run_batch(
                client,
                requests,
                results,
                progress=lambda total: BatchProgress(
                    total, console=Console(file=log, width=300), interval=0.5
                ),
                on_result=count,
            )
    assert summary.failed == 0
    lines = log.getvalue().splitlines()
    assert any(line.startswith("proxy down: ") for line in lines), lines
    assert any("· proxy down for " in line for line in lines if line.startswith("progress ")), lines
    assert any(line.startswith("proxy back up after ") for line in lines), lines
