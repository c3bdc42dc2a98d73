"""What the transport makes of what the network and the proxy did: one typed error of ours each.

Foreign errors enter in one place. Each httpx2 error a transport can raise becomes one of ours,
naming the proxy's URL and what happened, raised ``from`` the original; each error status becomes
its leaf of the tree, carrying the answer. The table is walked through the public ``complete``
and ``stream`` over an in-memory proxy; refused connections, read timeouts and TLS failures are
then met for real, on loopback, on both HTTP backends.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from functools import partial

import httpx2
import pytest
import trio
import trio.testing
import trustme

from _fakes import (
    HTTP_BACKENDS,
    MESSAGES,
    SECRET,
    Peer,
    RawServer,
    Script,
    client_of,
    error_body,
    json_answer,
    open_test_client,
    raw_server,
)
from trio_litellm import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    Client,
    ConflictError,
    InternalServerError,
    LiteLLMError,
    NotFoundError,
    PermissionDeniedError,
    ProxyCertificateError,
    ProxyConnectionError,
    RateLimitError,
    RequestTimeoutError,
    ResponseDecodeError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)

URL = "http://proxy.test"


async def call(client: Client, way: str) -> None:
    """One request, by ``complete`` or by ``stream`` (whose errors before content are raised on
    entering the block)."""
    if way == "complete":
        await client.complete(model="m", messages=MESSAGES)
        return
    async with client.stream(model="m", messages=MESSAGES):
        pytest.fail("the block must not run")


WAYS = pytest.mark.parametrize("way", ["complete", "stream"])

# --- httpx2's errors -----------------------------------------------------------------------------

FOREIGN: list[tuple[type[httpx2.HTTPError], type[LiteLLMError], str]] = [
    (httpx2.ConnectError, ProxyConnectionError, "cannot connect to the proxy"),
    (httpx2.ConnectTimeout, ProxyConnectionError, "timed out connecting to the proxy"),
    (httpx2.PoolTimeout, RequestTimeoutError, "timed out waiting for a free connection"),
    (httpx2.ReadTimeout, RequestTimeoutError, "timed out waiting for the proxy's answer"),
    (httpx2.WriteTimeout, RequestTimeoutError, "timed out sending the request"),
    (httpx2.RemoteProtocolError, ProxyConnectionError, "the proxy broke the connection"),
    (httpx2.ReadError, ProxyConnectionError, "the connection to the proxy broke while reading"),
    (httpx2.WriteError, ProxyConnectionError, "the connection to the proxy broke while sending"),
    (httpx2.ProxyError, ProxyConnectionError, "transport error talking to the proxy"),
    (httpx2.UnsupportedProtocol, ProxyConnectionError, "transport error talking to the proxy"),
]


@WAYS
@pytest.mark.parametrize(
    ("foreign", "ours", "said"), FOREIGN, ids=lambda v: getattr(v, "__name__", "")
)
async def test_each_transport_error_becomes_ours_naming_the_proxy_and_the_cause(
    way: str, foreign: type[httpx2.HTTPError], ours: type[LiteLLMError], said: str
) -> None:
    original = foreign("what the socket said")

    def fail(request: httpx2.Request) -> httpx2.Response:
        raise original

    async with open_test_client(Script(fail), max_retries=0) as client:
        with pytest.raises(LiteLLMError) as caught:
            await call(client, way)
    assert type(caught.value) is ours
    assert str(caught.value).startswith(f"{said} ({URL}): what the socket said")
    assert caught.value.__cause__ is original
    assert caught.value.model == "m"


@WAYS
async def test_a_body_that_cannot_be_decompressed_is_a_decode_error(way: str) -> None:
    headers = {"content-encoding": "gzip", "content-type": "application/json"}
    script = Script(json_answer(200, b"not gzip at all", headers))
    async with open_test_client(script, max_retries=0) as client:
        with pytest.raises(ResponseDecodeError) as caught:
            await call(client, way)
    assert str(caught.value).startswith(f"cannot decode the proxy's answer ({URL})")
    assert isinstance(caught.value.__cause__, httpx2.DecodingError)


async def test_the_key_never_reaches_a_mapped_error() -> None:
    def echo(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"refused for {request.headers['authorization']}")

    async with open_test_client(Script(echo), max_retries=0) as client:
        with pytest.raises(ProxyConnectionError) as caught:
            await call(client, "complete")
    assert SECRET not in str(caught.value)
    assert "Bearer ***" in str(caught.value)


# --- error statuses ------------------------------------------------------------------------------

STATUSES: list[tuple[int, type[APIStatusError] | type[RequestTimeoutError]]] = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (408, RequestTimeoutError),
    (409, ConflictError),
    (418, APIStatusError),
    (422, UnprocessableEntityError),
    (429, RateLimitError),
    (500, InternalServerError),
    (501, InternalServerError),
    (502, ServiceUnavailableError),
    (503, ServiceUnavailableError),
    (504, ServiceUnavailableError),
]


@WAYS
@pytest.mark.parametrize(("status", "ours"), STATUSES)
async def test_each_error_status_becomes_its_error_carrying_the_answer(
    way: str, status: int, ours: type[LiteLLMError]
) -> None:
    body = error_body(status, f"the proxy says no ({SECRET})")
    headers = {"content-type": "application/json", "x-litellm-call-id": "call-1"}
    async with open_test_client(
        Script(json_answer(status, body, headers)), max_retries=0
    ) as client:
        with pytest.raises(LiteLLMError) as caught:
            await call(client, way)
    error = caught.value
    assert type(error) is ours
    assert error.status == status
    assert "the proxy says no (***)" in str(error)
    assert error.response_body == body.decode().replace(SECRET, "***")
    assert error.response_headers is not None
    assert error.response_headers["x-litellm-call-id"] == "call-1"


@WAYS
async def test_an_error_status_from_something_other_than_the_proxy_names_the_route(
    way: str,
) -> None:
    script = Script(json_answer(502, b"<html>Bad Gateway</html>", {"content-type": "text/html"}))
    async with open_test_client(script, max_retries=0) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            await call(client, way)
    assert str(caught.value).startswith(f"POST {URL}/v1/chat/completions answered 502")


# --- on loopback ---------------------------------------------------------------------------------

BACKENDS = pytest.mark.parametrize("backend", HTTP_BACKENDS)


@BACKENDS
async def test_a_refused_connection_says_why(backend: str) -> None:
    from trio_litellm.testing._devstack import free_port

    server = RawServer()
    server.url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with client_of(server, backend, max_retries=0) as client:
        with pytest.raises(ProxyConnectionError) as caught:
            await client.list_models()
    assert f"cannot connect to the proxy ({server.url})" in str(caught.value)
    assert "Connection refused" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx2.ConnectError)


@BACKENDS
async def test_a_proxy_that_takes_the_request_and_never_answers_times_out_reading(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, backend: str
) -> None:
    async def silent(peer: Peer) -> None:
        await peer.request()
        await peer.closed()

    server = await raw_server(nursery, silent)
    async with client_of(server, backend, max_retries=0, read_timeout=7.0) as client:
        start = trio.current_time()
        with pytest.raises(RequestTimeoutError) as caught:
            await client.complete(model="m", messages=MESSAGES)
        assert trio.current_time() - start == pytest.approx(7.0)
    assert str(caught.value).startswith(f"timed out waiting for the proxy's answer ({server.url})")
    assert isinstance(caught.value.__cause__, httpx2.ReadTimeout)
    assert len(server.log) == 1


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


async def tls_server(nursery: trio.Nursery, authority: trustme.CA) -> RawServer:
    """A loopback HTTPS server whose certificate ``authority`` signed; it answers nothing."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    server = RawServer()

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        server.peers.append(Peer(stream, server.log))
        try:
            await stream.do_handshake()
            await server.peers[-1].request()
        except trio.BrokenResourceError:
            pass  # the client refused our certificate
        finally:
            await trio.aclose_forcefully(stream)

    serve: Callable[..., object] = trio.serve_ssl_over_tcp
    listeners = await nursery.start(partial(serve, handle, 0, context, host="127.0.0.1"))
    server.url = f"https://127.0.0.1:{listeners[0].transport_listener.socket.getsockname()[1]}"
    return server


@BACKENDS
async def test_an_untrusted_certificate_is_a_certificate_error_never_retried(
    nursery: trio.Nursery, authority: trustme.CA, backend: str
) -> None:
    server = await tls_server(nursery, authority)
    async with client_of(server, backend, max_retries=3) as client:  # the system's CAs only
        with pytest.raises(ProxyCertificateError) as caught:
            await client.complete(model="m", messages=MESSAGES)
    assert "the proxy's TLS certificate is not trusted" in str(caught.value)
    assert "retrying will not help" in str(caught.value)
    assert server.connections == 1
