"""``trio-litellm usage`` on batch output files and ``trio-litellm recorded`` on recorder dumps,
run in-process through ``main`` with the consoles captured."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import msgspec
import pytest
from rich.console import Console

from _fakes import record
from trio_litellm import DebugRecorder, InternalServerError, cli
from trio_litellm._recorder import Trace
from trio_litellm.batch._output import ProxyFigures, error_record, response_record
from trio_litellm.cli import _common

encoder = msgspec.json.Encoder()


class Captured:
    def __init__(self) -> None:
        self.out = io.StringIO()
        self.err = io.StringIO()


@pytest.fixture
def consoles(monkeypatch: pytest.MonkeyPatch) -> Captured:
    captured = Captured()
    monkeypatch.setattr(_common.consoles, "out", Console(file=captured.out, width=200))
    monkeypatch.setattr(_common.consoles, "err", Console(file=captured.err, width=200))
    return captured


def completion(model: str, prompt: int, completion: int, cost: float | None = None) -> bytes:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cost is not None:
        usage["cost"] = cost
    return encoder.encode(
        {"id": "c", "model": model, "choices": [{"index": 0, "message": {}}], "usage": usage}
    )


def write_output(path: Path) -> None:
    error = encoder.encode({"error": {"message": "no", "type": "None", "code": "500"}})
    lines = [
        response_record("a", status_code=200, request_id="r1", body=completion("gpt", 10, 20, 0.5)),
        response_record("b", status_code=200, request_id="r2", body=completion("gpt", 1, 2, 0.25)),
        response_record("c", status_code=200, request_id="r3", body=completion("echo", 3, 4)),
        response_record("d", status_code=500, request_id="r4", body=error),
        error_record("e", code="ProxyConnectionError", message="refused"),
        error_record("line-9", code="invalid_line", message="line 9: not JSON"),
    ]
    path.write_bytes(b"".join(lines))


def write_input(path: Path) -> None:
    lines = [
        {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": {"model": m}}
        for cid, m in [("a", "gpt"), ("b", "gpt"), ("c", "echo"), ("d", "broken"), ("e", "gpt")]
    ]
    path.write_bytes(b"".join(encoder.encode(line) + b"\n" for line in lines))


# --- usage ----------------------------------------------------------------------------------------


def test_usage_prints_requests_outcomes_tokens_and_cost_per_model(
    tmp_path: Path, consoles: Captured
) -> None:
    write_output(tmp_path / "out.jsonl")
    assert cli.main(["usage", str(tmp_path / "out.jsonl")]) == 0
    text = consoles.out.getvalue()
    assert "6 · 3 succeeded · 3 failed" in text
    assert "14 in · 26 out" in text
    assert "$0.7500 (incomplete" in text  # the echo answer carried no cost
    for outcome in ("succeeded", "http_500", "ProxyConnectionError", "invalid_line"):
        assert outcome in text
    assert "not in the output file" in text  # latency: nothing made up


def test_usage_json_gives_the_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_output(tmp_path / "out.jsonl")
    assert cli.main(["usage", str(tmp_path / "out.jsonl"), "--json"]) == 0
    figures = msgspec.json.decode(capsys.readouterr().out)
    assert (figures["requests"], figures["succeeded"], figures["failed"]) == (6, 3, 3)
    assert figures["outcomes"] == {
        "succeeded": 3,
        "ProxyConnectionError": 1,
        "http_500": 1,
        "invalid_line": 1,
    }
    assert figures["cost"] == 0.75 and figures["cost_complete"] is False
    per_model = figures["per_model"]
    assert per_model["gpt"] == {
        "requests": 2,
        "succeeded": 2,
        "failed": 0,
        "outcomes": {"succeeded": 2},
        "tokens_in": 11,
        "tokens_out": 22,
        "cost": 0.75,
    }
    assert per_model["echo"]["cost"] is None
    assert per_model["-"]["requests"] == 3  # failures name no model without the input


def test_usage_with_the_input_counts_failures_under_their_requested_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_output(tmp_path / "out.jsonl")
    write_input(tmp_path / "in.jsonl")
    argv = ["usage", str(tmp_path / "out.jsonl"), "--input", str(tmp_path / "in.jsonl"), "--json"]
    assert cli.main(argv) == 0
    per_model = msgspec.json.decode(capsys.readouterr().out)["per_model"]
    assert per_model["broken"]["outcomes"] == {"http_500": 1}
    assert per_model["gpt"]["outcomes"] == {"succeeded": 2, "ProxyConnectionError": 1}
    assert per_model["-"]["outcomes"] == {"invalid_line": 1}  # not a request of the input


def test_usage_of_an_empty_file_says_zero(tmp_path: Path, consoles: Captured) -> None:
    (tmp_path / "out.jsonl").write_bytes(b"")
    assert cli.main(["usage", str(tmp_path / "out.jsonl")]) == 0
    assert "0 · 0 succeeded · 0 failed" in consoles.out.getvalue()


def test_usage_of_a_torn_last_line_names_it_and_exits_2(tmp_path: Path, consoles: Captured) -> None:
    path = tmp_path / "out.jsonl"
    write_output(path)
    path.write_bytes(path.read_bytes()[:-7])
    assert cli.main(["usage", str(path)]) == 2
    message = consoles.err.getvalue()
    assert f"{path}:6:" in message and "torn last line" in message


def test_usage_of_an_invalid_json_line_names_it_and_exits_2(
    tmp_path: Path, consoles: Captured
) -> None:
    path = tmp_path / "out.jsonl"
    write_output(path)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b'{"custom_id": "b", "response": \n'
    path.write_bytes(b"".join(lines))
    assert cli.main(["usage", str(path)]) == 2
    message = consoles.err.getvalue()
    assert f"{path}:2:" in message and "not a batch output record" in message


def test_usage_of_a_line_that_is_not_a_record_names_it(tmp_path: Path, consoles: Captured) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"custom_id": "a", "response": null, "error": null}\n')
    assert cli.main(["usage", str(path)]) == 2
    assert f"{path}:1:" in consoles.err.getvalue()


def test_usage_of_a_file_with_duplicate_ids_says_so(
    tmp_path: Path, consoles: Captured, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "out.jsonl"
    write_output(path)
    with path.open("ab") as file:  # two runs at once wrote "a" and "d" a second time
        file.write(
            response_record("a", status_code=200, request_id="x", body=completion("gpt", 1, 1))
        )
        file.write(error_record("d", code="ProxyConnectionError", message="refused"))
    assert cli.main(["usage", str(path)]) == 0
    text = consoles.out.getvalue()
    assert "8 lines" in text and "2 repeat a custom_id" in text, text
    assert cli.main(["usage", str(path), "--json"]) == 0
    figures = msgspec.json.decode(capsys.readouterr().out)
    assert figures["duplicates"] == 2 and figures["requests"] == 8


def test_usage_counts_the_cost_the_proxy_sent_in_its_header(
    tmp_path: Path, consoles: Captured, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "out.jsonl"
    figures = ProxyFigures(response_cost=0.125, call_id="c1", model_group="gpt", attempts=2)
    path.write_bytes(
        response_record(
            "a", status_code=200, request_id="r", body=completion("gpt", 1, 1), litellm=figures
        )
    )
    assert cli.main(["usage", str(path), "--json"]) == 0
    totals = msgspec.json.decode(capsys.readouterr().out)
    assert totals["cost"] == 0.125 and totals["cost_complete"] is True


def test_usage_of_a_missing_file_exits_2(tmp_path: Path, consoles: Captured) -> None:
    assert cli.main(["usage", str(tmp_path / "nowhere.jsonl")]) == 2
    assert "nowhere.jsonl" in consoles.err.getvalue()


# --- recorded -------------------------------------------------------------------------------------


def write_dump(path: Path) -> None:
    recorder = DebugRecorder(10)
    for index in range(3):
        trace = Trace(
            "POST", "/v1/chat/completions", encoder.encode(chat_body(f"question {index}"))
        )
        trace.answered(
            1, 200, {"x-litellm-call-id": f"call-{index}"}, answer_body(f"reply {index}")
        )
        recorder.add(record(call_id=f"call-{index}"), trace, None)
    failed = Trace("POST", "/v1/chat/completions", encoder.encode(chat_body("will fail")))
    error = InternalServerError("upstream fell over", status=500)
    recorder.add(
        record(model="failing-gpt", latency=0.125, outcome="InternalServerError", status=500),
        failed,
        error,
    )
    recorder.dump(path)


def chat_body(text: str) -> dict[str, Any]:
    return {"model": "local-gpt", "messages": [{"role": "user", "content": text}]}


def answer_body(text: str) -> bytes:
    return encoder.encode({"choices": [{"index": 0, "message": {"content": text}}]})


def test_recorded_shows_one_line_per_request_with_its_previews(
    tmp_path: Path, consoles: Captured
) -> None:
    write_dump(tmp_path / "dump.jsonl")
    assert cli.main(["recorded", str(tmp_path / "dump.jsonl")]) == 0
    text = consoles.out.getvalue()
    for index in range(3):
        assert f"question {index}" in text and f"reply {index}" in text
    assert "InternalServerError: upstream fell over" in text
    assert "failing-gpt" in text and "125" in text  # the model, the latency in ms


def test_recorded_failed_only_and_last_filter_the_lines(tmp_path: Path, consoles: Captured) -> None:
    write_dump(tmp_path / "dump.jsonl")
    assert cli.main(["recorded", str(tmp_path / "dump.jsonl"), "--failed-only"]) == 0
    text = consoles.out.getvalue()
    assert "will fail" in text and "question" not in text
    consoles.out.truncate(0)
    consoles.out.seek(0)
    assert cli.main(["recorded", str(tmp_path / "dump.jsonl"), "--last", "2"]) == 0
    text = consoles.out.getvalue()
    assert "question 2" in text and "will fail" in text and "question 1" not in text


def test_recorded_full_shows_headers_and_bodies(tmp_path: Path, consoles: Captured) -> None:
    write_dump(tmp_path / "dump.jsonl")
    assert cli.main(["recorded", str(tmp_path / "dump.jsonl"), "--full", "--last", "2"]) == 0
    text = consoles.out.getvalue()
    assert "x-litellm-call-id: call-2" in text
    assert '"content":"question 2"' in text and '"content":"reply 2"' in text
    assert "error: InternalServerError: upstream fell over" in text


def test_usage_can_show_a_dump_after_its_table(tmp_path: Path, consoles: Captured) -> None:
    write_output(tmp_path / "out.jsonl")
    write_dump(tmp_path / "dump.jsonl")
    argv = ["usage", str(tmp_path / "out.jsonl"), "--recorded", str(tmp_path / "dump.jsonl")]
    assert cli.main([*argv, "--failed-only"]) == 0
    text = consoles.out.getvalue()
    assert "3 succeeded" in text and "will fail" in text and "question" not in text


def test_recorded_of_a_bad_dump_names_the_line_and_exits_2(
    tmp_path: Path, consoles: Captured
) -> None:
    path = tmp_path / "dump.jsonl"
    write_dump(path)
    path.write_bytes(path.read_bytes() + b"{oops\n")
    assert cli.main(["recorded", str(path)]) == 2
    assert f"{path}:5:" in consoles.err.getvalue()


def test_recorded_of_an_empty_dump_says_so(tmp_path: Path, consoles: Captured) -> None:
    (tmp_path / "dump.jsonl").write_bytes(b"")
    assert cli.main(["recorded", str(tmp_path / "dump.jsonl")]) == 0
    assert "no recorded requests" in consoles.out.getvalue()
