"""An outbound HTTP proxy for tests: forward proxying and CONNECT tunnels, written in trio.

It stands where a company's proxy stands: the client reaches the LiteLLM proxy only through it.
It resolves names of its own (``litellm.test`` → 127.0.0.1) that the client cannot resolve, so a
request that arrives proves it went through the proxy. Each request is recorded (method and
target); credentials, when set, are required (407 without them) and the ones received are kept so
a test can check they reached the proxy and nothing else. A forwarded request goes upstream with
``Connection: close`` and its connection ends with the answer: one request per connection keeps
this small, and every request is counted.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

import trio

NAMES = {"litellm.test": "127.0.0.1"}


@dataclass
class HTTPProxy:
    port: int
    credentials: tuple[str, str] | None = None
    requests: list[tuple[str, str]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)

    def url(self, *, with_credentials: bool = True) -> str:
        if self.credentials and with_credentials:
            user, password = self.credentials
            return f"http://{user}:{password}@127.0.0.1:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    @property
    def methods(self) -> list[str]:
        return [method for method, _ in self.requests]


async def _relay(source: trio.abc.ReceiveStream, sink: trio.abc.SendStream) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _relay_both(client: trio.abc.Stream, upstream: trio.abc.Stream) -> None:
    async with trio.open_nursery() as relays:
        relays.start_soon(_relay, client, upstream)
        await _relay(upstream, client)
        relays.cancel_scope.cancel()


async def _read_head(stream: trio.abc.Stream) -> tuple[bytes, bytes] | None:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            return None
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head, rest


def _address(netloc: str, default_port: int) -> tuple[str, int]:
    host, _, port = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    return NAMES.get(host, host), int(port) if port else default_port


async def serve_http_proxy(
    nursery: trio.Nursery, *, credentials: tuple[str, str] | None = None
) -> HTTPProxy:
    """Start the proxy in ``nursery`` on a free loopback port."""
    proxy = HTTPProxy(port=0, credentials=credentials)
    expected = (
        "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        if credentials
        else None
    )

    async def handle(client: trio.SocketStream) -> None:
        try:
            read = await _read_head(client)
            if read is None:
                return
            head, rest = read
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            proxy.requests.append((method, target))
            headers = [line.split(":", 1) for line in header_lines]
            auth = next((v.strip() for k, v in headers if k.lower() == "proxy-authorization"), None)
            if auth is not None:
                proxy.authorizations.append(auth)
            if expected is not None and auth != expected:
                await client.send_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\ncontent-length: 0\r\n'
                    b"connection: close\r\n\r\n"
                )
                return
            if method == "CONNECT":
                upstream = await trio.open_tcp_stream(*_address(target, 443))
                await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    await upstream.send_all(rest)
            else:
                url = urlsplit(target)
                upstream = await trio.open_tcp_stream(*_address(url.netloc, 80))
                path = url.path + (f"?{url.query}" if url.query else "")
                kept = [
                    f"{k}:{v}"
                    for k, v in headers
                    if k.lower() not in ("proxy-authorization", "connection")
                ]
                out = "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close"])
                await upstream.send_all(out.encode("latin-1") + b"\r\n\r\n" + rest)
            async with upstream:
                await _relay_both(client, upstream)
        except (trio.BrokenResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(client)

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    proxy.port = listeners[0].socket.getsockname()[1]
    return proxy
