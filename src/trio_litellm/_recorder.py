"""The debug recorder: the last N requests and what came back, kept for a look after the fact.

Why it is shaped this way: recording is off by default and must then cost nothing, so a request
carries a :class:`Trace` only when it is on (``ClientConfig(record_last=N)``). Its operation fills
the trace with references to the answer (status, headers, body: nothing is copied on the
request's path); when the request ends, the client's observer hands the trace, the request's
:class:`RequestRecord` and its error to :meth:`DebugRecorder.add`. That is where the work
happens, once per request: bodies are cut to ``body_limit`` bytes, only harmless response
headers are kept, the API key and credential-looking JSON fields are masked, and one frozen
:class:`RecordedExchange` goes into a deque of ``limit`` entries (the oldest falls out).

No trio and no network IO here; :meth:`DebugRecorder.dump` and :func:`read_dump` do file IO,
synchronously (a dump of a thousand entries of 4 KiB bodies is a few MB).
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import msgspec

from ._errors import DumpFileError, LiteLLMError
from ._files import write_atomically
from ._usage import RequestRecord

if TYPE_CHECKING:
    from ._reader import StreamReader

__all__ = [
    "DebugRecorder",
    "RecordedExchange",
    "RecorderStatistics",
    "Trace",
    "read_dump",
]

MASK = "***"
"""What stands in for the API key, and for the value of a credential-looking JSON field."""

_HEADER_PREFIXES = ("x-litellm-", "x-ratelimit-", "llm_provider-x-ratelimit-")
_HEADER_NAMES = frozenset(
    {"content-type", "retry-after", "retry-after-ms", "llm_provider-retry-after", "x-request-id"}
)
_SECRET_HEADER = re.compile(r"authorization|api[-_]?key|cookie|secret|password", re.I)
_CREDENTIAL_FIELD = re.compile(
    r'("[^"]*(?:api[-_]?key|secret|password|authorization|access[-_]?key)[^"]*"\s*:\s*")'
    r'(?:[^"\\]|\\.)*("|\\?$)',
    re.I,
)
"""A JSON string field whose name looks like a credential (``"api_key": "..."``, also cut short
at the end of a truncated body); its value is masked."""


class RecordedExchange(msgspec.Struct, frozen=True, kw_only=True):
    """One request as the recorder kept it: its record, what was sent, what came back.

    ``request_body`` and ``response_body`` are the first ``body_limit`` bytes (cut at a character
    boundary, decoded as UTF-8 with bad bytes replaced); ``request_body_cut`` and
    ``response_body_cut`` say how many bytes were left out (0: the whole body is here). For a
    stream, ``response_body`` is the completion assembled from its chunks as far as it got
    (the raw SSE is not kept). ``response_body`` is None when no answer was read: a connection
    failure, a timeout, or an error status (whose ``error_message`` says what the proxy said).
    ``response_headers`` holds only ``x-litellm-*``, ``x-ratelimit-*``, ``retry-after``,
    ``content-type`` and ``x-request-id``. The API key never appears: no request header is kept,
    and the key is masked wherever a body or message holds it.
    """

    record: RequestRecord
    method: str
    path: str
    request_body: str
    request_body_cut: int = 0
    status: int | None = None
    response_headers: dict[str, str] = msgspec.field(default_factory=dict)
    response_body: str | None = None
    response_body_cut: int = 0
    error_type: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        """True when the request succeeded."""
        return self.record.outcome == "ok"


class RecorderStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a recorder: entries held now and at most, the body limit, exchanges
    recorded since it was made, and how many of them fell out to make room for newer ones."""

    held: int
    limit: int
    body_limit: int
    recorded: int
    evicted: int


class Trace:
    """What one request sent, and what its last attempt got back; filled in while it runs.

    Holds references only: the recorder copies and cuts when the request has ended. A stream
    sets ``reader`` instead of ``answered``: its reader knows the headers and the chunks.
    """

    __slots__ = ("attempt", "body", "headers", "method", "path", "reader", "response", "status")

    def __init__(
        self, method: str, path: str, body: bytes, *, reader: StreamReader | None = None
    ) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.reader = reader
        self.attempt = 0
        self.status: int | None = None
        self.headers: Mapping[str, str] | None = None
        self.response: bytes | None = None

    def answered(self, attempt: int, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """Attempt ``attempt`` got an answer (kept until a later attempt gets one)."""
        self.attempt = attempt
        self.status = status
        self.headers = headers
        self.response = body


class DebugRecorder:
    """The last ``limit`` requests of a client with their (cut) bodies, oldest first.

    Made by the client when ``record_last`` is set (``client.recorder``); ``body_limit`` bytes of
    each body are kept. ``secret`` is the API key to mask should a body or message echo it.
    """

    def __init__(self, limit: int, *, body_limit: int = 4096, secret: str | None = None) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
        if isinstance(body_limit, bool) or not isinstance(body_limit, int) or body_limit < 0:
            raise ValueError(f"body_limit must be an integer >= 0, got {body_limit!r}")
        self._entries: deque[RecordedExchange] = deque(maxlen=limit)
        self._body_limit = body_limit
        self._secret = secret or None
        self._secret_bytes = secret.encode() if secret else b""
        self._recorded = 0
        self._evicted = 0

    def __repr__(self) -> str:
        return f"<DebugRecorder {len(self._entries)}/{self.limit} entries>"

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def limit(self) -> int:
        """The most entries kept."""
        return self._entries.maxlen or 0

    @property
    def body_limit(self) -> int:
        """Bytes kept of each request and response body."""
        return self._body_limit

    def entries(self) -> list[RecordedExchange]:
        """The entries held, oldest first (a copy: later requests do not change it)."""
        return list(self._entries)

    def clear(self) -> None:
        """Forget every entry (the counters in :meth:`statistics` keep counting)."""
        self._entries.clear()

    def statistics(self) -> RecorderStatistics:
        """Entries held and limits, and what was recorded and evicted since the recorder was made."""
        return RecorderStatistics(
            held=len(self._entries),
            limit=self.limit,
            body_limit=self._body_limit,
            recorded=self._recorded,
            evicted=self._evicted,
        )

    def dump(self, target: str | os.PathLike[str] | IO[bytes]) -> int:
        """Write the entries, oldest first, as JSON Lines (one :class:`RecordedExchange` a line);
        return how many were written.

        A path is written atomically (a temporary file beside it, then ``os.replace``): a reader
        sees the old file or the whole new one. A binary file object is written to as it is.
        """
        entries = self.entries()
        data = b"".join(_encoder.encode(entry) + b"\n" for entry in entries)
        if isinstance(target, str | os.PathLike):
            write_atomically(Path(target), data)
        else:
            target.write(data)
            target.flush()
        return len(entries)

    def add(self, record: RequestRecord, trace: Trace, error: BaseException | None) -> None:
        """Keep one finished request (called by the client's observer, once per request)."""
        request_body, request_cut = self._cut(trace.body)
        status: int | None = None
        headers: Mapping[str, str] | None = None
        response: bytes | None = None
        reader = trace.reader
        if reader is not None:
            meta = reader.meta
            if meta is not None and meta.attempts == record.attempts:
                status, headers = meta.status, reader.headers
                response = _assembled(reader)
        elif trace.attempt and trace.attempt == record.attempts:
            status, headers, response = trace.status, trace.headers, trace.response
        if status is None:
            status = record.status
        response_body, response_cut = (None, 0) if response is None else self._cut(response)
        error_type = error_message = None
        if error is not None:
            error_type = type(error).__name__
            text = error.message if isinstance(error, LiteLLMError) else str(error)
            error_message = self._mask_text(text)
        if len(self._entries) == self._entries.maxlen:
            self._evicted += 1  # the deque drops the oldest itself
        self._entries.append(
            RecordedExchange(
                record=record,
                method=trace.method,
                path=trace.path,
                request_body=request_body,
                request_body_cut=request_cut,
                status=status,
                response_headers=self._headers(headers),
                response_body=response_body,
                response_body_cut=response_cut,
                error_type=error_type,
                error_message=error_message,
            )
        )
        self._recorded += 1

    # --- cutting and masking --------------------------------------------------------------------

    def _cut(self, data: bytes) -> tuple[str, int]:
        """The first ``body_limit`` bytes as text, masked, and how many bytes were left out."""
        if self._secret_bytes and self._secret_bytes in data:
            data = data.replace(self._secret_bytes, MASK.encode())
        limit = self._body_limit
        cut = 0
        if len(data) > limit:
            end = limit
            # Back off to a character boundary: a cut inside a UTF-8 sequence would leave U+FFFD.
            while end > 0 and limit - end < 3 and data[end] & 0xC0 == 0x80:
                end -= 1
            cut = len(data) - end
            data = data[:end]
        return _CREDENTIAL_FIELD.sub(rf"\g<1>{MASK}\g<2>", data.decode("utf-8", "replace")), cut

    def _mask_text(self, text: str) -> str:
        if self._secret and self._secret in text:
            text = text.replace(self._secret, MASK)
        return _CREDENTIAL_FIELD.sub(rf"\g<1>{MASK}\g<2>", text)

    def _headers(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        if not headers:
            return {}
        kept: dict[str, str] = {}
        for name, value in headers.items():
            lower = name.lower()
            if (
                lower in _HEADER_NAMES or lower.startswith(_HEADER_PREFIXES)
            ) and not _SECRET_HEADER.search(lower):
                if self._secret and self._secret in value:
                    value = value.replace(self._secret, MASK)
                kept[lower] = value
        return kept


def _assembled(reader: StreamReader) -> bytes | None:
    """A stream's completion as far as it got, as JSON; None when no chunk arrived."""
    accumulator = reader.accumulator
    if not accumulator.chunks:
        return None
    completion: dict[str, Any] = msgspec.to_builtins(accumulator.result())
    completion.pop("meta", None)
    return _encoder.encode(completion)


# --- the dump file ------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(RecordedExchange)


def read_dump(path: str | os.PathLike[str]) -> list[RecordedExchange]:
    """The entries of a file written by :meth:`DebugRecorder.dump`, in file order.

    Raises :class:`DumpFileError` naming the first line that is not a whole recorded exchange,
    and ``OSError`` when the file cannot be read. Blank lines are skipped.
    """
    name = os.fspath(path)
    entries: list[RecordedExchange] = []
    with open(name, "rb") as file:
        for line_no, line in enumerate(file, 1):
            if not line.strip():
                continue
            if not line.endswith(b"\n"):
                raise DumpFileError(name, line_no, "torn last line: the file was cut short")
            try:
                entries.append(_decoder.decode(line))
            except msgspec.DecodeError as exc:
                raise DumpFileError(name, line_no, f"not a recorded exchange: {exc}") from None
    return entries
