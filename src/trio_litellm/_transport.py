"""The only module that speaks HTTP: one attempt's request and answer, and the error map.

Foreign errors enter here and nowhere else: every httpx2 exception becomes one of ours through
``_ERROR_MAP``, raised ``from`` the original. Error statuses become typed errors through the
pure classifier in ``_classify``. Whether and when to try again is ``_retry``'s; which pools the
requests go through (our own, httpx2's, an outbound proxy, TLS) is ``_routes``'.

A request to our own pool (``_fasthttp``) skips httpx2's models: its head is encoded once per
route and the answer comes back as the pool's ``Exchange`` (status, raw headers, body). Any
other transport (httpx2's own, a test's ``MockTransport``) gets an ``httpx2.Request`` and its
``Response`` is seen through the same :class:`Incoming` shape.

It is longer than most modules (about 570 lines) because the error map is most of it: the
messages that name what went wrong, where, and what to do, for a dozen kinds of failure. Split
off, the map would be a second place that knows httpx2's exceptions.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any, Protocol

import httpx2
import trio

from ._classify import error_from_response
from ._config import ClientConfig
from ._errors import (
    LiteLLMError,
    ProxyCertificateError,
    ProxyConnectionError,
    RequestTimeoutError,
    ResponseDecodeError,
    ResponseTooLargeError,
)
from ._fasthttp import FastTransport, Owner, ResponseTooLarge
from ._routes import open_pools
from ._version import __version__ as _VERSION

__all__ = ["Answer", "BodyStream", "HTTPTransport", "Transport"]

HTTPTransport = httpx2.AsyncBaseTransport
"""What ``open_client(transport=...)`` takes: any httpx2 transport (``httpx2.MockTransport``...)."""

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


class Bounded(Owner, Protocol):
    """A request as its attempts see it (``_calls.Request``): a deadline, what it waits on, to
    abort it from another task (``_fasthttp.Owner``), and a region a cancel scope bounds, for
    the waits nothing else can end."""

    def interruptible(self) -> AbstractContextManager[None]: ...


class Incoming(Protocol):
    """An answer whose head has arrived: its status, raw headers and reason, and its body to
    read piece by piece (httpx2's errors), then ``aclose``. Our pool's ``Exchange`` is one; an
    answer through another httpx2 transport is wrapped in :class:`_ViaHttpx2`."""

    status: int
    headers: list[tuple[bytes, bytes]]
    reason: bytes

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class BodyStream:
    """The body of a streamed answer, read piece by piece with transport errors mapped to ours."""

    __slots__ = ("_iterator", "_transport", "headers", "status")

    def __init__(
        self, transport: Transport, incoming: Incoming, headers: Mapping[str, str]
    ) -> None:
        self._transport = transport
        self.status = incoming.status
        self.headers = headers
        self._iterator = _pieces(incoming, headers)

    async def receive_some(self) -> bytes:
        """The next bytes of the body; ``b""`` at its end."""
        try:
            return await self._iterator.__anext__()
        except StopAsyncIteration:
            return b""
        except httpx2.HTTPError as exc:
            raise self._transport.map_error(exc) from exc


class _Route:
    """One fixed path, ready to send: its URL, its pool key, and (for our pool) the request
    head's bytes up to the body's length, encoded once."""

    __slots__ = ("head", "key", "request", "url")

    def __init__(
        self, url: httpx2.URL, request: httpx2.Request, key: Any, head: bytes | None
    ) -> None:
        self.url = url
        self.request = request  # names the request in httpx2's errors
        self.key = key
        self.head = head


class Transport:
    """The HTTP side of one :func:`open_client`: every request of it goes through here."""

    def __init__(
        self, config: ClientConfig, *, http_transport: httpx2.AsyncBaseTransport | None = None
    ) -> None:
        self._config = config
        self._secret = config.api_key
        self._pool, self._probe_pool = open_pools(config, http_transport)
        # Our own pool takes the request head as bytes we encode once per route: building an
        # httpx2.Request and Response per call would cost more than the rest of the client.
        self._fast = (
            self._pool
            if isinstance(self._pool, FastTransport) and not self._pool.forwards
            else None
        )
        self._base = config.base_url.rstrip("/")
        headers = {"user-agent": f"trio-litellm/{_VERSION}", "accept": "application/json"}
        headers.update({name.lower(): value for name, value in config.headers.items()})
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        self._headers = {
            False: httpx2.Headers(headers),
            True: httpx2.Headers({**headers, "content-type": "application/json"}),
        }
        self._timeouts: dict[str, float | None] = {
            "connect": config.connect_timeout,
            "read": config.read_timeout,
            "write": config.write_timeout,
            "pool": config.pool_timeout,
        }
        self._probe_headers = httpx2.Headers({"user-agent": f"trio-litellm/{_VERSION}"})
        self._routes: dict[tuple[str, str, bool], _Route] = {}

    def __repr__(self) -> str:
        return f"Transport({self._config.display_url!r})"

    @property
    def config(self) -> ClientConfig:
        """The config of this proxy (``proxy_url`` its URL alone)."""
        return self._config

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._pool.aclose()
        if self._probe_pool is not self._pool:
            await self._probe_pool.aclose()

    def url(self, path: str) -> httpx2.URL:
        """The proxy's URL for ``path`` (which may hold a query)."""
        return httpx2.URL(self._base + path)

    async def liveness(self, path: str, *, timeout: float, keyed: bool = False) -> int:
        """The status a health probe of ``path`` gets, on the probes' own pool; raises ours if
        nothing answers. ``keyed`` sends the API key (the health routes need none)."""
        headers = self._probe_headers
        if keyed and self._secret:
            headers = httpx2.Headers(headers)
            headers["authorization"] = f"Bearer {self._secret}"
        request = httpx2.Request(
            "GET", self.url(path), headers=headers, extensions={"timeout": _timeout_ext(timeout)}
        )
        try:
            # Straight to the transport, as calls are sent: httpx2's client layer would log
            # every probe at INFO, a line every few seconds in an application's log.
            response = await self._probe_pool.handle_async_request(request)
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
        transport = self._pool
        if isinstance(transport, FastTransport):
            return list(transport.connections)
        # httpx2's own transport: its httpcore2 pool is the only place that knows.
        pool = getattr(transport, "_pool", None)
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
        owner: Bounded | None = None,
    ) -> Answer:
        """One attempt at a request whose answer is read whole; an error status raises typed.

        The attempt has ``response_timeout`` seconds in all, when set. ``owner`` (the request's
        state) bounds it by its deadline and may abort it from another task: our pool does both
        without a cancel scope (``_fasthttp.Owner``); under another transport the attempt runs in
        ``owner.interruptible()``."""
        if owner is not None and not self._fast_route(method, path, body, headers):
            with owner.interruptible():
                return await self.request(
                    method, path, body=body, headers=headers, model=model, timeout=timeout
                )
        limit = self._config.response_timeout
        if limit is None:
            return await self._request(method, path, body, headers, model, timeout, owner)
        with trio.move_on_after(limit):
            return await self._request(method, path, body, headers, model, timeout, owner)
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
        owner: Bounded | None = None,
    ) -> Answer:
        start = trio.current_time()
        incoming = await self._send(method, path, body, headers, timeout, model, owner)
        try:
            answer_headers = _header_dict(incoming.headers)
            content = await self._read_body(incoming, answer_headers, model)
        finally:
            await incoming.aclose()
        status = incoming.status
        if status < 200 or status in (204, 304):
            raise self._bodiless(method, path, incoming, "a JSON answer", model)
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
        incoming = await self._send(method, path, body, headers, None, model)
        try:
            answer_headers = _header_dict(incoming.headers)
            status = incoming.status
            if status >= 400:
                content = await self._read_body(incoming, answer_headers, model)
                raise self._answered_error(method, path, status, answer_headers, content, model)
            if status < 200 or status in (204, 304):
                raise self._bodiless(method, path, incoming, "a stream", model)
            yield BodyStream(self, incoming, answer_headers)
        finally:
            if isinstance(incoming, _ViaHttpx2):  # httpx2's close may wait: give it 5 s
                with trio.CancelScope(shield=True, deadline=trio.current_time() + 5):
                    await incoming.aclose()
            else:
                await incoming.aclose()  # our pool's closes at once, never waiting

    async def _read_body(
        self, incoming: Incoming, headers: Mapping[str, str], model: str | None
    ) -> bytes:
        """The whole body, decompressed, up to ``max_response_bytes`` (over it: raises, and the
        caller's ``aclose`` closes the connection)."""
        limit = self._config.max_response_bytes
        parts: list[bytes] = []
        size = 0
        try:
            async for part in _pieces(incoming, headers):
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
        owner: Bounded | None = None,
    ) -> Incoming:
        """Send the request; its answer's head has arrived, its body is still to be read."""
        route = self._route(method, path, body is not None)
        timeouts = self._timeouts if timeout is None else _timeout_ext(timeout)
        try:
            if route.head is not None and not headers:
                assert self._fast is not None
                if body is None:
                    head = route.head + b"\r\n"
                else:
                    head = b"%bContent-Length: %d\r\n\r\n%b" % (route.head, len(body), body)
                return await self._fast.exchange(
                    route.request, route.key, head, b"", False, timeouts, owner
                )
            merged = self._headers[body is not None]
            if headers:
                merged = httpx2.Headers(merged)
                merged.update(headers)
            request = httpx2.Request(
                method, route.url, headers=merged, content=body, extensions={"timeout": timeouts}
            )
            return _ViaHttpx2(await self._pool.handle_async_request(request))
        except httpx2.HTTPError as exc:
            raise self.map_error(exc, model) from exc

    def _fast_route(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str] | None
    ) -> bool:
        """Whether the request goes straight to our pool (not through httpx2's machinery)."""
        return not headers and self._route(method, path, body is not None).head is not None

    def _route(self, method: str, path: str, with_body: bool) -> _Route:
        """The route of ``method path``, cached for a fixed path (a handful of them)."""
        route = self._routes.get((method, path, with_body))
        if route is not None:
            return route
        url = self.url(path)
        request = httpx2.Request(method, url)
        fast = self._fast
        key = fast.key_of(url) if fast is not None else None
        head = None
        if key is not None:
            lines = [
                f"{method} {url.raw_path.decode('ascii')} HTTP/1.1",
                f"Host: {url.netloc.decode('ascii')}",
            ]
            lines += (f"{name}: {value}" for name, value in self._headers[with_body].items())
            head = ("\r\n".join(lines) + "\r\n").encode("utf-8")
        route = _Route(url, request, key, head)
        if "?" not in path:
            self._routes[(method, path, with_body)] = route
        return route

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
                error = self.scrub(ours(f"{text} ({self.display_url}): {detail}", model=model))
                if isinstance(error, ProxyConnectionError) and isinstance(
                    exc, httpx2.ConnectError | httpx2.ConnectTimeout
                ):
                    error.never_sent = True  # the connection never opened
                return error
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
        incoming: Incoming,
        expected: str,
        model: str | None,
    ) -> ResponseDecodeError:
        """The error for an answer whose status has no body (101, 204, 304) where one was due."""
        status = incoming.status
        said = f"{status} {incoming.reason.decode('latin-1')}".strip()
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


class _ViaHttpx2:
    """An answer through an httpx2 transport other than our pool, seen as :class:`Incoming`."""

    __slots__ = ("headers", "reason", "response", "status")

    def __init__(self, response: httpx2.Response) -> None:
        self.response = response
        self.status = response.status_code
        self.headers = response.headers.raw
        self.reason = response.reason_phrase.encode("latin-1", "replace")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.response.stream.__aiter__()  # type: ignore[union-attr]

    async def aclose(self) -> None:
        await self.response.aclose()


def _pieces(incoming: Incoming, headers: Mapping[str, str]) -> AsyncIterator[bytes]:
    """The body as it arrives: as the transport gives it, or decompressed through httpx2's
    decoders when the proxy compressed it (``Content-Encoding``)."""
    if "content-encoding" not in headers:
        return incoming.__aiter__()
    response = (
        incoming.response
        if isinstance(incoming, _ViaHttpx2)
        else httpx2.Response(incoming.status, headers=incoming.headers, stream=_Stream(incoming))
    )
    return response.aiter_bytes()


class _Stream(httpx2.AsyncByteStream):
    def __init__(self, incoming: Incoming) -> None:
        self._incoming = incoming

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self._incoming:
            yield piece

    async def aclose(self) -> None:
        await self._incoming.aclose()


def _header_dict(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The headers as a plain dict with lower-case names, built in one pass.

    httpx2's ``Headers.get`` scans every header on each lookup; LiteLLM sends about forty and we
    read about twenty, so one pass into a dict is several times cheaper.
    """
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}


def _timeout_ext(seconds: float) -> dict[str, float]:
    return {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}
