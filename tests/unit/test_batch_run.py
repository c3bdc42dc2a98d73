"""``run_batch`` over an in-memory proxy: what each answer becomes in the output file."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import pytest
import trio

from _fakes import open_test_client
from trio_litellm import Client
from trio_litellm.batch import run_batch
from trio_litellm.batch._summary import SummaryBuilder

GOOD = (
    b'{"id":"chatcmpl-1","model":"m","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":1,'
    b'"total_tokens":3}}'
)
# A paid answer our decoder refuses (a token count as a string), with a field of the provider's own.
ODD = (
    b'{"id":"chatcmpl-2","model":"m","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"paid for"},"finish_reason":"stop"}],"usage":{"prompt_tokens":"two"},'
    b'"provider_extra":{"a":[1,2]}}'
)
ERROR = b'{"error":{"message":"upstream broke","type":null,"param":null,"code":"500","x":1}}'

HEADERS = {
    "content-type": "application/json",
    "x-litellm-call-id": "call-1",
    "x-litellm-model-id": "model-id-1",
    "x-litellm-model-group": "m",
    "x-litellm-response-cost": "0.25",
    "x-request-id": "req-1",
}


async def handler(request: httpx2.Request) -> httpx2.Response:
    content = request.content
    if b"slow" in content:
        await trio.sleep_forever()
    if b"odd" in content:
        return httpx2.Response(200, content=ODD, headers=HEADERS)
    if b"error" in content:
        return httpx2.Response(500, content=ERROR, headers=HEADERS)
    return httpx2.Response(200, content=GOOD, headers=HEADERS)


def client(**options: Any) -> AbstractAsyncContextManager[Client]:
    return open_test_client(handler, **({"api_key": "sk-unit", "max_retries": 0} | options))


def write_input(path: Path, *contents: str) -> None:
    lines = [
        {
            "custom_id": content,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": content}]},
        }
        for content in contents
    ]
    path.write_bytes(b"".join(msgspec.json.encode(line) + b"\n" for line in lines))


def lines_by_id(path: Path) -> dict[str, Any]:
    return {
        line["custom_id"]: line
        for line in (msgspec.json.decode(raw) for raw in path.read_bytes().splitlines())
    }


def raw_body(path: Path, custom_id: str) -> bytes:
    """The ``response.body`` bytes of one output line, as written."""
    for raw in path.read_bytes().splitlines():
        line = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
        if msgspec.json.decode(line["custom_id"]) == custom_id:
            response = msgspec.json.decode(line["response"], type=dict[str, msgspec.Raw])
            return bytes(response["body"])
    raise AssertionError(custom_id)


async def test_a_paid_answer_that_does_not_decode_is_written_as_it_came(tmp_path: Path) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, "fine", "odd")
    async with client() as c:
        summary = await run_batch(c, requests, results)
    odd = lines_by_id(results)["odd"]
    assert odd["error"] is None
    assert odd["response"]["status_code"] == 200
    assert odd["response"]["request_id"] == "req-1"
    assert raw_body(results, "odd") == ODD
    assert (summary.succeeded, summary.failed) == (2, 0)
    assert summary.tokens_in == 2  # only the answer we could read counts its tokens


async def test_an_error_answer_is_written_with_its_body_as_it_came(tmp_path: Path) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, "error")
    async with client() as c:
        summary = await run_batch(c, requests, results)
    line = lines_by_id(results)["error"]
    assert line["response"]["status_code"] == 500
    assert line["response"]["request_id"] == "req-1"
    assert raw_body(results, "error") == ERROR
    assert summary.failed == 1 and summary.outcomes == {"http_500": 1}


async def test_setting_stop_ends_the_run_with_a_summary_marked_interrupted(
    tmp_path: Path,
) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, "fine", "slow-1", "slow-2")
    stop = trio.Event()
    written: list[str] = []

    def on_result(result: Any) -> None:
        written.append(result.id)
        stop.set()  # the fast one is in; the slow ones are in flight

    async with client() as c:
        summary = await run_batch(c, requests, results, stop=stop, on_result=on_result)
    assert summary.interrupted
    assert (summary.ran, summary.succeeded) == (1, 1)
    assert list(lines_by_id(results)) == written == ["fine"]  # the cancelled ones run next time


async def test_ids_of_another_job_in_the_output_are_not_counted_as_done(tmp_path: Path) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, "other-1", "other-2")
    async with client() as c:
        await run_batch(c, requests, results)  # another job's answers
        write_input(requests, "mine-1", "mine-2", "mine-3", "other-1")
        summary = await run_batch(c, requests, results)
    assert summary.input_requests == 4
    assert summary.already_done == 1  # other-1 only: other-2 is not in this input
    assert summary.ran == 3
    assert summary.input_requests == summary.already_done + summary.ran


class Display:
    """A progress display that notes what the run asks of it."""

    def __init__(self, total: int, seen: list[str]) -> None:
        self.total = total
        self.seen = seen

    def __enter__(self) -> Display:
        self.seen.append(f"enter {self.total}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seen.append("exit")

    async def run(self, client: Client) -> None:
        self.seen.append("run")
        await trio.sleep_forever()

    def update(self, builder: SummaryBuilder) -> None:
        self.seen.append(f"update {builder.done}")


async def test_the_display_is_made_with_the_total_and_told_of_every_result(
    tmp_path: Path,
) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, "a", "b", "c")
    seen: list[str] = []
    async with client() as c:
        await run_batch(c, requests, results, progress=lambda total: Display(total, seen))
    assert seen[0] == "enter 3"
    assert "run" in seen
    updates = [event for event in seen if event.startswith("update")]
    assert updates == ["update 1", "update 2", "update 3", "update 3"]  # the last one at the end
    assert seen[-1] == "exit"


async def test_a_run_without_a_display_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(requests, "a", "b")
    async with client() as c:
        summary = await run_batch(c, requests, results)
    assert summary.succeeded == 2
    assert capsys.readouterr() == ("", "")
