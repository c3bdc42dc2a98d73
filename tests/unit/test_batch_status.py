"""``read_status``: where a batch stands, from its input and output files alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from trio_litellm.batch import OutputCorruptError
from trio_litellm.batch._status import BatchStatus, read_status


def request(custom_id: str) -> dict[str, Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def answer(
    custom_id: str, *, status: int = 200, cost: float | None = None, **extra: Any
) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    if cost is not None:
        usage["cost"] = cost
    body = {"choices": [], "usage": usage} if status == 200 else {"error": {"message": "no"}}
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": "r", "body": body},
        "error": None,
        **extra,
    }


def failure(custom_id: str) -> dict[str, Any]:
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": "ProxyConnectionError", "message": "down"},
    }


def write(path: Path, lines: list[Any], tail: bytes = b"") -> Path:
    path.write_bytes(b"".join(msgspec.json.encode(line) + b"\n" for line in lines) + tail)
    return path


def test_a_run_half_done_counts_done_failed_and_remaining(tmp_path: Path) -> None:
    requests = write(tmp_path / "in.jsonl", [request(f"r{i}") for i in range(6)])
    results = write(
        tmp_path / "out.jsonl",
        [answer("r0", cost=0.5), answer("r1", cost=0.25), answer("r2", status=500), failure("r3")],
    )
    status = read_status(requests, results)
    assert status == BatchStatus(
        input_requests=6,
        done=4,
        succeeded=2,
        failed=2,
        remaining=2,
        cost=0.75,
        costed=2,
    )


def test_duplicates_and_ids_not_in_the_input_are_counted_and_named(tmp_path: Path) -> None:
    requests = write(tmp_path / "in.jsonl", [request("a"), request("b"), request("a")])
    results = write(tmp_path / "out.jsonl", [answer("a"), answer("x"), answer("a"), answer("y")])
    status = read_status(requests, results)
    assert status.input_duplicates == 1
    assert status.output_duplicates == 1 and status.duplicate_ids == ["a"]
    assert status.unknown == 2 and status.unknown_ids == ["x", "y"]
    assert (status.input_requests, status.done, status.remaining) == (2, 1, 1)


def test_a_response_cost_key_in_the_line_counts_before_usage_cost(tmp_path: Path) -> None:
    requests = write(tmp_path / "in.jsonl", [request("a"), request("b")])
    results = write(
        tmp_path / "out.jsonl",
        [
            answer("a", cost=9.0, litellm={"response_cost": 0.125}),
            answer("b", litellm={"response_cost": 0.5}),
        ],
    )
    status = read_status(requests, results)
    assert (status.cost, status.costed) == (0.625, 2)


def test_no_cost_anywhere_is_none_not_zero(tmp_path: Path) -> None:
    requests = write(tmp_path / "in.jsonl", [request("a")])
    results = write(tmp_path / "out.jsonl", [answer("a")])
    assert read_status(requests, results).cost is None


def test_a_torn_last_line_is_reported_not_counted(tmp_path: Path) -> None:
    requests = write(tmp_path / "in.jsonl", [request("a"), request("b")])
    results = write(tmp_path / "out.jsonl", [answer("a")], tail=b'{"id": "batch_req_b", "cus')
    status = read_status(requests, results)
    assert (status.done, status.remaining, status.torn_bytes) == (1, 1, 26)


def test_no_output_yet_means_everything_remains(tmp_path: Path) -> None:
    requests = write(tmp_path / "in.jsonl", [request("a"), request("b")])
    status = read_status(requests, tmp_path / "missing.jsonl")
    assert (status.done, status.remaining, status.cost) == (0, 2, None)
    assert not (tmp_path / "missing.jsonl").exists()  # reading changes nothing


def test_invalid_input_lines_are_counted_and_the_rest_still_read(tmp_path: Path) -> None:
    requests = tmp_path / "in.jsonl"
    requests.write_bytes(msgspec.json.encode(request("a")) + b'\nnot json\n{"no": "id"}\n\n')
    status = read_status(requests, write(tmp_path / "out.jsonl", []))
    assert (status.input_requests, status.invalid_input_lines) == (1, 2)


def test_a_corrupt_output_line_names_file_and_line(tmp_path: Path) -> None:
    requests = write(tmp_path / "in.jsonl", [request("a")])
    results = tmp_path / "out.jsonl"
    results.write_bytes(msgspec.json.encode(answer("a")) + b"\ngarbage\n")
    with pytest.raises(OutputCorruptError, match=r"out\.jsonl:2: "):
        read_status(requests, results)
