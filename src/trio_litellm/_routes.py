"""How the proxy is reached: the pools a client sends through, the outbound proxy (``proxy=``
or the environment's) and the TLS context, one for calls, streams and probes alike.

Calls go through our own pool (``_fasthttp``) unless an outbound proxy needs a CONNECT tunnel or
``http_backend="httpcore"`` asks for httpx2's; the health probes get a small pool of their own, so
they never queue behind busy traffic.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import ssl

import httpx2
from httpx2._utils import URLPattern, get_environment_proxies

from ._config import ClientConfig
from ._errors import ConfigError
from ._fasthttp import FastTransport

__all__ = ["open_pools", "tls_context"]

logger = logging.getLogger("trio_litellm")


def open_pools(
    config: ClientConfig, given: httpx2.AsyncBaseTransport | None
) -> tuple[httpx2.AsyncBaseTransport, httpx2.AsyncBaseTransport]:
    """The transport for calls and streams, and the one for health probes (``given``, a
    test's in-memory transport, serves both)."""
    if given is not None:
        return given, given
    # One route to the proxy for the calls, the streams and the health probe: the same outbound
    # proxy (or none) and the same TLS context, each with a pool of its own.
    proxy = _outbound_proxy(config)
    tls = _tls_context(config, proxy)
    probes = _httpx2_transport(
        tls, proxy, httpx2.Limits(max_connections=2, keepalive_expiry=config.keepalive_expiry)
    )
    if config.http_backend == "fast" and (
        proxy is None or (proxy.url.scheme == "http" and config.base_url[:5] == "http:")
    ):
        calls: httpx2.AsyncBaseTransport = FastTransport(
            max_connections=config.max_connections,
            max_keepalive_connections=config.max_keepalive_connections,
            keepalive_expiry=config.keepalive_expiry,
            ssl_context=tls,
            proxy=proxy,
        )
        return calls, probes
    if config.http_backend == "fast":
        logger.debug(
            "%s is reached through the proxy %s, which our pool does not tunnel through: "
            "httpx2's own transport carries the requests",
            config.display_url,
            proxy,
        )
    limits = httpx2.Limits(
        max_connections=config.max_connections,
        max_keepalive_connections=config.max_keepalive_connections,
        keepalive_expiry=config.keepalive_expiry,
    )
    return _httpx2_transport(tls, proxy, limits), probes


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


def tls_context(config: ClientConfig) -> ssl.SSLContext:
    """The TLS context of a connection straight to the proxy (a realtime websocket's)."""
    return _tls_context(config, None)


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
