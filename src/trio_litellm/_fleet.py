"""The proxies a client spreads its requests over, and how each attempt picks one.

A client opened on one URL has a fleet of one and behaves as if there were no fleet. Opened on
several (``proxy_url=[...]``), each :class:`Proxy` has its own connection pool (its
``Transport``) and its own health monitor (its gate), and each attempt goes to the proxy
:meth:`Fleet.choose` picks:

- among the *available* proxies (gate open, not left alone after a failure), two at random, the
  one with fewer requests in flight (power of two choices, as Finagle and Envoy balance: close
  to the least loaded without every client herding onto the same one);
- a proxy whose attempt failed on the connection, or that a gateway in front of it answered
  502/503/504 for (no ``x-litellm-call-id``: not LiteLLM's own answer), is left alone until its
  health monitor next sees it up (the failure asked the monitor for a probe at once,
  so that is one probe away when it is up, and its down-interval probes when it is not). With
  the monitor off, it is left alone for ``health_down_interval`` seconds instead;
- when none is available, a proxy whose gate is open though it is left alone is tried (the
  attempt uses up a retry, as with a single proxy); when every gate is closed, the request
  waits for the first to open (``_requests`` bounds that wait).

The fleet does no IO and holds no task: the monitors are actors of their own, started by
``open_client``. Every count here is changed only by the request path, in the task of the
request, so reading them needs no lock.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal, TypeAlias

import msgspec
import trio

from ._health import Gate, HealthMonitor, MonitorStatistics
from ._transport import Transport

__all__ = ["Fleet", "Proxy", "ProxyStatistics"]

Health: TypeAlias = Literal["up", "down", "unknown"]


class ProxyStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """One proxy of the client's fleet, as the client sees it now.

    ``health`` is what its monitor believes ("unknown" with the monitor off); ``available``
    whether it takes new attempts now (up, and not left alone after a failure). ``answered``
    counts attempts it answered (any status), ``failures`` those that failed on the connection
    or got a 502/503/504 there; ``last_error`` is the latest failure's message.
    """

    url: str
    health: Health
    available: bool
    in_flight: int
    answered: int
    failures: int
    last_error: str | None
    open_connections: int
    monitor: MonitorStatistics | None


class Proxy:
    """One proxy: its transport, its health monitor, and what the client saw of it."""

    __slots__ = (
        "_eject_seconds",
        "_ejected_at_probe",
        "_ejected_until",
        "answered",
        "failures",
        "in_flight",
        "last_error",
        "monitor",
        "reached",
        "transport",
        "url",
    )

    def __init__(
        self, transport: Transport, monitor: HealthMonitor | None, *, eject_seconds: float
    ) -> None:
        self.transport = transport
        self.monitor = monitor
        self.url = transport.display_url
        self.in_flight = 0
        self.answered = 0
        self.failures = 0
        self.last_error: str | None = None
        # Whether it ever answered this client (a request or a probe): a proxy never reached
        # is a wrong URL or a dead one far more often than a restarting one.
        self.reached = False
        self._eject_seconds = eject_seconds
        self._ejected_at_probe: int | None = None  # the monitor's successes when left alone
        self._ejected_until = -1.0  # without a monitor

    def __repr__(self) -> str:
        return f"<Proxy {self.url} in_flight={self.in_flight}>"

    @property
    def gate(self) -> Gate | None:
        return self.monitor.gate if self.monitor is not None else None

    @property
    def gate_open(self) -> bool:
        monitor = self.monitor
        return monitor is None or monitor.gate.is_open

    @property
    def available(self) -> bool:
        """Whether new attempts may go here: its gate is open and it is not left alone."""
        monitor = self.monitor
        if monitor is None:
            return self._ejected_until < 0 or trio.current_time() >= self._ejected_until
        if not monitor.gate.is_open:
            return False
        mark = self._ejected_at_probe
        if mark is None:
            return True
        if monitor.successful_probes > mark:
            self._ejected_at_probe = None
            return True
        return False

    def was_reached(self) -> bool:
        """Whether it ever answered a request or a probe of this client."""
        if not self.reached and self.monitor is not None:
            self.reached = self.monitor.successful_probes > 0
        return self.reached

    def failed(self, message: str, *, leave_alone: bool = True) -> None:
        """An attempt here failed on the connection or got a 502/503/504: count it, and (unless
        told not to) leave the proxy alone until its monitor next sees it up."""
        self.failures += 1
        self.last_error = message
        if not leave_alone:
            return
        if self.monitor is not None:
            self._ejected_at_probe = self.monitor.successful_probes
        else:
            self._ejected_until = trio.current_time() + self._eject_seconds

    def statistics(self) -> ProxyStatistics:
        monitor = self.monitor
        return ProxyStatistics(
            url=self.url,
            health=monitor.state if monitor is not None else "unknown",
            available=self.available,
            in_flight=self.in_flight,
            answered=self.answered,
            failures=self.failures,
            last_error=self.last_error,
            open_connections=self.transport.open_connections,
            monitor=monitor.statistics() if monitor is not None else None,
        )


class Fleet:
    """The client's proxies, in the order given; picks the proxy of each attempt."""

    def __init__(self, proxies: Sequence[Proxy], *, rng: random.Random | None = None) -> None:
        if not proxies:
            raise ValueError("a fleet needs at least one proxy")
        self.proxies = tuple(proxies)
        self.single = self.proxies[0] if len(self.proxies) == 1 else None
        self._rng = rng or random.Random()

    def __len__(self) -> int:
        return len(self.proxies)

    def choose(self, avoid: Proxy | None = None) -> Proxy | None:
        """The proxy for the next attempt among the available ones (the less busy of two at
        random), or None when none is available. ``avoid`` (the proxy of the attempt that
        failed) is chosen only when no other is available: its monitor may already have seen it
        up again, after a 503 of its upstream say, yet a retry goes elsewhere first."""
        single = self.single
        if single is not None:
            return single if single.available else None
        candidates = [proxy for proxy in self.proxies if proxy.available]
        if avoid is not None and len(candidates) > 1 and avoid in candidates:
            candidates.remove(avoid)
        return self._least_busy_of_two(candidates)

    def fallback(self) -> Proxy | None:
        """When none is available: a proxy whose gate is open though it was left alone after a
        failure (trying it costs a retry, as with one proxy); None when every gate is closed."""
        return self._least_busy_of_two([proxy for proxy in self.proxies if proxy.gate_open])

    def any_available_besides(self, proxy: Proxy) -> bool:
        """Whether another proxy than ``proxy`` would take an attempt now."""
        return any(other is not proxy and other.available for other in self.proxies)

    def reached(self) -> bool:
        """Whether any proxy ever answered this client."""
        return any(proxy.was_reached() for proxy in self.proxies)

    def anyone(self) -> Proxy:
        """Any proxy, for a request that goes regardless: the available one the balance picks,
        else one whose gate is open, else any."""
        return (
            self.choose()
            or self.fallback()
            or self._least_busy_of_two(self.proxies)
            or (self.proxies[0])
        )

    async def wait_any_open(self) -> None:
        """Return when some proxy's gate is open (at once if one is)."""
        gates = [proxy.gate for proxy in self.proxies if proxy.gate is not None]
        if len(gates) != len(self.proxies) or any(gate.is_open for gate in gates):
            await trio.lowlevel.checkpoint()
            return
        if len(gates) == 1:
            await gates[0].wait_open()
            return
        async with trio.open_nursery() as nursery:
            for gate in gates:
                nursery.start_soon(_wait_then_cancel, gate, nursery.cancel_scope)

    def health(self) -> Health:
        """ "up" while any proxy's monitor sees it up, "down" when every one sees its proxy
        down, "unknown" with the monitors off."""
        states = {proxy.monitor.state for proxy in self.proxies if proxy.monitor is not None}
        if not states:
            return "unknown"
        return "up" if "up" in states else "down"

    @property
    def open_connections(self) -> int:
        return sum(proxy.transport.open_connections for proxy in self.proxies)

    @property
    def busy_connections(self) -> int:
        return sum(proxy.transport.busy_connections for proxy in self.proxies)

    def statistics(self) -> tuple[ProxyStatistics, ...]:
        return tuple(proxy.statistics() for proxy in self.proxies)

    def _least_busy_of_two(self, candidates: Sequence[Proxy]) -> Proxy | None:
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        first, second = self._rng.sample(candidates, 2)
        return first if first.in_flight <= second.in_flight else second


async def _wait_then_cancel(gate: Gate, scope: trio.CancelScope) -> None:
    await gate.wait_open()
    scope.cancel()
