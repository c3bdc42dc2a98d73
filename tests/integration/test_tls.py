"""TLS to the proxy: a trio TLS front (a trustme CA's certificate) relays to the real proxy.

Every test runs on both HTTP backends. With the CA given (``verify=``, ``ssl_context=`` or
``SSL_CERT_FILE``), completions, streams and both health paths (``client.health()`` and the
monitor's liveness probe) work; without it the error says it is the certificate, at once, without
retries. A front that requires a client certificate works with ``cert=`` and says so without.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from _tls_front import TLSFront, serve_tls_front

from trio_litellm import APIConnectionError, ProxyCertificateError, open_client
from trio_litellm._config import ClientConfig
from trio_litellm._probes import liveness_probe
from trio_litellm._transport import Transport
from trio_litellm.testing._devstack import Stack

pytestmark = pytest.mark.parametrize("http_backend", ["fast", "httpcore"])

FAST_FAILURE = 3.0
"""Seconds within which a certificate error must surface: no retries, no waiting at the gate."""

HI = [{"role": "user", "content": "over tls"}]


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def client_cert(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("client")
    issued = ca.issue_cert("client@trio-litellm.test")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(certfile))
    issued.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


def _port(stack: Stack) -> int:
    return int(stack.proxy_url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture
async def front(nursery: trio.Nursery, ca: trustme.CA, stack: Stack) -> TLSFront:
    return await serve_tls_front(nursery, ca, _port(stack))


@pytest.fixture
async def mtls_front(nursery: trio.Nursery, ca: trustme.CA, stack: Stack) -> TLSFront:
    return await serve_tls_front(nursery, ca, _port(stack), require_client_cert=True)


async def liveness(**settings: Any) -> str | None:
    """What the health monitor's probe sees with these settings."""
    transport = Transport(ClientConfig(**settings))
    try:
        return (await liveness_probe(transport, timeout=5)).failure
    finally:
        await transport.aclose()


async def exercise(stack: Stack, **settings: Any) -> None:
    """A completion, a stream, ``client.health()`` and the monitor's probe all work."""
    async with open_client(api_key=stack.api_key, max_retries=0, **settings) as client:
        reply = await client.complete(model="local-gpt", messages=HI)
        assert reply.text == "Echo: over tls"
        async with client.stream(model="local-gpt", messages=HI) as stream:
            async for _ in stream:
                pass
        assert stream.result().text == "Echo: over tls"
        health = await client.health()
        assert health.healthy, health.error
    assert await liveness(**settings) is None


async def fails_on_the_certificate(stack: Stack, **settings: Any) -> ProxyCertificateError:
    """Every call raises ProxyCertificateError at once, never retried; returns the first one."""
    errors: list[ProxyCertificateError] = []
    with trio.fail_after(FAST_FAILURE):
        async with open_client(
            api_key=stack.api_key, health_check_interval=0.05, **settings
        ) as client:
            with pytest.raises(ProxyCertificateError) as caught:
                await client.complete(model="local-gpt", messages=HI)
            errors.append(caught.value)
            with pytest.raises(ProxyCertificateError):
                async with client.stream(model="local-gpt", messages=HI):
                    pass
            assert client.statistics().dispatcher.retries == 0
            health = await client.health()
            assert not health.healthy
            assert health.error is not None and "certificate" in health.error
            # The monitor's probe reaches the proxy: it is up, so requests do not wait at the
            # gate for a failure that waiting would not fix.
            assert await liveness(**settings) is None
            assert client.health_status == "up"
    assert not errors[0].retryable
    return errors[0]


# --- the server's certificate -------------------------------------------------------------------


async def test_with_the_ca_file_every_call_works(
    stack: Stack, front: TLSFront, ca_file: Path, http_backend: str
) -> None:
    await exercise(stack, proxy_url=front.url(), verify=str(ca_file), http_backend=http_backend)
    assert front.handshakes >= 3  # the calls' pool, the probe's own pool, the liveness transport


async def test_with_an_ssl_context_every_call_works(
    stack: Stack, front: TLSFront, ca_file: Path, http_backend: str
) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    await exercise(stack, proxy_url=front.url(), ssl_context=context, http_backend=http_backend)


async def test_ssl_cert_file_is_honoured_unless_trust_env_is_off(
    stack: Stack,
    front: TLSFront,
    ca_file: Path,
    http_backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    await exercise(stack, proxy_url=front.url(), http_backend=http_backend)
    await fails_on_the_certificate(
        stack, proxy_url=front.url(), http_backend=http_backend, trust_env=False
    )


async def test_an_untrusted_certificate_is_named_at_once_and_not_retried(
    stack: Stack, front: TLSFront, http_backend: str
) -> None:
    error = await fails_on_the_certificate(
        stack, proxy_url=front.url(), http_backend=http_backend, max_retries=2
    )
    assert "certificate verify failed" in str(error)
    assert "BrokenResourceError" not in str(error)
    assert front.refused and not front.handshakes  # the client hung up in the handshake


async def test_verify_false_trusts_any_certificate(
    stack: Stack, front: TLSFront, http_backend: str
) -> None:
    await exercise(stack, proxy_url=front.url(), verify=False, http_backend=http_backend)


# --- the client's certificate -------------------------------------------------------------------


async def test_a_front_that_wants_a_client_certificate_works_with_cert(
    stack: Stack,
    mtls_front: TLSFront,
    ca_file: Path,
    client_cert: tuple[str, str],
    http_backend: str,
) -> None:
    await exercise(
        stack,
        proxy_url=mtls_front.url(),
        verify=str(ca_file),
        cert=client_cert,
        http_backend=http_backend,
    )
    assert not mtls_front.refused


async def test_without_the_client_certificate_the_error_says_so(
    stack: Stack, mtls_front: TLSFront, ca_file: Path, http_backend: str
) -> None:
    if http_backend == "httpcore":
        # httpcore2 drops the write error that carries TLS 1.3's "certificate required" alert,
        # then reads a stream trio reports broken without a reason: a generic connection error,
        # but still typed and fast (the proxy was never reached, so it is not waited for).
        with trio.fail_after(10):  # three attempts, 1.5 s of backoff
            async with open_client(
                api_key=stack.api_key,
                proxy_url=mtls_front.url(),
                verify=str(ca_file),
                http_backend=http_backend,
            ) as client:
                with pytest.raises(APIConnectionError):
                    await client.complete(model="local-gpt", messages=HI)
        return
    error = await fails_on_the_certificate(
        stack, proxy_url=mtls_front.url(), verify=str(ca_file), http_backend=http_backend
    )
    assert "certificate required" in str(error)
