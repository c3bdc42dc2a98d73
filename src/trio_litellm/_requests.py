"""The request path: one coroutine per request, from a prepared call to its typed answer.

A method call reads, top to bottom::

    async with dispatcher.slot(request):        # in-flight limit, total deadline, record
        await path.send(call, request)
            for each attempt (the retry policy, _retry):
                await path.admit(request)       # a proxy (_fleet), the throttle
                answer = await transport.request(...)
                reply = decode(answer)          # a typed ChatCompletion / EmbeddingResponse
            (a failure: path.failed(...) tells the throttle or the monitor, then the policy
             raises it or waits for the next attempt)

A job runs the same :meth:`RequestPath.send` in a task of the dispatcher; a stream runs the same
steps (:meth:`admit`, :meth:`failed`, :meth:`answered`) in its reader task (``_reader``), since
what it reads between them differs.

Each attempt goes to the proxy the fleet picks (``_fleet``: one proxy, or the less busy of two
available ones); it waits only while every proxy's gate is closed. A proxy that failed on the
connection or answered 502/503/504 is left alone until its monitor sees it up, and the request
tries another at once: free of charge when it was never sent (the connection did not open), as
a retry when its fate is unknown.

What comes back from the proxy feeds the actors on the way: a 429 pauses the throttle for its
model group, or for everyone when the limit is the key's or the proxy's own; a connection failure
(or a 502/503/504) asks the health monitor for a probe, which may close the gate; the answer's
rate-limit headers and token usage go back to the throttle. Two rules of waiting at the gate: a
connection failure the monitor then confirms as an outage does not use up ``max_retries`` (the
retry waits at the gate until the proxy is back, ``unavailable_timeout`` at most in all), while
one it does not confirm does; and a proxy never reached since the client opened is not waited
for at all (a wrong URL, far more often than a restart), so its requests fail after their
retries, in seconds.
"""

from __future__ import annotations

import math
from typing import TypeVar

import msgspec
import trio

from ._calls import Call, Request
from ._classify import error_from_body
from ._errors import (
    APIStatusError,
    BudgetExceededError,
    LiteLLMError,
    ProxyConnectionError,
    RateLimitError,
    ResponseDecodeError,
    ServiceUnavailableError,
)
from ._events import EventBus, FirstToken, RequestSent, ThrottlePaused
from ._fleet import Fleet, Proxy
from ._limit_scope import rate_limit_model
from ._meta import meta_from_headers
from ._retry import Retrying, RetryPolicy
from ._throttle import Permit, Throttle
from ._transport import Answer
from ._wire import (
    ChatCompletion,
    EmbeddingResponse,
    completion_decoder,
    embedding_decoder,
)

__all__ = ["RequestPath", "decode"]

T = TypeVar("T")


class RequestPath:
    """Sends requests through their attempts: proxy and throttle, transport, decode, retry."""

    def __init__(
        self,
        fleet: Fleet,
        throttle: Throttle,
        policy: RetryPolicy,
        events: EventBus,
        *,
        unavailable_timeout: float = math.inf,
    ) -> None:
        self.fleet = fleet
        self.policy = policy
        self._throttle = throttle
        self._events = events
        self._unavailable_timeout = unavailable_timeout
        self._last_connection_error: ProxyConnectionError | None = None

    async def send(self, call: Call, request: Request) -> ChatCompletion | EmbeddingResponse:
        """Send a call answered in one JSON body through its attempts; its decoded answer."""
        retrying = self.retrying(request)
        while True:
            number = retrying.next_attempt()
            request.attempts = number
            try:
                permit = await self.admit(request, retrying)
                answer = await self._attempt(call, request, number)
                reply = _reply(call, answer, number)
            except LiteLLMError as exc:
                interruption = request.interruption()  # the client closed, or time is up
                if interruption is exc:  # an interruptible wait of this attempt said so
                    raise
                if interruption is not None:
                    raise interruption from exc
                with request.interruptible():
                    await self.failed(request, retrying, exc)
                continue
            request.meta, request.usage = reply.meta, reply.usage
            await self.answered(request, permit)
            return reply

    async def _attempt(self, call: Call, request: Request, number: int) -> Answer:
        """One attempt on the wire, to the proxy :meth:`admit` chose, bounded by the request's
        deadline; the debug recorder's trace sees whatever came back."""
        proxy = request.proxy
        assert proxy is not None  # admit() chose it
        trace = request.trace
        proxy.in_flight += 1
        try:
            answer = await proxy.transport.request(
                "POST",
                call.path,
                body=call.body,
                headers=call.headers,
                model=call.model,
                owner=request,
            )
        except LiteLLMError as exc:
            if trace is not None and exc.response_body is not None and exc.status is not None:
                trace.answered(
                    number, exc.status, exc.response_headers or {}, exc.response_body.encode()
                )
            raise
        finally:
            proxy.in_flight -= 1
        if trace is not None:
            trace.answered(number, answer.status, answer.headers, answer.content)
        return answer

    # --- the steps of an attempt, shared with the stream reader ---------------------------------

    def retrying(self, request: Request) -> Retrying:
        """The retries of ``request``, under the client's policy."""
        return self.policy.start(max_retries=request.max_retries, model=request.model)

    async def admit(self, request: Request, retrying: Retrying) -> Permit:
        """Choose the attempt's proxy (``request.proxy``), waiting while every proxy is down;
        then wait for the throttle; announce the attempt."""
        previous, request.proxy = request.proxy, None  # a retry goes elsewhere if it can
        fleet = self.fleet
        proxy = fleet.choose(previous)
        if proxy is None:
            with request.interruptible():
                proxy = await self._wait_for_proxy(request, retrying)
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        permit = self._throttle.try_acquire(request.tokens, request.model)
        if permit is None:
            with request.interruptible():
                permit = await self._throttle.acquire(request.tokens, request.model)
        if fleet.single is None:
            # Chosen again as things are now, after any wait, and with no checkpoint before the
            # attempt counts itself in flight there: concurrent choices see each other.
            proxy = fleet.choose(previous) or proxy
        request.proxy = proxy
        events = self._events
        if events.active:
            events.emit(
                RequestSent(
                    at=trio.current_time(),
                    kind=request.kind,
                    model=request.model,
                    attempt=request.attempts,
                )
            )
        return permit

    async def failed(self, request: Request, retrying: Retrying, exc: LiteLLMError) -> None:
        """An attempt failed: tell the throttle, the proxy's record and its monitor what it
        shows, then raise ``exc`` unless the policy retries it: at once on another proxy when
        the failure was the proxy's and another is available, else after waiting."""
        request.last_error = exc
        proxy = request.proxy
        if proxy is None:  # failed before it had a proxy: waiting for one, or the throttle
            await retrying.failed(exc)
            return
        proxy_failed = leave_alone = False
        if isinstance(exc, RateLimitError):
            proxy.reached = True
            proxy.answered += 1
            if not isinstance(exc, BudgetExceededError):
                # A model group's limit lives in the fleet's Redis: it pauses that model for
                # the whole client, whichever proxy said it.
                await self._throttle.rate_limited(
                    exc.retry_after, model=rate_limit_model(exc.message, request.model)
                )
                if self._events.active:
                    self._events.emit(
                        ThrottlePaused(
                            at=trio.current_time(), seconds=exc.retry_after, model=request.model
                        )
                    )
        elif isinstance(exc, ProxyConnectionError):
            self._last_connection_error = exc
            proxy_failed = leave_alone = True
        elif isinstance(exc, ServiceUnavailableError):
            # A gateway in front of the proxy answers 502/503/504 when the proxy behind it is
            # gone: ask the monitor for a probe now (it decides). A 503 the proxy answered
            # itself (LiteLLM's x-litellm-call-id on it) is its upstream's: the proxy is not
            # left alone for it, but the retry still goes to another proxy first.
            proxy.reached = True
            proxy.answered += 1
            proxy_failed = True
            leave_alone = exc.call_id is None
        elif isinstance(exc, APIStatusError):
            proxy.reached = True
            proxy.answered += 1
        if proxy_failed:
            proxy.failed(exc.message, leave_alone=leave_alone)
            if proxy.monitor is not None:
                await proxy.monitor.report_connection_failure(exc.message)
            if self.fleet.any_available_besides(proxy):
                never_sent = isinstance(exc, ProxyConnectionError) and exc.never_sent
                free = never_sent and retrying.free_failovers < len(self.fleet)
                await retrying.fail_over(exc, url=proxy.url, free=free)
                return
        gated = (
            isinstance(exc, ProxyConnectionError)
            and proxy.monitor is not None
            and proxy.was_reached()
        )
        await retrying.failed(exc, gated=gated, url=proxy.url)

    async def answered(self, request: Request, permit: Permit) -> None:
        """An attempt got its answer (``request.meta``, ``request.usage``): its rate-limit headers
        and real token usage go to the throttle."""
        proxy = request.proxy
        if proxy is not None:
            proxy.reached = True
            proxy.answered += 1
        meta, usage = request.meta, request.usage
        if meta is not None:
            await self._throttle.observe(
                meta.ratelimit, model=request.model, scopes=meta.scope_ratelimits
            )
        if usage is not None and request.tokens:
            await self._throttle.reconcile(permit, usage.total_tokens)

    def first_content(self, request: Request) -> None:
        """A stream's first content arrived: its time to first token is known."""
        now = request.first_content_at = trio.current_time()
        if self._events.active:
            self._events.emit(
                FirstToken(at=now, model=request.model, ttft=now - request.started_at)
            )

    # --- while no proxy is available ------------------------------------------------------------

    async def _wait_for_proxy(self, request: Request, retrying: Retrying) -> Proxy:
        """The proxy for an attempt when none is available.

        One whose gate is open though it was left alone after a failure is tried (the attempt
        uses up a retry). When every gate is closed, wait for the first to open, for
        ``unavailable_timeout`` at most over the request's life; then raise a
        :class:`ProxyConnectionError` that is not retried. Proxies never reached are not waited
        for (a wrong URL far more often than a restart): the request tries, and uses up its
        retries.
        """
        fleet = self.fleet
        proxy = fleet.fallback()
        if proxy is not None or not fleet.reached():
            await trio.lowlevel.checkpoint_if_cancelled()
            return proxy or fleet.anyone()
        if request.last_error is None:  # held for what another request ran into
            request.last_error = self._last_connection_error
        start = trio.current_time()
        with trio.move_on_after(self._unavailable_timeout - request.held):
            await fleet.wait_any_open()
        request.held += trio.current_time() - start
        proxy = fleet.choose() or fleet.fallback()
        if proxy is not None:
            if isinstance(request.last_error, ProxyConnectionError):
                # The monitor confirmed an outage: the connection failure before it was the
                # proxy's absence, and does not use up a retry (unavailable_timeout bounds the
                # waiting). A failure while the monitor sees the proxy up does.
                retrying.forgive()
            return proxy
        cause = request.last_error
        last_failure = next(
            (p.monitor.statistics().last_failure for p in fleet.proxies if p.monitor), None
        )
        reason = (cause and str(cause)) or last_failure or "no answer"
        where = (
            f"the proxy at {fleet.proxies[0].url} is"
            if len(fleet) == 1
            else f"every proxy ({', '.join(p.url for p in fleet.proxies)}) is"
        )
        error = ProxyConnectionError(
            f"{where} unavailable: waited {request.held:.1f} s for it "
            f"(unavailable_timeout={self._unavailable_timeout:g}); last error: {reason}",
            model=request.model,
        )
        error.retryable = False  # the wait for it is over: no more retries
        raise error from cause


def _reply(call: Call, answer: Answer, number: int) -> ChatCompletion | EmbeddingResponse:
    """The typed answer of a call, its :class:`ResponseMeta` attached."""
    reply: ChatCompletion | EmbeddingResponse
    try:
        if call.kind == "chat":
            reply = decode(completion_decoder, answer.content, call.model)
        else:
            reply = decode(embedding_decoder, answer.content, call.model)
    except ResponseDecodeError as exc:
        if call.keep_body:  # a paid answer: whoever asked for the bytes keeps them
            exc.status = answer.status
            exc.response_body = answer.content.decode("utf-8", "replace")
            exc.response_headers = answer.headers
        raise
    if not (reply.choices if isinstance(reply, ChatCompletion) else reply.data):
        raise _empty_answer(answer.status, answer.content, call.model)
    reply.meta = meta_from_headers(
        answer.status,
        answer.headers,
        attempts=number,
        latency=answer.latency,
        body=answer.content if call.keep_body else None,
    )
    return reply


def decode(decoder: msgspec.json.Decoder[T], content: bytes, model: str | None) -> T:
    """``decoder.decode(content)``, a :class:`ResponseDecodeError` when the answer is not valid."""
    try:
        return decoder.decode(content)
    except msgspec.DecodeError as exc:
        raise ResponseDecodeError(f"the proxy's answer is not valid: {exc}", model=model) from exc


def _empty_answer(status: int, content: bytes, model: str | None) -> LiteLLMError:
    """A 200 without choices or data: an error body in disguise, or a broken answer."""
    if b'"error"' in content:
        return error_from_body(status if status >= 400 else None, content, model=model)
    return ResponseDecodeError(
        f"the proxy answered {status} with no result: {content[:200]!r}", model=model
    )
