"""``trio-litellm realtime "prompt" --model M``: the answer on stdout as it streams, the usage on
stderr, and the exit codes of the other commands (2 bad usage, 3 a proxy that cannot be used, 1 a
failed session).

The command runs its own ``trio.run``, so each test runs it in a thread, bounded by
``trio.fail_after``, while a websocket server in the test's own run plays the proxy.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio_websocket
from rich.console import Console

from trio_litellm import cli
from trio_litellm.cli._common import EXIT_FAILED, EXIT_OK, EXIT_PROXY, EXIT_USAGE, consoles


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


# --- a websocket server playing the proxy -------------------------------------------------------

Script = Callable[[trio_websocket.WebSocketRequest, "Proxy"], Awaitable[None]]


class Proxy:
    """What the fake proxy saw: the handshake's headers and every client event."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.events: list[dict[str, Any]] = []

    async def next_event(self, socket: trio_websocket.WebSocketConnection) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(await socket.get_message())
        self.events.append(event)
        return event


async def send(socket: trio_websocket.WebSocketConnection, **event: Any) -> None:
    await socket.send_message(json.dumps(event))


async def until_response_create(socket: trio_websocket.WebSocketConnection, proxy: Proxy) -> None:
    while (await proxy.next_event(socket))["type"] != "response.create":
        pass


async def wait_for_close(socket: trio_websocket.WebSocketConnection) -> None:
    with pytest.raises(trio_websocket.ConnectionClosed):
        while True:
            await socket.get_message()


async def answers(request: trio_websocket.WebSocketRequest, proxy: Proxy) -> None:
    """A session that answers "Hello" in two deltas, with usage."""
    socket = await request.accept()
    await send(socket, type="session.created", event_id="e0", session={"id": "sess_1"})
    await until_response_create(socket, proxy)
    await send(socket, type="response.created", response={"id": "resp_1", "status": "in_progress"})
    for piece in ("Hel", "lo"):
        await send(socket, type="response.output_text.delta", response_id="resp_1", delta=piece)
    usage = {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17}
    await send(
        socket,
        type="response.done",
        response={"id": "resp_1", "status": "completed", "usage": usage},
    )
    await wait_for_close(socket)


async def refuses_the_key(request: trio_websocket.WebSocketRequest, proxy: Proxy) -> None:
    await request.reject(403)


async def has_no_such_model(request: trio_websocket.WebSocketRequest, proxy: Proxy) -> None:
    """What LiteLLM does for an unknown model: accept, an error event, close 1011."""
    socket = await request.accept()
    message = "400: {'error': '_arealtime: Invalid model name passed in model=nope.'}"
    await send(socket, type="error", error={"type": "server_error", "message": message})
    await socket.aclose(1011, message[:123])


async def fails_mid_answer(request: trio_websocket.WebSocketRequest, proxy: Proxy) -> None:
    """One delta, an error event (as the proxy relays an upstream drop), then close 1011."""
    socket = await request.accept()
    await send(socket, type="session.created", session={"id": "sess_1"})
    await until_response_create(socket, proxy)
    await send(socket, type="response.created", response={"id": "resp_1"})
    await send(socket, type="response.output_text.delta", response_id="resp_1", delta="Hel")
    await send(
        socket,
        type="error",
        error={"type": "server_error", "message": "upstream websocket closed with code 1006"},
    )
    await socket.aclose(1011, "no close frame received or sent")


async def closes_mid_answer(request: trio_websocket.WebSocketRequest, proxy: Proxy) -> None:
    """One delta, then close 1011 with no error event."""
    socket = await request.accept()
    await send(socket, type="session.created", session={"id": "sess_1"})
    await until_response_create(socket, proxy)
    await send(socket, type="response.output_text.delta", delta="Hel")
    await socket.aclose(1011, "upstream boom")


Serve = Callable[[Script], Awaitable[tuple[str, Proxy]]]


@pytest.fixture
def serve(nursery: trio.Nursery) -> Serve:
    """Start a fake proxy running ``script`` per connection; its URL and what it saw."""

    async def start(script: Script) -> tuple[str, Proxy]:
        proxy = Proxy()

        async def handler(request: trio_websocket.WebSocketRequest) -> None:
            proxy.headers = {k.decode().lower(): v.decode() for k, v in request.headers}
            await script(request, proxy)

        server = await nursery.start(serve_websocket, handler)
        return f"http://127.0.0.1:{server.port}", proxy

    return start


async def serve_websocket(
    handler: Callable[[trio_websocket.WebSocketRequest], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[trio_websocket.WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    await trio_websocket.serve_websocket(
        handler, "127.0.0.1", 0, None, disconnect_timeout=5, task_status=task_status
    )


def realtime_argv(url: str, *more: str) -> list[str]:
    return [
        "realtime",
        "say hello",
        "--model",
        "rt-text",
        "--proxy-url",
        url,
        "--api-key",
        "sk-t",
        *more,
    ]


# --- a session --------------------------------------------------------------------------------------


async def test_the_answer_goes_to_stdout_and_the_usage_to_stderr(
    serve: Serve, captured: Captured
) -> None:
    url, proxy = await serve(answers)
    assert await run_cli(*realtime_argv(url)) == EXIT_OK
    assert captured.out.getvalue() == "Hello\n"
    assert "12 tokens in, 5 out, 17 total" in captured.err.getvalue()
    assert proxy.headers["authorization"] == "Bearer sk-t"
    assert "openai-beta" not in proxy.headers
    item, response = proxy.events
    assert item["type"] == "conversation.item.create"
    assert item["item"]["content"] == [{"type": "input_text", "text": "say hello"}]
    assert response["type"] == "response.create"


async def test_instructions_update_the_session_first(serve: Serve, captured: Captured) -> None:
    url, proxy = await serve(answers)
    assert await run_cli(*realtime_argv(url, "--instructions", "Be brief.")) == EXIT_OK
    update = proxy.events[0]
    assert update == {"type": "session.update", "session": {"instructions": "Be brief."}}


async def test_beta_sends_the_beta_header_and_reads_beta_event_names(
    serve: Serve, captured: Captured
) -> None:
    async def beta_answers(request: trio_websocket.WebSocketRequest, proxy: Proxy) -> None:
        socket = await request.accept()
        await send(socket, type="session.created", session={})
        await until_response_create(socket, proxy)
        await send(socket, type="response.text.delta", delta="Hi")
        await send(socket, type="response.done", response={"status": "completed"})
        await wait_for_close(socket)

    url, proxy = await serve(beta_answers)
    assert await run_cli(*realtime_argv(url, "--beta")) == EXIT_OK
    assert proxy.headers["openai-beta"] == "realtime=v1"
    assert captured.out.getvalue() == "Hi\n"
    assert "no usage reported" in captured.err.getvalue()


# --- failures -----------------------------------------------------------------------------------


async def test_a_refused_key_exits_3(serve: Serve, captured: Captured) -> None:
    url, _ = await serve(refuses_the_key)
    assert await run_cli(*realtime_argv(url)) == EXIT_PROXY
    assert "403" in captured.err.getvalue()
    assert "sk-t" not in captured.err.getvalue()


async def test_an_unknown_model_exits_1_with_the_proxys_words(
    serve: Serve, captured: Captured
) -> None:
    url, _ = await serve(has_no_such_model)
    assert await run_cli(*realtime_argv(url)) == EXIT_FAILED
    assert "Invalid model name" in captured.err.getvalue()
    assert captured.out.getvalue() == ""


async def test_an_error_event_mid_answer_exits_1_after_what_had_come(
    serve: Serve, captured: Captured
) -> None:
    url, _ = await serve(fails_mid_answer)
    assert await run_cli(*realtime_argv(url)) == EXIT_FAILED
    assert captured.out.getvalue() == "Hel\n"
    assert "upstream websocket closed with code 1006" in captured.err.getvalue()


async def test_an_abnormal_close_mid_answer_exits_1_naming_the_code(
    serve: Serve, captured: Captured
) -> None:
    url, _ = await serve(closes_mid_answer)
    assert await run_cli(*realtime_argv(url)) == EXIT_FAILED
    assert captured.out.getvalue().startswith("Hel")
    assert "1011" in captured.err.getvalue()
    assert "upstream boom" in captured.err.getvalue()
