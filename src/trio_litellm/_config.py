"""The client's configuration: one frozen value, validated when made, every default documented.

Unset values come from the environment (``LITELLM_PROXY_URL``, ``LITELLM_API_KEY``), then from the
defaults below. A bad value raises :class:`ConfigError` naming the field. The API key never
appears in ``repr``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from ._errors import ConfigError

__all__ = ["DEFAULT_PROXY_URL", "ClientConfig", "ModelLimits", "resolve_config"]

DEFAULT_PROXY_URL = "http://localhost:4000"


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ModelLimits:
    """Limits of one model's requests, on top of the client's own: any subset of the three.

    A request counts against both the client's ``rpm`` / ``tpm`` / ``max_in_flight`` and its
    model's; a model waiting on its own limit does not hold up other models' requests.
    """

    rpm: int | None = None
    """Requests per minute of this model; never more start in any 60 s window, paced across it as
    the client's ``rpm`` is. None: no limit."""

    tpm: int | None = None
    """Tokens per minute of this model (estimated, then reconciled with usage), paced like
    ``rpm``. None: no limit."""

    max_in_flight: int | None = None
    """Requests of this model running at once; more wait without taking one of the client's
    ``max_in_flight`` slots. None: no limit."""

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "max_in_flight"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ClientConfig:
    """How to reach the proxy and how patient to be with it."""

    proxy_url: str | Sequence[str] | None = None
    """Base URL of the LiteLLM proxy; default ``$LITELLM_PROXY_URL``, else ``http://localhost:4000``.
    A trailing ``/v1`` is dropped: the client adds it where the route has it.

    Several proxies sharing one Redis (a fleet): a list of URLs, or one string of them separated
    by commas (``$LITELLM_PROXY_URL`` too). The client spreads its requests over them (see
    ``proxy_urls``); once made, the config holds them as one comma-separated string."""

    api_key: str | None = dataclasses.field(default=None, repr=False)
    """Virtual key or master key sent as ``Authorization: Bearer``; default ``$LITELLM_API_KEY``."""

    connect_timeout: float = 5.0
    """Seconds to open a TCP (and TLS) connection to the proxy."""

    read_timeout: float = 600.0
    """Seconds to wait for any bytes of an answer, per read (as in httpx). A non-stream completion
    sends nothing until the model has finished, so this bounds generation time, like the openai
    SDK's 600 s; a server trickling bytes resets it with each, see ``response_timeout``."""

    response_timeout: float | None = None
    """Seconds for one attempt at a non-stream call, from sending to the answer's last byte
    (retried like any timeout); None bounds it only by ``total_timeout``."""

    write_timeout: float = 30.0
    """Seconds to send a request body."""

    pool_timeout: float | None = None
    """Seconds to wait for a free pooled connection; None waits (bounded by ``total_timeout``)."""

    total_timeout: float | None = 900.0
    """Seconds for a whole call, every retry and its backoff included (a stream: from the call to
    its last chunk); None for no limit."""

    unavailable_timeout: float = 30.0
    """Seconds a request may wait, in all, for a proxy that was reached before and is down now
    (the health gate holds requests while it restarts: LiteLLM takes 10-20 s); then it raises
    :class:`ProxyConnectionError` naming the URL, the last connection error as its cause. A
    proxy never reached since the client opened is not waited for: its requests fail after
    their retries."""

    first_token_timeout: float | None = None
    """Streams: seconds from sending the request to the first chunk, per attempt; None uses
    ``read_timeout``."""

    stream_idle_timeout: float | None = 120.0
    """Streams: seconds allowed between two chunks once the stream has started; None for none.
    Chunks count, not bytes: keep-alive comments and other events without a chunk do not."""

    max_response_bytes: int = 256 * 1024 * 1024
    """Bytes a non-stream answer's body may take (after decompression); a longer one raises
    :class:`ResponseTooLargeError` and its connection is closed."""

    max_event_bytes: int = 16 * 1024 * 1024
    """Streams: bytes one server-sent event may take; a longer one raises
    :class:`ResponseTooLargeError` (a :class:`StreamInterruptedError` after content)."""

    max_retries: int = 2
    """Retries after the first attempt, for connection errors, timeouts, 408, 409, 429 (not a
    spent budget) and 5xx. 0 disables retries."""

    backoff_initial: float = 0.5
    """Seconds before the first retry when the proxy did not say how long to wait; doubles after."""

    backoff_max: float = 8.0
    """Longest backoff between two retries (a ``Retry-After`` from the proxy may be longer)."""

    backoff_jitter: float = 0.5
    """Up to this many random seconds added to each backoff, so clients do not retry in step."""

    max_retry_after: float = 120.0
    """Longest ``Retry-After`` honoured; a 429 asking for more is raised at once, not retried."""

    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Extra headers sent with every request (e.g. ``x-litellm-tags``)."""

    max_connections: int = 100
    """Most connections open to the proxy at once; more requests wait for one."""

    max_keepalive_connections: int | None = None
    """Most idle connections kept for reuse; None keeps up to ``max_connections``."""

    keepalive_expiry: float = 4.0
    """Seconds an idle connection is kept. Below uvicorn's 5 s, so the proxy never closes a
    connection at the moment we reuse it."""

    rpm: int | None = None
    """Requests per minute this client may start; None for no limit of its own. Never more than
    this many start in any 60 s window, and they are paced across it: ``rpm / 60`` a second, with
    a burst of one second's share (at least one request), not ``rpm`` at once."""

    tpm: int | None = None
    """Tokens per minute (prompt estimate plus ``max_tokens``, reconciled with real usage); paced
    like ``rpm``, at ``tpm / 60`` tokens a second."""

    max_in_flight: int | None = None
    """Requests running at once; None means ``max_connections``. More wait their turn."""

    model_limits: Mapping[str, ModelLimits] = dataclasses.field(default_factory=dict)
    """Per-model ``rpm`` / ``tpm`` / ``max_in_flight``, by model name as requests give it (a
    :class:`ModelLimits`, or a mapping of its fields). Counted on top of the client's limits."""

    health_check_interval: float | None = 5.0
    """Seconds between liveness probes while the proxy is up; None turns the monitor off."""

    health_down_interval: float = 0.5
    """Seconds between probes while the proxy is down, to notice its return quickly."""

    health_failure_threshold: int = 2
    """Consecutive failed probes that mark the proxy down (one is enough after a request
    failed to connect)."""

    http_backend: Literal["fast", "httpcore"] = "fast"
    """The connection pool under httpx2: "fast" is ours (HTTP/1.1 on trio with the httptools C
    parser, one send per request, about a third of the CPU per request); "httpcore" is
    httpx2's own (also HTTP/1.1 here)."""

    # --- TLS and outbound HTTP proxies: the calls, the streams and the health probe alike ---

    verify: bool | str = True
    """Check the proxy's TLS certificate: True against the system's CAs (or ``$SSL_CERT_FILE`` /
    ``$SSL_CERT_DIR`` when ``trust_env``), a path to a CA bundle file or directory, or False
    (no check at all)."""

    ssl_context: ssl.SSLContext | None = None
    """A ready TLS context, used as given instead of ``verify`` and ``cert``."""

    cert: str | tuple[str, str] | tuple[str, str, str] | None = None
    """A client certificate for a proxy that asks for one: a PEM file holding certificate and
    key, or ``(certfile, keyfile)`` or ``(certfile, keyfile, password)``."""

    proxy: str | None = None
    """An outbound HTTP proxy for every request (``http://[user:password@]host:port``; also
    ``https://``, ``socks5://``), instead of the environment's."""

    trust_env: bool = True
    """Honour ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY`` (a loopback proxy URL
    is always reached directly), ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``."""

    price_lookup: bool = True
    """Cost requests the proxy did not price (no ``x-litellm-response-cost``, no ``usage.cost``)
    from the per-token prices in ``/v1/model/info``: one background call when first needed,
    repeated at most once a minute while a model has no price."""

    record_last: int = 0
    """Keep the last this many requests with their bodies and answers in ``client.recorder``
    (a :class:`DebugRecorder`) for debugging; 0 (the default) records nothing and costs nothing."""

    record_body_limit: int = 4096
    """Bytes kept of each recorded request and response body; the rest is cut off (and counted)."""

    def __post_init__(self) -> None:
        url = self.proxy_url
        if url is None or url == "":
            url = os.environ.get("LITELLM_PROXY_URL") or DEFAULT_PROXY_URL
        object.__setattr__(self, "proxy_url", ",".join(_check_urls(url)))
        key = (
            self.api_key if self.api_key is not None else os.environ.get("LITELLM_API_KEY") or None
        )
        if key is not None:
            if not isinstance(key, str):
                raise ConfigError("api_key", f"must be a string, not {type(key).__name__}")
            if not key or any(c.isspace() or not c.isprintable() for c in key):
                raise ConfigError(
                    "api_key", "must be non-empty, without spaces or control characters"
                )
        object.__setattr__(self, "api_key", key)
        for name in (
            "connect_timeout",
            "read_timeout",
            "write_timeout",
            "keepalive_expiry",
            "unavailable_timeout",
        ):
            _check_positive(name, getattr(self, name))
        for name in (
            "pool_timeout",
            "total_timeout",
            "first_token_timeout",
            "stream_idle_timeout",
            "response_timeout",
        ):
            if getattr(self, name) is not None:
                _check_positive(name, getattr(self, name))
        for name in ("backoff_initial", "backoff_max", "backoff_jitter", "max_retry_after"):
            _check_number(name, getattr(self, name), minimum=0.0)
        if self.backoff_max < self.backoff_initial:
            raise ConfigError("backoff_max", "must not be less than backoff_initial")
        _check_int("max_retries", self.max_retries, minimum=0)
        _check_int("max_response_bytes", self.max_response_bytes, minimum=1)
        _check_int("max_event_bytes", self.max_event_bytes, minimum=1)
        _check_int("max_connections", self.max_connections, minimum=1)
        if self.max_keepalive_connections is not None:
            _check_int("max_keepalive_connections", self.max_keepalive_connections, minimum=0)
        for name in ("rpm", "tpm", "max_in_flight"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        object.__setattr__(self, "model_limits", _check_model_limits(self.model_limits))
        if self.health_check_interval is not None:
            _check_positive("health_check_interval", self.health_check_interval)
        _check_positive("health_down_interval", self.health_down_interval)
        _check_int("health_failure_threshold", self.health_failure_threshold, minimum=1)
        if self.http_backend not in ("fast", "httpcore"):
            raise ConfigError(
                "http_backend", f'must be "fast" or "httpcore", got {self.http_backend!r}'
            )
        _check_tls(self.verify, self.ssl_context, self.cert)
        if not isinstance(self.trust_env, bool):
            raise ConfigError("trust_env", f"must be a bool, not {type(self.trust_env).__name__}")
        if self.proxy is not None:
            _check_url(self.proxy, field="proxy", schemes=("http", "https", "socks5", "socks5h"))
        _check_int("record_last", self.record_last, minimum=0)
        _check_int("record_body_limit", self.record_body_limit, minimum=0)
        _check_headers(self.headers)
        object.__setattr__(self, "headers", dict(self.headers))

    def __repr__(self) -> str:
        masked = {
            "proxy_url": self.display_url,
            "proxy": None if self.proxy is None else _without_credentials(self.proxy),
            "cert": self.cert[:2] if isinstance(self.cert, tuple) else self.cert,  # no password
        }
        shown = ", ".join(
            f"{f.name}={masked.get(f.name, getattr(self, f.name))!r}"
            for f in dataclasses.fields(self)
            if f.repr
        )
        key = "None" if self.api_key is None else "'***'"
        return f"ClientConfig({shown}, api_key={key})"

    @property
    def in_flight_limit(self) -> int:
        """``max_in_flight``, or ``max_connections`` when unset."""
        return self.max_in_flight if self.max_in_flight is not None else self.max_connections

    @property
    def display_url(self) -> str:
        """The proxy URL without any ``user:password@``, for reprs and messages (the URLs,
        separated by ", ", for a fleet)."""
        return ", ".join(_without_credentials(url) for url in self.proxy_urls)

    @property
    def base_url(self) -> str:
        """The (first) proxy URL, validated: never None once the config is made."""
        return self.proxy_urls[0]

    @property
    def proxy_urls(self) -> tuple[str, ...]:
        """Every proxy's URL, validated, in the order given: one for a single proxy."""
        assert isinstance(self.proxy_url, str)
        return tuple(self.proxy_url.split(","))

    def for_proxy(self, url: str) -> ClientConfig:
        """This config for one proxy of the fleet: ``proxy_url`` that one alone."""
        return dataclasses.replace(self, proxy_url=url)


def resolve_config(
    config: ClientConfig | None = None, options: Mapping[str, Any] | None = None
) -> ClientConfig:
    """A config from an optional base and keyword options; unknown options raise ConfigError."""
    options = dict(options or {})
    known = {f.name for f in dataclasses.fields(ClientConfig)}
    for name in options:
        if name not in known:
            raise ConfigError(name, f"unknown option (known: {', '.join(sorted(known))})")
    if config is None:
        return ClientConfig(**options)
    if not isinstance(config, ClientConfig):
        raise ConfigError("config", f"must be a ClientConfig, not {type(config).__name__}")
    return dataclasses.replace(config, **options) if options else config


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _check_urls(urls: Any) -> list[str]:
    """The proxy URLs of ``proxy_url`` (a URL, several separated by commas, or a sequence of
    them), each checked; at least one, none twice."""
    if isinstance(urls, str):
        urls = urls.split(",")
    elif not isinstance(urls, Sequence) or isinstance(urls, bytes):
        raise ConfigError(
            "proxy_url", f"must be a URL or a list of URLs, not {type(urls).__name__}"
        )
    checked = [_check_url(url.strip() if isinstance(url, str) else url) for url in urls]
    if not checked:
        raise ConfigError("proxy_url", "must hold at least one URL")
    seen: set[str] = set()
    for url in checked:
        if url in seen:
            raise ConfigError("proxy_url", f"lists {_without_credentials(url)!r} twice")
        seen.add(url)
    return checked


def _check_url(
    url: Any, *, field: str = "proxy_url", schemes: tuple[str, ...] = ("http", "https")
) -> str:
    if not isinstance(url, str):
        raise ConfigError(field, f"must be a string, not {type(url).__name__}")
    parts = urlsplit(url.strip())
    shown = _without_credentials(url)
    if parts.scheme not in schemes:
        allowed = " or ".join(f"{scheme}://" for scheme in schemes)
        raise ConfigError(field, f"must start with {allowed}, got {shown!r}")
    if not parts.hostname:
        raise ConfigError(field, f"has no host: {shown!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(field, f"has a bad port: {shown!r}") from exc
    if parts.query or parts.fragment:
        raise ConfigError(field, f"must not have a query or fragment: {shown!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return f"{parts.scheme}://{parts.netloc}{path}"


def _check_number(name: str, value: Any, *, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(name, f"must be a number, not {type(value).__name__}")
    if math.isnan(value) or math.isinf(value) or value < minimum:
        raise ConfigError(name, f"must be a finite number >= {minimum}, got {value!r}")


def _check_positive(name: str, value: Any) -> None:
    _check_number(name, value, minimum=0.0)
    if value <= 0:
        raise ConfigError(name, f"must be > 0, got {value!r}")


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"must be an integer, not {type(value).__name__}")
    if value < minimum:
        raise ConfigError(name, f"must be >= {minimum}, got {value!r}")


def _check_model_limits(limits: Any) -> dict[str, ModelLimits]:
    if not isinstance(limits, Mapping):
        raise ConfigError(
            "model_limits",
            f"must be a mapping of model to ModelLimits, not {type(limits).__name__}",
        )
    checked: dict[str, ModelLimits] = {}
    for model, value in limits.items():
        if not isinstance(model, str) or not model:
            raise ConfigError("model_limits", f"a model name must be a non-empty string: {model!r}")
        if isinstance(value, Mapping):
            unknown = set(value) - {f.name for f in dataclasses.fields(ModelLimits)}
            if unknown:
                raise ConfigError(
                    "model_limits",
                    f"{model!r}: unknown limit {sorted(map(str, unknown))[0]!r} "
                    "(known: max_in_flight, rpm, tpm)",
                )
            value = ModelLimits(**value)
        elif not isinstance(value, ModelLimits):
            raise ConfigError(
                "model_limits", f"{model!r}: must be a ModelLimits, not {type(value).__name__}"
            )
        checked[model] = value
    return checked


def _check_headers(headers: Any) -> None:
    if not isinstance(headers, Mapping):
        raise ConfigError(
            "headers", f"must be a mapping of str to str, not {type(headers).__name__}"
        )
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError("headers", f"names and values must be strings: {key!r}")
        if any(c in "\r\n" for c in key + value):
            raise ConfigError("headers", f"header {key!r} contains a line break")


def _check_tls(verify: Any, context: Any, cert: Any) -> None:
    """Types, and that the CA bundle and the client certificate load (into a bare context)."""
    if context is not None:
        if not isinstance(context, ssl.SSLContext):
            raise ConfigError(
                "ssl_context", f"must be an ssl.SSLContext, not {type(context).__name__}"
            )
        if verify is not True or cert is not None:
            raise ConfigError("ssl_context", "replaces verify and cert: give one or the other")
    if not isinstance(verify, bool):
        if not isinstance(verify, str | os.PathLike):
            raise ConfigError("verify", f"must be a bool or a path, not {type(verify).__name__}")
        path = os.fspath(verify)
        if not os.path.exists(path):
            raise ConfigError("verify", f"no such CA file or directory: {path!r}")
        try:
            probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if os.path.isdir(path):
                probe.load_verify_locations(capath=path)
            else:
                probe.load_verify_locations(cafile=path)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError("verify", f"cannot load CA bundle {path!r}: {exc}") from exc
    if cert is None:
        return
    parts = (cert,) if isinstance(cert, str | os.PathLike) else cert
    if (
        not isinstance(parts, tuple)
        or not 1 <= len(parts) <= 3
        or not all(isinstance(part, str | os.PathLike) for part in parts)
    ):
        raise ConfigError(
            "cert", "must be a path or (certfile, keyfile) or (certfile, keyfile, password)"
        )
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(*parts)
    except (OSError, ValueError) as exc:
        raise ConfigError("cert", f"cannot load the client certificate: {exc}") from exc
