"""The progress display of a batch run: a live bar on a terminal, plain lines anywhere else.

On a terminal, one line on top of ``rich.progress.Progress``. ``update()`` runs after every
result, so it does almost nothing: it keeps the builder and, at most :data:`PUSH_INTERVAL` apart,
copies its counters into the rich task. Rich's own refresh thread renders ten times a second from
those copies, never from the builder. Pushing at a bounded rate also keeps rich's speed samples
(its deque holds 1000) spread over its whole estimate window, so the ETA stays smooth however
fast results arrive. The bar's time comes from the console's clock (``Console(get_time=...)``),
the clock rich itself uses for elapsed time and ETA, so tests can drive it.

Where nobody watches a terminal (a log file, a pipe, a CI job), a bar would be written once, at
the end. There the display prints one plain line every ``interval`` seconds instead: done/total,
rate, errors, retries, ETA and cost so far.

Both need time to pass without results: while the proxy is down nothing arrives, yet the reader
must see that the run waits and for how long. :meth:`BatchProgress.run` is that task (started
in the run's nursery): it follows the client's health transitions and, on trio's clock, prints
the plain lines or refreshes the bar once a second, so its rates fall to zero and it says
"proxy down 42s". The final bar shows the whole run's rate, as the summary does.
"""

from __future__ import annotations

import math
from collections import deque
from types import TracebackType
from typing import Protocol, Self

import trio
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from .._errors import ConfigError
from .._events import HealthTransition
from ..batch._summary import SummaryBuilder

__all__ = ["BatchProgress"]

PUSH_INTERVAL = 0.1
"""Seconds between copies of the counters into the display (rich renders at 10 Hz anyway)."""

RATE_WINDOW = 10.0
"""Seconds over which requests/s and tokens/s are measured: recent enough to show a slowdown,
long enough not to flicker. Before that much time has passed, the rates cover the whole run."""

ETA_WINDOW = 30.0
"""Seconds of progress rich's ETA is estimated from (its ``speed_estimate_period``)."""

LINE_INTERVAL = 10.0
"""Default seconds between plain progress lines (``--progress-interval``)."""

BAR_TICK = 1.0
"""Seconds between refreshes of the bar when no result comes (its rates, how long down)."""


class HealthSource(Protocol):
    """What the progress needs of a :class:`~trio_litellm.Client`: its health, as it changes."""

    @property
    def health_status(self) -> str: ...

    def health_transitions(
        self, buffer: int = ...
    ) -> trio.MemoryReceiveChannel[HealthTransition]: ...


def _duration(seconds: float) -> str:
    """42s, 4m05s, 2h03m."""
    whole = max(int(seconds), 0)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _fixed() -> Column:
    """A column that keeps its text on one line: when the terminal is narrow the bar shrinks."""
    return Column(no_wrap=True)


def _compact(value: float) -> str:
    """3 significant-ish figures: 7.25, 42.5, 812, 12.3k, 4.56M."""
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


class _RateColumn(ProgressColumn):
    """A rate from a task field, e.g. ``42.5 req/s``; ``-`` until there is one."""

    def __init__(self, field: str, unit: str) -> None:
        self.field = field
        self.unit = unit
        super().__init__(table_column=_fixed())

    def render(self, task: Task) -> Text:
        rate: float | None = task.fields.get(self.field)
        shown = "-" if rate is None else _compact(rate)
        return Text(f"{shown} {self.unit}", style="progress.data.speed")


class _CountColumn(ProgressColumn):
    """A counter from a task field, e.g. ``3 errors``; styled when non-zero."""

    def __init__(self, field: str, label: str, style: str) -> None:
        self.field = field
        self.label = label
        self.style = style
        super().__init__(table_column=_fixed())

    def render(self, task: Task) -> Text:
        count: int = task.fields.get(self.field, 0)
        return Text(f"{count:,} {self.label}", style=self.style if count else "dim")


class _HealthColumn(ProgressColumn):
    """How long the proxy has been down, from a task field; empty while it is up."""

    def __init__(self) -> None:
        super().__init__(table_column=_fixed())

    def render(self, task: Task) -> Text:
        return Text(task.fields.get("health", ""), style="bold red")


class _CostColumn(ProgressColumn):
    """The cost so far, once an answer carried one."""

    def __init__(self) -> None:
        super().__init__(table_column=_fixed())

    def render(self, task: Task) -> Text:
        cost: float = task.fields.get("cost", 0.0)
        return Text(f"${cost:.4f}" if cost else "", style="progress.data.speed")


class BatchProgress:
    """A context manager showing a run's progress: done/total, req/s, tok/s, errors, retries,
    cost, elapsed and ETA, and how long the proxy has been down.

    ``total`` is the number of results this run will record. On a terminal it is a live bar; on
    anything else, one plain line every ``interval`` seconds, printed by :meth:`run`.
    ``enabled=False`` prints nothing (then :meth:`update` is a single attribute test); ``None`` or
    ``True`` print, in the form the console calls for.
    """

    __slots__ = (
        "_builder",
        "_console",
        "_down_since",
        "_finished",
        "_interval",
        "_lines",
        "_next_push",
        "_progress",
        "_samples",
        "_shown",
        "_started",
        "_task",
        "total",
    )

    def __init__(
        self,
        total: int,
        *,
        console: Console,
        enabled: bool | None = None,
        interval: float = LINE_INTERVAL,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, not {interval!r}")
        self.total = total
        self._console = console
        self._interval = interval
        self._lines = enabled is not False and not console.is_terminal
        self._progress: Progress | None = None
        if enabled is not False and console.is_terminal:
            self._progress = Progress(
                BarColumn(bar_width=None),
                MofNCompleteColumn(table_column=_fixed()),
                _RateColumn("req_rate", "req/s"),
                _RateColumn("tok_rate", "tok/s"),
                _CountColumn("errors", "err", "red"),
                _CountColumn("retries", "retries", "yellow"),
                _CostColumn(),
                TimeElapsedColumn(table_column=_fixed()),
                TextColumn("eta", table_column=_fixed()),
                TimeRemainingColumn(compact=True, table_column=_fixed()),
                _HealthColumn(),
                console=console,
                expand=True,
                refresh_per_second=10,
                speed_estimate_period=ETA_WINDOW,
            )
        self._task: TaskID | None = None
        self._builder: SummaryBuilder | None = None
        self._next_push = float("-inf")
        self._shown = -1  # the `done` count last copied into the display
        self._finished = False
        self._started = 0.0
        self._down_since: float | None = None  # trio time the proxy went down; None while up
        # (time, done, tokens) at past pushes or lines, oldest first, spanning about RATE_WINDOW.
        self._samples: deque[tuple[float, int, int]] = deque()

    @property
    def enabled(self) -> bool:
        """Whether this display prints anything."""
        return self._progress is not None or self._lines

    @property
    def live(self) -> bool:
        """Whether this display is the live bar (on a terminal)."""
        return self._progress is not None

    def __enter__(self) -> Self:
        progress = self._progress
        if progress is not None:
            progress.start()
            self._task = progress.add_task(
                "batch", total=self.total, errors=0, retries=0, cost=0.0, health=""
            )
            self._started = progress.get_time()
            self._samples.append((self._started, 0, 0))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish()

    async def run(
        self,
        client: HealthSource,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Until cancelled: follow ``client``'s health, and print a plain line every
        ``interval`` seconds (or refresh the bar every :data:`BAR_TICK`) while results come
        or not."""
        if not self.enabled:
            task_status.started()
            return
        if client.health_status == "down":
            self._down_since = trio.current_time()
        try:
            transitions = client.health_transitions()
        except ConfigError:  # the health monitor is off: nothing to follow
            transitions = None
        async with trio.open_nursery() as nursery:
            if transitions is not None:
                nursery.start_soon(self._follow_health, transitions)
            if self._lines:
                self._samples.append((trio.current_time(), 0, 0))
            task_status.started()
            period = self._interval if self._lines else BAR_TICK
            next_tick = trio.current_time() + period
            while True:
                await trio.sleep_until(next_tick)
                next_tick += period
                self._tick()

    def update(self, builder: SummaryBuilder) -> None:
        """Show ``builder``'s live counters; the bar copies them at most every
        :data:`PUSH_INTERVAL`, and at once when the run reaches its total."""
        self._builder = builder
        progress = self._progress
        if progress is None:
            return
        now = progress.get_time()
        done = builder.done
        if now >= self._next_push or (done >= self.total and done != self._shown):
            self._next_push = now + PUSH_INTERVAL
            self._push(progress, builder, now)

    def finish(self) -> None:
        """Show the final counters, with the whole run's rates, and stop the bar, leaving its
        last line on screen. Idempotent."""
        progress = self._progress
        if progress is None or self._task is None or self._finished:
            return  # no bar, never entered, or already finished
        self._finished = True
        builder = self._builder
        if builder is not None:
            self._push(progress, builder, progress.get_time())
            span = progress.get_time() - self._started
            tokens = builder.tokens_in + builder.tokens_out
            progress.update(
                self._task,
                req_rate=builder.done / span if span > 0 else None,
                tok_rate=tokens / span if span > 0 else None,
            )
        progress.stop()

    # --- the watcher's work ---------------------------------------------------------------------

    async def _follow_health(
        self, transitions: trio.MemoryReceiveChannel[HealthTransition]
    ) -> None:
        async with transitions:
            async for event in transitions:
                if event.state == "down":
                    if self._down_since is None:
                        self._down_since = event.at
                    if self._lines:
                        self._say(f"proxy down: {event.reason}")
                else:
                    since, self._down_since = self._down_since, None
                    if self._lines and since is not None:
                        self._say(f"proxy back up after {_duration(event.at - since)}")
                self._tick_bar()

    def _tick(self) -> None:
        if self._lines:
            self._say(self._line(trio.current_time()))
        else:
            self._tick_bar()

    def _tick_bar(self) -> None:
        """Refresh the bar without a new result: its rates fall, its outage clock runs."""
        progress = self._progress
        if progress is None or self._task is None or self._finished:
            return
        if self._builder is not None:
            self._push(progress, self._builder, progress.get_time())
        progress.update(self._task, health=self._health_text("proxy down "))

    def _health_text(self, prefix: str) -> str:
        if self._down_since is None:
            return ""
        return prefix + _duration(trio.current_time() - self._down_since)

    def _line(self, now: float) -> str:
        builder = self._builder or SummaryBuilder()
        done = builder.done
        req_rate = self._rates(now, done, builder.tokens_in + builder.tokens_out)[0] or 0.0
        remaining = max(self.total - done, 0)
        if remaining == 0:
            eta = "0s"
        else:
            eta = _duration(math.ceil(remaining / req_rate)) if req_rate > 0 else "-"
        percent = 100 * done // self.total if self.total else 100
        parts = [
            f"progress {done:,}/{self.total:,} ({percent}%)",
            f"{req_rate:.2f} req/s",
            f"{builder.failed:,} errors",
            f"{builder.retries:,} retries",
            f"eta {eta}",
            f"cost ${builder.cost:.4f}" if builder.cost else "cost -",
        ]
        down = self._health_text("proxy down for ")
        if down:
            parts.append(down)
        return " · ".join(parts)

    def _say(self, line: str) -> None:
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _rates(self, now: float, done: int, tokens: int) -> tuple[float | None, float | None]:
        """(requests/s, tokens/s) over about the last :data:`RATE_WINDOW` seconds; None before
        any time has passed."""
        samples = self._samples
        samples.append((now, done, tokens))
        while len(samples) > 2 and samples[1][0] <= now - RATE_WINDOW:
            samples.popleft()
        then, done_then, tokens_then = samples[0]
        span = now - then
        if span <= 0:
            return None, None
        return (done - done_then) / span, (tokens - tokens_then) / span

    def _push(self, progress: Progress, builder: SummaryBuilder, now: float) -> None:
        if self._task is None:  # update() before __enter__: nothing is shown yet
            return
        done = self._shown = builder.done
        req_rate, tok_rate = self._rates(now, done, builder.tokens_in + builder.tokens_out)
        progress.update(
            self._task,
            completed=done,
            req_rate=req_rate,
            tok_rate=tok_rate,
            errors=builder.failed,
            retries=builder.retries,
            cost=builder.cost,
        )
