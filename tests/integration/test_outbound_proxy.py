"""Outbound HTTP proxies: calls, streams and health probes all take the same way to the proxy.

A trio forward/CONNECT proxy (``_http_proxy``) stands between the client and the real LiteLLM
proxy and counts what goes through it. It alone resolves ``litellm.test``, so a call to
``http://litellm.test:PORT`` that works went through it. ``HTTP_PROXY``/``HTTPS_PROXY`` are
honoured for everything; ``NO_PROXY`` (and any loopback address) keeps the direct path; the
proxy's credentials never show in reprs, errors or logs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from _http_proxy import HTTPProxy, serve_http_proxy
from _tls_front import serve_tls_front

from trio_litellm import APIStatusError, ProxyConnectionError, open_client
from trio_litellm._config import ClientConfig
from trio_litellm._fasthttp import FastTransport
from trio_litellm._probes import liveness_probe
from trio_litellm._transport import Transport
from trio_litellm.testing._devstack import Stack

pytestmark = pytest.mark.parametrize("http_backend", ["fast", "httpcore"])

PASSWORD = "pr0xy-Pa55-9d1e"
HI = [{"role": "user", "content": "via the proxy"}]


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
async def proxy(nursery: trio.Nursery) -> HTTPProxy:
    return await serve_http_proxy(nursery, credentials=("user", PASSWORD))


def _port(stack: Stack) -> int:
    return int(stack.proxy_url.rsplit(":", 1)[1].split("/")[0])


def named_url(stack: Stack) -> str:
    """The stack's proxy under a name only the test proxy resolves."""
    return f"http://litellm.test:{_port(stack)}"


async def liveness(**settings: Any) -> str | None:
    transport = Transport(ClientConfig(**settings))
    try:
        return (await liveness_probe(transport, timeout=5)).failure
    finally:
        await transport.aclose()


async def exercise(stack: Stack, **settings: Any) -> str:
    """A completion, a stream, ``client.health()`` and the monitor's probe; returns the repr."""
    async with open_client(api_key=stack.api_key, max_retries=0, **settings) as client:
        assert (await client.complete(model="local-gpt", messages=HI)).text == "Echo: via the proxy"
        async with client.stream(model="local-gpt", messages=HI) as stream:
            async for _ in stream:
                pass
        assert stream.result().text == "Echo: via the proxy"
        health = await client.health()
        assert health.healthy, health.error
        shown = f"{client!r} {client._config!r} {client.statistics().proxies!r}"
    assert await liveness(**settings) is None
    return shown


def paths(proxy: HTTPProxy) -> list[str]:
    return [target.split("litellm.test:", 1)[1].split("/", 1)[1] for _, target in proxy.requests]


def assert_every_kind_went_through(proxy: HTTPProxy) -> None:
    """Both calls (completion, stream), client.health() and the liveness probe (the last)."""
    seen = paths(proxy)
    assert seen.count("v1/chat/completions") == 2
    assert {"health/liveliness", "health/readiness"} <= set(seen)
    assert seen[-1] == "health/liveliness"


async def test_http_proxy_from_the_environment_carries_every_call(
    stack: Stack,
    proxy: HTTPProxy,
    http_backend: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    caplog.set_level(logging.DEBUG)
    shown_text = await exercise(stack, proxy_url=named_url(stack), http_backend=http_backend)
    assert_every_kind_went_through(proxy)
    assert set(proxy.methods) <= {"GET", "POST"}
    assert proxy.authorizations and len(set(proxy.authorizations)) == 1
    assert PASSWORD not in shown_text
    assert PASSWORD not in caplog.text


async def test_https_proxy_from_the_environment_tunnels_to_a_tls_proxy(
    stack: Stack,
    proxy: HTTPProxy,
    nursery: trio.Nursery,
    http_backend: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    front = await serve_tls_front(nursery, ca, _port(stack))
    monkeypatch.setenv("HTTPS_PROXY", proxy.url())
    caplog.set_level(logging.DEBUG)
    shown = await exercise(
        stack,
        proxy_url=front.url("litellm.test"),
        verify=str(ca_file),
        http_backend=http_backend,
    )
    assert proxy.requests and all(
        request == ("CONNECT", f"litellm.test:{front.port}") for request in proxy.requests
    )
    assert PASSWORD not in shown
    assert PASSWORD not in caplog.text


async def test_no_proxy_keeps_the_direct_path(
    stack: Stack, proxy: HTTPProxy, http_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    await exercise(stack, proxy_url=named_url(stack).replace("litellm.test", "localhost"))
    await exercise(stack, proxy_url=stack.proxy_url, http_backend=http_backend)
    assert proxy.requests == []


async def test_loopback_is_never_proxied_from_the_environment(
    stack: Stack, proxy: HTTPProxy, http_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALL_PROXY", proxy.url())
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    await exercise(stack, proxy_url=stack.proxy_url, http_backend=http_backend)
    assert proxy.requests == []


async def test_the_default_path_is_our_own_pool_without_a_proxy(
    stack: Stack, http_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    transport = Transport(ClientConfig(proxy_url=stack.proxy_url, http_backend=http_backend))
    try:
        pool = transport._pool
        assert isinstance(pool, FastTransport) == (http_backend == "fast")
        assert (await liveness_probe(transport, timeout=5)).failure is None
    finally:
        await transport.aclose()


async def test_the_proxy_option_wins_over_the_environment(
    stack: Stack, proxy: HTTPProxy, http_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    await exercise(stack, proxy_url=named_url(stack), proxy=proxy.url(), http_backend=http_backend)
    assert_every_kind_went_through(proxy)


async def test_trust_env_false_ignores_the_environment(
    stack: Stack, proxy: HTTPProxy, http_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url())
    async with open_client(
        proxy_url=named_url(stack),
        api_key=stack.api_key,
        trust_env=False,
        max_retries=0,
        health_check_interval=None,
        http_backend=http_backend,
    ) as client:
        with pytest.raises(ProxyConnectionError):  # litellm.test: only the proxy knows it
            await client.complete(model="local-gpt", messages=HI)
    assert proxy.requests == []


async def test_refused_credentials_do_not_show_in_the_error(
    stack: Stack, proxy: HTTPProxy, http_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = proxy.url().replace(PASSWORD, PASSWORD + "-wrong")
    async with open_client(
        proxy_url=named_url(stack),
        api_key=stack.api_key,
        proxy=wrong,
        max_retries=0,
        health_check_interval=None,
        http_backend=http_backend,
    ) as client:
        with pytest.raises(APIStatusError) as caught:
            await client.complete(model="local-gpt", messages=HI)
        shown = f"{caught.value} {caught.value!r} {client!r} {client._config!r}"
    assert caught.value.status == 407
    assert PASSWORD not in shown
    assert PASSWORD not in caplog.text
