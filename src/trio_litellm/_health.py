"""The health-monitor actor, and the :class:`Gate` every request waits on while the proxy is down.

Why an actor: one task owns the proxy's health state (up / down, failure counts) and is the only
one that opens or closes the gate, so there is never a question of who decides. Everything else
talks to it without waiting on it:

- the dispatcher *reports* connection failures with a non-blocking send into a one-slot channel
  the actor owns. A report asks for a probe now; one pending report is all that takes, so a full
  channel means a probe is already coming and further reports are dropped (and counted). A report
  is answered by the next probe to finish: if that probe fails, the proxy is down at once, without
  waiting for ``failure_threshold`` scheduled failures.
- requests *wait* on the gate, each under its own deadline; the monitor never waits on them.
- listeners hear of each change as a :class:`~._events.HealthChanged` on the client's event bus,
  which the monitor emits without ever waiting (``Client.health_transitions()`` subscribes to
  those alone); the bus, not the monitor, counts what a slow listener misses.

The monitor starts optimistic (up, gate open) so an application is never held back before the
first probe, and leaves the gate open when it stops so nothing waits forever on a dead monitor.
All times come from trio's clock.

A proxy behind an ingress or API gateway that passes only ``/v1/*`` cannot be asked about its
health: ``/health/liveliness`` gets the gateway's 404 (or 401, 403, 405...) while every call
works. Such an answer proves the gateway up but says nothing of the proxy, so it must neither
close the gate (every request would wait for ever) nor open it. The probe
(``_probes.liveness_probe``) then asks a cheap keyed route the gateway does pass, ``GET
/v1/models``, and decides from that: any answer means calls get through, 502/503/504 (the
gateway cannot reach the proxy) or no answer means down. Request outcomes alone could close the
gate (connection failures) but never open it again, since nothing is sent while it is closed;
a probe down the same road the calls take can do both. Each probe still asks the health route
first, so a gateway that starts passing it is noticed. The monitor keeps what the health route
last showed (``health_route`` in its statistics: present, missing, or unknown before anything
answered) and says at DEBUG when it goes missing or comes back: once per change, not per probe.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal, TypeAlias

import msgspec
import trio

from ._events import EventBus, HealthChanged, HealthState

__all__ = [
    "REPORT_BUFFER",
    "Gate",
    "GateStatistics",
    "HealthMonitor",
    "MonitorStatistics",
    "ProbeResult",
]

logger = logging.getLogger("trio_litellm")

HealthRoute: TypeAlias = Literal["present", "missing", "unknown"]

REPORT_BUFFER = 1
"""Pending connection-failure reports: one already triggers a probe, more would add nothing."""


class GateStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a :class:`Gate`: whether it is open and how many tasks wait on it."""

    is_open: bool
    tasks_waiting: int


class Gate:
    """Open while the proxy is up. Only the monitor opens and closes it (``_open``/``_close``).

    Built on a :class:`trio.Event` replaced by a fresh one on each close, so opening wakes every
    waiter at once and a waiter that is cancelled leaves nothing behind.
    """

    def __init__(self) -> None:
        self._opened = trio.Event()
        self._opened.set()

    @property
    def is_open(self) -> bool:
        return self._opened.is_set()

    async def wait_open(self) -> None:
        """Return when the gate is open: at once if it is, else when opened.

        Cancellable; an open gate checks for cancellation without a trip through the scheduler
        (every attempt of every request passes here). A waiter woken by an opening returns only
        if the gate is still open then.
        """
        if self._opened.is_set():
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        while True:
            opened = self._opened
            await opened.wait()
            if self._opened.is_set():
                return

    def statistics(self) -> GateStatistics:
        return GateStatistics(
            is_open=self.is_open, tasks_waiting=self._opened.statistics().tasks_waiting
        )

    def _open(self) -> None:
        """Open the gate and wake every waiter (monitor only)."""
        self._opened.set()

    def _close(self) -> None:
        """Close the gate; later ``wait_open`` calls wait (monitor only)."""
        if self._opened.is_set():
            self._opened = trio.Event()


class ProbeResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one probe found: ``failure`` is None when the proxy is up, else why it is not.

    ``health_route`` says what the health route showed: "present" (the proxy answered it),
    "missing" (something in front of the proxy answered instead and the probe decided from another
    route; ``detail`` says so in a sentence) or "unknown" (nothing answered).
    """

    failure: str | None = None
    health_route: HealthRoute = "present"
    detail: str | None = None


class MonitorStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a :class:`HealthMonitor`.

    ``probes`` and ``failed_probes`` are totals; ``consecutive_failures`` resets on a successful
    probe. ``last_probe_at`` is the trio time the last probe finished, ``last_latency`` how long
    it took (both ``None`` before the first). ``reports`` counts connection-failure reports the
    monitor took in (``last_report`` the latest one's reason), ``reports_dropped`` those dropped
    because a probe was already coming. ``last_failure`` is the latest failed probe's reason.
    ``health_route`` is what the proxy's health route last showed: "present",
    "missing" (behind a gateway that does not pass it; probes then ask ``/v1/models``) or
    "unknown" (nothing answered yet).
    """

    state: HealthState
    gate_open: bool
    probes: int
    failed_probes: int
    consecutive_failures: int
    transitions: int
    last_probe_at: float | None
    last_latency: float | None
    last_failure: str | None
    reports: int
    last_report: str | None
    reports_dropped: int
    health_route: HealthRoute


class ConnectionFailed(msgspec.Struct, frozen=True, kw_only=True, tag="connection_failed"):
    """From the dispatcher: a request could not reach the proxy."""

    reason: str
    at: float


_Report: TypeAlias = ConnectionFailed
"""Every message the monitor receives (a tagged union of one, room to grow)."""


class HealthMonitor:
    """Probes the proxy, keeps its up/down state and opens or closes :attr:`gate` accordingly.

    ``probe()`` returns a :class:`ProbeResult`; it should bound its own time
    (``liveness_probe`` takes a timeout). An exception it raises counts as a failed probe.
    Up, it probes every ``interval`` seconds (start to start) and goes down after
    ``failure_threshold`` consecutive failures, or after one failed probe answering a reported
    connection failure. Down, it probes every ``down_interval`` seconds; the first success brings
    it up. Each change is emitted on ``events`` as a :class:`HealthChanged`.
    """

    def __init__(
        self,
        probe: Callable[[], Awaitable[ProbeResult]],
        *,
        events: EventBus,
        interval: float,
        down_interval: float,
        failure_threshold: int,
        url: str = "",
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, not {interval!r}")
        if not down_interval > 0:
            raise ValueError(f"down_interval must be > 0, not {down_interval!r}")
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, not {failure_threshold!r}")
        self._probe = probe
        self._events = events
        self.url = url  # the proxy's, named in its HealthChanged events
        self._interval = interval
        self._down_interval = down_interval
        self._failure_threshold = failure_threshold
        self.gate = Gate()
        self._state: HealthState = "up"
        self._report_send, self._report_receive = trio.open_memory_channel[_Report](REPORT_BUFFER)
        self._started = False
        self._stopped = False
        self._probes = 0
        self._failed_probes = 0
        self._consecutive_failures = 0
        self._transitions = 0
        self._last_probe_at: float | None = None
        self._last_latency: float | None = None
        self._last_failure: str | None = None
        self._reports = 0
        self._reports_dropped = 0
        self._last_report: str | None = None
        self._health_route: HealthRoute = "unknown"

    @property
    def state(self) -> HealthState:
        return self._state

    @property
    def successful_probes(self) -> int:
        """Probes that found the proxy up, since the monitor started."""
        return self._probes - self._failed_probes

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Probe until cancelled. Ready at once; on exit the gate is open."""
        if self._started:
            raise RuntimeError("HealthMonitor.run() can be called only once")
        self._started = True
        try:
            with self._report_send, self._report_receive:
                task_status.started()
                await self._probe_loop()
        finally:
            self._stopped = True
            self.gate._open()

    async def report_connection_failure(self, reason: str) -> None:
        """Ask for a probe now: a request could not reach the proxy. Never waits on the monitor.

        Ignored while down (the monitor already knows) or once it stopped; dropped if a report is
        already pending, since the probe that one triggers answers this one too.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._state == "up" and not self._stopped:
            try:
                self._report_send.send_nowait(
                    ConnectionFailed(reason=reason, at=trio.current_time())
                )
            except trio.WouldBlock:
                self._reports_dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the monitor stopped between our check and the send
        await trio.lowlevel.cancel_shielded_checkpoint()

    def statistics(self) -> MonitorStatistics:
        return MonitorStatistics(
            state=self._state,
            gate_open=self.gate.is_open,
            probes=self._probes,
            failed_probes=self._failed_probes,
            consecutive_failures=self._consecutive_failures,
            transitions=self._transitions,
            last_probe_at=self._last_probe_at,
            last_latency=self._last_latency,
            last_failure=self._last_failure,
            reports=self._reports,
            last_report=self._last_report,
            reports_dropped=self._reports_dropped,
            health_route=self._health_route,
        )

    # --- the actor's own work ---------------------------------------------------------------

    async def _probe_loop(self) -> None:
        reported = False
        while True:
            started = trio.current_time()
            result = await self._safe_probe()
            # Reports that came in while the probe ran are answered by it, as is the one (if
            # any) that triggered it.
            reported = self._drain_reports() or reported
            self._note_health_route(result)
            self._record(result.failure, started=started, reported=reported)
            reported = False
            if self._state == "up":
                with trio.move_on_at(started + self._interval):
                    self._take(await self._report_receive.receive())
                    reported = True
            else:
                await trio.sleep_until(started + self._down_interval)

    async def _safe_probe(self) -> ProbeResult:
        try:
            return await self._probe()
        except Exception as exc:
            return ProbeResult(
                failure=f"probe raised {type(exc).__name__}: {exc}", health_route="unknown"
            )

    def _note_health_route(self, result: ProbeResult) -> None:
        """Keep what the health route showed, and say so at DEBUG when it changes."""
        if result.health_route == "unknown" or result.health_route == self._health_route:
            return  # no answer tells nothing about the route; the same news is said once
        if result.health_route == "missing":
            logger.debug(
                "the proxy's health route is not reachable (a gateway that passes only /v1/*?): %s",
                result.detail,
            )
        elif self._health_route == "missing":
            logger.debug("the proxy's health route answers again; health is decided from it")
        self._health_route = result.health_route

    def _take(self, report: _Report) -> None:
        self._reports += 1
        self._last_report = report.reason

    def _drain_reports(self) -> bool:
        got = False
        while True:
            try:
                report = self._report_receive.receive_nowait()
            except trio.WouldBlock:
                return got
            self._take(report)
            got = True

    def _record(self, reason: str | None, *, started: float, reported: bool) -> None:
        now = trio.current_time()
        self._probes += 1
        self._last_probe_at = now
        self._last_latency = now - started
        if reason is None:
            self._consecutive_failures = 0
            if self._state == "down":
                self._transition("up", "probe succeeded", at=now)
            return
        self._failed_probes += 1
        self._consecutive_failures += 1
        self._last_failure = reason
        if self._state == "up" and (
            reported or self._consecutive_failures >= self._failure_threshold
        ):
            self._transition("down", reason, at=now)

    def _transition(self, state: HealthState, reason: str, *, at: float) -> None:
        event = HealthChanged(
            state=state, previous=self._state, at=at, reason=reason, proxy=self.url
        )
        self._state = state
        self._transitions += 1
        if state == "up":
            self.gate._open()
        else:
            self.gate._close()
        self._events.emit(event)
