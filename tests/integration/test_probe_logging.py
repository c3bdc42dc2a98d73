"""The health monitor's probes are our own housekeeping: an application that logs at INFO must
not get a line from them every few seconds (httpx2's client logs each request it sends at INFO)."""

from __future__ import annotations

import logging

import pytest

from trio_litellm import ClientConfig
from trio_litellm._health import ProbeResult
from trio_litellm._probes import FALLBACK, LIVENESS, liveness_probe
from trio_litellm._transport import Transport
from trio_litellm.testing._devstack import Stack


async def test_health_probes_log_nothing_below_warning(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    transport = Transport(ClientConfig(proxy_url=stack.proxy_url, api_key=stack.api_key))
    try:
        # The monitor's probe, as it runs every few seconds, and its keyed fallback route.
        assert await liveness_probe(transport, timeout=5) == ProbeResult()
        assert await transport.liveness(LIVENESS, timeout=5) == 200
        assert await transport.liveness(FALLBACK, timeout=5, keyed=True) == 200
    finally:
        await transport.aclose()
    quiet = [record for record in caplog.records if record.levelno < logging.WARNING]
    assert [(record.name, record.getMessage()) for record in quiet] == []
