"""The only module that speaks HTTP: one pooled httpx2 client, the error map, the retry policy.

Foreign errors enter here and nowhere else: every httpx2 exception becomes one of ours through
``_ERROR_MAP``, raised ``from`` the original. Error statuses become typed errors through the
pure classifier in ``_classify``. Retries are a stamina policy: the hook retries what is
``retryable``, waits what the proxy asked (``Retry-After``, ``llm_provider-retry-after``) up to
``max_retry_after``, and otherwise backs off exponentially with jitter.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx2
import trio
from httpx2._utils import URLPattern, get_environment_proxies

from ._classify import error_from_response
from ._config import ClientConfig
from ._errors import (
    ConfigError,
    LiteLLMError,
    ProxyCertificateError,
    ProxyConnectionError,
    RequestTimeoutError,
    ResponseDecodeError,
    ResponseTooLargeError,
)
from ._fasthttp import FastTransport, ResponseTooLarge
from ._version import __version__ as _VERSION

__all__ = ["Answer", "BodyStream", "HTTPTransport", "Transport"]

HTTPTransport = httpx2.AsyncBaseTransport
"""What ``open_client(transport=...)`` takes: any httpx2 transport (``httpx2.MockTransport``...)."""

T = TypeVar("T")

# stamina logs a WARNING per retry and installs no handler: in an application that never set up
# logging, Python's last-resort handler would print a bare "stamina.retry_scheduled" line on
# stderr for each of our retries. A NullHandler stops only that fallback; an application that
# configured logging still gets the records through its own handlers.
logging.getLogger("stamina").addHandler(logging.NullHandler())
# Our own retry warnings likewise reach only an application's configured handlers (the library
# way: a NullHandler on the package's logger).
logging.getLogger("trio_litellm").addHandler(logging.NullHandler())
logger = logging.getLogger("trio_litellm")

# Checked in order: the first matching class wins (subclasses before their bases).
_ERROR_MAP: tuple[tuple[type[httpx2.HTTPError], type[LiteLLMError], str], ...] = (
    (httpx2.ConnectTimeout, ProxyConnectionError, "timed out connecting to the proxy"),
    (httpx2.PoolTimeout, RequestTimeoutError, "timed out waiting for a free connection"),
    (httpx2.ReadTimeout, RequestTimeoutError, "timed out waiting for the proxy's answer"),
    (httpx2.WriteTimeout, RequestTimeoutError, "timed out sending the request"),
    (httpx2.TimeoutException, RequestTimeoutError, "timed out"),
    (httpx2.ConnectError, ProxyConnectionError, "cannot connect to the proxy"),
    (httpx2.RemoteProtocolError, ProxyConnectionError, "the proxy broke the connection"),
    (httpx2.ReadError, ProxyConnectionError, "the connection to the proxy broke while reading"),
    (httpx2.WriteError, ProxyConnectionError, "the connection to the proxy broke while sending"),
    (httpx2.DecodingError, ResponseDecodeError, "cannot decode the proxy's answer"),
    (httpx2.TransportError, ProxyConnectionError, "transport error talking to the proxy"),
    (httpx2.HTTPError, LiteLLMError, "HTTP error"),
)
_HTTPCORE_HEAD = 100 * 1024
"""httpcore's cap on a response head (``MAX_INCOMPLETE_EVENT_SIZE``), which h11 enforces."""


class Answer:
    """A complete HTTP answer: status, headers (case-insensitive), body, and seconds it took."""

    __slots__ = ("content", "headers", "latency", "status")

    def __init__(
        self, status: int, headers: Mapping[str, str], content: bytes, latency: float
    ) -> None:
        self.status = status
        self.headers = headers
        self.content = content
        self.latency = latency


class BodyStream:
    """The body of a streamed answer, read piece by piece with transport errors mapped to ours."""

    __slots__ = ("_iterator", "_transport", "headers", "status")

    def __init__(self, transport: Transport, response: httpx2.Response) -> None:
        self._transport = transport
        self.status = response.status_code
        self.headers: Mapping[str, str] = _header_dict(response)
        # A body without Content-Encoding is read as the transport gives it; httpx2's decoding
        # layer only runs for one the proxy compressed.
        self._iterator = (
            response.aiter_bytes()
            if "content-encoding" in self.headers
            else response.stream.__aiter__()  # type: ignore[union-attr]
        )

    async def receive_some(self) -> bytes:
        """The next bytes of the body; ``b""`` at its end."""
        try:
            return await self._iterator.__anext__()
        except StopAsyncIteration:
            return b""
        except httpx2.HTTPError as exc:
            raise self._transport.map_error(exc) from exc


class Transport:
    """One pooled HTTP client for one :func:`open_client`; every request of it goes through here."""

    def __init__(
        self, config: ClientConfig, *, http_transport: httpx2.AsyncBaseTransport | None = None
    ) -> None:
        self._config = config
        self._secret = config.api_key
        limits = httpx2.Limits(
            max_connections=config.max_connections,
            max_keepalive_connections=config.max_keepalive_connections,
            keepalive_expiry=config.keepalive_expiry,
        )
        probe_limits = httpx2.Limits(max_connections=2, keepalive_expiry=config.keepalive_expiry)
        probe_transport = http_transport  # tests' in-memory transport, else the same as calls
        if http_transport is None:
            # One route to the proxy for the calls, the streams and the health probe: the same
            # outbound proxy (or none) and the same TLS context, each with a pool of its own.
            proxy = _outbound_proxy(config)
            tls = _tls_context(config, proxy)
            if config.http_backend == "fast" and (
                proxy is None or (proxy.url.scheme == "http" and config.base_url[:5] == "http:")
            ):
                http_transport = FastTransport(
                    max_connections=config.max_connections,
                    max_keepalive_connections=config.max_keepalive_connections,
                    keepalive_expiry=config.keepalive_expiry,
                    ssl_context=tls,
                    proxy=proxy,
                )
            else:
                if config.http_backend == "fast":
                    logger.debug(
                        "%s is reached through the proxy %s, which our pool does not tunnel "
                        "through: httpx2's own transport carries the requests",
                        config.display_url,
                        proxy,
                    )
                http_transport = _httpx2_transport(tls, proxy, limits)
            probe_transport = _httpx2_transport(tls, proxy, probe_limits)
        headers = {"user-agent": f"trio-litellm/{_VERSION}", "accept": "application/json"}
        headers.update(config.headers)
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        self._http = httpx2.AsyncClient(
            base_url=config.base_url,
            headers=headers,
            timeout=httpx2.Timeout(
                connect=config.connect_timeout,
                read=config.read_timeout,
                write=config.write_timeout,
                pool=config.pool_timeout,
            ),
            limits=limits,
            follow_redirects=False,
            transport=http_transport,
            trust_env=False,  # what the environment says is in the transport already
        )
        # Requests are built here and handed straight to the client's transport (its own pool,
        # or whatever it mounts for our URL): httpx2's client layer would otherwise parse and
        # merge the URL and the headers again on every request, for the same few paths.
        self._headers = {
            False: httpx2.Headers(self._http.headers),
            True: httpx2.Headers({**self._http.headers, "content-type": "application/json"}),
        }
        self._timeouts = self._http.timeout.as_dict()
        self._routes: dict[str, tuple[httpx2.URL, httpx2.AsyncBaseTransport]] = {}

        # Health probes get their own small pool, so they never queue behind busy traffic.
        self._probe_http = httpx2.AsyncClient(
            base_url=config.base_url,
            headers={"user-agent": f"trio-litellm/{_VERSION}"},
            timeout=httpx2.Timeout(config.connect_timeout),
            limits=probe_limits,
            follow_redirects=False,
            transport=probe_transport,
            trust_env=False,
        )

    def __repr__(self) -> str:
        return f"Transport({self._config.display_url!r})"

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._http.aclose()
        await self._probe_http.aclose()

    async def liveness(self, path: str, *, timeout: float, keyed: bool = False) -> int:
        """The status a health probe of ``path`` gets, on the probes' own pool; raises ours if
        nothing answers. ``keyed`` sends the API key (the health routes need none)."""
        headers = {"authorization": f"Bearer {self._secret}"} if keyed and self._secret else None
        request = self._probe_http.build_request(
            "GET", path, headers=headers, extensions={"timeout": _timeout_ext(timeout)}
        )
        try:
            # Straight to the transport, as calls are sent: httpx2's client layer would log
            # every probe at INFO, a line every few seconds in an application's log.
            transport = self._probe_http._transport_for_url(request.url)
            response = await transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx2.HTTPError as exc:
            raise self.map_error(exc) from exc
        return response.status_code

    @property
    def open_connections(self) -> int:
        """Connections the pool holds now, idle or busy (for tests and statistics)."""
        return len(self._connections())

    @property
    def busy_connections(self) -> int:
        """Connections carrying a request or a response body right now."""
        return sum(1 for connection in self._connections() if not connection.is_idle())

    def _connections(self) -> list[Any]:
        transport = self._http._transport
        if isinstance(transport, FastTransport):
            return list(transport.connections)
        pool = getattr(transport, "_pool", None)  # the pool is httpcore2's
        return list(getattr(pool, "connections", ()))

    # --- one attempt ----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        model: str | None = None,
        timeout: float | None = None,
    ) -> Answer:
        """One attempt at a request whose answer is read whole; an error status raises typed.

        The attempt has ``response_timeout`` seconds in all, when set."""
        limit = self._config.response_timeout
        if limit is None:
            return await self._request(method, path, body, headers, model, timeout)
        with trio.move_on_after(limit):
            return await self._request(method, path, body, headers, model, timeout)
        raise RequestTimeoutError(
            f"no whole answer from the proxy ({self.display_url}) within {limit:g} s "
            "(response_timeout)",
            model=model,
        )

    async def _request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        model: str | None,
        timeout: float | None,
    ) -> Answer:
        start = trio.current_time()
        response = await self._send(method, path, body, headers, timeout, model)
        try:
            answer_headers = _header_dict(response)
            content = await self._read_body(response, answer_headers, model)
        finally:
            await response.aclose()
        status = response.status_code
        if status < 200 or status in (204, 304):
            raise self._bodiless(method, path, response, "a JSON answer", model)
        if status >= 400:
            raise self._answered_error(method, path, status, answer_headers, content, model)
        return Answer(status, answer_headers, content, trio.current_time() - start)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        model: str | None = None,
    ) -> AsyncIterator[BodyStream]:
        """One attempt at a request whose body is read as it arrives. The response is closed, and
        its connection released, when the block is left by any path."""
        response = await self._send(method, path, body, headers, None, model)
        try:
            if response.status_code >= 400:
                answer_headers = _header_dict(response)
                content = await self._read_body(response, answer_headers, model)
                raise self._answered_error(
                    method, path, response.status_code, answer_headers, content, model
                )
            if response.status_code < 200 or response.status_code in (204, 304):
                raise self._bodiless(method, path, response, "a stream", model)
            yield BodyStream(self, response)
        finally:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 5):
                await response.aclose()

    async def _read_body(
        self, response: httpx2.Response, headers: Mapping[str, str], model: str | None
    ) -> bytes:
        """The whole body, decompressed, up to ``max_response_bytes`` (over it: raises, and the
        caller's ``aclose`` closes the connection)."""
        limit = self._config.max_response_bytes
        # A body without Content-Encoding is read as the transport gives it; httpx2's decoding
        # layer only runs for one the proxy compressed.
        pieces: AsyncIterable[bytes] = response.stream  # type: ignore[assignment]
        if "content-encoding" in headers:
            pieces = response.aiter_bytes()
        parts: list[bytes] = []
        size = 0
        try:
            async for part in pieces:
                size += len(part)
                if size > limit:
                    raise self.too_large("response body", size, limit, "max_response_bytes", model)
                parts.append(part)
        except httpx2.HTTPError as exc:
            raise self.map_error(exc, model) from exc
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        timeout: float | None,
        model: str | None,
    ) -> httpx2.Response:
        """Build the request and send it; the response's body is still to be read."""
        route = self._routes.get(path)
        if route is None:
            url = self._http._merge_url(path)
            route = (url, self._http._transport_for_url(url))
            if "?" not in path:  # a fixed path: there are a handful, cache them
                self._routes[path] = route
        url, transport = route
        merged = self._headers[body is not None]
        if headers:
            merged = httpx2.Headers(merged)
            merged.update(headers)
        request = httpx2.Request(
            method,
            url,
            headers=merged,
            content=body,
            extensions={"timeout": self._timeouts if timeout is None else _timeout_ext(timeout)},
        )
        try:
            return await transport.handle_async_request(request)
        except httpx2.HTTPError as exc:
            raise self.map_error(exc, model) from exc

    # --- errors and retries ---------------------------------------------------------------------

    def map_error(self, exc: httpx2.HTTPError, model: str | None = None) -> LiteLLMError:
        """Our error for an httpx2 one (the caller raises it ``from`` the original)."""
        refused = _certificate_failure(exc)
        if refused is not None:
            return self.scrub(ProxyCertificateError(refused, model=model))
        if isinstance(exc, httpx2.RemoteProtocolError):
            named = self._protocol_error(exc, model)
            if named is not None:
                return named
        for foreign, ours, text in _ERROR_MAP:
            if isinstance(exc, foreign):
                detail = str(exc) or type(exc).__name__
                if isinstance(exc, httpx2.ConnectError):
                    detail += _attempt_reasons(exc, detail)
                return self.scrub(ours(f"{text} ({self.display_url}): {detail}", model=model))
        raise AssertionError("unreachable: httpx2.HTTPError is the last entry")  # pragma: no cover

    def _protocol_error(
        self, exc: httpx2.RemoteProtocolError, model: str | None
    ) -> LiteLLMError | None:
        """Ours for an answer that broke HTTP in a way worth naming: one too large, or a 101;
        None for the rest (a broken connection)."""
        if isinstance(exc, ResponseTooLarge):
            return self.too_large(exc.what, exc.size, exc.limit, None, model)
        said = str(exc)
        if said == "Receive buffer too long":  # h11, under httpx2's pool: a head over its cap
            return self.too_large("response head", _HTTPCORE_HEAD + 1, _HTTPCORE_HEAD, None, model)
        if "_SWITCH_UPGRADE" in said:  # h11 on a 101 nobody asked for
            return ResponseDecodeError(
                f"the proxy ({self.display_url}) answered 101 Switching Protocols, which "
                "switches to another protocol and has no body",
                status=101,
                model=model,
            )
        return None

    def too_large(
        self, what: str, size: int, limit: int, option: str | None, model: str | None
    ) -> ResponseTooLargeError:
        """The error for a part of an answer over its cap (the connection is closed by then)."""
        set_by = f" (option {option})" if option else ""
        return ResponseTooLargeError(
            f"the {what} from the proxy ({self.display_url}) is over its cap of {limit} "
            f"bytes{set_by}: {size} bytes read",
            what=what,
            size=size,
            limit=limit,
            option=option,
            model=model,
        )

    def _bodiless(
        self,
        method: str,
        path: str,
        response: httpx2.Response,
        expected: str,
        model: str | None,
    ) -> ResponseDecodeError:
        """The error for an answer whose status has no body (101, 204, 304) where one was due."""
        status = response.status_code
        said = f"{status} {response.reason_phrase}".strip()
        what = "switches to another protocol and " if status == 101 else ""
        return ResponseDecodeError(
            f"{method} {self.display_url}{path} answered {said}, which {what}has no body, "
            f"where {expected} was expected",
            status=status,
            model=model,
        )

    def _answered_error(
        self,
        method: str,
        path: str,
        status: int,
        headers: Mapping[str, str],
        content: bytes,
        model: str | None,
    ) -> LiteLLMError:
        """The typed error for an error answer, carrying the answer (for the debug recorder).

        An answer that is not LiteLLM's error JSON (no ``code``: a wrong URL, another server, a
        gateway's page) is named by its route, so the message says where it came from.
        """
        error = error_from_response(status, headers, content, model=model)
        if error.code is None:
            said = "" if error.message == f"HTTP {status}" else f": {error.message}"
            hint = " (is that a LiteLLM proxy's URL?)" if status in (404, 405) else ""
            error.message = f"{method} {self.display_url}{path} answered {status}{hint}{said}"
            error.args = (error.message,)
        error = self.scrub(error)
        secret = self._secret.encode() if self._secret else b""
        masked = content.replace(secret, b"***") if secret else content
        error.response_body = masked.decode("utf-8", "replace")
        error.response_headers = headers
        return error

    def scrub(self, exc: LiteLLMError) -> LiteLLMError:
        """Remove the API key from an error's text, should the proxy ever echo it."""
        if self._secret and self._secret in exc.message:
            exc.message = exc.message.replace(self._secret, "***")
            exc.args = (exc.message,)
        return exc

    @property
    def display_url(self) -> str:
        """The proxy's URL without credentials, for messages."""
        return self._config.display_url


def _attempt_reasons(exc: BaseException, said: str) -> str:
    """Each address's reason, when trio's "all attempts to connect ... failed" (under httpx2's
    transport) keeps them only in an ExceptionGroup down its causes; "" when already said."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, BaseExceptionGroup):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return ""
    reasons = [str(leaf) for leaf in cause.exceptions if str(leaf) not in said]
    return f" ({'; '.join(reasons)})" if reasons else ""


def _certificate_failure(exc: BaseException) -> str | None:
    """Our message when a TLS certificate (theirs or ours) is behind ``exc``, else None."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    reason = str(getattr(cause, "reason", "") or "")
    # OpenSSL's own words, without the "[SSL: REASON] " prefix and the "(_ssl.c:1006)" suffix.
    said = re.sub(r"^\[SSL: \w+\] | \(_ssl\.c:\d+\)$", "", str(cause))
    if isinstance(cause, ssl.SSLCertVerificationError) or reason == "TLSV1_ALERT_UNKNOWN_CA":
        return (
            f"the proxy's TLS certificate is not trusted ({said}); retrying will not help: "
            "give verify= the CA bundle that signed it, or ssl_context="
        )
    if "CERTIFICATE" in reason:
        return (
            f"the proxy refused the TLS connection on our client certificate ({said}); "
            "retrying will not help: give cert= one it accepts"
        )
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _outbound_proxy(config: ClientConfig) -> httpx2.Proxy | None:
    """The HTTP proxy to reach ``config.base_url`` through: ``proxy=``, else the environment's
    (as httpx reads it: ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) unless
    the address is a loopback one (as Go's net/http does), else None."""
    if config.proxy is not None:
        return httpx2.Proxy(config.proxy)
    url = httpx2.URL(config.base_url)
    if not config.trust_env or _is_loopback(url.host):
        return None
    mounts = {URLPattern(pattern): proxy for pattern, proxy in get_environment_proxies().items()}
    for pattern in sorted(mounts):
        if pattern.matches(url):
            found = mounts[pattern]
            if found is None:
                return None
            try:
                return httpx2.Proxy(found)
            except ValueError as exc:
                shown = re.sub(r"//[^@/]*@", "//", found)
                raise ConfigError(
                    "trust_env", f"the environment's proxy {shown!r} is not usable: {exc}"
                ) from None
    return None


def _tls_context(config: ClientConfig, proxy: httpx2.Proxy | None) -> ssl.SSLContext:
    """The one TLS context of every pool: ``ssl_context``, else made from ``verify``, ``cert``
    and (``trust_env``) ``SSL_CERT_FILE``/``SSL_CERT_DIR``. Without https anywhere on the way
    a bare context stands in: it is never used, and loading the CA store takes a while."""
    if config.ssl_context is not None:
        return config.ssl_context
    if not config.base_url.startswith("https:") and (proxy is None or proxy.url.scheme != "https"):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    verify = config.verify
    if isinstance(verify, bool):
        context = httpx2.create_ssl_context(verify=verify, trust_env=config.trust_env)
    elif os.path.isdir(verify):
        context = ssl.create_default_context(capath=verify)
    else:
        context = ssl.create_default_context(cafile=verify)
    cert = config.cert
    if cert is not None:
        context.load_cert_chain(*((cert,) if isinstance(cert, str) else cert))
    return context


def _httpx2_transport(
    tls: ssl.SSLContext, proxy: httpx2.Proxy | None, limits: httpx2.Limits
) -> httpx2.AsyncBaseTransport:
    try:
        return httpx2.AsyncHTTPTransport(verify=tls, proxy=proxy, limits=limits, trust_env=False)
    except ImportError as exc:  # socks5:// needs socksio
        raise ConfigError("proxy", f"{proxy} needs a package that is not installed: {exc}") from exc


def _header_dict(response: httpx2.Response) -> dict[str, str]:
    """The response headers as a plain dict with lower-case names, built in one pass.

    httpx2's ``Headers.get`` scans every header on each lookup; LiteLLM sends about forty and we
    read about twenty, so one pass into a dict is several times cheaper.
    """
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in response.headers.raw
    }


def _timeout_ext(seconds: float) -> dict[str, float]:
    return {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}
