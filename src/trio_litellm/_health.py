"""Health of the proxy: the cheap liveness/readiness probe, and the explicit per-deployment check.

``/health/liveliness`` and ``/health/readiness`` need no key and cost nothing; they say whether
the proxy process is up and ready. ``/health`` makes a real (billed) call to every deployment and
can take many seconds, so it is a separate call, never a probe.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

import msgspec
import trio

from ._errors import LiteLLMError, ResponseDecodeError
from ._transport import Transport

__all__ = [
    "DeploymentHealth",
    "DeploymentStatus",
    "ProxyHealth",
    "check_deployments",
    "probe_proxy",
]


class ProxyHealth(msgspec.Struct, frozen=True, kw_only=True):
    """Whether the proxy is up (``live``) and ready to serve (``ready``), and what it said.

    ``status`` is "healthy" only when both hold. ``latency`` is the seconds the probe took;
    ``details`` is the readiness body (``db``, ``cache``, ``litellm_version``...); ``error`` says
    why it is unhealthy.
    """

    status: Literal["healthy", "unhealthy"]
    live: bool
    ready: bool
    latency: float
    version: str | None = None
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    error: str | None = None

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


async def probe_proxy(transport: Transport, *, timeout: float) -> ProxyHealth:
    """Ask ``/health/liveliness`` then ``/health/readiness``; never raises for an unhealthy proxy."""
    start = trio.current_time()
    live = ready = False
    details: dict[str, Any] = {}
    error: str | None = None
    try:
        await transport.request("GET", "/health/liveliness", timeout=timeout)
        live = True
        answer = await transport.request("GET", "/health/readiness", timeout=timeout)
        details = _readiness_decoder.decode(answer.content)
        ready = details.get("status") in ("healthy", "connected", None)
        if not ready:
            error = f"readiness status is {details.get('status')!r}"
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
    )


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
