"""One connection of the pool, and where foreign errors enter: trio's and the OS's errors become
httpx2's transport errors here, by phase (connect, write, read, pool), as httpcore maps them."""

from __future__ import annotations

import math
import select
import ssl
from typing import Protocol

import httpx2
import trio

__all__ = [
    "FOREIGN",
    "Abortable",
    "Connection",
    "Key",
    "Owner",
    "ResponseTooLarge",
    "connect",
    "deadline",
    "has_data_or_eof",
    "timeout_error",
    "transport_error",
]

Key = tuple[bytes, bytes, int]
"""A pool key: scheme, host, port."""

# Foreign errors enter here. Phase → (error on its timeout, error on anything else).
_ERRORS: dict[str, tuple[type[httpx2.TransportError], type[httpx2.TransportError]]] = {
    "connect": (httpx2.ConnectTimeout, httpx2.ConnectError),
    "write": (httpx2.WriteTimeout, httpx2.WriteError),
    "read": (httpx2.ReadTimeout, httpx2.ReadError),
    "pool": (httpx2.PoolTimeout, httpx2.PoolTimeout),
}
FOREIGN = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
"""What trio streams raise for a broken connection (``ssl.SSLError`` is an ``OSError``)."""


class ResponseTooLarge(httpx2.RemoteProtocolError):
    """A part of the answer (``what``) grew past ``limit`` bytes: ``size`` read so far."""

    def __init__(self, what: str, size: int, limit: int, request: httpx2.Request) -> None:
        super().__init__(f"the {what} is over {limit} bytes ({size} read)", request=request)
        self.what, self.size, self.limit = what, size, limit


def timeout_error(phase: str, request: httpx2.Request) -> httpx2.TransportError:
    return _ERRORS[phase][0](f"{phase} timed out", request=request)


def transport_error(
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


def deadline(seconds: float | None, limit: float = math.inf) -> float:
    """When ``seconds`` from now will be (inf for None), and at the latest ``limit``."""
    return limit if seconds is None else min(trio.current_time() + seconds, limit)


class Abortable(Protocol):
    def abort(self) -> None:
        """End the wait on it now: the waiting request fails with a transport error."""


class Owner(Protocol):
    """Whom a request through the pool is for, when the caller bounds it itself.

    The pool ends the request's waits at ``deadline`` at the latest (each with its phase's
    timeout error), and shows the owner what the request waits on as ``pending`` (the line for a
    connection, or the connection) while it does: ``pending.abort()`` ends that wait, from another
    task, without a cancel scope around the request.
    """

    deadline: float
    pending: Abortable | None


def has_data_or_eof(sock: trio.socket.SocketType) -> bool:
    """Whether an idle connection is readable: the peer closed it or sent bytes nobody asked for."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class Connection:
    """One TCP (or TLS) connection, or a slot reserved for one while it is being opened."""

    __slots__ = ("connecting", "due", "idle", "idle_since", "key", "socket", "stream", "timed_out")

    def __init__(self, key: Key) -> None:
        self.key = key
        self.stream: trio.abc.Stream | None = None
        self.socket: trio.socket.SocketType | None = None
        self.idle = False
        self.idle_since = 0.0
        # When the read or write under way is overdue (the pool's timer closes the connection
        # then and sets timed_out); inf while none is.
        self.due = math.inf
        self.timed_out = False
        self.connecting: trio.CancelScope | None = None  # while it is being opened

    def __repr__(self) -> str:
        state = "idle" if self.idle else "busy" if self.stream is not None else "connecting"
        scheme, host, port = self.key
        return f"<Connection {scheme.decode()}://{host.decode()}:{port} {state}>"

    def is_idle(self) -> bool:
        """Whether it waits in the pool for a request (as httpcore's connections say)."""
        return self.idle

    def close(self) -> None:
        """Close the socket now, without a TLS goodbye; blocked readers get ClosedResourceError."""
        if self.socket is not None:
            self.socket.close()
        self.stream = self.socket = None

    def abort(self) -> None:
        """Close it now, or stop opening it: whoever waits on it fails with a transport error."""
        if self.connecting is not None:
            self.connecting.cancel()
        self.close()


async def connect(
    conn: Connection,
    address: tuple[str, int],
    tls: ssl.SSLContext | None,
    request: httpx2.Request,
    timeout: float | None,
    limit: float = math.inf,
) -> None:
    """Open ``conn``: TCP to ``address`` (the origin, or a forward proxy), then TLS to the
    origin's host when ``tls`` is given, within ``timeout`` and by ``limit`` at the latest.
    Failures raise httpx2's connect errors; the socket of a failed attempt is closed."""
    host = conn.key[1].decode("ascii")
    tcp: trio.SocketStream | None = None
    try:
        with trio.CancelScope(deadline=deadline(timeout, limit)) as scope:
            conn.connecting = scope
            tcp = await trio.open_tcp_stream(*address)
            stream: trio.abc.Stream = tcp
            if tls is not None:
                secure = trio.SSLStream(tcp, tls, server_hostname=host, https_compatible=True)
                await secure.do_handshake()
                stream = secure
            conn.stream, conn.socket = stream, tcp.socket
    except FOREIGN as exc:
        if tcp is not None:
            tcp.socket.close()
        raise transport_error("connect", exc, request) from exc
    except BaseException:
        if tcp is not None:
            tcp.socket.close()
        raise
    finally:
        conn.connecting = None
    if scope.cancelled_caught:
        if tcp is not None:
            tcp.socket.close()
        raise timeout_error("connect", request)
