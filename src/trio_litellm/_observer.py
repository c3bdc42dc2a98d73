"""What becomes of every finished request: its :class:`RequestRecord` in the usage ledger, the
log, the event bus and, when ``record_last`` is set, the debug recorder.

Costs come from the proxy's header, else the usage's ``cost``, else the model's per-token prices
from ``/v1/model/info``, fetched in the background when first needed and again at most once a
minute while some model has no price.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import msgspec
import trio

from ._calls import Request
from ._errors import LiteLLMError
from ._events import EventBus, RequestFinished
from ._fleet import Fleet
from ._ledger import UsageLedger
from ._recorder import DebugRecorder
from ._usage import RequestRecord, cost_of
from ._wire import model_infos

__all__ = ["PROBE_TIMEOUT", "Observer"]

logger = logging.getLogger("trio_litellm")

PROBE_TIMEOUT = 10.0
"""Seconds the proxy's own routes (prices, spend, health) get by default."""


_KINDS: dict[str, Literal["chat", "embedding", "realtime"]] = {
    "embedding": "embedding",
    "realtime": "realtime",
}


class Observer:
    """Turns every finished request into a :class:`RequestRecord` (the dispatcher calls
    :meth:`finished` as each request leaves its slot)."""

    PRICE_RETRY = 60.0

    def __init__(
        self,
        fleet: Fleet,
        events: EventBus,
        *,
        price_lookup: bool,
        recorder: DebugRecorder | None = None,
    ) -> None:
        self._fleet = fleet
        self._events = events
        self._price_lookup = price_lookup
        self.ledger = UsageLedger()
        self.recorder = recorder
        self.nursery: trio.Nursery | None = None
        self._prices: dict[str, tuple[float | None, float | None]] = {}
        self._price_attempt = -math.inf
        self._fetching = False

    def finished(self, request: Request, error: BaseException | None) -> None:
        """Record ``request``, which ended with ``error`` (None: it succeeded)."""
        meta, usage = request.meta, request.usage
        prompt = usage.prompt_tokens if usage is not None else None
        completion = usage.completion_tokens if usage is not None else None
        prices = self._price_of(request.model) if usage is not None else None
        cost, source = cost_of(
            meta.response_cost if meta is not None else None,
            usage.cost if usage is not None else None,
            prompt,
            completion,
            prices,
        )
        first = request.first_content_at
        failure = error if isinstance(error, LiteLLMError) else None
        record = RequestRecord(
            kind=_KINDS.get(request.kind, "chat"),
            model=request.model,
            served_model=meta.model_group if meta is not None else None,
            deployment_id=meta.model_id if meta is not None else None,
            call_id=(meta.call_id if meta is not None else None)
            or (failure.call_id if failure is not None else None),
            started_at=request.started_wall,
            latency=trio.current_time() - request.started_at,
            ttft=first - request.started_at if first is not None else None,
            stream=request.stream,
            attempts=request.attempts,
            outcome="ok" if error is None else type(error).__name__,
            status=meta.status
            if meta is not None
            else (failure.status if failure is not None else None),
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=cost,
            cost_source=source,
            overhead_ms=meta.overhead_duration_ms if meta is not None else None,
        )
        self.ledger.add(record)
        if self._events.active:
            self._events.emit(RequestFinished(at=trio.current_time(), record=record))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s model=%s served=%s call_id=%s outcome=%s status=%s attempts=%d "
                "latency=%.3fs tokens=%s/%s cost=%s",
                record.kind,
                "stream" if record.stream else "call",
                record.model,
                record.served_model,
                record.call_id,
                record.outcome,
                record.status,
                record.attempts,
                record.latency,
                record.prompt_tokens,
                record.completion_tokens,
                record.cost,
            )
        if request.trace is not None and self.recorder is not None:
            self.recorder.add(record, request.trace, error)

    def _price_of(self, model: str) -> tuple[float | None, float | None] | None:
        prices = self._prices.get(model)
        if prices is not None or not self._price_lookup or self._fetching or not self.nursery:
            return prices
        if trio.current_time() - self._price_attempt >= self.PRICE_RETRY:
            self._fetching = True
            self.nursery.start_soon(self._fetch_prices)
        return prices

    async def _fetch_prices(self) -> None:
        self._price_attempt = trio.current_time()
        try:
            transport = self._fleet.anyone().transport
            answer = await transport.request("GET", "/v1/model/info", timeout=PROBE_TIMEOUT)
            for info in model_infos(answer.content):
                if self._prices.get(info.model_name, (None, None)) == (None, None):
                    self._prices[info.model_name] = (
                        info.input_cost_per_token,
                        info.output_cost_per_token,
                    )
        except (LiteLLMError, msgspec.DecodeError) as exc:
            logger.debug("model prices unavailable: %s", exc)
        finally:
            self._fetching = False
