"""The liveness probe and ``client.health()`` against a proxy, or a gateway that hides its health.

The server's side is an in-memory handler: the proxy itself, or an ingress that passes only
``/v1/*`` and answers everything else itself. tests/integration/test_gateway.py runs the same
situations against the real proxy behind a real (small) gateway.
"""

from __future__ import annotations

import httpx2
import pytest
import trio
import trio.testing

from _fakes import COMPLETION, SECRET, open_test_client, transport_for
from trio_litellm._health import ProbeResult
from trio_litellm._probes import liveness_probe, probe_proxy

MODELS = b'{"object":"list","data":[{"id":"m","object":"model","created":0,"owned_by":"x"}]}'
READY = b'{"status":"healthy","db":"Not connected","litellm_version":"1.110.2"}'
GATEWAY_404 = "/health/liveliness answered 404, so GET /v1/models decides"

Answer = int | Exception
"""What the server does for one path: answer with this status, or fail the connection."""


class Server:
    """Answers by path: ``routes`` for the paths it knows, ``other`` for the rest."""

    def __init__(self, routes: dict[str, Answer], *, other: Answer = 404) -> None:
        self.routes = routes
        self.other = other
        self.requests: list[httpx2.Request] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        await trio.lowlevel.checkpoint()
        answer = self.routes.get(request.url.path, self.other)
        if isinstance(answer, Exception):
            raise answer
        body = {
            "/v1/models": MODELS,
            "/v1/chat/completions": COMPLETION,
            "/health/readiness": READY,
            "/health/liveliness": b'"I\'m alive!"',
        }.get(request.url.path, b'{"message":"no Route matched with those values"}')
        if answer == 503 and request.url.path == "/health/liveliness":
            body = b'{"status":"shutting_down"}'
        return httpx2.Response(answer, content=body)

    @property
    def paths(self) -> list[str]:
        return [request.url.path for request in self.requests]


def gateway(models: Answer = 200, *, other: Answer = 404) -> Server:
    """An ingress that passes only /v1/* (with the proxy behind it answering ``models``)."""
    return Server({"/v1/models": models, "/v1/chat/completions": 200}, other=other)


async def probe(server: Server) -> ProbeResult:
    transport = transport_for(server)
    try:
        return await liveness_probe(transport, timeout=5)
    finally:
        await transport.aclose()


REFUSED = httpx2.ConnectError("[Errno 111] Connection refused")

# --- the monitor's probe ------------------------------------------------------------------------


async def test_a_proxy_that_says_it_is_alive_is_up_from_one_request() -> None:
    server = Server({"/health/liveliness": 200})
    assert await probe(server) == ProbeResult(failure=None, health_route="present")
    assert server.paths == ["/health/liveliness"]


@pytest.mark.parametrize("status", [503, 502, 504])
async def test_a_health_route_answering_unavailable_means_down(status: int) -> None:
    server = Server({"/health/liveliness": status})  # 503 {"status":"shutting_down"}: the proxy's
    result = await probe(server)
    assert result == ProbeResult(
        failure=f"/health/liveliness answered {status}", health_route="present"
    )
    assert server.paths == ["/health/liveliness"]


@pytest.mark.parametrize("status", [404, 401, 403, 405, 500])
async def test_any_other_answer_of_the_health_route_asks_v1_models_with_the_key(
    status: int,
) -> None:
    server = gateway(other=status)
    result = await probe(server)
    detail = f"/health/liveliness answered {status}, so GET /v1/models decides"
    assert result == ProbeResult(failure=None, health_route="missing", detail=detail)
    assert server.paths == ["/health/liveliness", "/v1/models"]
    assert "authorization" not in server.requests[0].headers
    assert server.requests[1].headers["authorization"] == f"Bearer {SECRET}"


async def test_behind_a_gateway_any_answer_of_v1_models_means_up() -> None:
    result = await probe(gateway(models=401))  # a refused key: the proxy answered all the same
    assert result.failure is None


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_behind_a_gateway_v1_models_unavailable_means_down(status: int) -> None:
    result = await probe(gateway(models=status))
    assert result == ProbeResult(
        failure=f"GET /v1/models answered {status}", health_route="missing", detail=GATEWAY_404
    )


async def test_behind_a_gateway_no_answer_from_v1_models_means_down() -> None:
    result = await probe(gateway(models=REFUSED))
    assert result.health_route == "missing"
    assert result.failure is not None
    assert result.failure.startswith("GET /v1/models: cannot connect to the proxy")


async def test_no_answer_at_all_is_down_with_the_health_route_unknown() -> None:
    server = Server({}, other=REFUSED)
    result = await probe(server)
    assert result.health_route == "unknown"
    assert result.failure is not None and result.failure.startswith("cannot connect to the proxy")
    assert server.paths == ["/health/liveliness"]


# --- a client behind the gateway ------------------------------------------------------------------


async def test_a_client_behind_a_gateway_keeps_its_gate_open_and_its_calls_going(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = gateway()
    # health_failure_threshold: the default 2
    async with open_test_client(server, health_check_interval=1.0) as client:
        replies = []
        while trio.current_time() < 60:
            reply = await client.complete(
                model="m", messages=[{"role": "user", "content": "hi"}], timeout=5
            )
            replies.append(reply.text)
            await trio.sleep(0.5)
        health = client.statistics().health
    assert replies == ["ok"] * 120
    assert health is not None
    assert (health.state, health.gate_open, health.transitions) == ("up", True, 0)
    assert (health.probes, health.failed_probes, health.health_route) == (60, 0, "missing")


# --- client.health() ------------------------------------------------------------------------------


async def health_of(server: Server) -> tuple[object, ...]:
    transport = transport_for(server)
    try:
        report = await probe_proxy(transport, timeout=5)
    finally:
        await transport.aclose()
    return report.status, report.live, report.ready, report.via, report.error, report.version


async def test_health_of_a_proxy_in_plain_view_comes_from_its_readiness() -> None:
    server = Server({"/health/liveliness": 200, "/health/readiness": 200})
    report = await health_of(server)
    assert report == ("healthy", True, True, "/health/readiness", None, "1.110.2")
    assert server.paths == ["/health/liveliness", "/health/readiness"]


async def test_health_of_a_proxy_shutting_down_is_unhealthy_without_asking_further() -> None:
    server = Server({"/health/liveliness": 503})
    status, live, _, via, error, _ = await health_of(server)
    assert (status, live, via) == ("unhealthy", False, "/health/readiness")
    assert isinstance(error, str) and "503" in error
    assert server.paths == ["/health/liveliness"]


async def test_health_behind_a_gateway_is_healthy_when_v1_models_answers() -> None:
    server = gateway()
    report = await health_of(server)
    assert report == ("healthy", True, True, "/v1/models", None, None)
    assert server.paths == ["/health/liveliness", "/v1/models"]


@pytest.mark.parametrize(
    ("models", "live"), [(502, False), (504, False), (REFUSED, False), (401, True)]
)
async def test_health_behind_a_gateway_is_unhealthy_when_v1_models_fails(
    models: Answer, live: bool
) -> None:
    status, got_live, ready, via, error, _ = await health_of(gateway(models=models))
    assert (status, got_live, ready, via) == ("unhealthy", live, False, "/v1/models")
    assert isinstance(error, str) and error.startswith("GET /v1/models: ")


async def test_health_behind_a_gateway_that_passes_liveliness_only_asks_v1_models() -> None:
    server = Server({"/health/liveliness": 200, "/v1/models": 200}, other=404)
    report = await health_of(server)
    assert report == ("healthy", True, True, "/v1/models", None, None)
