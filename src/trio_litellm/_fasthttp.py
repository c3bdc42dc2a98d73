"""A lean HTTP/1.1 connection pool on trio streams behind httpx2's transport interface.

Why it exists: through httpx2's default transport (httpcore2 → h11 → trio) a small request costs
about a millisecond of CPU, mostly pool bookkeeping, pure-Python parsing and two ``send`` calls.
Here responses are parsed by ``httptools`` (llhttp, in C), a request whose body is in memory
goes out in one ``send_all``, and the pool is a dict of LIFO stacks of idle connections, a set
of open ones and a FIFO of waiting tasks, all changed by plain (non-async) methods so no task
switch can leave it half-updated.

Shape: ``FastTransport.handle_async_request`` acquires a connection (idle for the same origin,
else a new slot, else waits in line for one), writes the request, reads until the response head
is parsed and returns an ``httpx2.Response`` whose stream is the ``_Exchange``: the parser's
callback object for that response, which also yields the body as it is parsed. The connection
goes back to the pool the moment the body's last byte is parsed and keep-alive allows it;
anything else (an error, a cancellation, an early ``aclose``) closes it and frees its slot.

Outbound proxies: given an ``http://`` proxy, plain-HTTP requests go to it in absolute form
(``GET http://host:port/path``) with its ``Proxy-Authorization``; connections are pooled by the
target as ever. CONNECT tunnels (https through a proxy) are not opened here: the transport layer
gives those to httpx2's own pool.

A request goes again on a fresh connection only when it provably never left: a reused connection
found dead by the idle check or by the write of its first byte (plain TCP; over TLS a failed write
may have carried part of it). Once a byte has left, the server may have acted on the request, and
the error is raised for the caller's retry policy. When the rest of a request cannot be sent
because the server answered early and closed (a 413 to a large body), that answer is read and
returned (plain TCP; a broken TLS stream cannot be read).

An obsolete line fold in a response head (refused by llhttp) is made a space, as RFC 9112 §5.2
allows and h11 does: the head read so far is parsed again unfolded.

Not supported, on purpose: HTTP/2, CONNECT tunnels, ``Expect: 100-continue`` (the body is sent
at once), protocol upgrades (a 101 answer is returned and its connection closed), pipelining.
"""

from __future__ import annotations

import base64
import math
import re
import select
import ssl
from collections import deque
from collections.abc import AsyncIterable
from typing import Any

import httptools
import httpx2
import trio

__all__ = ["FastTransport", "ResponseTooLarge"]

_RECEIVE_SIZE = 65536
MAX_HEAD = 65536
"""Bytes a response head may take (interim answers included), as h11 and httpcore cap it."""
_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_VERSIONS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0", "0.9": b"HTTP/0.9"}

_FOLD = re.compile(rb"[ \t]*\r?\n[ \t]+")
"""An obsolete line fold inside a response head: the line break and the spaces around it."""

_DETACHED: Any = None
"""An exchange's parser once it is done with: the parser points back at its exchange, and keeping
that cycle would leave every response to the cyclic garbage collector."""

_Key = tuple[bytes, bytes, int]
"""A pool key: scheme, host, port."""

# Foreign errors enter here. Phase → (error on its timeout, error on anything else).
_ERRORS: dict[str, tuple[type[httpx2.TransportError], type[httpx2.TransportError]]] = {
    "connect": (httpx2.ConnectTimeout, httpx2.ConnectError),
    "write": (httpx2.WriteTimeout, httpx2.WriteError),
    "read": (httpx2.ReadTimeout, httpx2.ReadError),
    "pool": (httpx2.PoolTimeout, httpx2.PoolTimeout),
}
_FOREIGN = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
"""What trio streams raise for a broken connection (``ssl.SSLError`` is an ``OSError``)."""


class ResponseTooLarge(httpx2.RemoteProtocolError):
    """A part of the answer (``what``) grew past ``limit`` bytes: ``size`` read so far."""

    def __init__(self, what: str, size: int, limit: int, request: httpx2.Request) -> None:
        super().__init__(f"the {what} is over {limit} bytes ({size} read)", request=request)
        self.what, self.size, self.limit = what, size, limit


def _timeout_error(phase: str, request: httpx2.Request) -> httpx2.TransportError:
    return _ERRORS[phase][0](f"{phase} timed out", request=request)


def _transport_error(
    phase: str, exc: BaseException, request: httpx2.Request
) -> httpx2.TransportError:
    if isinstance(exc.__cause__, ssl.SSLError):  # trio's BrokenResourceError says no more
        exc = exc.__cause__
    message = str(exc) or type(exc).__name__
    if isinstance(exc.__cause__, BaseExceptionGroup):
        # trio's "all attempts to connect to HOST:PORT failed" keeps each address's reason in
        # its cause: say them (e.g. "[Errno 111] Connection refused").
        reasons = dict.fromkeys(str(leaf) for leaf in exc.__cause__.exceptions)
        message = f"{message}: {'; '.join(reasons)}"
    return _ERRORS[phase][1](message, request=request)


def _deadline(seconds: float | None) -> float:
    return math.inf if seconds is None else trio.current_time() + seconds


def _has_data_or_eof(sock: trio.socket.SocketType) -> bool:
    """Whether an idle connection is readable: the peer closed it or sent bytes nobody asked for."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class _Connection:
    """One TCP (or TLS) connection, or a slot reserved for one while it is being opened."""

    __slots__ = ("idle", "idle_since", "key", "socket", "stream")

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.stream: trio.abc.Stream | None = None
        self.socket: trio.socket.SocketType | None = None
        self.idle = False
        self.idle_since = 0.0

    def __repr__(self) -> str:
        state = "idle" if self.idle else "busy" if self.stream is not None else "connecting"
        scheme, host, port = self.key
        return f"<_Connection {scheme.decode()}://{host.decode()}:{port} {state}>"

    def is_idle(self) -> bool:
        """Whether it waits in the pool for a request (as httpcore's connections say)."""
        return self.idle

    def close(self) -> None:
        """Close the socket now, without a TLS goodbye; blocked readers get ClosedResourceError."""
        if self.socket is not None:
            self.socket.close()
        self.stream = self.socket = None


class _Waiter:
    """A task in line for a connection; the pool fills ``connection`` and sets ``event``."""

    __slots__ = ("connection", "event", "key")

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.event = trio.Event()
        self.connection: _Connection | None = None


class FastTransport(httpx2.AsyncBaseTransport):
    """An HTTP/1.1 connection pool on trio with a C response parser; see the module docstring.

    ``max_connections`` bounds open connections over all origins (tasks beyond wait in FIFO
    order, for at most the request's pool timeout); ``max_keepalive_connections`` bounds idle
    ones (None: no bound); an idle connection older than ``keepalive_expiry`` seconds is closed
    rather than reused. ``ssl_context`` serves https (default: ``ssl.create_default_context()``).
    ``proxy`` (``http://`` only) forwards plain-HTTP requests through an HTTP proxy.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        max_keepalive_connections: int | None,
        keepalive_expiry: float,
        ssl_context: ssl.SSLContext | None = None,
        proxy: httpx2.Proxy | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        self._proxy_address: tuple[str, int] | None = None
        self._proxy_head: bytes | None = None
        if proxy is not None:
            if proxy.url.scheme != "http":
                raise ValueError(f"only http:// proxies forward here, not {proxy.url.scheme}://")
            self._proxy_address = (proxy.url.host, proxy.url.port or 80)
            lines = [name + b": " + value + b"\r\n" for name, value in proxy.headers.raw]
            if proxy.raw_auth is not None:
                token = base64.b64encode(b":".join(proxy.raw_auth))
                lines.append(b"Proxy-Authorization: Basic " + token + b"\r\n")
            self._proxy_head = b"".join(lines)
        self._max_connections = max_connections
        self._max_idle = (
            max_connections if max_keepalive_connections is None else max_keepalive_connections
        )
        self._keepalive_expiry = keepalive_expiry
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["http/1.1"])
        self._ssl_context = ssl_context
        self._connections: set[_Connection] = set()
        self._idle: dict[_Key, list[_Connection]] = {}
        self._idle_count = 0
        self._waiters: deque[_Waiter] = deque()
        self._closed = False

    # --- statistics -----------------------------------------------------------------------------

    @property
    def connections(self) -> tuple[_Connection, ...]:
        """A snapshot of the open connections (those being opened count, as busy)."""
        return tuple(self._connections)

    @property
    def open_connections(self) -> int:
        """Connections the pool holds now, idle or busy."""
        return len(self._connections)

    @property
    def busy_connections(self) -> int:
        """Connections carrying a request or a response body (or being opened) right now."""
        return len(self._connections) - self._idle_count

    @property
    def idle_connections(self) -> int:
        """Connections waiting in the pool for a request."""
        return self._idle_count

    # --- the transport interface ----------------------------------------------------------------

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` and return its response once the head is read; the body streams."""
        url = request.url
        scheme = url.raw_scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx2.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
        key = (scheme, url.raw_host, url.port or _DEFAULT_PORTS[scheme])
        timeouts = request.extensions.get("timeout") or {}
        head, body, close = _encode_head(request, self._proxy_head)
        conn = await self._acquire(key, request, timeouts.get("pool"))
        try:
            reused = conn.stream is not None
            if not reused:
                await self._connect(conn, request, timeouts.get("connect"))
            exchange = _Exchange(self, conn, request, timeouts.get("read"), close)
            try:
                await exchange.start(head, body, timeouts.get("write"))
            except httpx2.WriteError:
                # A reused connection found dead by the write of the request's first byte (the
                # server closed it while it sat idle, just after the idle check): nothing of the
                # request left, so it goes once more on a fresh connection in the same slot.
                # Once a byte has left, the server may have read the request and acted on it:
                # the error is raised, for the caller's retry policy to decide.
                if not reused or exchange.sent:
                    raise
                conn.close()
                await self._connect(conn, request, timeouts.get("connect"))
                exchange = _Exchange(self, conn, request, timeouts.get("read"), close)
                await exchange.start(head, body, timeouts.get("write"))
        except BaseException:
            self._drop(conn)
            raise
        if exchange.complete:
            exchange.finish()
        return httpx2.Response(
            exchange.status,
            headers=exchange.headers,
            stream=exchange,
            extensions={
                "http_version": _VERSIONS.get(exchange.version, b"HTTP/1.1"),
                "reason_phrase": exchange.reason,
            },
        )

    async def aclose(self) -> None:
        """Close every connection, busy ones included; later requests raise RuntimeError."""
        self._closed = True
        for conn in self._connections:
            conn.close()
        self._connections.clear()
        self._idle.clear()
        self._idle_count = 0
        while self._waiters:
            self._waiters.popleft().event.set()  # they find no connection and a closed pool

    # --- the pool: plain methods, so each change happens without a task switch ------------------

    async def _acquire(
        self, key: _Key, request: httpx2.Request, timeout: float | None
    ) -> _Connection:
        if self._closed:
            raise RuntimeError("the transport is closed")
        stack = self._idle.get(key)
        if stack:
            now = trio.current_time()
            while stack:
                conn = stack.pop()
                self._idle_count -= 1
                conn.idle = False
                if now - conn.idle_since > self._keepalive_expiry:
                    for older in stack:  # the stack is newest last: the older are expired too
                        older.idle = False
                    self._idle_count -= len(stack)
                    for older in (conn, *stack):
                        self._drop(older)
                    stack.clear()
                    break
                assert conn.socket is not None
                if _has_data_or_eof(conn.socket):
                    self._drop(conn)
                    continue
                return conn
        if len(self._connections) >= self._max_connections and self._idle_count:
            self._evict_oldest_idle()
        if len(self._connections) < self._max_connections:
            conn = _Connection(key)
            self._connections.add(conn)
            return conn
        return await self._wait_in_line(key, request, timeout)

    async def _wait_in_line(
        self, key: _Key, request: httpx2.Request, timeout: float | None
    ) -> _Connection:
        waiter = _Waiter(key)
        self._waiters.append(waiter)
        try:
            with trio.CancelScope(deadline=_deadline(timeout)):
                await waiter.event.wait()
        except BaseException:
            if waiter.connection is not None:
                self._hand_back(waiter.connection)
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        if waiter.connection is not None:
            return waiter.connection
        if self._closed:
            raise RuntimeError("the transport was closed while a request waited for a connection")
        self._waiters.remove(waiter)
        raise _timeout_error("pool", request)

    def _release(self, conn: _Connection) -> None:
        """A connection whose exchange ended cleanly: to the next in line, or to the idle pool."""
        if self._closed or conn not in self._connections:
            conn.close()
            return
        waiters = self._waiters
        if waiters and waiters[0].key != conn.key:
            self._drop(conn)  # its slot goes to the first in line, for another origin
            return
        if waiters:
            waiter = waiters.popleft()
            waiter.connection = conn
            waiter.event.set()
            return
        if self._idle_count >= self._max_idle:
            self._drop(conn)
            return
        conn.idle = True
        conn.idle_since = trio.current_time()
        self._idle.setdefault(conn.key, []).append(conn)
        self._idle_count += 1

    def _drop(self, conn: _Connection) -> None:
        """Close a busy (or just unstacked) connection and give its slot to the first in line."""
        conn.close()
        if conn not in self._connections:
            return  # already dropped, or the transport was closed
        self._connections.remove(conn)
        if self._waiters:
            waiter = self._waiters.popleft()
            placeholder = _Connection(waiter.key)
            self._connections.add(placeholder)
            waiter.connection = placeholder
            waiter.event.set()

    def _hand_back(self, conn: _Connection) -> None:
        """A waiter was given ``conn`` but was cancelled before it could use it."""
        if conn.stream is None:
            self._drop(conn)
        else:
            self._release(conn)

    def _evict_oldest_idle(self) -> None:
        oldest: list[_Connection] | None = None
        for stack in self._idle.values():
            if stack and (oldest is None or stack[0].idle_since < oldest[0].idle_since):
                oldest = stack
        assert oldest
        conn = oldest.pop(0)
        conn.idle = False
        self._idle_count -= 1
        self._drop(conn)

    async def _connect(
        self, conn: _Connection, request: httpx2.Request, timeout: float | None
    ) -> None:
        scheme, raw_host, port = conn.key
        host = raw_host.decode("ascii")
        address = (host, port)
        if self._proxy_address is not None:
            if scheme == b"https":
                raise httpx2.UnsupportedProtocol(
                    "https through a proxy needs a CONNECT tunnel, which this pool does not open",
                    request=request,
                )
            address = self._proxy_address
        tcp: trio.SocketStream | None = None
        try:
            with trio.CancelScope(deadline=_deadline(timeout)) as scope:
                tcp = await trio.open_tcp_stream(*address)
                stream: trio.abc.Stream = tcp
                if scheme == b"https":
                    tls = trio.SSLStream(
                        tcp, self._tls_context(), server_hostname=host, https_compatible=True
                    )
                    await tls.do_handshake()
                    stream = tls
                conn.stream, conn.socket = stream, tcp.socket
        except _FOREIGN as exc:
            if tcp is not None:
                tcp.socket.close()
            raise _transport_error("connect", exc, request) from exc
        except BaseException:
            if tcp is not None:
                tcp.socket.close()
            raise
        if scope.cancelled_caught:
            if tcp is not None:
                tcp.socket.close()
            raise _timeout_error("connect", request)

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:  # made on first use: loading the CA store takes a while
            self._ssl_context = ssl.create_default_context()
            self._ssl_context.set_alpn_protocols(["http/1.1"])
        return self._ssl_context


def _encode_head(
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


class _Exchange(httpx2.AsyncByteStream):
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
        conn: _Connection,
        request: httpx2.Request,
        read_timeout: float | None,
        close: bool,
    ) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
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
        """Send the request and read until the response head is parsed."""
        conn = self._conn
        assert conn is not None
        assert conn.stream is not None
        stream = conn.stream
        request = self._request
        phase = "write"
        unsent: BaseException | None = None  # why the rest of the request could not be sent
        try:
            with trio.CancelScope(deadline=_deadline(write_timeout)) as scope:
                try:
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
                            scope.deadline = _deadline(write_timeout)
                            await stream.send_all(chunk)
                except _FOREIGN as exc:
                    if not self.sent:
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
                    scope.deadline = _deadline(read_timeout)
                    received = await stream.receive_some(_RECEIVE_SIZE)
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
        except _FOREIGN as exc:
            if unsent is not None:
                raise _transport_error("write", unsent, self._request) from unsent
            raise _transport_error(phase, exc, self._request) from exc
        except httpx2.RemoteProtocolError:
            if unsent is not None:
                raise _transport_error("write", unsent, self._request) from unsent
            raise
        if scope.cancelled_caught:
            if unsent is not None:
                raise _transport_error("write", unsent, self._request) from unsent
            raise _timeout_error(phase, self._request)

    async def _receive(self) -> None:
        """Read once more from the connection and feed the parser; errors close the connection."""
        conn = self._conn
        assert conn is not None
        assert conn.stream is not None
        try:
            with trio.CancelScope(deadline=_deadline(self._read_timeout)) as scope:
                received = await conn.stream.receive_some(_RECEIVE_SIZE)
            if scope.cancelled_caught:
                raise _timeout_error("read", self._request)
            if received:
                self._feed(received)
            else:
                self._end_of_input()
        except _FOREIGN as exc:
            self._abandon()
            raise _transport_error("read", exc, self._request) from exc
        except BaseException:
            self._abandon()
            raise
        if self.complete:
            self.finish()

    def finish(self) -> None:
        """The whole response is parsed: the connection goes back to the pool, or is closed."""
        conn, self._conn = self._conn, None
        self._parser = _DETACHED
        if conn is not None:
            if self._keep_alive:
                self._pool._release(conn)
            else:
                self._pool._drop(conn)

    def _abandon(self) -> None:
        conn, self._conn = self._conn, None
        self._parser = _DETACHED
        if conn is not None:
            self._pool._drop(conn)

    # --- httpx2.AsyncByteStream -----------------------------------------------------------------

    def __aiter__(self) -> _Exchange:
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
