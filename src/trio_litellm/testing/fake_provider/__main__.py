"""``python -m trio_litellm.testing.fake_provider``: serve the fake provider until SIGINT or
SIGTERM."""

from __future__ import annotations

import logging
import signal
from typing import Literal

import cyclopts
import trio

from ._config import FakeProviderConfig
from ._server import serve_fake_provider

app = cyclopts.App(
    name="python -m trio_litellm.testing.fake_provider",
    help=(
        "A fake OpenAI-compatible provider for tests, demos and benchmarks "
        "(HTTP, and realtime WebSocket sessions at /v1/realtime)."
    ),
    version_flags=[],
)


async def _serve_until_signalled(config: FakeProviderConfig) -> None:
    """Serve, print the bound URL once listening, stop cleanly on SIGINT or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_fake_provider, config)
            print(f"fake provider listening on {url}", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


@app.default
def main(
    *,
    host: str = "127.0.0.1",
    port: int = 8090,
    latency: float = 0.0,
    tps: float | None = None,
    chunks: int | None = None,
    rpm: int | None = None,
    embedding_dim: int = 8,
    log_level: Literal["debug", "info", "warning", "error"] = "warning",
) -> None:
    """Serve the fake provider until interrupted.

    Parameters
    ----------
    host
        Interface to bind.
    port
        TCP port; 0 picks a free one (the printed URL shows it).
    latency
        Default seconds before response headers.
    tps
        Default stream pacing, content chunks per second.
    chunks
        Default number of content pieces per stream (default: one per word).
    rpm
        Server-wide requests-per-minute limit (rolling 60 s window).
    embedding_dim
        Embedding length when a request does not ask for ``dimensions``.
    log_level
        Logging threshold for the server's own messages (on stderr).
    """
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = FakeProviderConfig(
            host=host,
            port=port,
            latency=latency,
            tps=tps,
            chunks=chunks,
            rpm=rpm,
            embedding_dim=embedding_dim,
        )
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    failure: OSError | None = None
    try:
        trio.run(_serve_until_signalled, config)
    except* OSError as group:  # most likely the port is taken
        failure = group.exceptions[0]  # type: ignore[assignment]
    if failure is not None:
        raise SystemExit(f"error: cannot serve on {host}:{port}: {failure}")


if __name__ == "__main__":
    app()
