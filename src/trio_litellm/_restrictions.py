"""What the proxy said about one scope (one model group, or everyone): a 429's pause, and what its
``x-ratelimit-remaining-*`` headers said is left, counted down as the throttle admits.

Pure: no trio, no await, no IO; times are passed in. The throttle actor keeps one
:class:`Restrictions` for everyone and one per model group.
"""

from __future__ import annotations

import math

import msgspec

from ._meta import RateLimitInfo

__all__ = ["DEFAULT_PAUSE", "LIMITER_WINDOW", "Restrictions", "in_limiter_window"]

DEFAULT_PAUSE = 1.0
"""Seconds to pause when the proxy says to wait but not how long (a 429 without Retry-After, or
nothing left with no usable reset)."""

LIMITER_WINDOW = 60.0
"""Seconds until a scope of LiteLLM's own limiter may have room again, when its headers say none is
left: they send no reset, and each scope counts a fixed window of ``LITELLM_RATE_LIMIT_WINDOW_SIZE``
seconds (60 by default) that may have begun up to that long ago. It is the ``Retry-After`` of the
429 the limiter would answer next."""


class _Cap:
    """What the proxy said is left (``remaining`` units) until ``until``; we count it down."""

    __slots__ = ("remaining", "until")

    def __init__(self, remaining: int, until: float) -> None:
        self.remaining = remaining
        self.until = until


def _horizon(at: float, reset: float | None) -> float:
    return at + (reset if reset is not None and reset > 0 else DEFAULT_PAUSE)


class Restrictions:
    """What the proxy said about one scope (one model group, or everyone): a pause, and what its
    ``x-ratelimit-remaining-*`` headers said is left. Times are passed in; nothing here waits.

    Each method that restricts returns the time until which it restricts (``-inf`` for nothing),
    so the owner can keep the latest such time as a cheap "anything in force?" test.
    """

    __slots__ = ("pause_until", "request_cap", "token_cap")

    def __init__(self) -> None:
        self.pause_until = -math.inf
        self.request_cap: _Cap | None = None
        self.token_cap: _Cap | None = None

    def pause(self, until: float) -> float:
        """Pause admission until ``until``; a pause in force is extended, never shortened."""
        self.pause_until = max(self.pause_until, until)
        return self.pause_until

    def observe(self, info: RateLimitInfo, at: float) -> float:
        """Zero left pauses until the reset; a positive count caps admissions until then.

        The cap counts down with each admission and only ever tightens while in force: an answer
        saying more is left than the cap allows was counted before our later admissions (answers
        arrive out of order), so it is ignored until the cap's horizon passes. Requests we admitted
        that the proxy has not yet counted can still overshoot it; a 429 then corrects that.
        """
        until = -math.inf
        if info.remaining_requests is not None:
            horizon = _horizon(at, info.reset_requests)
            if info.remaining_requests <= 0:
                until = max(until, self.pause(horizon))
            else:
                self.request_cap = _tighten(self.request_cap, info.remaining_requests, horizon, at)
                until = max(until, self.request_cap.until)
        if info.remaining_tokens is not None:
            horizon = _horizon(at, info.reset_tokens)
            if info.remaining_tokens <= 0:
                until = max(until, self.pause(horizon))
            else:
                self.token_cap = _tighten(self.token_cap, info.remaining_tokens, horizon, at)
                until = max(until, self.token_cap.until)
        return until

    def ready_at(self, tokens: int, now: float) -> float:
        """The earliest time, ``now`` or later, at which a request of ``tokens`` may start."""
        ready = max(now, self.pause_until)
        cap = self.request_cap
        if cap is not None:
            if cap.until <= now:
                self.request_cap = None
            elif cap.remaining < 1:
                ready = max(ready, cap.until)
        cap = self.token_cap
        if cap is not None:
            if cap.until <= now:
                self.token_cap = None
            elif cap.remaining < tokens:
                ready = max(ready, cap.until)
        return ready

    def grant(self, tokens: int) -> None:
        """Count an admission of ``tokens`` against the caps in force."""
        if self.request_cap is not None:
            self.request_cap.remaining -= 1
        if self.token_cap is not None:
            self.token_cap.remaining -= tokens

    def paused(self, now: float) -> bool:
        return self.pause_until > now

    def request_room(self, room: int | None, now: float) -> int | None:
        """Requests that could start now under this and our own rpm's ``room`` (None: no rpm)."""
        return _room(room, self.request_cap, now, self.paused(now))

    def token_room(self, room: int | None, now: float) -> int | None:
        """Tokens that could start now under this and our own tpm's ``room`` (None: no tpm)."""
        return _room(room, self.token_cap, now, self.paused(now))


def _tighten(cap: _Cap | None, remaining: int, until: float, at: float) -> _Cap:
    if cap is None or cap.until <= at:
        return _Cap(remaining, until)
    if remaining <= cap.remaining:
        cap.remaining = remaining
        cap.until = max(cap.until, until)
    return cap


def _room(room: int | None, cap: _Cap | None, now: float, paused: bool) -> int | None:
    """What could be admitted now: our own limit's room, at most the cap's; 0 while paused."""
    if paused:
        return 0
    if cap is not None and cap.until > now:
        room = cap.remaining if room is None else min(room, cap.remaining)
    return room


def in_limiter_window(info: RateLimitInfo) -> RateLimitInfo:
    """``info`` with :data:`LIMITER_WINDOW` for the resets it does not know."""
    if info.reset_requests is not None and info.reset_tokens is not None:
        return info
    return msgspec.structs.replace(
        info,
        reset_requests=LIMITER_WINDOW if info.reset_requests is None else info.reset_requests,
        reset_tokens=LIMITER_WINDOW if info.reset_tokens is None else info.reset_tokens,
    )
