"""The fakes the unit tests share: a scripted in-memory proxy, raw loopback servers, wire bodies.

``open_test_client`` and ``transport_for`` are the only places the tests reach under the public
API to put an in-memory HTTP transport beneath a client; every other test goes through them.
Import as ``from _fakes import ...`` (pytest puts ``tests/`` on ``sys.path``: see pyproject.toml).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

import httpx2
import msgspec
import trio

from trio_litellm import Client, ClientConfig, open_client
from trio_litellm._transport import Transport
from trio_litellm._usage import RequestRecord

SECRET = "sk-unit-secret-0000"
MESSAGES = [{"role": "user", "content": "hi"}]
T0 = 1_700_000_040.0
"""A wall-clock time on a minute boundary."""

# --- the client over an in-memory proxy ---------------------------------------------------------

Handler = (
    Callable[[httpx2.Request], Awaitable[httpx2.Response]]
    | Callable[[httpx2.Request], httpx2.Response]
)
"""The proxy's side: takes each request the client sends, returns (or raises) what it gets."""

TEST_OPTIONS: dict[str, Any] = {
    "proxy_url": "http://proxy.test",
    "api_key": SECRET,
    "backoff_jitter": 0.0,
    "health_check_interval": None,  # tests script every request the client makes
    "price_lookup": False,
}
"""What ``open_test_client`` sets unless told otherwise."""


def open_test_client(handler: Handler, **options: Any) -> AbstractAsyncContextManager[Client]:
    """``open_client`` with ``handler`` as the proxy: :data:`TEST_OPTIONS`, then ``options``."""
    config = ClientConfig(**(TEST_OPTIONS | options))
    return open_client(config, transport=httpx2.MockTransport(handler))


def transport_for(handler: Handler, **options: Any) -> Transport:
    """The client's transport alone, with ``handler`` as the proxy (for the probes' tests)."""
    config = ClientConfig(**(TEST_OPTIONS | options))
    return Transport(config, http_transport=httpx2.MockTransport(handler))


Answer = Callable[[httpx2.Request], httpx2.Response]
"""One scripted answer: builds the response to a request (or raises, as a broken connection)."""


class Script:
    """Answers requests in order from a list of answers (the last one repeats); keeps the
    requests it was sent."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx2.Request] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.answers[min(len(self.requests), len(self.answers)) - 1](request)


def json_answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> Answer:
    """An answer read whole: ``status`` with ``body``."""
    return lambda request: httpx2.Response(status, content=body, headers=headers)


def sse_answer(
    body: Callable[[], AsyncIterator[bytes]], headers: dict[str, str] | None = None
) -> Answer:
    """A 200 event stream whose body comes from ``body()`` (see :func:`pieces`)."""
    return lambda request: httpx2.Response(
        200, content=body(), headers={"content-type": "text/event-stream", **(headers or {})}
    )


def pieces(
    *parts: bytes,
    then_stall: bool = False,
    then_break: bool = False,
    log: list[str] | None = None,
) -> Callable[[], AsyncIterator[bytes]]:
    """A body yielding ``parts`` one network read each; then it ends, stalls for ever, or the
    connection breaks. ``log`` gets ``"closed"`` when the body is closed, by whatever path."""

    async def body() -> AsyncIterator[bytes]:
        try:
            for part in parts:
                yield part
            if then_stall:
                await trio.sleep_forever()
            if then_break:
                raise httpx2.ReadError("connection reset by peer")
        finally:
            if log is not None:
                log.append("closed")

    return body


def refuse(request: httpx2.Request) -> httpx2.Response:
    """An answer that never comes: the connection is refused, as by a closed port."""
    raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)


class Stalling:
    """A proxy that answers at once, except to a message "stall", which it takes and never
    answers (a stream gets its first chunk, "a", then nothing), and "deny", which gets a 401.
    Keeps the requests it was sent; ``stalled`` counts those it holds, ``stalling`` is set at
    the first."""

    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []
        self.stalled = 0
        self.stalling = trio.Event()

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = request.url.path
        if not path.endswith(("/chat/completions", "/embeddings")):
            return httpx2.Response(200, content=b'{"data": []}')
        body = msgspec.json.decode(request.content)
        said = body["input"][0] if "input" in body else body["messages"][0]["content"]
        if said == "deny":
            return httpx2.Response(401, content=error_body(401, "Invalid key", "auth_error"))
        if body.get("stream"):
            if said == "stall":
                self._stalled()
                content = pieces(chunk("a", role="assistant"), then_stall=True)()
            else:
                content = pieces(chunk("a", role="assistant"), chunk("b", finish="stop"), DONE)()
            return httpx2.Response(
                200, content=content, headers={"content-type": "text/event-stream"}
            )
        if said == "stall":
            self._stalled()
            await trio.sleep_forever()
        return httpx2.Response(200, content=EMBEDDING if "input" in body else COMPLETION)

    def _stalled(self) -> None:
        self.stalled += 1
        self.stalling.set()


def said(text: str) -> list[dict[str, str]]:
    """The messages of a user who said ``text``."""
    return [{"role": "user", "content": text}]


# --- wire bodies ----------------------------------------------------------------------------------


def completion(text: str = "ok", *, prompt_tokens: int = 1, completion_tokens: int = 1) -> bytes:
    """A chat completion's JSON body, as the proxy sends it."""
    return msgspec.json.encode(
        {
            "id": "chatcmpl-1",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


COMPLETION = completion()


EMBEDDING = msgspec.json.encode(
    {"object": "list", "model": "e", "data": [{"index": 0, "embedding": [0.5, 0.25]}]}
)
"""An embeddings answer, one vector."""


def chunk(
    content: str | None = None, *, role: str | None = None, finish: str | None = None
) -> bytes:
    """One stream event carrying a chat completion chunk."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    choice: dict[str, Any] = {"index": 0, "delta": delta}
    if finish is not None:
        choice["finish_reason"] = finish
    body = {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
    return b"data: " + msgspec.json.encode(body) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def error_body(status: int, message: str, etype: str = "None") -> bytes:
    """LiteLLM's error JSON: ``code`` is the status as a string, ``type`` often ``"None"``."""
    return msgspec.json.encode(
        {"error": {"message": message, "type": etype, "param": None, "code": str(status)}}
    )


def in_band_error(status: int, message: str, etype: str = "None") -> bytes:
    """An error sent as a stream event, as the proxy does once a stream has started."""
    return b"data: " + error_body(status, message, etype) + b"\n\n"


# --- usage records ------------------------------------------------------------------------------


def record(**changes: Any) -> RequestRecord:
    """A finished chat request's record: a served, paid 200 at :data:`T0`, with ``changes``."""
    fields: dict[str, Any] = {
        "kind": "chat",
        "model": "gpt-4o",
        "served_model": "gpt-4o",
        "deployment_id": "dep-1",
        "call_id": "call-1",
        "started_at": T0,
        "latency": 0.5,
        "ttft": None,
        "stream": False,
        "attempts": 1,
        "outcome": "ok",
        "status": 200,
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "cost": 0.001,
        "cost_source": "header",
        "overhead_ms": 3.0,
    }
    fields.update(changes)
    return RequestRecord(**fields)


# --- raw loopback servers -----------------------------------------------------------------------


class Peer:
    """The server's side of one raw connection: read requests (or just heads), write bytes as
    given. Each request read whole goes to ``requests`` and to the server's ``log``."""

    def __init__(self, stream: trio.abc.Stream, log: list[bytes] | None = None) -> None:
        self.stream = stream
        self.buffer = b""
        self.requests: list[bytes] = []
        self._log = log if log is not None else []

    async def _more(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            return False
        self.buffer += data
        return bool(data)

    async def head(self) -> bytes | None:
        """The next request's head only (the body, if any, stays unread); None once closed."""
        while b"\r\n\r\n" not in self.buffer:
            if not await self._more():
                return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head

    async def request(self) -> bytes | None:
        """The next whole request (head and Content-Length body); None once the client closed."""
        head = await self.head()
        if head is None:
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < length:
            if not await self._more():
                return None
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        self.requests.append(head + b"\r\n\r\n" + body)
        self._log.append(self.requests[-1])
        return self.requests[-1]

    async def closed(self) -> bool:
        """Wait until the client closes the connection or sends more; True if it closed."""
        return not await self._more()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)


PeerHandler = Callable[[Peer], Awaitable[None]]


class RawServer:
    """A loopback server running a handler once per connection: ``peers`` holds each
    connection's peer, ``log`` every request read whole, over all connections, in order."""

    def __init__(self) -> None:
        self.url = ""
        self.peers: list[Peer] = []
        self.log: list[bytes] = []

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        return len(self.peers)


async def raw_server(nursery: trio.Nursery, handler: PeerHandler) -> RawServer:
    """Serve ``handler`` once per connection on a free loopback port, in ``nursery``."""
    server = RawServer()

    async def handle(stream: trio.SocketStream) -> None:
        peer = Peer(stream, server.log)
        server.peers.append(peer)
        async with stream:
            await handler(peer)

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    server.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
    return server


def http_answer(
    body: bytes = COMPLETION,
    status: bytes = b"200 OK",
    headers: bytes = b"Content-Type: application/json\r\n",
) -> bytes:
    """A whole HTTP/1.1 answer with a Content-Length."""
    return b"HTTP/1.1 %b\r\n%bContent-Length: %d\r\n\r\n%b" % (status, headers, len(body), body)


def sse_head() -> bytes:
    """The head of a 200 event stream sent with chunked framing."""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )


def piece(data: bytes) -> bytes:
    """One piece of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


HTTP_BACKENDS = ("fast", "httpcore")
"""Every ``http_backend``: a point about the wire is tested on both."""


@asynccontextmanager
async def client_of(
    server: RawServer, backend: str = "fast", **options: Any
) -> AsyncIterator[Client]:
    """The public ``open_client`` on ``server``, with no health probes, price lookups or retry
    jitter, on ``backend``; ``options`` override."""
    settings: dict[str, Any] = {
        "proxy_url": server.url,
        "api_key": "sk-test",
        "http_backend": backend,
        "health_check_interval": None,
        "price_lookup": False,
        "backoff_jitter": 0.0,
        "backoff_initial": 0.0,
    }
    async with open_client(**(settings | options)) as client:
        yield client
