"""Batch files: validating and sharding the input, writing and recovering the output."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_litellm import (
    BatchInputError,
    InvalidRequestError,
    LiteLLMError,
    OutputCorruptError,
    OutputLockedError,
)
from trio_litellm._calls import prepare
from trio_litellm.batch import OutputLock
from trio_litellm.batch._input import (
    BatchLine,
    InputProblem,
    iter_input,
    parse_line,
    scan_input,
    shard_of,
)
from trio_litellm.batch._output import (
    OutputWriter,
    drop_failed,
    error_record,
    record_outcome,
    recover_output,
    response_record,
)

CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"


def chat_line(custom_id: Any = "a", **overrides: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": "m", "messages": [{"role": "user", "content": "hello there"}]},
    }
    line.update(overrides)
    return line


def embed_line(custom_id: str = "e", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": EMBED,
        "body": {"model": "emb", "input": "some text", **body},
    }


def encode(line: Any) -> bytes:
    return msgspec.json.encode(line)


def write_lines(path: Path, *lines: Any) -> Path:
    raw = [item if isinstance(item, bytes) else encode(item) for item in lines]
    path.write_bytes(b"\n".join(raw) + b"\n")
    return path


def problem_of(line: Any, *, model: str | None = None) -> InputProblem:
    result = parse_line(line if isinstance(line, bytes) else encode(line), 7, model=model)
    assert isinstance(result, InputProblem), result
    assert result.line_no == 7
    return result


# --- parse_line -----------------------------------------------------------------------------------


def test_a_valid_chat_line_carries_its_fields_and_token_estimate() -> None:
    line = parse_line(encode(chat_line("req-1")), 3)
    assert isinstance(line, BatchLine)
    assert line.line_no == 3
    assert line.custom_id == "req-1"
    assert line.url == CHAT
    assert line.kind == "chat"
    assert line.model == "m"
    assert line.tokens == prepare(chat_line()["body"]).tokens


def test_a_valid_embedding_line_is_an_embedding() -> None:
    line = parse_line(encode(embed_line()), 1)
    assert isinstance(line, BatchLine)
    assert line.kind == "embedding"
    assert line.tokens == prepare(embed_line()["body"]).tokens


def test_malformed_json_is_a_problem_without_an_id() -> None:
    problem = problem_of(b'{"custom_id": "a", ')
    assert problem.custom_id is None
    assert problem.message.startswith("not valid JSON: ")


def test_invalid_utf8_is_malformed_json() -> None:
    assert problem_of(b'{"custom_id": "\xff"}').message.startswith("not valid JSON: ")


def test_a_line_that_is_not_an_object_is_a_problem() -> None:
    assert problem_of([1, 2]).message == "a line must be a JSON object, not an array"


def test_missing_custom_id_is_a_problem() -> None:
    line = chat_line()
    del line["custom_id"]
    assert problem_of(line).message == "custom_id missing"


def test_empty_custom_id_is_a_problem() -> None:
    problem = problem_of(chat_line(""))
    assert problem.message == "custom_id is empty"
    assert problem.custom_id is None


def test_non_string_custom_id_is_a_problem() -> None:
    assert problem_of(chat_line(12)).message == "custom_id must be a string, not a number"


def test_unsupported_url_is_a_problem_naming_the_ones_we_take() -> None:
    problem = problem_of(chat_line(url="/v1/images"))
    assert problem.custom_id == "a"
    assert problem.message == (
        "url '/v1/images' is not supported (use /v1/chat/completions or /v1/embeddings)"
    )


def test_method_get_is_a_problem() -> None:
    assert problem_of(chat_line(method="GET")).message == "method must be POST, not 'GET'"


def test_missing_method_is_a_problem() -> None:
    line = chat_line()
    del line["method"]
    assert problem_of(line).message == "method missing (must be POST)"


def test_body_not_an_object_is_a_problem() -> None:
    assert problem_of(chat_line(body="hi")).message == "body must be a JSON object, not a string"


def test_missing_body_is_a_problem() -> None:
    line = chat_line()
    del line["body"]
    assert problem_of(line).message == "body missing"


def test_missing_model_is_a_problem() -> None:
    line = chat_line()
    del line["body"]["model"]
    assert problem_of(line).message == "body.model missing"


def test_empty_model_is_a_problem() -> None:
    line = chat_line()
    line["body"]["model"] = ""
    assert problem_of(line).message == "body.model must be a non-empty string"


def test_a_model_override_fixes_a_missing_model() -> None:
    line = chat_line()
    del line["body"]["model"]
    parsed = parse_line(encode(line), 1, model="override")
    assert isinstance(parsed, BatchLine)
    assert parsed.body["model"] == "override"


def test_a_model_override_replaces_the_body_model() -> None:
    parsed = parse_line(encode(chat_line()), 1, model="override")
    assert isinstance(parsed, BatchLine)
    assert parsed.model == "override"


def test_missing_messages_is_a_problem() -> None:
    assert problem_of(chat_line(body={"model": "m"})).message == "body has no 'messages'"


def test_empty_messages_is_a_problem() -> None:
    problem = problem_of(chat_line(body={"model": "m", "messages": []}))
    assert problem.message == "body.messages must be a non-empty list"


def test_a_message_without_a_role_is_a_problem() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}, {"content": "y"}]}
    problem = problem_of(chat_line(body=body))
    assert problem.message == "body.messages[1] must be an object with a string 'role'"


def test_missing_input_is_a_problem() -> None:
    line = embed_line()
    del line["body"]["input"]
    assert problem_of(line).message == "body has no 'input'"


def test_empty_input_is_a_problem() -> None:
    assert problem_of(embed_line(input=[])).message == "body.input is empty"


def test_stream_true_is_a_problem() -> None:
    line = chat_line()
    line["body"]["stream"] = True
    assert problem_of(line).message == (
        "streaming is not supported in batch files (remove body.stream)"
    )


def test_an_embedding_url_with_a_chat_body_is_a_problem() -> None:
    line = embed_line(messages=[{"role": "user", "content": "x"}])
    assert problem_of(line).message == "body is a chat request but url is '/v1/embeddings'"


def test_what_prepare_refuses_is_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(body: Any) -> Any:
        raise InvalidRequestError("no can do")

    monkeypatch.setattr("trio_litellm.batch._input.prepare", refuse)
    assert problem_of(chat_line()).message == "invalid request: no can do"


def test_a_request_prepare_refuses_is_a_problem_not_a_crash() -> None:
    body = {"model": "m", "messages": [{"role": "user"}], "metadata": 3, "routing_hints": {}}
    assert problem_of(chat_line(body=body)).message.startswith("invalid request: ")


# --- shard_of -------------------------------------------------------------------------------------


def test_shard_of_is_stable_across_processes_and_machines() -> None:
    assert [shard_of(i, 8) for i in ("req-1", "req-2", "a", "émoji-✓")] == [3, 5, 7, 2]
    assert [shard_of(i, 1000003) for i in ("req-1", "req-2", "a", "émoji-✓")] == [
        677746,
        375639,
        172703,
        821196,
    ]


@given(ids=st.sets(st.text(min_size=1), max_size=50), count=st.integers(1, 8))
def test_shards_partition_the_ids(ids: set[str], count: int) -> None:
    shards = [{i for i in ids if shard_of(i, count) == index} for index in range(count)]
    assert sum(len(shard) for shard in shards) == len(ids)
    assert set().union(*shards) == ids


# --- scan_input -----------------------------------------------------------------------------------


def test_scan_reports_each_problem_at_its_line(tmp_path: Path) -> None:
    no_model = chat_line("c")
    del no_model["body"]["model"]
    path = write_lines(
        tmp_path / "in.jsonl",
        chat_line("a"),
        b"{not json",
        no_model,
        chat_line("a"),
        chat_line("d", method="GET"),
    )
    scan = scan_input(path)
    assert not scan.ok
    assert [(p.line_no, p.custom_id, p.message) for p in scan.problems] == [
        (2, None, scan.problems[0].message),
        (3, "c", "body.model missing"),
        (4, "a", "custom_id 'a' is also on line 1"),
        (5, "d", "method must be POST, not 'GET'"),
    ]
    assert scan.problems[2].duplicate_of == 1
    assert not scan.problems[2].recordable
    assert scan.problems[1].recordable
    assert scan.problem_count == 4
    assert scan.lines == 5
    assert scan.valid == 1


def test_an_invalid_first_line_still_owns_its_id(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", chat_line("a", method="GET"), chat_line("a"))
    assert [(p.line_no, p.message) for p in scan_input(path).problems] == [
        (1, "method must be POST, not 'GET'"),
        (2, "custom_id 'a' is also on line 1"),
    ]


def test_blank_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n" + encode(chat_line("a")) + b"\n   \r\n\t\n" + encode(chat_line("b")))
    scan = scan_input(path)
    assert scan.ok
    assert (scan.lines, scan.blank, scan.in_shard) == (2, 3, 2)
    assert [item.line_no for item in iter_input(path)] == [2, 5]


def test_a_last_line_without_newline_is_read(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(encode(chat_line("a")) + b"\n" + encode(chat_line("b")))
    assert [item.custom_id for item in iter_input(path)] == ["a", "b"]


def test_a_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + encode(chat_line("a")) + b"\n")
    assert scan_input(path).ok


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError) as info:
        scan_input(tmp_path / "nope.jsonl")
    assert [(p.line_no, p.message) for p in info.value.problems] == [(0, "file not found")]
    assert str(info.value) == (
        f"{tmp_path / 'nope.jsonl'}: 1 problem in the batch input file\n"
        f"  {tmp_path / 'nope.jsonl'}: file not found"
    )


def test_a_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError) as info:
        iter_input(tmp_path)  # at the call, before the first item
    assert info.value.problems[0].message == "is a directory, not a batch input file"


def test_an_empty_file_has_no_requests(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n\n")
    scan = scan_input(path)
    assert [(p.line_no, p.message) for p in scan.problems] == [(0, "no requests in file")]
    assert scan.blank == 2
    with pytest.raises(BatchInputError, match="no requests in file"):
        scan.raise_for_problems()


def test_the_input_error_lists_the_first_twenty_problems(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "in.jsonl", *[chat_line(f"r{i}", method="GET") for i in range(25)]
    )
    with pytest.raises(BatchInputError) as info:
        scan_input(path).raise_for_problems()
    error = info.value
    assert isinstance(error, LiteLLMError)
    assert error.path == str(path)
    assert error.total == 25
    lines = str(error).splitlines()
    assert lines[0] == f"{path}: 25 problems in the batch input file"
    assert lines[1] == f"  {path}:1: method must be POST, not 'GET'"
    assert lines[20] == f"  {path}:20: method must be POST, not 'GET'"
    assert lines[21] == "  ... and 5 more"
    assert len(lines) == 22


def test_scan_counts_by_url_model_and_tokens(tmp_path: Path) -> None:
    lines = [chat_line("c1"), chat_line("c2"), embed_line("e1"), chat_line("c3", method="GET")]
    lines[1]["body"]["model"] = "other"
    path = write_lines(tmp_path / "in.jsonl", *lines)
    scan = scan_input(path)
    assert scan.by_url == {CHAT: 2, EMBED: 1}
    assert scan.by_model == {"m": 1, "other": 1, "emb": 1}
    expected = [prepare(line["body"]).tokens for line in lines[:3]]
    assert scan.estimated_tokens == sum(expected)
    assert scan.largest_tokens == max(expected)
    assert (scan.valid, scan.in_shard, scan.problem_count) == (3, 3, 1)
    assert scan.size == path.stat().st_size


def test_scan_with_a_model_override_counts_that_model(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", chat_line("a"), chat_line("b"))
    assert scan_input(path, model="x").by_model == {"x": 2}


def test_scan_counts_only_the_shard_but_checks_the_whole_file(tmp_path: Path) -> None:
    ids = [f"req-{i}" for i in range(40)]
    path = write_lines(tmp_path / "in.jsonl", *[chat_line(i) for i in ids], chat_line("req-0"))
    total = 0
    for index in range(3):
        scan = scan_input(path, shard=(index, 3))
        mine = [i for i in ids if shard_of(i, 3) == index]
        assert scan.in_shard == len(mine) == sum(scan.by_url.values())
        assert scan.valid == 40
        assert scan.problem_count == 1  # the duplicate, whichever shard it falls in
        assert scan.in_shard_problems == (1 if shard_of("req-0", 3) == index else 0)
        total += scan.in_shard
    assert total == 40


def test_a_bad_shard_is_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", chat_line())
    with pytest.raises(ValueError, match="shard"):
        scan_input(path, shard=(3, 3))


# --- iter_input -----------------------------------------------------------------------------------


def test_iter_input_yields_lines_and_problems_in_file_order(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "in.jsonl", chat_line("a"), b"[", chat_line("b"), chat_line("a"), embed_line("c")
    )
    items = list(iter_input(path, model="x"))
    assert [(type(i).__name__, i.line_no, i.custom_id) for i in items] == [
        ("BatchLine", 1, "a"),
        ("InputProblem", 2, None),
        ("BatchLine", 3, "b"),
        ("InputProblem", 4, "a"),
        ("BatchLine", 5, "c"),
    ]
    assert isinstance(items[3], InputProblem)
    assert items[3].message == "custom_id 'a' is also on line 1"
    assert isinstance(items[0], BatchLine)
    assert items[0].model == "x"


def test_iter_input_skips_the_given_ids(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "in.jsonl",
        chat_line("a"),
        chat_line("b"),
        chat_line("bad", method="GET"),
        chat_line("a"),
    )
    items = list(iter_input(path, skip={"a", "bad"}))
    # b is sent; the invalid line was recorded already; the duplicate is always reported.
    assert [(i.line_no, i.custom_id, isinstance(i, InputProblem)) for i in items] == [
        (2, "b", False),
        (4, "a", True),
    ]


def test_iter_input_over_all_shards_yields_every_item_once(tmp_path: Path) -> None:
    lines: list[Any] = [chat_line(f"r{i}") for i in range(30)]
    lines += [b"garbage", chat_line("r1"), chat_line("bad", method="GET")]
    path = write_lines(tmp_path / "in.jsonl", *lines)
    everything = [(i.line_no, type(i)) for i in iter_input(path)]
    sharded = [(i.line_no, type(i)) for n in range(4) for i in iter_input(path, shard=(n, 4))]
    assert sorted(sharded) == sorted(everything)
    assert len(everything) == 33


def test_scan_memory_grows_with_the_ids_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wide.jsonl"
    count = 50_000
    with path.open("wb") as file:
        for i in range(count):
            line = chat_line(f"request-{i:07d}")
            line["body"]["messages"][0]["content"] = "x" * 500
            file.write(encode(line) + b"\n")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        scan_input(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\n{count} lines, {size / 1e6:.1f} MB: peak traced memory {peak / 1e6:.1f} MB")
    assert peak < size / 2
    assert peak < 300 * count  # the custom_id -> line table, about 150 bytes an id


# --- records --------------------------------------------------------------------------------------


def test_a_response_record_round_trips_with_the_body_byte_identical() -> None:
    body = b'{"id":"chatcmpl-1","choices":[{"message":{"content":"h\\u00e9"}}],"x": 1.50}'
    line = response_record("req-1", status_code=200, request_id="req_abc", body=body)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert body in line
    decoded = msgspec.json.decode(line)
    assert set(decoded) == {"id", "custom_id", "response", "error"}
    assert decoded["id"].startswith("batch_req_")
    assert len(decoded["id"]) == len("batch_req_") + 24
    int(decoded["id"][len("batch_req_") :], 16)
    assert decoded["custom_id"] == "req-1"
    assert decoded["response"] == {
        "status_code": 200,
        "request_id": "req_abc",
        "body": msgspec.json.decode(body),
    }
    assert decoded["error"] is None
    assert record_outcome(line) == ("req-1", True)


def test_record_ids_are_unique() -> None:
    ids = {msgspec.json.decode(error_record("a", code="c", message="m"))["id"] for _ in range(100)}
    assert len(ids) == 100


def test_an_http_error_answer_is_a_failed_response_record() -> None:
    body = b'{"error":{"message":"bad","type":"invalid_request_error","code":"400"}}'
    line = response_record("r", status_code=400, request_id=None, body=body)
    decoded = msgspec.json.decode(line)
    assert decoded["response"]["request_id"] is None
    assert decoded["response"]["body"]["error"]["message"] == "bad"
    assert record_outcome(line) == ("r", False)


def test_a_multi_line_body_is_compacted_to_one_line() -> None:
    line = response_record("r", status_code=200, request_id=None, body=b'{\n  "a": [1,\r\n 2]\n}\n')
    assert line.count(b"\n") == 1
    assert msgspec.json.decode(line)["response"]["body"] == {"a": [1, 2]}


def test_a_body_that_is_not_json_is_embedded_as_a_string() -> None:
    line = response_record("r", status_code=502, request_id=None, body=b"<html>\nBad gateway")
    assert line.count(b"\n") == 1
    assert msgspec.json.decode(line)["response"]["body"] == "<html>\nBad gateway"
    assert record_outcome(line) == ("r", False)


def test_an_error_record_round_trips() -> None:
    line = error_record("req-2", code="timeout", message='no answer in 60 s "quoted"\n')
    assert line.count(b"\n") == 1
    decoded = msgspec.json.decode(line)
    assert decoded["custom_id"] == "req-2"
    assert decoded["response"] is None
    assert decoded["error"] == {"code": "timeout", "message": 'no answer in 60 s "quoted"\n'}
    assert record_outcome(line) == ("req-2", False)


@pytest.mark.parametrize(
    ("status", "ok"), [(199, False), (200, True), (201, True), (299, True), (300, False)]
)
def test_success_is_a_2xx_response_without_error(status: int, ok: bool) -> None:
    line = response_record("r", status_code=status, request_id=None, body=b"{}")
    assert record_outcome(line)[1] is ok


# --- recover_output -------------------------------------------------------------------------------


def ok(custom_id: str) -> bytes:
    return response_record(custom_id, status_code=200, request_id="q", body=b'{"ok":true}')


def failed(custom_id: str) -> bytes:
    return error_record(custom_id, code="connection_error", message="refused")


def test_recovering_a_missing_file_creates_it_and_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "out" / "deep" / "results.jsonl"
    state = recover_output(path)
    assert path.read_bytes() == b""
    assert (state.done, state.lines, state.torn_bytes, state.succeeded, state.failed) == (
        {},
        0,
        0,
        0,
        0,
    )


def test_recovering_an_intact_file_reads_every_record(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a") + failed("b") + ok("c"))
    before = path.read_bytes()
    state = recover_output(path)
    assert state.done == {"a": True, "b": False, "c": True}
    assert (state.lines, state.succeeded, state.failed, state.torn_bytes) == (3, 2, 1, 0)
    assert state.failed_ids() == ["b"]
    assert path.read_bytes() == before


def test_a_torn_last_line_is_cut_off_and_the_next_append_starts_fresh(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    intact = ok("a") + ok("b")
    torn = ok("c")[:-10]
    path.write_bytes(intact + torn)
    state = recover_output(path)
    assert state.torn_bytes == len(torn)
    assert state.done == {"a": True, "b": True}
    assert path.read_bytes() == intact
    record = ok("c")
    with OutputWriter(path) as writer:
        writer.write(record)
    assert path.read_bytes() == intact + record
    assert recover_output(path).done == {"a": True, "b": True, "c": True}


def test_a_complete_record_without_its_newline_is_torn(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a") + ok("b")[:-1])
    state = recover_output(path)
    assert state.done == {"a": True}
    assert state.torn_bytes == len(ok("b")) - 1


def test_a_file_that_is_only_a_torn_fragment_becomes_empty(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id":"batch_req_')
    state = recover_output(path)
    assert state.torn_bytes == 17
    assert state.lines == 0
    assert path.read_bytes() == b""


def test_a_long_torn_line_is_found_across_read_chunks(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    record = ok("a")
    path.write_bytes(record + b"x" * 200_000)
    assert recover_output(path).torn_bytes == 200_000
    assert path.read_bytes() == record


def test_a_corrupt_middle_line_names_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a") + b'{"custom_id": "b"}\n' + ok("c"))
    with pytest.raises(OutputCorruptError) as info:
        recover_output(path)
    assert info.value.line_no == 2
    assert isinstance(info.value, LiteLLMError)
    assert str(info.value).startswith(f"{path}:2: not a batch output record")


def test_a_blank_line_in_the_output_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a") + b"\n" + ok("c"))
    with pytest.raises(OutputCorruptError, match=":2: "):
        recover_output(path)


def test_a_record_with_neither_response_nor_error_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id":"x","custom_id":"a","response":null,"error":null}\n')
    with pytest.raises(OutputCorruptError, match="both response and error are null"):
        recover_output(path)


def test_a_duplicate_id_in_the_output_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a") + ok("b") + failed("a"))
    with pytest.raises(OutputCorruptError) as info:
        recover_output(path)
    assert info.value.line_no == 3
    assert "custom_id 'a' is also on line 1" in str(info.value)
    assert "never writes an id twice" in str(info.value)


# --- drop_failed ----------------------------------------------------------------------------------


def test_drop_failed_keeps_only_successes(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    records = [
        ok("a"),
        failed("b"),
        ok("c"),
        response_record("d", status_code=429, request_id=None, body=b"{}"),
    ]
    path.write_bytes(b"".join(records))
    path.chmod(0o640)
    state = recover_output(path)
    assert drop_failed(path, state) == ["b", "d"]
    assert path.read_bytes() == records[0] + records[2]
    assert (state.done, state.lines, state.succeeded, state.failed) == (
        {"a": True, "c": True},
        2,
        2,
        0,
    )
    assert path.stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["out.jsonl"]
    assert recover_output(path).done == state.done


def test_drop_failed_with_nothing_failed_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a"))
    inode = path.stat().st_ino
    assert drop_failed(path, recover_output(path)) == []
    assert path.stat().st_ino == inode


def test_drop_failed_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a") + failed("b"))
    before = path.read_bytes()
    state = recover_output(path)

    def crash(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk on fire"):
        drop_failed(path, state)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.jsonl"]
    assert state.done == {"a": True, "b": False}


# --- OutputWriter ---------------------------------------------------------------------------------


def test_the_writer_appends_whole_lines_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(ok("a"))
    with OutputWriter(path) as writer:
        writer.write(ok("b"))
        writer.write_many([failed("c"), ok("d")])
        writer.sync()
        assert writer.lines == 3
        assert writer.bytes == len(ok("b")) + len(failed("c")) + len(ok("d"))
    assert writer.closed
    writer.close()  # twice is fine
    assert list(recover_output(path).done) == ["a", "b", "c", "d"]


def test_the_writer_refuses_what_is_not_one_line(tmp_path: Path) -> None:
    with OutputWriter(tmp_path / "out.jsonl") as writer:
        with pytest.raises(ValueError, match="one line"):
            writer.write(ok("a")[:-1])
        with pytest.raises(ValueError, match="one line"):
            writer.write_many([ok("a") + ok("b")])
        assert writer.lines == 0
    assert (tmp_path / "out.jsonl").read_bytes() == b""


def test_a_closed_writer_refuses_writes(tmp_path: Path) -> None:
    writer = OutputWriter(tmp_path / "out.jsonl")
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(ok("a"))


def test_a_short_write_is_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def short_write(fd: int, data: Any) -> int:
        return real_write(fd, bytes(data)[:7])

    path = tmp_path / "out.jsonl"
    record = ok("a")
    with OutputWriter(path) as writer:
        monkeypatch.setattr(os, "write", short_write)
        writer.write(record)
        monkeypatch.undo()
    assert writer.bytes == len(record)
    assert path.read_bytes() == record
    assert recover_output(path).done == {"a": True}


def test_a_write_that_fails_part_way_breaks_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    calls = 0

    def failing_write(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("no space left")
        return real_write(fd, bytes(data)[:5])

    path = tmp_path / "out.jsonl"
    with OutputWriter(path) as writer:
        monkeypatch.setattr(os, "write", failing_write)
        with pytest.raises(OSError, match="no space"):
            writer.write(ok("a"))
        monkeypatch.undo()
        with pytest.raises(ValueError, match="failed part-way"):
            writer.write(ok("b"))
    assert recover_output(path).torn_bytes == 5


def test_a_reopened_writer_continues_after_recovery(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with OutputWriter(path) as writer:
        writer.write(ok("a"))
        writer.write(failed("b"))
    with path.open("ab") as file:
        file.write(ok("c")[:20])  # a crash mid-line
    state = recover_output(path)
    assert state.done == {"a": True, "b": False}
    with OutputWriter(path) as writer:
        writer.write(ok("c"))
    assert recover_output(path).done == {"a": True, "b": False, "c": True}


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    outcomes=st.lists(st.booleans(), min_size=0, max_size=6),
    cut_fraction=st.floats(0, 1),
)
def test_cutting_the_output_anywhere_recovers_exactly_the_full_lines(
    tmp_path: Path, outcomes: list[bool], cut_fraction: float
) -> None:
    records = [(ok if good else failed)(f"id-{index}") for index, good in enumerate(outcomes)]
    data = b"".join(records)
    cut = round(cut_fraction * len(data))
    path = tmp_path / "cut.jsonl"
    path.write_bytes(data[:cut])
    state = recover_output(path)
    expected: dict[str, bool] = {}
    end = 0
    for index, (good, record) in enumerate(zip(outcomes, records, strict=True)):
        end += len(record)
        if end <= cut:
            expected[f"id-{index}"] = good
    kept = sum(len(record) for record in records[: len(expected)])
    assert state.done == expected
    assert state.torn_bytes == cut - kept
    assert path.read_bytes() == data[:kept]


def test_a_held_output_lock_refuses_a_second_holder_naming_the_first(tmp_path: Path) -> None:
    output = tmp_path / "sub" / "out.jsonl"
    with OutputLock(output):
        with pytest.raises(OutputLockedError) as caught, OutputLock(output):
            pass
        assert caught.value.pid == os.getpid()
        assert f"PID {os.getpid()}" in str(caught.value) and str(output) in str(caught.value)
    with OutputLock(output):  # released: the next run takes it
        pass
    assert (tmp_path / "sub" / "out.jsonl.lock").exists()
