"""The retry policy and the total deadline: the one place that decides whether and when a failed
attempt is tried again, and what running out of time is called.

Why it is shaped this way: a request's coroutine loops over its attempts itself
(``while True: try: ... except LiteLLMError as exc: await retrying.failed(exc)``), so the path
reads top to bottom and the policy is a value it consults, not a frame that calls it back.
:meth:`RetryPolicy.decision` says which failures retry (what is ``retryable``; never a 4xx
other than 408/409/429) and how long the proxy asked to wait; :class:`Retrying` counts one
request's failures against ``max_retries``, logs and announces each retry, and waits through
stamina, which computes the exponential backoff with jitter (and sleeps on trio's clock). The
first attempt of a request costs nothing here: stamina's context is entered only when an
attempt has failed, which most requests never do.

The total deadline belongs to whoever runs the request (the dispatcher's slot for calls, jobs
and streams; :func:`deadline` for the proxy's own routes); :func:`timed_out` names its end.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import stamina
import trio

from ._errors import LiteLLMError, RequestTimeoutError
from ._events import EventBus, RetryScheduled

if TYPE_CHECKING:
    from stamina._core import Attempt

__all__ = ["RetryPolicy", "Retrying", "deadline", "timed_out"]

logger = logging.getLogger("trio_litellm")


class RetryPolicy:
    """Which failures retry and how long to wait: one per client, shared by all its requests."""

    __slots__ = (
        "backoff_initial",
        "backoff_jitter",
        "backoff_max",
        "display_url",
        "events",
        "max_retries",
        "max_retry_after",
        "retries",
    )

    def __init__(
        self,
        *,
        max_retries: int,
        max_retry_after: float,
        backoff_initial: float,
        backoff_max: float,
        backoff_jitter: float,
        display_url: str,
        events: EventBus | None = None,
    ) -> None:
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_jitter = backoff_jitter
        self.display_url = display_url
        self.events = events
        self.retries = 0  # retries scheduled by every request, for the statistics

    def decision(self, exc: Exception) -> bool | float:
        """The policy for one failure: False (raise it), True (back off) or seconds to wait."""
        if not isinstance(exc, LiteLLMError) or not exc.retryable:
            return False
        if exc.retry_after is None:
            return True
        if exc.retry_after > self.max_retry_after:
            return False
        return exc.retry_after

    def start(self, *, max_retries: int | None = None, model: str | None = None) -> Retrying:
        """The retries of one request (``max_retries`` overrides the client's)."""
        return Retrying(self, self.max_retries if max_retries is None else max_retries, model)


class Retrying:
    """One request's retries: ``await retrying.failed(exc)`` raises ``exc`` when no retry is
    due, else waits until the next attempt may go."""

    __slots__ = (
        "_model",
        "_next_wait",
        "_policy",
        "_retries",
        "_tries",
        "_try",
        "attempt",
        "failures",
        "free_failovers",
    )

    def __init__(self, policy: RetryPolicy, retries: int, model: str | None) -> None:
        self._policy = policy
        self._retries = retries
        self._model = model
        self._tries: AsyncIterator[Attempt] | None = None  # stamina's, from the first failure
        self._try: Attempt | None = None
        self._next_wait: bool | float = True  # what stamina's hook answers for this failure
        self.attempt = 0  # the attempt under way (1 for the first)
        self.failures = 0  # failed attempts that count against max_retries
        self.free_failovers = 0  # attempts never sent, tried again on another proxy for free

    def next_attempt(self) -> int:
        """Count the attempt about to start; its number."""
        self.attempt += 1
        return self.attempt

    def forgive(self) -> None:
        """The last failure does not count against ``max_retries``: the health monitor then
        confirmed the proxy was down, and ``unavailable_timeout`` bounds that wait instead."""
        if self.failures:
            self.failures -= 1

    async def failed(self, exc: Exception, *, gated: bool = False, url: str | None = None) -> None:
        """Raise ``exc`` if the policy gives up on it; else log the retry and wait.

        ``gated``: the health gate does the waiting for this failure (the proxy seems down), so
        the backoff is only the first step's. ``url``: the proxy the attempt went to.
        """
        policy = self._policy
        decision = policy.decision(exc)
        if decision is False or self.failures >= self._retries:
            raise exc
        self.failures += 1
        policy.retries += 1
        wait = policy.backoff_initial if gated else decision
        self._announce(exc, decision, url or policy.display_url)
        await self._wait(exc, wait)

    async def fail_over(self, exc: Exception, *, url: str, free: bool) -> None:
        """Raise ``exc`` if the policy gives up on it; else the next attempt goes at once (to
        another proxy than ``url``'s, where it failed). ``free``: the request never left, so
        sending it again cannot run it twice, and it does not count against ``max_retries``."""
        policy = self._policy
        decision = policy.decision(exc)
        if decision is False:
            raise exc
        if free:
            self.free_failovers += 1
        else:
            if self.failures >= self._retries:
                raise exc
            self.failures += 1
            policy.retries += 1
        self._announce(exc, 0.0, url, elsewhere=True)
        await trio.lowlevel.checkpoint()

    def _announce(
        self, exc: Exception, decision: bool | float, url: str, *, elsewhere: bool = False
    ) -> None:
        """One WARNING per retry naming the proxy and the reason (the key is never in either),
        and a :class:`RetryScheduled` event."""
        policy = self._policy
        model = self._model
        waits = None if isinstance(decision, bool) else decision
        if logger.isEnabledFor(logging.WARNING):
            logger.warning(
                "retrying a request%s %s after attempt %d%s: %s: %s",
                f" for {model}" if model else "",
                f"on another proxy than {url}" if elsewhere else f"to {url}",
                self.attempt,
                f" in {waits:.1f} s" if waits is not None and not elsewhere else "",
                type(exc).__name__,
                exc,
            )
        events = policy.events
        if events is not None and events.active:
            events.emit(
                RetryScheduled(
                    at=trio.current_time(),
                    model=model or "",
                    attempt=self.attempt,
                    error=f"{type(exc).__name__}: {exc}",
                    wait=waits,
                )
            )

    async def _wait(self, exc: Exception, wait: bool | float) -> None:
        """Sleep as stamina says: ``wait`` seconds, or its exponential backoff with jitter for
        this retry's number (``True``). Stamina's test mode makes it not sleep."""
        tries = self._tries
        if tries is None:
            policy = self._policy
            tries = self._tries = stamina.retry_context(
                on=self._stamina_hook,
                attempts=None,
                timeout=None,
                wait_initial=policy.backoff_initial,
                wait_max=policy.backoff_max,
                wait_jitter=policy.backoff_jitter,
            ).__aiter__()
            self._try = await tries.__anext__()  # stamina's first try: the one that failed
        self._next_wait = wait
        assert self._try is not None
        with self._try:
            raise exc  # stamina records the failure ...
        self._try = await tries.__anext__()  # ... and sleeps before handing out the next try

    def _stamina_hook(self, exc: Exception) -> bool | float:
        return self._next_wait


def timed_out(
    total: float | None, model: str | None, cause: BaseException | None
) -> RequestTimeoutError:
    """The error for a request that ran out of its total time (retries and waits included)."""
    error = RequestTimeoutError(f"no answer within the total timeout of {total} s", model=model)
    error.__cause__ = cause
    return error


@contextmanager
def deadline(total: float | None, *, model: str | None = None) -> Iterator[None]:
    """Bound the block by ``total`` seconds (None: unbounded); past it, :func:`timed_out`."""
    if total is None or total == math.inf:
        yield
        return
    with trio.move_on_after(total) as scope:
        yield
    if scope.cancelled_caught:
        raise timed_out(total, model, None)
