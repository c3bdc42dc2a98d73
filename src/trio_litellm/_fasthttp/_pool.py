"""The pool: ``FastTransport``, httpx2's transport interface over a dict of LIFO stacks of idle
connections, a set of open ones and a FIFO of waiting tasks, all changed by plain (non-async)
methods so no task switch can leave it half-updated."""

from __future__ import annotations

import base64
import logging
import math
import ssl
from collections import deque
from collections.abc import AsyncIterable, Mapping

import httpx2
import trio

from ._connection import (
    Connection,
    Key,
    Owner,
    connect,
    deadline,
    has_data_or_eof,
    timeout_error,
)
from ._exchange import Exchange, encode_head

__all__ = ["FastTransport"]

logger = logging.getLogger("trio_litellm")

_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_VERSIONS = {"1.1": b"HTTP/1.1", "1.0": b"HTTP/1.0", "0.9": b"HTTP/0.9"}


class _Waiter:
    """A task in line for a connection; the pool fills ``connection`` and sets ``event``."""

    __slots__ = ("aborted", "connection", "event", "key")

    def __init__(self, key: Key) -> None:
        self.key = key
        self.event = trio.Event()
        self.connection: Connection | None = None
        self.aborted = False

    def abort(self) -> None:
        """Stop waiting: the waiter leaves the line with a pool timeout."""
        self.aborted = True
        self.event.set()


class FastTransport(httpx2.AsyncBaseTransport):
    """An HTTP/1.1 connection pool on trio with a C response parser; see the package docstring.

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
        self._connections: set[Connection] = set()
        self._idle: dict[Key, list[Connection]] = {}
        self._idle_count = 0
        self._waiters: deque[_Waiter] = deque()
        self._closed = False
        # The timer (see arm()): the cancel scope it sleeps in, and when that sleep ends.
        self._timer_sleep: trio.CancelScope | None = None
        self._timer_wakes = math.inf
        self._timer_scope: trio.CancelScope | None = None

    # --- statistics -----------------------------------------------------------------------------

    @property
    def connections(self) -> tuple[Connection, ...]:
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
        key = self.key_of(request.url)
        if key is None:
            scheme = request.url.raw_scheme
            raise httpx2.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
        head, body, close = encode_head(request, self._proxy_head)
        exchange = await self.exchange(
            request, key, head, body, close, request.extensions.get("timeout") or {}
        )
        return httpx2.Response(
            exchange.status,
            headers=exchange.headers,
            stream=exchange,
            extensions={
                "http_version": _VERSIONS.get(exchange.version, b"HTTP/1.1"),
                "reason_phrase": exchange.reason,
            },
        )

    def key_of(self, url: httpx2.URL) -> Key | None:
        """The pool key of ``url``'s origin; None for a scheme this pool does not speak."""
        scheme = url.raw_scheme
        if scheme not in _DEFAULT_PORTS:
            return None
        return (scheme, url.raw_host, url.port or _DEFAULT_PORTS[scheme])

    @property
    def forwards(self) -> bool:
        """Whether requests go through an outbound proxy (their target is in absolute form)."""
        return self._proxy_head is not None

    async def exchange(
        self,
        request: httpx2.Request,
        key: Key,
        head: bytes,
        body: bytes | AsyncIterable[bytes],
        close: bool,
        timeouts: Mapping[str, float | None],
        owner: Owner | None = None,
    ) -> Exchange:
        """Send ``head`` (and ``body``) on a connection to ``key`` and read the answer's head.

        The lean way in for a caller that encodes the request head itself (``_transport``, for
        its few fixed routes); ``request`` names the request in httpx2's errors and gives the
        method. The returned :class:`Exchange` has ``status``, ``headers`` and ``reason``, and
        yields the body; close it (``aclose``) when done. ``owner`` (see :class:`Owner`) bounds
        every wait of the request by its deadline and can abort the one under way.
        """
        limit = math.inf if owner is None else owner.deadline
        conn = await self._acquire(key, request, timeouts.get("pool"), owner)
        try:
            if owner is not None:
                owner.pending = conn
            reused = conn.stream is not None
            if not reused:
                await self._connect(conn, request, timeouts.get("connect"), limit)
            exchange = Exchange(self, conn, request, timeouts.get("read"), close, owner)
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
                await self._connect(conn, request, timeouts.get("connect"), limit)
                exchange = Exchange(self, conn, request, timeouts.get("read"), close, owner)
                await exchange.start(head, body, timeouts.get("write"))
        except BaseException:
            if owner is not None:
                owner.pending = None
            self._drop(conn)
            raise
        if exchange.complete:
            exchange.finish()
        return exchange

    async def aclose(self) -> None:
        """Close every connection, busy ones included; later requests raise RuntimeError."""
        self._closed = True
        if self._timer_scope is not None:
            self._timer_scope.cancel()
        for conn in self._connections:
            conn.close()
        self._connections.clear()
        self._idle.clear()
        self._idle_count = 0
        while self._waiters:
            self._waiters.popleft().event.set()  # they find no connection and a closed pool

    # --- the timer: read and write timeouts ----------------------------------------------------

    def arm(self, conn: Connection, timeout: float | None, limit: float = math.inf) -> bool:
        """Bound the read or write ``conn`` is about to do by ``timeout`` seconds, and by
        ``limit`` at the latest (the request's own deadline); False when that leaves no time at
        all (the caller raises its timeout at once, as a cancel scope would).

        Past the bound, the pool's timer closes the connection and sets ``conn.timed_out``: the
        read or write waiting on it fails with ``ClosedResourceError``, which the exchange turns
        into its phase's timeout. The caller sets ``conn.due = math.inf`` once the read or write
        is done. Why not a cancel scope per read: entering and leaving one, and moving its
        deadline, cost more than the rest of a small request's path through the pool (about
        6 µs a request); this costs a clock reading. The timer is one system task per pool (a
        pool serves one trio run), started by the first bound, sleeping until the earliest
        ``due`` it knows of; a bound earlier than that wakes it sooner. Timeouts are the same
        for every request of a client, so that happens about once per timeout, not per request.
        """
        now = trio.current_time()
        due = conn.due = limit if timeout is None else min(now + timeout, limit)
        if due <= now:
            return False
        if due == math.inf:
            return True
        if due < self._timer_wakes:
            self._timer_wakes = due
            sleep = self._timer_sleep
            if sleep is not None:
                sleep.deadline = due
            else:
                sleep = self._timer_sleep = trio.CancelScope(deadline=due)
                trio.lowlevel.spawn_system_task(self._run_timer, sleep, name="trio_litellm timer")
        return True

    async def _run_timer(self, sleep: trio.CancelScope) -> None:
        """Close each connection whose read or write is overdue, until the pool closes (or the
        trio run ends)."""
        self._timer_scope = scope = trio.CancelScope()
        if self._closed:
            scope.cancel()
        try:
            with scope:
                while True:
                    with sleep:
                        await trio.sleep_forever()
                    now = trio.current_time()
                    wakes = math.inf
                    for conn in list(self._connections):
                        if conn.due <= now:
                            conn.due = math.inf
                            conn.timed_out = True
                            try:
                                conn.close()  # its reader or writer fails, and drops it
                            except OSError:  # pragma: no cover - closing a socket does not fail
                                logger.exception("closing an overdue connection failed")
                        elif conn.due < wakes:
                            wakes = conn.due
                    self._timer_wakes = wakes
                    sleep = self._timer_sleep = trio.CancelScope(deadline=wakes)
        finally:
            self._timer_sleep = self._timer_scope = None
            self._timer_wakes = math.inf

    # --- the pool: plain methods, so each change happens without a task switch ------------------

    async def _acquire(
        self, key: Key, request: httpx2.Request, timeout: float | None, owner: Owner | None = None
    ) -> Connection:
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
                if has_data_or_eof(conn.socket):
                    self._drop(conn)
                    continue
                return conn
        if len(self._connections) >= self._max_connections and self._idle_count:
            self._evict_oldest_idle()
        if len(self._connections) < self._max_connections:
            conn = Connection(key)
            self._connections.add(conn)
            return conn
        return await self._wait_in_line(key, request, timeout, owner)

    async def _wait_in_line(
        self, key: Key, request: httpx2.Request, timeout: float | None, owner: Owner | None
    ) -> Connection:
        waiter = _Waiter(key)
        self._waiters.append(waiter)
        try:
            limit = math.inf if owner is None else owner.deadline
            with trio.CancelScope(deadline=deadline(timeout, limit)):
                if owner is not None:
                    owner.pending = waiter
                await waiter.event.wait()
        except BaseException:
            self._leave_line(waiter)
            raise
        finally:
            if owner is not None:
                owner.pending = None
        if waiter.aborted:
            self._leave_line(waiter)
            raise timeout_error("pool", request)
        if waiter.connection is not None:
            return waiter.connection
        if self._closed:
            raise RuntimeError("the transport was closed while a request waited for a connection")
        self._waiters.remove(waiter)
        raise timeout_error("pool", request)

    def _leave_line(self, waiter: _Waiter) -> None:
        """A waiter gives up (cancelled, or aborted): the connection it was just given goes to
        the next, else it leaves the line."""
        if waiter.connection is not None:
            self._hand_back(waiter.connection)
        elif waiter in self._waiters:
            self._waiters.remove(waiter)

    def _release(self, conn: Connection) -> None:
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

    def _drop(self, conn: Connection) -> None:
        """Close a busy (or just unstacked) connection and give its slot to the first in line."""
        conn.close()
        if conn not in self._connections:
            return  # already dropped, or the transport was closed
        self._connections.remove(conn)
        if self._waiters:
            waiter = self._waiters.popleft()
            placeholder = Connection(waiter.key)
            self._connections.add(placeholder)
            waiter.connection = placeholder
            waiter.event.set()

    def _hand_back(self, conn: Connection) -> None:
        """A waiter was given ``conn`` but was cancelled before it could use it."""
        if conn.stream is None:
            self._drop(conn)
        else:
            self._release(conn)

    def _evict_oldest_idle(self) -> None:
        oldest: list[Connection] | None = None
        for stack in self._idle.values():
            if stack and (oldest is None or stack[0].idle_since < oldest[0].idle_since):
                oldest = stack
        assert oldest
        conn = oldest.pop(0)
        conn.idle = False
        self._idle_count -= 1
        self._drop(conn)

    async def _connect(
        self,
        conn: Connection,
        request: httpx2.Request,
        timeout: float | None,
        limit: float = math.inf,
    ) -> None:
        scheme, raw_host, port = conn.key
        address = (raw_host.decode("ascii"), port)
        if self._proxy_address is not None:
            if scheme == b"https":
                raise httpx2.UnsupportedProtocol(
                    "https through a proxy needs a CONNECT tunnel, which this pool does not open",
                    request=request,
                )
            address = self._proxy_address
        tls = self._tls_context() if scheme == b"https" else None
        await connect(conn, address, tls, request, timeout, limit)

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:  # made on first use: loading the CA store takes a while
            self._ssl_context = ssl.create_default_context()
            self._ssl_context.set_alpn_protocols(["http/1.1"])
        return self._ssl_context
