"""One request and its response on a connection of the pool: the request's bytes, httptools'
parser callbacks, and the response body as an ``httpx2.AsyncByteStream``."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, Any

import httptools
import httpx2
import trio

from ._connection import (
    FOREIGN,
    Connection,
    Owner,
    ResponseTooLarge,
    timeout_error,
    transport_error,
)

if TYPE_CHECKING:
    from ._pool import FastTransport

__all__ = ["MAX_HEAD", "Exchange", "encode_head"]

_RECEIVE_SIZE = 65536
MAX_HEAD = 65536
"""Bytes a response head may take (interim answers included), as h11 and httpcore cap it."""

_FOLD = re.compile(rb"[ \t]*\r?\n[ \t]+")
"""An obsolete line fold inside a response head: the line break and the spaces around it."""

_DETACHED: Any = None
"""An exchange's parser once it is done with: the parser points back at its exchange, and keeping
that cycle would leave every response to the cyclic garbage collector."""


def encode_head(
    request: httpx2.Request, proxy_head: bytes | None = None
) -> tuple[bytes, bytes | AsyncIterable[bytes], bool]:
    """The bytes to send first, then the body (bytes, already in the first part, or a stream).

    Returns (data, body, close): when the body is in memory ``data`` holds the whole request
    and ``body`` is ``b""``; otherwise ``body`` is the request stream, sent chunked unless the
    request says its ``Content-Length``. ``close`` is whether the request asked to close.
    ``proxy_head`` (header lines for a forward proxy) asks for the absolute-form target.
    """
    url = request.url
    target = url.raw_path
    if proxy_head is not None:
        target = url.raw_scheme + b"://" + url.netloc + target
    parts = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    if proxy_head:
        parts.append(proxy_head)
    has_host = has_length = chunked = close = False
    for name, value in request.headers.raw:
        parts += (name, b": ", value, b"\r\n")
        lowered = name.lower()
        if lowered == b"host":
            has_host = True
        elif lowered == b"content-length":
            has_length = True
        elif lowered == b"transfer-encoding":
            has_length = chunked = True
        elif lowered == b"connection":
            close = b"close" in value.lower()
    if not has_host:
        parts += (b"Host: ", url.netloc, b"\r\n")
    try:
        content = request.content
    except httpx2.RequestNotRead:
        stream = request.stream
        assert isinstance(stream, AsyncIterable), "an async transport needs an async request body"
        if not has_length:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        parts.append(b"\r\n")
        return b"".join(parts), _chunked(stream) if chunked or not has_length else stream, close
    if chunked:
        content = b"%x\r\n%b\r\n0\r\n\r\n" % (len(content), content) if content else b"0\r\n\r\n"
    elif not has_length and content:
        parts += (b"Content-Length: ", b"%d" % len(content), b"\r\n")
    parts += (b"\r\n", content)
    return b"".join(parts), b"", close


async def _chunked(stream: AsyncIterable[bytes]) -> AsyncIterable[bytes]:
    async for chunk in stream:
        if chunk:
            yield b"%x\r\n%b\r\n" % (len(chunk), chunk)
    yield b"0\r\n\r\n"


class _StopParsing(Exception):
    """Raised from a parser callback: bytes after the end of the response."""


class Exchange(httpx2.AsyncByteStream):
    """One request and its response: httptools' callback object, then the body's byte stream.

    The parser fills ``status``, ``headers`` and the pending body pieces; iteration returns the
    pieces parsed so far (joined) and reads more only when none are pending, each read bounded
    by the read timeout. ``finish`` and ``aclose`` settle the connection exactly once.
    """

    __slots__ = (
        "_chunks",
        "_close",
        "_conn",
        "_head_only",
        "_headers_done",
        "_interim",
        "_keep_alive",
        "_limit",
        "_owner",
        "_parser",
        "_pool",
        "_read_timeout",
        "_request",
        "complete",
        "headers",
        "reason",
        "sent",
        "status",
        "version",
    )

    def __init__(
        self,
        pool: FastTransport,
        conn: Connection,
        request: httpx2.Request,
        read_timeout: float | None,
        close: bool,
        owner: Owner | None = None,
    ) -> None:
        self._pool = pool
        self._owner = owner
        self._limit = math.inf if owner is None else owner.deadline
        self._conn: Connection | None = conn
        self._request = request
        self._read_timeout = read_timeout
        self._close = close
        self._head_only = request.method == "HEAD"
        self._parser = httptools.HttpResponseParser(self)
        self._chunks: list[bytes] = []
        self._headers_done = self._interim = self._keep_alive = False
        self.complete = self.sent = False
        self.status = 0
        self.reason = b""
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []

    # --- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            raise _StopParsing

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._headers_done:  # trailers of a chunked body are dropped
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        self.status = parser.get_status_code()
        self.version = parser.get_http_version()
        self._headers_done = True
        if 100 <= self.status < 200 and self.status != 101:
            self._interim = True  # 1xx: skipped; the final answer follows on the same parser
        elif self._head_only:
            self._done(parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self.complete:  # a body after a HEAD answer: ignored, and the connection goes
            self._keep_alive = False
        else:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = self._headers_done = False
            self.reason = b""
            self.headers = []
        elif not self.complete:
            self._done(self._parser.should_keep_alive())

    def _done(self, keep_alive: bool) -> None:
        self.complete = True
        self._keep_alive = keep_alive and not self._close

    def _feed(self, data: bytes | bytearray) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._done(False)  # a 101: the connection now speaks something else
        except httptools.HttpParserError as exc:
            if self.complete:  # bytes after the end: the answer stands, the connection goes
                self._keep_alive = False
                return
            raise httpx2.RemoteProtocolError(
                f"malformed HTTP response: {exc}", request=self._request
            ) from exc

    def _unfold(self, raw: bytes) -> bool:
        """Parse the answer so far again with its obsolete header line folds made spaces (RFC
        9112 §5.2: llhttp refuses them, h11 and httpcore take them so); False if it had none."""
        end = raw.find(b"\r\n\r\n")
        head = raw if end < 0 else raw[:end]
        if _FOLD.search(head) is None:
            return False
        self._parser = httptools.HttpResponseParser(self)
        self._chunks = []
        self._headers_done = self._interim = False
        self.reason = b""
        self.headers = []
        self._feed(_FOLD.sub(b" ", head) + (b"" if end < 0 else raw[end:]))
        return True

    def _end_of_input(self) -> None:
        """The server closed: the end of a body delimited by close, or a broken answer."""
        if self._headers_done and not self._interim and not self.complete:
            framed = {name.lower() for name, _ in self.headers} & {
                b"content-length",
                b"transfer-encoding",
            }
            if not framed:
                self._done(False)
                return
        what = "the response body" if self._headers_done else "a response"
        raise httpx2.RemoteProtocolError(
            f"server disconnected before the end of {what}", request=self._request
        )

    # --- the exchange ---------------------------------------------------------------------------

    async def start(
        self, data: bytes, body: bytes | AsyncIterable[bytes], write_timeout: float | None
    ) -> None:
        """Send the request and read until the response head is parsed.

        Each write and read is bounded by the pool's timer (``FastTransport.arm``): past its
        timeout the connection is closed under it, and the error that brings is the phase's
        timeout here."""
        conn = self._conn
        assert conn is not None
        assert conn.stream is not None
        stream = conn.stream
        request = self._request
        phase = "write"
        unsent: BaseException | None = None  # why the rest of the request could not be sent
        try:
            try:
                self._bound(conn, write_timeout, phase)
                if type(stream) is trio.SocketStream:
                    # The first write by hand: when it fails, no byte of the request has left
                    # (trio's send_all could not say how many had).
                    sent = await conn.socket.send(data)  # type: ignore[union-attr]
                    self.sent = True
                    if sent < len(data):
                        await stream.send_all(memoryview(data)[sent:])
                else:  # TLS: a failed write may have carried part of the request
                    self.sent = True
                    await stream.send_all(data)
                if isinstance(body, AsyncIterable):
                    async for chunk in body:
                        self._bound(conn, write_timeout, phase)
                        await stream.send_all(chunk)
            except FOREIGN as exc:
                if not self.sent or conn.timed_out:
                    raise
                # The server may have answered before reading the whole request (a 413 to
                # a large body) and closed: the answer waits to be read, as httpcore reads
                # it. The connection goes afterwards, whatever the answer says.
                unsent = exc
                self._close = True
            phase = "read"
            read_timeout = self._read_timeout
            raw = b""  # what the head's reads brought, kept to parse again unfolded
            while not self._headers_done or self._interim:
                self._bound(conn, read_timeout, phase)
                received = await stream.receive_some(_RECEIVE_SIZE)
                conn.due = math.inf
                if not received:
                    self._end_of_input()
                else:
                    raw += received  # the first time, no copy: b"" + x is x
                    try:
                        self._feed(received)
                    except httpx2.RemoteProtocolError:
                        if not self._unfold(raw):
                            raise
                    if len(raw) > MAX_HEAD and (not self._headers_done or self._interim):
                        raise ResponseTooLarge("response head", len(raw), MAX_HEAD, request)
        except FOREIGN as exc:
            if conn.timed_out:
                raise timeout_error(phase, request) from None
            if unsent is not None:
                raise transport_error("write", unsent, request) from unsent
            raise transport_error(phase, exc, request) from exc
        except httpx2.RemoteProtocolError:
            if unsent is not None:
                raise transport_error("write", unsent, request) from unsent
            raise

    def _bound(self, conn: Connection, timeout: float | None, phase: str) -> None:
        """Bound the next write or read on ``conn`` by ``timeout``, and by the owner's deadline
        (the pool's timer, ``FastTransport.arm``); no time left: the phase's timeout now."""
        if not self._pool.arm(conn, timeout, self._limit):
            raise timeout_error(phase, self._request)

    async def _receive(self) -> None:
        """Read once more from the connection and feed the parser; errors close the connection."""
        conn = self._conn
        assert conn is not None
        assert conn.stream is not None
        try:
            self._bound(conn, self._read_timeout, "read")
            received = await conn.stream.receive_some(_RECEIVE_SIZE)
            conn.due = math.inf
            if received:
                self._feed(received)
            else:
                self._end_of_input()
        except FOREIGN as exc:
            self._abandon()
            if conn.timed_out:
                raise timeout_error("read", self._request) from None
            raise transport_error("read", exc, self._request) from exc
        except BaseException:
            self._abandon()
            raise
        if self.complete:
            self.finish()

    def finish(self) -> None:
        """The whole response is parsed: the connection goes back to the pool, or is closed."""
        conn, self._conn = self._conn, None
        self._parser = _DETACHED
        if self._owner is not None:
            self._owner.pending = None
        if conn is not None:
            if self._keep_alive:
                self._pool._release(conn)
            else:
                self._pool._drop(conn)

    def _abandon(self) -> None:
        conn, self._conn = self._conn, None
        self._parser = _DETACHED
        if self._owner is not None:
            self._owner.pending = None
        if conn is not None:
            self._pool._drop(conn)

    # --- httpx2.AsyncByteStream -----------------------------------------------------------------

    def __aiter__(self) -> Exchange:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self.complete:
                raise StopAsyncIteration
            if self._conn is None:
                raise httpx2.StreamClosed()
            await self._receive()
        chunks, self._chunks = self._chunks, []
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def aclose(self) -> None:
        """Stop reading: a connection whose response is not over is closed, not reused."""
        if self.complete:
            self.finish()
        else:
            self._abandon()
