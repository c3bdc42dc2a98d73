"""``trio-litellm realtime "prompt" --model M``: the answer on stdout as it streams, the usage on
stderr, and the exit codes of the other commands (2 bad usage, 3 a proxy that cannot be used, 1 a
failed session).

The command runs its own ``trio.run``, so each test runs it in a thread, bounded by
``trio.fail_after``, while a websocket server in the test's own run plays the proxy.
"""

from __future__ import annotations

import io
import socket

import pytest
import trio
from rich.console import Console

from trio_litellm import cli
from trio_litellm.cli._common import EXIT_PROXY, EXIT_USAGE, consoles


class Captured:
    def __init__(self) -> None:
        self.out = io.StringIO()
        self.err = io.StringIO()


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Captured:
    streams = Captured()
    monkeypatch.setattr(consoles, "out", Console(file=streams.out, width=200))
    monkeypatch.setattr(consoles, "err", Console(file=streams.err, width=200))
    return streams


async def run_cli(*argv: str, within: float = 10.0) -> int:
    """The command's exit code; it must end within ``within`` seconds."""
    with trio.fail_after(within):
        return await trio.to_thread.run_sync(cli.main, list(argv), abandon_on_cancel=True)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- bad usage ----------------------------------------------------------------------------------


def test_no_prompt_is_bad_usage(captured: Captured) -> None:
    assert cli.main(["realtime", "--model", "rt-text"]) == EXIT_USAGE


def test_no_model_is_bad_usage(captured: Captured) -> None:
    assert cli.main(["realtime", "hi"]) == EXIT_USAGE


def test_an_unknown_option_is_bad_usage(captured: Captured) -> None:
    assert cli.main(["realtime", "hi", "--model", "rt-text", "--voice", "alloy"]) == EXIT_USAGE


def test_a_bad_proxy_url_is_a_proxy_that_cannot_be_used(captured: Captured) -> None:
    code = cli.main(["realtime", "hi", "--model", "rt-text", "--proxy-url", "ftp://nowhere"])
    assert code == EXIT_PROXY
    assert "bad configuration" in captured.err.getvalue()


# --- a proxy that cannot be used ------------------------------------------------------------------


async def test_a_proxy_never_reached_exits_3_within_seconds(captured: Captured) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    code = await run_cli("realtime", "hi", "--model", "rt-text", "--proxy-url", url, within=8.0)
    assert code == EXIT_PROXY
    assert url in captured.err.getvalue()
    assert captured.out.getvalue() == ""
