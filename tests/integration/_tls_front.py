"""A TLS front for the real proxy: a trio relay that terminates TLS and forwards the bytes.

It stands where a company's TLS terminator (nginx, a load balancer) stands in front of a LiteLLM
proxy: it accepts TLS with a certificate from a test CA (trustme), optionally asks the client for a
certificate of that CA too, and relays each connection's bytes to the proxy's plain HTTP port.
It counts the handshakes that succeeded and keeps the reasons of those that failed.
"""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass, field
from functools import partial

import trio
import trustme

HOST_NAMES = ("127.0.0.1", "localhost", "litellm.test")
"""The names the front's certificate is for; ``litellm.test`` is resolved only by the test proxy."""


@dataclass
class TLSFront:
    port: int
    handshakes: int = 0
    refused: list[str] = field(default_factory=list)

    def url(self, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}"


async def _relay(source: trio.abc.ReceiveStream, sink: trio.abc.SendStream) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def serve_tls_front(
    nursery: trio.Nursery,
    ca: trustme.CA,
    target_port: int,
    *,
    require_client_cert: bool = False,
) -> TLSFront:
    """Start the front in ``nursery``; it relays to ``127.0.0.1:target_port``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*HOST_NAMES).configure_cert(context)
    if require_client_cert:
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    front = TLSFront(port=0)

    async def handle(client: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await client.do_handshake()
        except trio.BrokenResourceError as exc:
            front.refused.append(str(exc.__cause__))
            # Send the TLS alert that says why, as a real server does (trio drops it).
            alert = client._outgoing.read()
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await client.transport_stream.send_all(alert)
            await trio.aclose_forcefully(client)
            return
        front.handshakes += 1
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", target_port)
        except OSError:
            await trio.aclose_forcefully(client)
            return
        try:
            async with trio.open_nursery() as relays:
                relays.start_soon(_relay, client, upstream)
                await _relay(upstream, client)
                relays.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(upstream)
            await trio.aclose_forcefully(client)

    listeners = await nursery.start(
        partial(trio.serve_ssl_over_tcp, handle, 0, context, host="127.0.0.1")
    )
    front.port = listeners[0].transport_listener.socket.getsockname()[1]
    return front
