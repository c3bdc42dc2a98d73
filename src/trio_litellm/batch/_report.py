"""What a batch output file holds, read back from the file alone: ``trio-litellm usage``.

The OpenAI batch output format keeps each answer's status and body, so a finished (or
interrupted) run can be summed up later: requests, successes, failures by kind, tokens, and cost:
the proxy's ``x-litellm-response-cost`` the batch keeps in each line's ``"litellm"`` key, else
the ``usage.cost`` of the body. Latencies and retries are not in the file, and are
not made up here. Outcomes are named as the batch summary names them: ``succeeded``,
``http_<status>`` for an error answer, or the error code of a request that got no answer.
Synchronous, no trio: one pass over the file.
"""

from __future__ import annotations

import os

import msgspec

from .._errors import OutputCorruptError
from ._summary import SUCCEEDED, _outcome_order

__all__ = [
    "ModelTotals",
    "OutputUsage",
    "read_output_usage",
    "usage_to_json",
]

UNKNOWN_MODEL = "-"
"""The model of a line that names none (a failure without an answer, when no input is given)."""


class ModelTotals(msgspec.Struct, frozen=True, kw_only=True):
    """One model's lines: ``cost`` is None when none of them carried one."""

    requests: int
    succeeded: int
    failed: int
    outcomes: dict[str, int]
    tokens_in: int
    tokens_out: int
    cost: float | None


class OutputUsage(ModelTotals, frozen=True, kw_only=True):
    """The totals of one batch output file, in all (the fields of :class:`ModelTotals`) and per
    model.

    ``model`` is the one the input asked for when the input file was given, else the one the
    answer names (a failure without an answer counts under ``"-"``). ``cost`` is the sum of the
    lines' costs (``litellm.response_cost``, else the body's ``usage.cost``), None when none has
    one; ``cost_complete`` says whether every
    success carried one. ``duplicates`` counts the lines whose ``custom_id`` an earlier line
    already has (two runs wrote the file at once, or it was edited); they are counted like any
    line, as their requests were made and paid for.
    """

    path: str
    cost_complete: bool
    duplicates: int
    per_model: dict[str, ModelTotals]


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None


class _Body(msgspec.Struct):
    model: str | None = None
    usage: _Usage | None = None


class _Response(msgspec.Struct):
    status_code: int
    body: msgspec.Raw = msgspec.Raw(b"null")


class _Error(msgspec.Struct):
    code: str | None = None


class _Proxy(msgspec.Struct):
    response_cost: float | None = None


class _Line(msgspec.Struct):
    custom_id: str
    response: _Response | None = None
    error: _Error | None = None
    litellm: _Proxy | None = None


class _InputLine(msgspec.Struct):
    custom_id: str
    body: _Body


_line_decoder = msgspec.json.Decoder(_Line)
_body_decoder = msgspec.json.Decoder(_Body)
_input_decoder = msgspec.json.Decoder(_InputLine)


class _Totals:
    __slots__ = ("cost", "costed", "costed_ok", "outcomes", "requests", "tokens_in", "tokens_out")

    def __init__(self) -> None:
        self.requests = 0
        self.outcomes: dict[str, int] = {}
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost = 0.0
        self.costed = 0
        self.costed_ok = 0

    def add(self, outcome: str, body: _Body | None, proxy_cost: float | None) -> None:
        self.requests += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        usage = body.usage if body is not None else None
        if usage is not None:
            self.tokens_in += usage.prompt_tokens or 0
            self.tokens_out += usage.completion_tokens or 0
        cost = proxy_cost if proxy_cost is not None else usage.cost if usage is not None else None
        if cost is not None:
            self.cost += cost
            self.costed += 1
            self.costed_ok += outcome == SUCCEEDED

    @property
    def succeeded(self) -> int:
        return self.outcomes.get(SUCCEEDED, 0)


def read_output_usage(
    path: str | os.PathLike[str], *, input_path: str | os.PathLike[str] | None = None
) -> OutputUsage:
    """Sum up a batch output file. ``input_path`` (the run's input) attributes every line, a
    failure too, to the model its request asked for.

    Raises :class:`OutputCorruptError` naming the line for a torn last line (the run was
    stopped mid-write; running the batch again repairs it) or a line that is not an output
    record, and ``OSError`` when a file cannot be read.
    """
    name = os.fspath(path)
    requested = _requested_models(input_path) if input_path is not None else {}
    total = _Totals()
    models: dict[str, _Totals] = {}
    seen: set[str] = set()
    duplicates = 0
    with open(name, "rb") as file:
        for line_no, raw in enumerate(file, 1):
            if not raw.endswith(b"\n"):
                raise OutputCorruptError(
                    name,
                    line_no,
                    "torn last line: the run was stopped while writing it "
                    "(running the batch again cuts it off and redoes that request)",
                )
            try:
                line = _line_decoder.decode(raw)
            except msgspec.DecodeError as exc:
                raise OutputCorruptError(
                    name, line_no, f"not a batch output record: {exc}"
                ) from None
            outcome, body = _outcome(line)
            if outcome is None:
                raise OutputCorruptError(
                    name, line_no, "not a batch output record: both response and error are null"
                )
            if line.custom_id in seen:
                duplicates += 1
            seen.add(line.custom_id)
            model = requested.get(line.custom_id) or (body.model if body else None)
            proxy_cost = line.litellm.response_cost if line.litellm is not None else None
            total.add(outcome, body, proxy_cost)
            totals = models.get(model or UNKNOWN_MODEL)
            if totals is None:
                totals = models[model or UNKNOWN_MODEL] = _Totals()
            totals.add(outcome, body, proxy_cost)
    return OutputUsage(
        path=name,
        requests=total.requests,
        succeeded=total.succeeded,
        failed=total.requests - total.succeeded,
        outcomes=dict(sorted(total.outcomes.items(), key=_outcome_order)),
        tokens_in=total.tokens_in,
        tokens_out=total.tokens_out,
        cost=total.cost if total.costed else None,
        cost_complete=total.costed > 0 and total.costed_ok == total.succeeded,
        duplicates=duplicates,
        per_model={
            model: ModelTotals(
                requests=totals.requests,
                succeeded=totals.succeeded,
                failed=totals.requests - totals.succeeded,
                outcomes=dict(sorted(totals.outcomes.items(), key=_outcome_order)),
                tokens_in=totals.tokens_in,
                tokens_out=totals.tokens_out,
                cost=totals.cost if totals.costed else None,
            )
            for model, totals in sorted(models.items())
        },
    )


def _outcome(line: _Line) -> tuple[str | None, _Body | None]:
    """The line's outcome, as the batch summary names it, and its answer's body if readable."""
    response = line.response
    body: _Body | None = None
    if response is not None:
        try:
            body = _body_decoder.decode(response.body)
        except msgspec.DecodeError:
            body = None  # an answer that was not a JSON object (kept as a string)
    if line.error is not None:
        return line.error.code or "error", body
    if response is None:
        return None, None
    if 200 <= response.status_code < 300:
        return SUCCEEDED, body
    return f"http_{response.status_code}", body


def _requested_models(path: str | os.PathLike[str]) -> dict[str, str]:
    """custom_id -> the model its request asked for; lines that do not say are skipped (the
    batch command validated the input before running it)."""
    models: dict[str, str] = {}
    with open(path, "rb") as file:
        for raw in file:
            try:
                line = _input_decoder.decode(raw)
            except msgspec.DecodeError:
                continue
            if line.body.model:
                models[line.custom_id] = line.body.model
    return models


def usage_to_json(usage: OutputUsage) -> bytes:
    """The totals as indented JSON (what ``trio-litellm usage --json`` prints)."""
    return msgspec.json.format(msgspec.json.encode(usage), indent=2)
