"""Realtime sessions: the OpenAI Realtime API through the proxy's ``/v1/realtime`` websocket.

``async with client.realtime(model=...) as conn`` reads top to bottom as :func:`open_realtime`:

1. pick the session's proxy (a fleet pins it to one, the balance's choice);
2. open the websocket (trio-websocket: text frames only, messages up to 64 MiB, the key in
   ``Authorization``); a refused handshake is a typed error here (403: the key);
3. start the reader task, then wait for ``session.created`` under the connect timeout. The proxy
   accepts the websocket before it dials the upstream, so an upstream that refuses or is down
   shows only now, as an ``error`` event and/or a close: still a typed error at ``async with``;
4. run the body; leaving it (by any path) closes the websocket with 1000, bounded, and returns
   once the reader and the keep-alive have ended.

The reader task owns the receive side: it decodes each frame into a typed event
(``_realtime_wire``), notes what a response costs, and hands the event over a bounded memory
channel, so a caller that stops reading stops the reader, and then the socket (backpressure, as
the stream readers do). Each ``response.done`` becomes a :class:`RequestRecord` (kind
"realtime") through the client's observer, so ``usage()``, hooks, Prometheus and the debug
recorder see realtime tokens and cost.
"""

from __future__ import annotations

import base64
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgspec
import trio
import trio_websocket

from ._calls import Request
from ._classify import error_from_body, error_from_fields
from ._errors import (
    APIStatusError,
    AuthenticationError,
    ClientClosedError,
    InternalServerError,
    LiteLLMError,
    ModelNotFoundError,
    ProxyConnectionError,
    RealtimeClosedError,
    RequestTimeoutError,
    ServiceUnavailableError,
)
from ._fleet import Fleet, Proxy
from ._nursery import open_collapsing_nursery
from ._observer import Observer
from ._realtime_wire import (
    ErrorEvent,
    RealtimeEvent,
    RealtimeUsage,
    ResponseCreated,
    ResponseDone,
    ResponseOutputAudioDelta,
    ResponseOutputAudioTranscriptDelta,
    ResponseOutputTextDelta,
    ServerEvent,
    SessionCreated,
    decode_event,
)
from ._recorder import Trace
from ._routes import tls_context
from ._version import __version__
from ._wire import Usage

__all__ = ["REALTIME_CONNECT_TIMEOUT", "RealtimeConnection", "RealtimeTurn", "open_realtime"]

logger = logging.getLogger("trio_litellm")

MAX_MESSAGE_SIZE = 64 * 1024 * 1024
"""The largest message accepted from the proxy: it relays the upstream's without a cap, and an
audio delta can be megabytes (trio-websocket's 1 MiB default closes such a session with 1009)."""

EVENT_BUFFER = 64
"""Messages read ahead of the caller (trio-websocket's queue, and ours in batches of at most
this many); then the reader waits, and the socket with it."""

BATCH_BUFFER = 4
"""Batches of events our reader may hand over ahead of the caller."""

RECEIVE_BUFFER = 64 * 1024
"""Bytes asked of the socket per read: a streamed answer brings dozens of events per read."""

PING_INTERVAL = 20.0
PONG_TIMEOUT = 20.0
REALTIME_CONNECT_TIMEOUT = 20.0
"""Seconds to open a session, ``session.created`` included: the proxy dials the upstream only
after it accepted the websocket, and gives that 10 s."""

CANCELLED_CLOSE_TIMEOUT = 0.05
CLOSE_TIMEOUT = 5.0
"""Seconds leaving the block waits for the close handshake before dropping the connection."""

_encoder = msgspec.json.Encoder()


class RealtimeTurn(msgspec.Struct, kw_only=True):
    """One response of a session, collected: its text, its audio (decoded bytes), the audio's
    transcript, its usage (None until ``response.done``), its id and status."""

    text: str = ""
    audio: bytes = b""
    transcript: str = ""
    usage: RealtimeUsage | None = None
    response_id: str | None = None
    status: str | None = None


@asynccontextmanager
async def open_realtime(
    fleet: Fleet,
    observer: Observer,
    *,
    model: str,
    api_key: str | None,
    headers: Mapping[str, str],
    connect_timeout: float,
    beta: bool,
) -> AsyncIterator[RealtimeConnection]:
    """A realtime session with ``model`` on one proxy of ``fleet``, for the ``async with``.

    The session stays on the proxy it opened on. A proxy whose connection could not be opened
    is left alone and the next available one is tried, within the same connect timeout."""
    sent = [(b"user-agent", f"trio-litellm/{__version__}".encode())]
    sent += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    if api_key:
        sent.append((b"authorization", f"Bearer {api_key}".encode()))
    if beta:
        sent.append((b"openai-beta", b"realtime=v1"))
    deadline = trio.current_time() + connect_timeout
    async with AsyncExitStack() as stack:
        for tries_left in range(len(fleet) - 1, -1, -1):
            proxy = fleet.choose() or fleet.anyone()
            where = f"{proxy.url}/v1/realtime?model={model}"
            try:
                socket = await stack.enter_async_context(
                    _websocket(
                        proxy,
                        _websocket_url(proxy, model),
                        sent,
                        deadline,
                        model=model,
                        where=where,
                    )
                )
                break
            except ProxyConnectionError as exc:
                if not (exc.never_sent and tries_left and fleet.choose() is not None):
                    raise
        proxy.in_flight += 1
        stack.callback(_leave, proxy)
        nursery = await stack.enter_async_context(open_collapsing_nursery())
        conn = RealtimeConnection(socket, model=model, observer=observer, where=where)
        nursery.start_soon(conn._read)
        await conn._wait_for_session(deadline, connect_timeout)
        nursery.start_soon(conn._keep_alive)
        try:
            yield conn
        finally:
            await conn._close()
            nursery.cancel_scope.cancel()


def _leave(proxy: Proxy) -> None:
    proxy.in_flight -= 1


@asynccontextmanager
async def _websocket(
    proxy: Proxy,
    url: str,
    headers: list[tuple[bytes, bytes]],
    deadline: float,
    *,
    model: str,
    where: str,
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """The websocket to ``url`` over a connection we open and close ourselves (trio-websocket
    leaves the socket open when the server closes first); a refused or failed handshake raised
    as our typed error."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = parts.path + (f"?{parts.query}" if parts.query else "")
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
    entered = False
    try:
        # A refusal is raised in trio-websocket's reader task, so out of this nursery.
        async with open_collapsing_nursery() as nursery:
            with trio.fail_after(max(deadline - trio.current_time(), 0.0)):
                stream = await trio.open_tcp_stream(host, port)
                if secure:
                    stream = trio.SSLStream(
                        stream, tls_context(proxy.transport.config), server_hostname=host
                    )
                    await stream.do_handshake()
                socket = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    host if port in (80, 443) else f"{host}:{port}",
                    resource,
                    extra_headers=headers,
                    max_message_size=MAX_MESSAGE_SIZE,
                    message_queue_size=EVENT_BUFFER,
                    receive_buffer_size=RECEIVE_BUFFER,
                )
            entered = True
            try:
                yield socket
            finally:
                await _close_stream(stream)
                nursery.cancel_scope.cancel()
    except trio_websocket.ConnectionRejected as exc:
        if entered:
            raise
        raise _rejected(exc.status_code, exc.body, model=model, where=where) from exc
    except (
        trio.TooSlowError,
        trio_websocket.HandshakeError,
        OSError,
        trio.BrokenResourceError,
    ) as exc:
        if entered:
            raise
        said = "timed out" if isinstance(exc, trio.TooSlowError) else str(exc) or repr(exc)
        error = ProxyConnectionError(
            f"cannot open a realtime session at {where}: {said}", model=model
        )
        error.never_sent = stream is None  # the connection itself never opened
        proxy.failed(error.message)
        raise error from exc
    finally:
        await _close_stream(stream)


async def _close_stream(stream: trio.abc.AsyncResource | None) -> None:
    if stream is not None:
        await trio.aclose_forcefully(stream)


class _Resource:
    __slots__ = ("_conn",)

    def __init__(self, conn: RealtimeConnection) -> None:
        self._conn = conn


class _Session(_Resource):
    async def update(self, *, session: Mapping[str, Any], event_id: str | None = None) -> None:
        """``session.update``: instructions, modalities, voice, audio formats, tools..."""
        await self._conn.send(_event("session.update", event_id, session=session))


class _Items(_Resource):
    async def create(
        self,
        *,
        item: Mapping[str, Any],
        previous_item_id: str | None = None,
        event_id: str | None = None,
    ) -> None:
        """``conversation.item.create``: add a message (or a function call output)."""
        await self._conn.send(
            _event(
                "conversation.item.create", event_id, item=item, previous_item_id=previous_item_id
            )
        )

    async def delete(self, *, item_id: str, event_id: str | None = None) -> None:
        await self._conn.send(_event("conversation.item.delete", event_id, item_id=item_id))

    async def retrieve(self, *, item_id: str, event_id: str | None = None) -> None:
        await self._conn.send(_event("conversation.item.retrieve", event_id, item_id=item_id))

    async def truncate(
        self, *, item_id: str, content_index: int, audio_end_ms: int, event_id: str | None = None
    ) -> None:
        await self._conn.send(
            _event(
                "conversation.item.truncate",
                event_id,
                item_id=item_id,
                content_index=content_index,
                audio_end_ms=audio_end_ms,
            )
        )


class _Conversation(_Resource):
    __slots__ = ("item",)

    def __init__(self, conn: RealtimeConnection) -> None:
        super().__init__(conn)
        self.item = _Items(conn)


class _Response(_Resource):
    async def create(
        self, *, response: Mapping[str, Any] | None = None, event_id: str | None = None
    ) -> None:
        """``response.create``: ask for a response (its options in ``response``)."""
        await self._conn.send(_event("response.create", event_id, response=response))

    async def cancel(self, *, response_id: str | None = None, event_id: str | None = None) -> None:
        await self._conn.send(_event("response.cancel", event_id, response_id=response_id))


class _InputAudioBuffer(_Resource):
    async def append(self, *, audio: bytes, event_id: str | None = None) -> None:
        """``input_audio_buffer.append``: ``audio`` as bytes (base64 on the wire)."""
        encoded = base64.b64encode(audio).decode("ascii")
        await self._conn.send(_event("input_audio_buffer.append", event_id, audio=encoded))

    async def commit(self, *, event_id: str | None = None) -> None:
        await self._conn.send(_event("input_audio_buffer.commit", event_id))

    async def clear(self, *, event_id: str | None = None) -> None:
        await self._conn.send(_event("input_audio_buffer.clear", event_id))


class _OutputAudioBuffer(_Resource):
    async def clear(self, *, event_id: str | None = None) -> None:
        await self._conn.send(_event("output_audio_buffer.clear", event_id))


class RealtimeConnection:
    """One realtime session: send client events, receive typed server events.

    Made by ``client.realtime()``; valid inside its ``async with`` only. ``session``,
    ``conversation.item``, ``response``, ``input_audio_buffer`` and ``output_audio_buffer``
    send the client events the openai SDK's connection sends; :meth:`send` sends any other.
    """

    def __init__(
        self,
        socket: trio_websocket.WebSocketConnection,
        *,
        model: str,
        observer: Observer,
        where: str,
    ) -> None:
        self.model = model
        self.session_id: str | None = None
        self.session_info: dict[str, Any] = {}  # session.created's session
        self.session = _Session(self)
        self.conversation = _Conversation(self)
        self.response = _Response(self)
        self.input_audio_buffer = _InputAudioBuffer(self)
        self.output_audio_buffer = _OutputAudioBuffer(self)
        self._socket = socket
        self._observer = observer
        self._where = where
        # Events go over in batches, one per socket read at most: a long streamed answer then
        # costs the caller a trip through the scheduler per read, not per event.
        self._send_events, self._events = trio.open_memory_channel[list[ServerEvent]](BATCH_BUFFER)
        self._pending: deque[ServerEvent] = deque()  # received, not yet handed to the caller
        self._closed: RealtimeClosedError | None = None  # how the session ended, once it has
        self._closing = False  # we are closing it
        self._delivering = False  # the reader waits for the caller (no pong can come then)
        self._last_error: ErrorEvent | None = None
        self._asked_at: float | None = None
        self._asked = ""
        self._recording = observer.recorder is not None
        self._responses: dict[str | None, Request] = {}

    def __repr__(self) -> str:
        return f"<trio_litellm.RealtimeConnection {self._where}>"

    # --- sending ------------------------------------------------------------------------------

    async def send(self, event: Mapping[str, Any] | msgspec.Struct) -> None:
        """Send one client event (a dict, or a msgspec struct), as a text frame."""
        text = _encoder.encode(event).decode("utf-8")
        if self._closed is not None:
            raise self._closed
        kind = event.get("type") if isinstance(event, Mapping) else getattr(event, "type", None)
        if kind == "response.create":
            self._asked_at = trio.current_time()  # a response's latency counts from here
            self._asked = text  # the debug recorder's request body
        try:
            await self._socket.send_message(text)
        except trio_websocket.ConnectionClosed as exc:
            raise self._ended(exc.reason) from exc

    # --- receiving ----------------------------------------------------------------------------

    async def recv(self) -> ServerEvent:
        """The next server event; :class:`RealtimeClosedError` once the session has closed."""
        pending = self._pending
        if pending:
            await trio.lowlevel.checkpoint_if_cancelled()
            return pending.popleft()
        await self._receive_batch()
        return pending.popleft()

    async def _receive_batch(self) -> None:
        """Wait for the reader's next batch of events, into ``_pending``."""
        try:
            self._pending.extend(await self._events.receive())
        except trio.EndOfChannel:
            assert self._closed is not None  # the reader says why before it ends
            raise self._closed from None

    def __aiter__(self) -> RealtimeConnection:
        return self

    async def __anext__(self) -> ServerEvent:
        """The next event; the iteration ends quietly on a clean close (1000)."""
        try:
            return await self.recv()
        except RealtimeClosedError as exc:
            if exc.code == 1000:
                raise StopAsyncIteration from None
            raise

    async def ask(self, text: str, *, response: Mapping[str, Any] | None = None) -> RealtimeTurn:
        """Send ``text`` as a user message, ask for a response, and collect it until
        ``response.done``. An error event raises as a typed :class:`LiteLLMError`; a close
        raises :class:`RealtimeClosedError` with the turn so far as ``partial``."""
        await self.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            }
        )
        await self.response.create(response=response)
        return await self.collect_turn()

    async def collect_turn(self) -> RealtimeTurn:
        """Read events until the next ``response.done``; the turn they make up."""
        turn = RealtimeTurn()
        text: list[str] = []
        audio: list[bytes] = []
        transcript: list[str] = []
        while True:
            try:
                event = await self.recv()
            except RealtimeClosedError as exc:
                exc.partial = _turn(turn, text, audio, transcript)
                raise
            if isinstance(event, ResponseOutputTextDelta):
                text.append(event.delta)
            elif isinstance(event, ResponseOutputAudioDelta):
                audio.append(event.audio)
            elif isinstance(event, ResponseOutputAudioTranscriptDelta):
                transcript.append(event.delta)
            elif isinstance(event, ResponseCreated):
                turn.response_id = event.response.id
            elif isinstance(event, ResponseDone):
                turn.response_id = event.response.id or turn.response_id
                turn.status = event.response.status
                turn.usage = event.response.usage
                return _turn(turn, text, audio, transcript)
            elif isinstance(event, ErrorEvent) and not _closing_notice(event):
                raise _error_of(event, self.model)
            # LiteLLM's notice that the upstream closed: the close follows, and raises above.

    # --- the reader and the keep-alive (tasks of the session's nursery) -----------------------

    async def _read(self) -> None:
        """Receive frames, decode them, note what responses cost, hand them to the caller."""
        socket = self._socket
        # trio-websocket hands messages over one at a time; what its reader already queued is
        # taken without waiting (it has no public way to, hence its channel).
        queued: trio.MemoryReceiveChannel[str | bytes] | None = getattr(
            socket, "_recv_channel", None
        )
        with self._send_events:
            while True:
                try:
                    frames = [await socket.get_message()]
                except trio_websocket.ConnectionClosed as exc:
                    self._closed = self._ended(exc.reason)
                    self._record_unfinished(self._closed)
                    return
                while queued is not None and len(frames) < EVENT_BUFFER:
                    try:
                        frames.append(queued.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                        break  # get_message() says how it closed, next time round
                events = [self._event_of(frame) for frame in frames]
                self._delivering = True
                try:
                    await self._send_events.send(events)
                finally:
                    self._delivering = False

    def _event_of(self, frame: str | bytes) -> ServerEvent:
        """The event of one frame (an "invalid" one for a frame that is not an event), noted."""
        try:
            event = decode_event(frame)
        except msgspec.DecodeError:
            shown = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
            event = RealtimeEvent(type="invalid", data={"frame": shown})
        self._note(event, frame)
        return event

    async def _keep_alive(self) -> None:
        """Ping every :data:`PING_INTERVAL` seconds while the reader waits on the network; no
        pong within :data:`PONG_TIMEOUT` closes the session (1011), which the caller sees."""
        while True:
            await trio.sleep(PING_INTERVAL)
            if self._delivering:
                continue
            with trio.move_on_after(PONG_TIMEOUT) as scope:
                try:
                    await self._socket.ping()
                except trio_websocket.ConnectionClosed:
                    return
            if scope.cancelled_caught and not self._delivering:
                logger.warning("realtime session at %s: no pong, closing it", self._where)
                await self._socket.aclose(1011, "keep-alive ping timeout")
                return

    async def _wait_for_session(self, deadline: float, timeout: float) -> None:
        """Wait for ``session.created``; a typed error if the session does not start."""
        seen = 0  # events before it stay in _pending for the caller
        with trio.move_on_at(deadline):
            while True:
                try:
                    await self._receive_batch()
                except RealtimeClosedError:
                    error = self._not_started()
                    raise error from error.__cause__
                for event in list(self._pending)[seen:]:
                    if isinstance(event, SessionCreated):
                        session = event.session
                        identity = session.get("id")
                        self.session_id = identity if isinstance(identity, str) else None
                        self.session_info = session
                        return
                seen = len(self._pending)
        raise RequestTimeoutError(
            f"the realtime session at {self._where} did not start within {timeout:g} s "
            "(no session.created)",
            model=self.model,
        )

    async def _close(self) -> None:
        """Close with 1000 (bounded by :data:`CLOSE_TIMEOUT`), whatever ended the block."""
        self._closing = True
        # Cancelled, the reader that would read the proxy's reply is cancelled too: send the
        # close frame and wait no more than a moment for it to leave.
        cancelled = trio.current_effective_deadline() == -math.inf
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(CANCELLED_CLOSE_TIMEOUT if cancelled else CLOSE_TIMEOUT),
        ):
            await self._socket.aclose(1000)
        if self._closed is None:  # the reader may be stopped before it saw the close
            self._closed = self._ended(trio_websocket.CloseReason(1000, None))

    # --- what the events say ------------------------------------------------------------------

    def _note(self, event: ServerEvent, frame: str | bytes) -> None:
        """Keep the error event just received (a close's message names it), the time a response
        started and its first content; record the response when done (with the debug recorder
        on: the ``response.create`` sent, and ``frame``, the ``response.done`` received)."""
        # Only an error event just before a close explains it.
        self._last_error = event if isinstance(event, ErrorEvent) else None
        if isinstance(event, ResponseCreated):
            request = Request(kind="realtime", model=self.model)
            request.started_at = (
                self._asked_at if self._asked_at is not None else trio.current_time()
            )
            request.started_wall = time.time() - (trio.current_time() - request.started_at)
            request.attempts = 1
            if self._recording:
                request.trace = Trace(
                    "GET", f"/v1/realtime?model={self.model}", self._asked.encode("utf-8")
                )
            self._responses[event.response.id] = request
        elif isinstance(event, ResponseOutputTextDelta | ResponseOutputAudioDelta):
            started = self._responses.get(event.response_id) or self._any_response()
            if started is not None and started.first_content_at is None:
                started.first_content_at = trio.current_time()
        elif isinstance(event, ResponseDone):
            done = self._responses.pop(event.response.id, None) or self._pop_any_response()
            if done is None:
                return
            if done.trace is not None:
                raw = frame.encode("utf-8") if isinstance(frame, str) else frame
                done.trace.answered(1, 101, {}, raw)  # 101: the websocket's switch
            usage = event.response.usage
            if usage is not None:
                done.usage = Usage(
                    prompt_tokens=usage.input_tokens,
                    completion_tokens=usage.output_tokens,
                    total_tokens=usage.total_tokens,
                )
            self._observer.finished(done, None)

    def _any_response(self) -> Request | None:
        return next(iter(self._responses.values()), None)

    def _pop_any_response(self) -> Request | None:
        responses = self._responses
        return responses.pop(next(iter(responses))) if responses else None

    def _record_unfinished(self, error: RealtimeClosedError) -> None:
        """Responses the close cut off are recorded as failed with it, or (when the caller left
        before they finished) with a :class:`ClientClosedError`, as a call left early is."""
        for request in self._responses.values():
            if self._closing:
                left = ClientClosedError(
                    "the realtime session closed before the response finished", model=self.model
                )
                self._observer.finished(request, left)
            else:
                self._observer.finished(request, error)
        self._responses.clear()

    def _ended(self, reason: trio_websocket.CloseReason | None) -> RealtimeClosedError:
        """The error of a session closed with ``reason``."""
        code = reason.code if reason is not None else 1006
        said = reason.reason if reason is not None else None
        if self._closing:
            return RealtimeClosedError(
                f"the realtime session at {self._where} was closed by the client",
                code=code,
                reason=said,
                model=self.model,
            )
        detail = f" ({said})" if said else ""
        message = f"the realtime session at {self._where} closed with {code}{detail}"
        last = self._last_error
        if last is not None and last.error.message:
            message += f"; the proxy said: {last.error.message}"
        return RealtimeClosedError(message, code=code, reason=said, model=self.model)

    def _not_started(self) -> LiteLLMError:
        """The error of a session that closed before ``session.created``."""
        closed = self._closed
        assert closed is not None
        last = self._last_error
        if last is None:
            return closed
        error = _error_of(last, self.model)
        if type(error) in _UNSPECIFIC:  # the close (and the message in it) says more
            return closed
        error.__cause__ = closed
        return error


def _event(kind: str, event_id: str | None, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": kind}
    if event_id is not None:
        event["event_id"] = event_id
    event.update((name, value) for name, value in fields.items() if value is not None)
    return event


def _turn(
    turn: RealtimeTurn, text: list[str], audio: list[bytes], transcript: list[str]
) -> RealtimeTurn:
    turn.text = "".join(text)
    turn.audio = b"".join(audio)
    turn.transcript = "".join(transcript)
    return turn


_UNSPECIFIC = (APIStatusError, InternalServerError, ServiceUnavailableError)
"""Error event classes that say less than the close that follows them."""


def _closing_notice(event: ErrorEvent) -> bool:
    """Whether ``event`` is LiteLLM's own notice that the upstream closed (no ``event_id``),
    which comes just before the proxy closes the session the same way."""
    message = event.error.message or ""
    return event.event_id is None and message.startswith("upstream websocket closed with code")


def _error_of(event: ErrorEvent, model: str) -> LiteLLMError:
    """The typed error of an ``error`` event, classified as an error event in a stream is."""
    detail = event.error
    if "model_not_found" in str(detail.code):  # OpenAI's own code for it
        return ModelNotFoundError(
            detail.message or "model not found", type=detail.type, model=model
        )
    return error_from_fields(
        None, detail.message or "", detail.type, detail.param, detail.code, model=model
    )


def _rejected(status: int, body: bytes | None, *, model: str, where: str) -> LiteLLMError:
    """The error of a handshake the proxy refused with an HTTP status."""
    if status in (401, 403):
        # LiteLLM closes before accepting for a bad or missing key, a key that may not use the
        # model, or no `model`: uvicorn answers 403 with no body.
        return AuthenticationError(
            f"the proxy refused the realtime session at {where} (HTTP {status}): its API key is "
            f"refused or may not use {model!r} (without a database the proxy accepts only its "
            "master key)",
            status=status,
            model=model,
        )
    error = error_from_body(status, body or b"", model=model)
    error.message = f"the proxy refused the realtime session at {where}: {error.message}"
    error.args = (error.message,)
    return error


def _websocket_url(proxy: Proxy, model: str) -> str:
    """``ws(s)://host:port[/prefix]/v1/realtime?model=...`` of the proxy's base URL."""
    url = proxy.transport.url("/v1/realtime?" + urlencode({"model": model}))
    scheme = "wss" if url.scheme == "https" else "ws"
    netloc = url.netloc.decode("ascii").rpartition("@")[2]  # no credentials in a websocket URL
    return f"{scheme}://{netloc}{url.raw_path.decode('ascii')}"
