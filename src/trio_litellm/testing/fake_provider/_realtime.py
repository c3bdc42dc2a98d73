"""The fake provider's realtime endpoint: ``/v1/realtime`` over trio-websocket, with faults.

The HTTP server and this endpoint share one port, because the LiteLLM proxy dials
``ws://<api_base host:port>/v1/realtime`` whatever path ``api_base`` has. ``_server`` reads the
head of each new connection first; an upgrade to ``websocket`` is handed here with those bytes
replayed (``ReplayStream``) so that trio-websocket reads the handshake itself. Everything a
session says is decided in ``_realtime_session``; this module only sends it, paces it, and
breaks it where the model name's directives ask (see ``RealtimeDirectives``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Final
from urllib.parse import parse_qs, urlsplit

import msgspec
import trio
import trio_websocket

from . import _responses as r
from ._directives import DirectiveError, resolve_realtime
from ._realtime_session import Event, RealtimeSession, ResponsePlan
from ._state import Stats

logger = logging.getLogger("trio_litellm.testing.fake_provider")

REALTIME_PATHS: Final = frozenset({"/v1/realtime", "/realtime", "/openai/v1/realtime"})
MAX_MESSAGE_SIZE: Final = 32 * 1024 * 1024
"""Largest client message accepted; the proxy itself lets through up to 16 MiB."""
RECEIVE_SIZE: Final = 65536
HEAD_LIMIT: Final = 65536
"""Bytes read at most while looking for the end of the first request's head."""
HANDSHAKE_TIMEOUT: Final = 10.0
CLOSE_TIMEOUT: Final = 5.0
"""How long a close waits for the peer's close frame before the socket is closed anyway."""
CLOSE_REASON: Final = "upstream boom"
REFUSAL_REASON: Final = "invalid_api_key"

_encoder = msgspec.json.Encoder()


async def read_head(stream: trio.abc.ReceiveStream) -> bytes:
    """Read until the first request's head is complete (or EOF, or ``HEAD_LIMIT`` bytes).

    Returns every byte read, body bytes included, for the caller to hand on.
    """
    data = bytearray()
    while b"\r\n\r\n" not in data and len(data) < HEAD_LIMIT:
        try:
            chunk = await stream.receive_some(RECEIVE_SIZE)
        except trio.BrokenResourceError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def is_websocket_upgrade(head: bytes) -> bool:
    """Whether a request head asks to upgrade to ``websocket``."""
    end = head.find(b"\r\n\r\n")
    if end < 0:
        return False
    for line in head[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


class ReplayStream(trio.abc.HalfCloseableStream):
    """A socket stream whose first reads return ``prefix``, the bytes already read from it."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self.stream = stream
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


class RealtimeServer:
    """Serves realtime sessions, one state machine per connection; shares the HTTP stats."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self._numbers = itertools.count(1)

    async def serve(self, stream: ReplayStream) -> None:
        """Run one WebSocket connection to its end; never raises for the client's doings."""
        async with trio.open_nursery() as nursery:
            try:
                accepted = None
                with trio.move_on_after(HANDSHAKE_TIMEOUT):
                    request = await trio_websocket.wrap_server_stream(
                        nursery,
                        stream,
                        max_message_size=MAX_MESSAGE_SIZE,
                        receive_buffer_size=RECEIVE_SIZE,
                    )
                    accepted = await self._handshake(request)
                if accepted is not None:
                    await self._session(*accepted, stream)
            except trio_websocket.ConnectionClosed:
                pass
            finally:
                nursery.cancel_scope.cancel()

    async def _handshake(
        self, request: trio_websocket.WebSocketRequest
    ) -> tuple[trio_websocket.WebSocketConnection, RealtimeSession] | None:
        """Accept the upgrade, or refuse it (None) for a bad path or model, or on request."""
        target = urlsplit(request.path)
        if target.path.rstrip("/") not in REALTIME_PATHS:
            await _reject(request, 404, f"no WebSocket endpoint at {target.path}")
            return None
        model = parse_qs(target.query).get("model", [""])[0]
        self.stats.requests += 1
        self.stats.by_path["/v1/realtime"] += 1
        self.stats.by_model[model] += 1
        if not model:
            await _reject(request, 400, "Missing required parameter: 'model'.")
            return None
        try:
            directives = resolve_realtime(model)
        except DirectiveError as exc:
            await _reject(request, 400, str(exc))
            return None
        if directives.status is not None:
            self.stats.faults[f"realtime_status_{directives.status}"] += 1
            message = f"fake upstream refused the realtime upgrade with {directives.status}"
            await _reject(request, directives.status, message)
            return None
        ws = await request.accept()
        return ws, RealtimeSession(model, directives, self._numbers.__next__)

    async def _session(
        self, ws: trio_websocket.WebSocketConnection, session: RealtimeSession, stream: ReplayStream
    ) -> None:
        """Greet, then answer client events until the client closes or a fault ends it.

        A response streams in a task of its own, so that client events (``response.cancel``
        above all) are read and answered meanwhile, as OpenAI does.
        """
        directives = session.directives
        try:
            if directives.error_first:
                self.stats.faults["realtime_error_first"] += 1
                await _send(ws, session.refusal())
                await _close(ws, directives.close_code or 1008, REFUSAL_REASON)
                return
            if directives.silent:
                self.stats.faults["realtime_silent"] += 1
            else:
                await _send(ws, session.created())
            async with trio.open_nursery() as nursery:
                await self._answer(ws, session, stream, nursery)
        except trio_websocket.ConnectionClosed:
            return
        except Exception:
            logger.exception("realtime session failed")
            await _close(ws, 1011, "fake provider internal error")

    async def _answer(
        self,
        ws: trio_websocket.WebSocketConnection,
        session: RealtimeSession,
        stream: ReplayStream,
        nursery: trio.Nursery,
    ) -> None:
        """Read and answer client events; a response streams in a ``_Turn`` in ``nursery``."""
        turn: _Turn | None = None
        try:
            while True:
                reply = session.receive(await ws.get_message())
                if reply.cancel and turn is not None:
                    turn.cancel()
                for event in reply.events:
                    await _send(ws, event)
                if reply.response is not None:
                    for event in reply.response.opening:  # before any later reply
                        await _send(ws, event)
                    turn = _Turn(ws, stream, session, reply.response, self.stats)
                    nursery.start_soon(turn.run, nursery.cancel_scope)
        except trio_websocket.ConnectionClosed:
            nursery.cancel_scope.cancel()


class _Turn:
    """One response being streamed: its deltas, paced, broken or cancelled as asked."""

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        stream: ReplayStream,
        session: RealtimeSession,
        plan: ResponsePlan,
        stats: Stats,
    ) -> None:
        self.ws, self.stream, self.session, self.plan, self.stats = ws, stream, session, plan, stats
        self._cancelled = False
        self._pause = trio.CancelScope()

    def cancel(self) -> None:
        """Stop after the delta being sent (a send is never cut mid-frame)."""
        self._cancelled = True
        self._pause.cancel()

    async def run(self, session_scope: trio.CancelScope) -> None:
        """Send the deltas and the closing events; a fault ends the whole session."""
        d, plan, ws = self.session.directives, self.plan, self.ws
        try:
            for sent in range(len(plan.groups) + 1):
                if self._cancelled:
                    await self._send_cancelled(sent)
                    return
                if d.drop_after == sent:
                    self.stats.faults["realtime_drop"] += 1
                    await _drop(self.stream)
                    session_scope.cancel()
                    return
                if d.close_after == sent:
                    self.stats.faults["realtime_close"] += 1
                    await _close(ws, d.close_code or 1011, CLOSE_REASON)
                    session_scope.cancel()
                    return
                if sent == len(plan.groups):
                    break
                if sent > 0 and d.tps is not None:
                    self._pause = trio.CancelScope()
                    with self._pause:
                        await trio.sleep(1 / d.tps)
                    if self._cancelled:
                        await self._send_cancelled(sent)
                        return
                for event in plan.groups[sent]:
                    await _send(ws, event)
            self.session.finished()
            for event in plan.closing:
                await _send(ws, event)
        except trio_websocket.ConnectionClosed:
            session_scope.cancel()

    async def _send_cancelled(self, delivered: int) -> None:
        for event in self.session.cancelled(delivered):
            await _send(self.ws, event)


async def _send(ws: trio_websocket.WebSocketConnection, event: Event) -> None:
    await ws.send_message(_encoder.encode(event).decode())


async def _close(ws: trio_websocket.WebSocketConnection, code: int, reason: str) -> None:
    """Close with ``code``, waiting a bounded time for the peer's close frame."""
    with trio.move_on_after(CLOSE_TIMEOUT):
        await ws.aclose(code, reason)


async def _drop(stream: ReplayStream) -> None:
    """End the TCP connection with no close frame: FIN after the bytes already sent."""
    with contextlib.suppress(
        trio.BusyResourceError, trio.BrokenResourceError, trio.ClosedResourceError
    ):
        await stream.send_eof()
    await trio.aclose_forcefully(stream)


async def _reject(request: trio_websocket.WebSocketRequest, status: int, message: str) -> None:
    """Refuse the upgrade with an HTTP error and an OpenAI error body."""
    headers = [(b"content-type", b"application/json")]
    await request.reject(status, extra_headers=headers, body=r.error_body(status, message))
