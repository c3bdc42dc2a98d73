"""The proxy's own routes: models, model info, spend, health.

They do not go through the dispatcher (they are not LLM calls: no slot, no throttle, no usage
record), but they retry under the same policy and within the same total timeout as calls. On a
fleet, each attempt asks the proxy the balance picks (the fleet shares one config, so any
proxy's answer is the fleet's); a connection failure leaves that proxy alone as a call's does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import msgspec
import trio

from ._errors import (
    APIStatusError,
    LiteLLMError,
    ModelNotFoundError,
    ProxyConnectionError,
    ResponseDecodeError,
    SpendUnavailableError,
)
from ._fleet import Fleet
from ._observer import PROBE_TIMEOUT
from ._probes import DeploymentHealth, ProxyHealth, check_deployments, probe_proxy
from ._requests import decode
from ._retry import RetryPolicy, deadline
from ._wire import Model, ModelInfo, ModelList, model_infos, model_list_decoder

__all__ = ["ProxyAPI"]

T = TypeVar("T")

_NO_DATABASE = re.compile(
    r"database not connected|no db connected|db not connected|no_db_connection", re.I
)
_spend_decoder = msgspec.json.Decoder(list[dict[str, Any]])


class ProxyAPI:
    """``GET`` routes of the proxy, each read whole and decoded into its typed answer."""

    def __init__(self, fleet: Fleet, policy: RetryPolicy, total_timeout: float | None):
        self._fleet = fleet
        self._policy = policy
        self._total_timeout = total_timeout

    async def _get(self, path: str, read: Callable[[bytes], T]) -> T:
        """``GET path`` through its attempts, within the total timeout; ``read`` its body."""
        retrying = self._policy.start()
        with deadline(self._total_timeout):
            while True:
                retrying.next_attempt()
                proxy = self._fleet.anyone()
                try:
                    answer = await proxy.transport.request("GET", path)
                    return read(answer.content)
                except LiteLLMError as exc:
                    if isinstance(exc, ProxyConnectionError):
                        proxy.failed(exc.message)
                    await retrying.failed(exc, url=proxy.url)
        raise AssertionError("unreachable")  # pragma: no cover (mypy: the deadline may swallow)

    async def list_models(self) -> list[Model]:
        models: ModelList = await self._get(
            "/v1/models", lambda content: decode(model_list_decoder, content, None)
        )
        return models.data

    async def model_infos(self) -> list[ModelInfo]:
        return await self._get("/v1/model/info", _model_infos)

    async def model_info(self, model: str) -> ModelInfo:
        for info in await self.model_infos():
            if info.model_name == model:
                return info
        raise ModelNotFoundError(f"the proxy serves no model named {model!r}", model=model)

    async def spend(self, start_date: date | None, end_date: date | None) -> list[dict[str, Any]]:
        end = end_date or datetime.now(UTC).date()
        start = start_date or end - timedelta(days=30)
        path = f"/global/spend/report?start_date={start.isoformat()}&end_date={end.isoformat()}"
        try:
            answer = await self._fleet.anyone().transport.request(
                "GET", path, timeout=PROBE_TIMEOUT
            )
        except APIStatusError as exc:
            if _NO_DATABASE.search(exc.message):
                raise SpendUnavailableError(
                    f"the proxy has no database, so it keeps no spend: {exc.message}",
                    status=exc.status,
                    type=exc.type,
                    call_id=exc.call_id,
                ) from exc
            raise
        return decode(_spend_decoder, answer.content, None)

    async def health(self, timeout: float) -> ProxyHealth:
        """The proxy's health; on a fleet, every proxy is asked at once and the answer is the
        first healthy one's (in the order given), else the first's, naming each one's error."""
        proxies = self._fleet.proxies
        if len(proxies) == 1:
            return await probe_proxy(proxies[0].transport, timeout=timeout)
        reports: list[ProxyHealth | None] = [None] * len(proxies)

        async def probe(index: int) -> None:
            reports[index] = await probe_proxy(proxies[index].transport, timeout=timeout)

        async with trio.open_nursery() as nursery:
            for index in range(len(proxies)):
                nursery.start_soon(probe, index)
        done = [report for report in reports if report is not None]
        for report in done:
            if report.healthy:
                return report
        errors = "; ".join(
            f"{proxy.url}: {report.error}" for proxy, report in zip(proxies, done, strict=True)
        )
        return msgspec.structs.replace(done[0], error=f"no proxy is healthy ({errors})")

    async def deployment_health(self, model: str | None, timeout: float) -> DeploymentHealth:
        transport = self._fleet.anyone().transport
        return await check_deployments(transport, model=model, timeout=timeout)


def _model_infos(content: bytes) -> list[ModelInfo]:
    try:
        return model_infos(content)
    except msgspec.DecodeError as exc:
        raise ResponseDecodeError(f"unreadable /v1/model/info answer: {exc}") from exc
