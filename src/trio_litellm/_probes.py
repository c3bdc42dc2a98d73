"""Health of the proxy: the cheap liveness/readiness probe, and the explicit per-deployment check.

``/health/liveliness`` and ``/health/readiness`` need no key and cost nothing; they say whether
the proxy process is up and ready. ``/health`` makes a real (billed) call to every deployment and
can take many seconds, so it is a separate call, never a probe.

Behind an ingress or API gateway that passes only ``/v1/*``, the health routes get the gateway's
own answer (404, 401, 405...): the server is up, but that says nothing of the proxy. Both the
monitor's probe and :func:`probe_proxy` then ask ``GET /v1/models`` with the key, the cheapest
route such a gateway passes (no model call): any answer means calls get through, while 502, 503
or 504 (the gateway cannot reach the proxy) or no answer means the proxy is down. A 503 from the
health route itself (``{"status":"shutting_down"}``, or a gateway that cannot reach the proxy)
still means down, as do 502 and 504.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

import msgspec
import trio

from ._errors import APIStatusError, LiteLLMError, ProxyCertificateError, ResponseDecodeError
from ._health import ProbeResult
from ._transport import Transport

__all__ = [
    "DeploymentHealth",
    "DeploymentStatus",
    "ProxyHealth",
    "check_deployments",
    "liveness_probe",
    "probe_proxy",
]

LIVENESS = "/health/liveliness"
READINESS = "/health/readiness"
FALLBACK = "/v1/models"
"""Asked when the health routes get something else's answer: keyed, cheap, and under ``/v1``."""

_UNAVAILABLE = frozenset({502, 503, 504})
"""Answers that mean the proxy cannot serve: its own 503, or a gateway's when it cannot reach it."""


class ProxyHealth(msgspec.Struct, frozen=True, kw_only=True):
    """Whether the proxy is up (``live``) and ready to serve (``ready``), and what it said.

    ``status`` is "healthy" only when both hold. ``latency`` is the seconds the probe took;
    ``details`` is the readiness body (``db``, ``cache``, ``litellm_version``...); ``error`` says
    why it is unhealthy. ``via`` is the route that decided: ``/health/readiness``, or
    ``/v1/models`` when the health routes are not reachable (a gateway that passes only
    ``/v1/*``); then ``live`` means the proxy answered and ``ready`` that it served the model list
    to this key, and there are no details.
    """

    status: Literal["healthy", "unhealthy"]
    live: bool
    ready: bool
    latency: float
    version: str | None = None
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    error: str | None = None
    via: str = READINESS

    @property
    def healthy(self) -> bool:
        return self.status == "healthy"


class DeploymentStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment in the proxy's ``/health`` answer."""

    model: str | None = None
    api_base: str | None = None
    model_id: str | None = None
    error: str | None = None
    exception_status: int | None = None


class DeploymentHealth(msgspec.Struct, frozen=True, kw_only=True):
    """The proxy's ``/health`` answer: each deployment checked with a real call."""

    healthy_endpoints: list[DeploymentStatus] = msgspec.field(default_factory=list)
    unhealthy_endpoints: list[DeploymentStatus] = msgspec.field(default_factory=list)
    healthy_count: int = 0
    unhealthy_count: int = 0


_readiness_decoder = msgspec.json.Decoder(dict[str, Any])
_deployments_decoder = msgspec.json.Decoder(DeploymentHealth)


async def liveness_probe(transport: Transport, *, timeout: float) -> ProbeResult:
    """The health monitor's probe: ``/health/liveliness``, or ``/v1/models`` when a gateway
    answers that instead of the proxy (each request bounded by ``timeout``)."""
    try:
        status = await transport.liveness(LIVENESS, timeout=timeout)
    except ProxyCertificateError:
        # The proxy answered but the certificates do not fit: calls fail at once, not wait.
        return ProbeResult(health_route="unknown")
    except LiteLLMError as exc:
        return ProbeResult(failure=str(exc), health_route="unknown")
    if status == 200:
        return ProbeResult()
    if status in _UNAVAILABLE:
        return ProbeResult(failure=f"{LIVENESS} answered {status}")
    detail = f"{LIVENESS} answered {status}, so GET {FALLBACK} decides"
    try:
        status = await transport.liveness(FALLBACK, timeout=timeout, keyed=True)
    except LiteLLMError as exc:
        return ProbeResult(failure=f"GET {FALLBACK}: {exc}", health_route="missing", detail=detail)
    failure = f"GET {FALLBACK} answered {status}" if status in _UNAVAILABLE else None
    return ProbeResult(failure=failure, health_route="missing", detail=detail)


async def probe_proxy(transport: Transport, *, timeout: float) -> ProxyHealth:
    """Ask ``/health/liveliness`` then ``/health/readiness`` (or ``/v1/models`` when a gateway
    answers those instead of the proxy); never raises for an unhealthy proxy."""
    start = trio.current_time()
    live = ready = False
    details: dict[str, Any] = {}
    error: str | None = None
    via = READINESS
    try:
        await transport.request("GET", LIVENESS, timeout=timeout)
        live = True
        answer = await transport.request("GET", READINESS, timeout=timeout)
        details = _readiness_decoder.decode(answer.content)
        ready = details.get("status") in ("healthy", "connected", None)
        if not ready:
            error = f"readiness status is {details.get('status')!r}"
    except APIStatusError as exc:
        if exc.status in _UNAVAILABLE:
            error = str(exc)
        else:
            via = FALLBACK
            live, ready, error = await _calls_get_through(transport, timeout=timeout)
    except LiteLLMError as exc:
        error = str(exc)
    except msgspec.DecodeError as exc:
        error = f"unreadable readiness answer: {exc}"
    version = details.get("litellm_version")
    return ProxyHealth(
        status="healthy" if live and ready else "unhealthy",
        live=live,
        ready=ready,
        latency=trio.current_time() - start,
        version=version if isinstance(version, str) else None,
        details=details,
        error=error,
        via=via,
    )


async def _calls_get_through(
    transport: Transport, *, timeout: float
) -> tuple[bool, bool, str | None]:
    """(live, ready, error) from ``GET /v1/models`` with the key, for a proxy behind a gateway."""
    try:
        await transport.request("GET", FALLBACK, timeout=timeout)
    except APIStatusError as exc:
        return exc.status not in _UNAVAILABLE, False, f"GET {FALLBACK}: {exc}"
    except LiteLLMError as exc:
        return False, False, f"GET {FALLBACK}: {exc}"
    return True, True, None


async def check_deployments(
    transport: Transport, *, model: str | None, timeout: float
) -> DeploymentHealth:
    """Ask ``/health`` (a real call to each deployment, or only ``model``'s)."""
    path = "/health" if model is None else f"/health?model={quote(model, safe='')}"
    answer = await transport.request("GET", path, model=model, timeout=timeout)
    try:
        return _deployments_decoder.decode(answer.content)
    except msgspec.DecodeError as exc:
        raise ResponseDecodeError(f"unreadable /health answer: {exc}", model=model) from exc
