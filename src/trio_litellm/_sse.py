"""Server-Sent Events framing, sans-IO: ``feed(bytes)`` returns the events completed so far and
``finish()`` marks the end of input, as h11's ``receive_data(b"")`` does.

The rules are the WHATWG ones (as openai-python applies them): lines end in CR, LF or CRLF, a
blank line dispatches the event, ``:`` starts a comment, one space after the colon is dropped,
``data`` lines join with ``\\n``, and an event with no ``data`` line is not dispatched. Unlike a
browser we do not dispatch or silently drop a torn last event: :attr:`SSEParser.incomplete` tells
the stream reader the input ended mid-event, so it can report a broken stream.

The hot input is ``data: {json}\\n\\n``, one or several events per read, so the parser works on
whole lines: each ``feed`` splits only the new bytes (``bytes.splitlines`` splits on CR, LF and
CRLF and nothing else) and keeps at most one unterminated line, which it never scans again. A
huge event fed in tiny pieces therefore costs linear time. This module does no IO.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import msgspec

__all__ = ["EventTooLarge", "SSEParser", "ServerSentEvent", "is_done"]

_BOM = b"\xef\xbb\xbf"
_LF = 10
_CR = 13


class ServerSentEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One dispatched event.

    ``data`` is ``str``, decoded as UTF-8 with invalid bytes replaced, as the spec says. The
    stream reader skips events altogether (:meth:`SSEParser.feed_data`): building one per chunk
    and decoding its text cost about as much as the SSE framing itself. ``id`` is the last event id seen on the stream so far (it
    persists across events, per spec); ``retry`` is the reconnection time this event carried.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


def is_done(event: ServerSentEvent) -> bool:
    """True for OpenAI's end-of-stream sentinel, ``data: [DONE]``."""
    return event.data.startswith("[DONE]")


class EventTooLarge(ValueError):
    """One event (its data lines, or a line not yet ended) grew past ``limit`` bytes."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a stream event is over {limit} bytes ({size} read)")
        self.size = size
        self.limit = limit


class SSEParser:
    """Incremental SSE parser: feed it the body's bytes as they come, then call :meth:`finish`.

    ``max_event_size`` bounds the memory one event may hold: the bytes of its ``data`` lines
    plus a line not yet ended; past it, ``feed`` raises :class:`EventTooLarge` (and the parser
    is done with: the stream cannot be followed further).
    """

    __slots__ = (
        "_bom_checked",
        "_data",
        "_event",
        "_finished",
        "_head",
        "_in_event",
        "_incomplete",
        "_last_id",
        "_limit",
        "_pending",
        "_retry",
        "_size",
        "_skip_lf",
    )

    def __init__(self, max_event_size: float = math.inf) -> None:
        self._limit = max_event_size
        self._size = 0  # bytes of the current event's data lines
        self._pending = bytearray()  # an unterminated line; never holds CR or LF
        self._skip_lf = False  # the last feed ended in CR: a leading LF now ends no new line
        self._bom_checked = False
        self._head = b""  # the first bytes of the stream while they may still be a split BOM
        self._data: list[bytes] = []
        self._event = b""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._in_event = False  # a field line has been read since the last blank line
        self._finished = False
        self._incomplete = False

    @property
    def incomplete(self) -> bool:
        """After :meth:`finish`: True if the input ended inside a line or an event (a torn end);
        False if it ended on an event boundary, with nothing but comments after it."""
        return self._incomplete

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Take the next bytes of the stream; return the events they complete, in order."""
        return self._feed(data, False)  # type: ignore[return-value]

    def feed_data(self, data: bytes) -> list[bytes]:
        """:meth:`feed` for a reader that wants only each event's ``data``, as the raw bytes
        (not decoded, no event built): the stream reader's hot path, whose JSON decoder takes
        bytes. Event types, ids and retry times are still tracked."""
        return self._feed(data, True)  # type: ignore[return-value]

    def _feed(self, data: bytes, raw: bool) -> list[ServerSentEvent] | list[bytes]:
        if self._finished:
            raise RuntimeError("SSEParser.feed() called after finish()")
        if not data:
            return []
        if not self._bom_checked:
            head = self._head + data
            if len(head) < len(_BOM) and _BOM.startswith(head):
                self._head = head
                return []
            self._bom_checked = True
            self._head = b""
            data = head[len(_BOM) :] if head.startswith(_BOM) else head
            if not data:
                return []
        if self._skip_lf:
            self._skip_lf = False
            if data[0] == _LF:
                data = data[1:]
                if not data:
                    return []
        lines = data.splitlines()
        last = data[-1]
        if last == _CR:
            self._skip_lf = True
        elif last != _LF:
            tail = lines.pop()
            if not lines:
                self._pending += tail
                if len(self._pending) + self._size > self._limit:
                    raise EventTooLarge(len(self._pending) + self._size, int(self._limit))
                return []
            if self._pending:
                lines[0] = bytes(self._pending) + lines[0]
            self._pending = bytearray(tail)
            return self._lines(lines, raw)
        if self._pending:
            lines[0] = bytes(self._pending) + lines[0]
            self._pending = bytearray()
        return self._lines(lines, raw)

    def finish(self) -> list[ServerSentEvent]:
        """Mark the end of input. Per spec an event without its blank line is discarded, so this
        returns no events; :attr:`incomplete` says whether one (or part of a line) was pending."""
        if not self._finished:
            self._finished = True
            self._incomplete = bool(self._pending or self._head or self._in_event)
            self._pending = bytearray()
            self._data = []
        return []

    def finish_data(self) -> list[bytes]:
        """:meth:`finish`, typed for :meth:`feed_data`'s reader (it too returns nothing)."""
        self.finish()
        return []

    def _lines(self, lines: list[bytes], raw: bool) -> list[ServerSentEvent] | list[bytes]:
        # The hot loop: one pass per line, state in locals, the rare fields handled out of line.
        events: list[Any] = []
        data = self._data
        in_event = self._in_event
        event_type = self._event
        size, limit = self._size, self._limit
        for line in lines:
            if not line:
                size = 0
                if data:
                    joined = data[0] if len(data) == 1 else b"\n".join(data)
                    data.clear()
                    events.append(
                        joined
                        if raw
                        else ServerSentEvent(
                            event=_text(event_type) if event_type else "message",
                            data=_text(joined),
                            id=self._last_id,
                            retry=self._retry,
                        )
                    )
                if event_type or self._retry is not None:
                    event_type = self._event = b""
                    self._retry = None
                in_event = False
            elif line[:6] == b"data: ":
                data.append(line[6:])
                in_event = True
                size += len(line)
                if size > limit:
                    raise EventTooLarge(size, int(limit))
            elif line[0] != 0x3A:  # not a ":" comment
                self._field(line)
                event_type = self._event
                in_event = True
                size += len(line)
                if size > limit:
                    raise EventTooLarge(size, int(limit))
        self._in_event = in_event
        self._size = size
        return events

    def _field(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value
        elif name == b"id":
            if b"\0" not in value:
                self._last_id = _text(value)
        elif name == b"retry" and value.isdigit():  # bytes.isdigit: ASCII digits only
            with contextlib.suppress(ValueError):  # more digits than int() accepts from text
                self._retry = int(value)


def _text(raw: bytes) -> str:
    """UTF-8, invalid bytes replaced; the strict decoder is the faster path for valid input."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")
