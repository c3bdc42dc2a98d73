"""A small trio reverse proxy that passes only ``/v1/*`` on, as many ingresses and API gateways do.

Put in front of the real LiteLLM proxy it plays the company gateway: ``/v1/...`` requests are
forwarded (bodies streamed back as they arrive), every other path gets the gateway's own 404, so
``/health/liveliness`` is unreachable while every call works. :meth:`Gateway.cut` unplugs the
upstream: the gateway then connects to a port where nothing listens and, like nginx or Envoy when
the proxy behind them is gone, answers 502 while still accepting connections itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import h11
import httpx2
import trio

from trio_litellm.testing._devstack import free_port

__all__ = ["Gateway", "open_gateway"]

# Hop-by-hop headers (RFC 9110 7.6.1) are the connection's own: never forwarded either way.
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding"}
)
# The upstream request gets its own Host and Content-Length.
_NOT_FORWARDED = _HOP_BY_HOP | {b"host", b"content-length"}
_NOT_FOUND = b'{"message":"no Route matched with those values"}'  # Kong's words
_BAD_GATEWAY = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


class Gateway:
    """Forwards ``prefix`` paths to ``upstream``; counts every answer as ``(path, status)``."""

    def __init__(self, upstream: str, *, prefix: str = "/v1/") -> None:
        self.upstream = upstream.rstrip("/")
        self.prefix = prefix
        self.url = ""
        self.answered: Counter[tuple[str, int]] = Counter()
        self._dead_upstream = f"http://127.0.0.1:{free_port()}"
        self._reachable = True
        self._http = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0), follow_redirects=False)

    def cut(self) -> None:
        """The upstream goes away: forwarded requests get 502 (connection refused behind us)."""
        self._reachable = False

    def restore(self) -> None:
        """The upstream is back."""
        self._reachable = True

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on a free loopback port until cancelled; ``task_status`` gets the gateway's URL."""
        async with self._http, trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, self._serve_connection, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            task_status.started(self.url)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while True:
                    request = await _next_event(connection, stream)
                    if not isinstance(request, h11.Request):
                        return  # the client closed the connection (or sent nonsense)
                    body = bytearray()
                    while True:
                        event = await _next_event(connection, stream)
                        if isinstance(event, h11.Data):
                            body += event.data
                        elif isinstance(event, h11.EndOfMessage):
                            break
                        else:
                            return
                    await self._answer(connection, stream, request, bytes(body))
                    if connection.our_state is not h11.DONE:
                        return
                    connection.start_next_cycle()
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
                return

    async def _answer(
        self,
        connection: h11.Connection,
        stream: trio.SocketStream,
        request: h11.Request,
        body: bytes,
    ) -> None:
        path = request.target.decode("latin-1")
        route = path.partition("?")[0]
        if not route.startswith(self.prefix):
            await self._send_whole(connection, stream, route, 404, _NOT_FOUND, b"application/json")
            return
        upstream = self.upstream if self._reachable else self._dead_upstream
        headers = [(name, value) for name, value in request.headers if name not in _NOT_FORWARDED]
        outgoing = self._http.build_request(
            request.method.decode("ascii"), upstream + path, headers=headers, content=body
        )
        try:
            response = await self._http.send(outgoing, stream=True)
        except httpx2.TransportError:
            await self._send_whole(connection, stream, route, 502, _BAD_GATEWAY, b"text/html")
            return
        try:
            self.answered[route, response.status_code] += 1
            answer_headers = [
                (name, value)
                for name, value in response.headers.raw
                if name.lower() not in _HOP_BY_HOP
            ]
            await _send(
                connection,
                stream,
                h11.Response(status_code=response.status_code, headers=answer_headers),
            )
            async for piece in response.aiter_raw():
                await _send(connection, stream, h11.Data(data=piece))
            await _send(connection, stream, h11.EndOfMessage())
        finally:
            await response.aclose()

    async def _send_whole(
        self,
        connection: h11.Connection,
        stream: trio.SocketStream,
        route: str,
        status: int,
        body: bytes,
        content_type: bytes,
    ) -> None:
        self.answered[route, status] += 1
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await _send(connection, stream, h11.Response(status_code=status, headers=headers))
        await _send(connection, stream, h11.Data(data=body))
        await _send(connection, stream, h11.EndOfMessage())


async def _next_event(connection: h11.Connection, stream: trio.SocketStream) -> object:
    """The next h11 event, reading from the socket as needed (``b""`` tells h11 of the end)."""
    while True:
        event = connection.next_event()
        if event is not h11.NEED_DATA:
            return event
        connection.receive_data(await stream.receive_some(65536))


async def _send(connection: h11.Connection, stream: trio.SocketStream, event: h11.Event) -> None:
    data = connection.send(event)
    if data:
        await stream.send_all(data)


@asynccontextmanager
async def open_gateway(upstream: str, *, prefix: str = "/v1/") -> AsyncIterator[Gateway]:
    """A :class:`Gateway` serving in front of ``upstream`` for the duration of the block."""
    gateway = Gateway(upstream, prefix=prefix)
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.serve)
        yield gateway
        nursery.cancel_scope.cancel()
