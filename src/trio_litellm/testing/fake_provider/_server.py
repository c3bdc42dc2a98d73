"""``serve_fake_provider``: bind, report the URL, accept connections until cancelled."""

from __future__ import annotations

import logging

import trio

from ._app import FakeProvider
from ._config import FakeProviderConfig
from ._http import serve_connection
from ._realtime import RealtimeServer, ReplayStream, is_websocket_upgrade, read_head

logger = logging.getLogger("trio_litellm.testing.fake_provider")


async def serve_fake_provider(
    config: FakeProviderConfig,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the fake OpenAI-compatible provider until cancelled.

    Calls ``task_status.started(url)`` with the bound base URL (without ``/v1``) once the
    socket listens, so ``url = await nursery.start(serve_fake_provider, config)`` works with
    ``port=0``. A connection whose first request asks for a WebSocket upgrade is a realtime
    session (``ws://<url>/v1/realtime?model=...``); any other is HTTP. A client's misbehaviour or disconnect is logged and never stops the server.
    """
    provider = FakeProvider(config)
    realtime = RealtimeServer(provider.stats)
    listeners = await trio.open_tcp_listeners(config.port, host=config.host)
    try:
        host, port = listeners[0].socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}"

        async def handle(stream: trio.SocketStream) -> None:
            provider.stats.connections += 1
            provider.stats.open_connections += 1
            try:
                head = await read_head(stream)
                if is_websocket_upgrade(head):
                    await realtime.serve(ReplayStream(stream, head))
                else:
                    await serve_connection(stream, provider.handle, head)
            except Exception:
                logger.exception("connection failed")
            finally:
                provider.stats.open_connections -= 1
                await trio.aclose_forcefully(stream)

        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handle, listeners)
            task_status.started(url)
    finally:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
