"""HTTP/1.1 on a trio stream with h11: one connection, many requests, one at a time.

Shaped after h11's own trio server example. The connection loop reads a whole request, hands an
``Exchange`` to the application and, if the response finished cleanly, starts the next cycle on
the same connection (keep-alive). While the application answers, a watcher task reads the
socket: end of input means the client has gone, and the answer is cancelled at once, so a
stalled stream does not hold a task for an hour after its client gave up. Bytes that arrive
meanwhile (a pipelined request) are fed to h11 and served next.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import h11
import msgspec
import trio

from ._responses import error_body

logger = logging.getLogger("trio_litellm.testing.fake_provider")

RECEIVE_SIZE = 65536
MAX_BODY = 64 * 1024 * 1024
"""Largest request body accepted; larger ones get a 413."""
MAX_PIPELINED = 1024 * 1024
"""The watcher stops reading once this much of a pipelined request is buffered."""

Header = tuple[str, str]


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """A request read in full: method, path without query, lower-cased headers, body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _BodyTooLarge(Exception):
    pass


class Exchange:
    """One request and the means to answer it, either at once or as a chunked stream.

    ``drop()`` instead of answering makes the connection close abruptly: no response, or a
    chunked body with no terminating chunk.
    """

    def __init__(self, conn: h11.Connection, stream: trio.abc.Stream, request: Request) -> None:
        self.request = request
        self._conn = conn
        self._stream = stream
        self.dropped = False
        self.client_gone = False

    @property
    def started(self) -> bool:
        """Whether response headers have been sent (or attempted)."""
        return self._conn.our_state is not h11.SEND_RESPONSE

    async def _send(self, *events: h11.Event) -> None:
        data = b"".join(self._conn.send(event) or b"" for event in events)
        try:
            await self._stream.send_all(data)
        except BaseException:
            self._conn.send_failed()
            raise

    async def respond(
        self,
        status: int,
        headers: list[Header],
        body: bytes,
        content_type: str = "application/json",
    ) -> None:
        """Send a whole response with ``Content-Length``."""
        all_headers = [
            *headers,
            ("content-type", content_type),
            ("content-length", str(len(body))),
        ]
        await self._send(_response(status, all_headers), h11.Data(data=body), h11.EndOfMessage())

    async def start(self, status: int, headers: list[Header]) -> None:
        """Send headers for a body of unknown length (chunked for HTTP/1.1 clients)."""
        await self._send(_response(status, headers))

    async def send(self, data: bytes) -> None:
        """Send one piece of a streamed body as one chunk."""
        if data:
            await self._send(h11.Data(data=data))

    async def finish(self) -> None:
        """End a streamed body properly (the zero-length chunk)."""
        await self._send(h11.EndOfMessage())

    def drop(self) -> None:
        """Close the connection without finishing the response once the handler returns."""
        self.dropped = True


Handler = Callable[[Exchange], Awaitable[None]]


def _response(status: int, headers: list[Header]) -> h11.Response:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return h11.Response(status_code=status, headers=headers, reason=reason)


async def _read_request(conn: h11.Connection, stream: trio.abc.Stream) -> Request | None:
    """The next complete request, or None when the client closed the connection."""
    method = target = ""
    headers: dict[str, str] = {}
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            if conn.they_are_waiting_for_100_continue:
                await stream.send_all(
                    conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
                )
            try:
                data = await stream.receive_some(RECEIVE_SIZE)
            except trio.BrokenResourceError:
                return None
            conn.receive_data(bytes(data))
        elif isinstance(event, h11.Request):
            method, target = event.method.decode(), event.target.decode("latin-1")
            headers = {k.decode(): v.decode("latin-1") for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise _BodyTooLarge
        elif isinstance(event, h11.EndOfMessage):
            path = target.partition("?")[0]
            return Request(method=method, path=path, headers=headers, body=bytes(body))
        else:  # ConnectionClosed (or PAUSED, which a fresh cycle never yields)
            return None


async def _watch_for_disconnect(
    conn: h11.Connection, stream: trio.abc.Stream, exchange: Exchange, scope: trio.CancelScope
) -> None:
    """Cancel ``scope`` when the client goes away while its request is being answered."""
    try:
        while True:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                break
            conn.receive_data(bytes(data))
            if len(conn.trailing_data[0]) > MAX_PIPELINED:
                return  # stop reading; the client will be served when we get to it
    except trio.BrokenResourceError:
        pass
    exchange.client_gone = True
    scope.cancel()


async def _refuse(conn: h11.Connection, stream: trio.abc.Stream, status: int, message: str) -> None:
    """Best effort: answer a request we could not read, then the connection closes."""
    if conn.our_state not in {h11.IDLE, h11.SEND_RESPONSE}:
        return
    body = error_body(status, message)
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    try:
        data = conn.send(_response(status, headers)) or b""
        data += (conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
        await stream.send_all(data)
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def serve_connection(stream: trio.abc.Stream, handler: Handler, head: bytes = b"") -> None:
    """Serve requests on ``stream`` until either side closes it; the caller closes ``stream``.

    ``head`` is what the caller already read from ``stream`` (to tell HTTP from a WebSocket
    upgrade); it is served first. Never raises for client misbehaviour or disconnects: those
    are logged and end the loop.
    """
    conn = h11.Connection(h11.SERVER)
    if head:
        conn.receive_data(head)
    while True:
        try:
            request = await _read_request(conn, stream)
        except h11.RemoteProtocolError as exc:
            logger.info("bad HTTP from client: %s", exc)
            await _refuse(conn, stream, exc.error_status_hint, f"bad HTTP request: {exc}")
            return
        except _BodyTooLarge:
            await _refuse(conn, stream, 413, f"request body larger than {MAX_BODY} bytes")
            return
        if request is None:
            return
        exchange = Exchange(conn, stream, request)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_for_disconnect, conn, stream, exchange, nursery.cancel_scope)
            try:
                await handler(exchange)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                exchange.client_gone = True
            except Exception:
                logger.exception("error answering %s %s", request.method, request.path)
                if not exchange.started:
                    await _refuse(conn, stream, 500, "fake provider internal error")
            finally:
                nursery.cancel_scope.cancel()
        if exchange.client_gone:
            logger.info("client went away during %s %s", request.method, request.path)
            return
        if exchange.dropped or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return
        conn.start_next_cycle()
