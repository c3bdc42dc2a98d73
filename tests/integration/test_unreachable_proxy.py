"""A wrong port, a dead proxy, a proxy gone for longer than a restart: typed errors, in seconds.

Everything here runs with the default settings (no shortened timeouts) unless the test says
otherwise: that is what a new user meets. The restart tests start a stack of their own, since
they stop its proxy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from _cli_run import run_cli

from trio_litellm import ProxyConnectionError, RequestTimeoutError, open_client
from trio_litellm.testing._devstack import DevStack, free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "hi"}]
FAST = 15.0  # seconds: "in seconds", with room for a loaded 2-core machine


@pytest.fixture
def closed_url() -> str:
    """A loopback port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


async def test_every_call_to_a_closed_port_fails_typed_and_fast(closed_url: str) -> None:
    async with open_client(proxy_url=closed_url, api_key="sk-anything") as client:
        calls = {
            "complete": lambda: client.complete(model="local-gpt", messages=MESSAGES),
            "embed": lambda: client.embed(model="local-embed", input=["a"]),
            "list_models": client.list_models,
            "model_info": lambda: client.model_info("local-gpt"),
        }
        for name, call in calls.items():
            start = time.monotonic()
            with trio.fail_after(FAST), pytest.raises(ProxyConnectionError) as caught:
                await call()
            assert time.monotonic() - start < FAST, name
            assert closed_url in str(caught.value), name
            assert caught.value.__cause__ is not None, name


async def test_a_stream_to_a_closed_port_fails_typed_and_fast(closed_url: str) -> None:
    async with open_client(proxy_url=closed_url, api_key="sk-anything") as client:
        with trio.fail_after(FAST), pytest.raises(ProxyConnectionError) as caught:
            async with client.stream(model="local-gpt", messages=MESSAGES):
                pytest.fail("the block must not run")
    assert closed_url in str(caught.value)


async def test_health_of_a_closed_port_says_unhealthy_without_raising(closed_url: str) -> None:
    async with open_client(proxy_url=closed_url) as client:
        with trio.fail_after(FAST):
            report = await client.health()
    assert not report.healthy
    assert report.error


@pytest.mark.parametrize(
    "argv",
    [
        ["chat", "hi"],
        ["models"],
        ["model-info", "local-gpt"],
        ["health"],
    ],
)
def test_cli_commands_against_a_closed_port_exit_3_in_seconds(
    closed_url: str, argv: list[str]
) -> None:
    start = time.monotonic()
    run = run_cli(
        *argv, "--proxy-url", closed_url, proxy_url=None, api_key="sk-cli-secret", timeout=60
    )
    assert time.monotonic() - start < FAST + 5
    assert run.returncode == 3, run.stderr
    assert closed_url in run.stdout + run.stderr
    assert "sk-cli-secret" not in run.stdout + run.stderr


# --- a proxy that was reached, then went away -------------------------------------------------------


@pytest.fixture(scope="module")
def own_stack() -> Iterator[DevStack]:
    with DevStack(
        log_dir=PROJECT_ROOT / "run" / "test-logs" / "unreachable", project_root=PROJECT_ROOT
    ) as stack:
        yield stack


async def test_a_request_held_longer_than_unavailable_timeout_fails_naming_the_proxy(
    own_stack: DevStack,
) -> None:
    async with open_client(
        proxy_url=own_stack.proxy_url,
        api_key=own_stack.api_key,
        unavailable_timeout=3.0,
        health_check_interval=0.5,
    ) as client:
        await client.complete(model="local-gpt", messages=MESSAGES)
        await trio.to_thread.run_sync(own_stack.stop_proxy)
        try:
            start = time.monotonic()
            with trio.fail_after(FAST), pytest.raises(ProxyConnectionError) as caught:
                await client.complete(model="local-gpt", messages=MESSAGES)
            elapsed = time.monotonic() - start
            with trio.fail_after(FAST), pytest.raises(ProxyConnectionError):
                async with client.stream(model="local-gpt", messages=MESSAGES):
                    pytest.fail("the block must not run")
        finally:
            await trio.to_thread.run_sync(own_stack.start_proxy)
        assert 3.0 <= elapsed < 3.0 + 5.0
        assert own_stack.proxy_url in str(caught.value)
        assert "unavailable_timeout=3" in str(caught.value)
        assert isinstance(caught.value.__cause__, ProxyConnectionError)
        # Back up: the same client works again.
        with trio.fail_after(FAST):
            reply = await client.complete(model="local-gpt", messages=MESSAGES)
        assert reply.text == "Echo: hi"


async def test_a_request_held_through_a_restart_succeeds(own_stack: DevStack) -> None:
    async with open_client(
        proxy_url=own_stack.proxy_url,
        api_key=own_stack.api_key,
        unavailable_timeout=60.0,
        health_check_interval=0.5,
    ) as client:
        await client.complete(model="local-gpt", messages=MESSAGES)
        await trio.to_thread.run_sync(own_stack.stop_proxy)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, own_stack.start_proxy)
            with trio.fail_after(60):
                reply = await client.complete(model="local-gpt", messages=MESSAGES)
        assert reply.text == "Echo: hi"


async def test_a_total_timeout_shorter_than_the_outage_still_ends_the_call(
    own_stack: DevStack,
) -> None:
    async with open_client(
        proxy_url=own_stack.proxy_url, api_key=own_stack.api_key, health_check_interval=0.5
    ) as client:
        await client.complete(model="local-gpt", messages=MESSAGES)
        await trio.to_thread.run_sync(own_stack.stop_proxy)
        try:
            start = time.monotonic()
            with pytest.raises(RequestTimeoutError) as caught:
                await client.complete(model="local-gpt", messages=MESSAGES, timeout=2.0)
            assert time.monotonic() - start < 2.0 + 1.0
            assert isinstance(caught.value.__cause__, ProxyConnectionError)
        finally:
            await trio.to_thread.run_sync(own_stack.start_proxy)


def test_a_missing_input_file_is_named_before_the_proxy_is_asked(
    closed_url: str, tmp_path: Path
) -> None:
    # The file is the user's to fix and the cheaper to check: a typo in its name must not hide
    # behind "the proxy is not ready", nor wait for the proxy's retries.
    missing = tmp_path / "requets.jsonl"
    run = run_cli(
        "batch", str(missing), "-o", str(tmp_path / "out.jsonl"), proxy_url=closed_url, api_key=None
    )
    assert run.returncode == 2, run.stderr
    assert str(missing) in run.stderr and "not found" in run.stderr
    assert "proxy" not in run.stderr
