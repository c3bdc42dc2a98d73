"""A recorder dump on the terminal: ``trio-litellm recorded`` and ``trio-litellm usage --recorded``.

A table of one line per exchange (time, model, outcome, status, latency, tokens, and a preview
of the request and the answer: the last message and the reply's text when the bodies are whole
JSON, else their first characters), or, with ``full``, every field of each exchange. Everything
from the file is printed as plain text, never as rich markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._recorder import RecordedExchange

__all__ = ["render_dump"]

PREVIEW = 200
"""Most characters of a request or answer preview (the table cuts them to the terminal)."""

WIDE = 110
"""Terminal columns from which the table shows the request and the tokens too."""


def render_dump(
    entries: Sequence[RecordedExchange], console: Console, *, full: bool = False
) -> None:
    """Print ``entries`` as a table, or each in full."""
    if not entries:
        console.print("no recorded requests")
        return
    if full:
        for entry in entries:
            _print_full(entry, console)
        return
    model_width = min(max(len(entry.record.model) for entry in entries), 24)
    outcome_width = min(max(len(entry.record.outcome) for entry in entries), 24)
    # A narrow terminal gets the answer only: one preview that fits beats two cut to nothing.
    wide = console.width >= WIDE
    columns: list[tuple[str, int]] = [
        ("time", 14),
        ("model", model_width),
        ("outcome", outcome_width),
        ("status", 6),
        ("ms", 6),
    ]
    if wide:
        columns.append(("tokens", 7))
    fixed = sum(width for _, width in columns) + 2 * len(columns)  # and a gap before each preview
    room = max(console.width - fixed - (2 if wide else 0), 8)
    requests = [_one_line(_request_preview(entry), room // 2) for entry in entries] if wide else []
    answer_width = room - max(7, *map(len, requests)) if wide else room  # 7: "request"
    table = Table(box=None, pad_edge=False, padding=(0, 1))
    for name, width in columns:
        table.add_column(
            name,
            justify="right" if name in ("status", "ms", "tokens") else "left",
            no_wrap=True,
            overflow="ellipsis",
            min_width=width,
        )
    if wide:
        table.add_column("request", no_wrap=True, overflow="ellipsis", max_width=room // 2)
    table.add_column("response", no_wrap=True, overflow="ellipsis", max_width=answer_width)
    for index, entry in enumerate(entries):
        record = entry.record
        cells: list[str | Text] = [
            _time(record.started_at),
            Text(record.model),
            Text(record.outcome, style="green" if entry.ok else "red"),
            "-" if entry.status is None else str(entry.status),
            f"{record.latency * 1000:,.0f}",
        ]
        if wide:
            cells.append(
                "-"
                if record.prompt_tokens is None
                else f"{record.prompt_tokens}/{record.completion_tokens or 0}"
            )
            cells.append(Text(requests[index]))
        cells.append(Text(_one_line(_response_preview(entry), answer_width)))
        table.add_row(*cells)
    console.print(table)


def _time(started_at: float) -> str:
    return datetime.fromtimestamp(started_at).strftime("%m-%d %H:%M:%S")


def _one_line(text: str, width: int = PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _decoded(body: str | None) -> Any:
    if not body:
        return None
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None  # cut short, or not JSON


def _request_preview(entry: RecordedExchange) -> str:
    body = _decoded(entry.request_body) if not entry.request_body_cut else None
    if isinstance(body, dict):
        messages = body.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            content = messages[-1].get("content")
            if isinstance(content, str):
                return _one_line(content)
        if "input" in body:
            return _one_line(msgspec.json.encode(body["input"]).decode())
    return _one_line(entry.request_body)


def _response_preview(entry: RecordedExchange) -> str:
    if entry.error_type is not None:
        return _one_line(f"{entry.error_type}: {entry.error_message or ''}")
    if entry.response_body is None:
        return "-"
    body = _decoded(entry.response_body) if not entry.response_body_cut else None
    if isinstance(body, dict):
        choices = body.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                return _one_line(message["content"])
        data = body.get("data")
        if isinstance(data, list):
            return f"{len(data)} embedding(s)"
    return _one_line(entry.response_body)


def _print_full(entry: RecordedExchange, console: Console) -> None:
    record = entry.record
    head = Text()
    head.append(f"{_time(record.started_at)}  {entry.method} {entry.path}  ", style="bold")
    head.append(record.outcome, style="green" if entry.ok else "red")
    head.append(
        f"  status {entry.status if entry.status is not None else '-'}"
        f"  {record.latency * 1000:,.1f} ms  attempts {record.attempts}"
    )
    console.print(head)
    facts = {
        "model": record.model,
        "served by": record.served_model,
        "call id": record.call_id,
        "stream": "yes" if record.stream else None,
        "tokens": (
            None
            if record.prompt_tokens is None
            else f"{record.prompt_tokens} in, {record.completion_tokens or 0} out"
        ),
        "cost": None if record.cost is None else f"${record.cost:.8f} ({record.cost_source})",
        "error": (
            None if entry.error_type is None else f"{entry.error_type}: {entry.error_message}"
        ),
    }
    for label, value in facts.items():
        if value is not None:
            console.print(Text(f"  {label}: {value}"))
    for name, value in entry.response_headers.items():
        console.print(Text(f"  < {name}: {value}", style="dim"))
    console.print(
        Text("  request: ", style="bold") + Text(_body(entry.request_body, entry.request_body_cut))
    )
    if entry.response_body is not None:
        label = "  response (assembled from the stream): " if record.stream else "  response: "
        console.print(
            Text(label, style="bold") + Text(_body(entry.response_body, entry.response_body_cut))
        )
    console.print()


def _body(text: str, cut: int) -> str:
    return text + (f" [... {cut:,} more bytes]" if cut else "")
