"""The one-line progress display of a batch run, on top of ``rich.progress.Progress``.

``update()`` runs after every result, so it does almost nothing: it keeps the builder and, at
most :data:`PUSH_INTERVAL` apart, copies its counters into the rich task. Rich's own refresh
thread renders ten times a second from those copies, never from the builder. Pushing at a
bounded rate also keeps rich's speed samples (its deque holds 1000) spread over its whole
estimate window, so the ETA stays smooth however fast results arrive.

Time comes from the console's clock (``Console(get_time=...)``, monotonic by default), the
clock rich itself uses for elapsed time and ETA, so the display runs inside or outside trio and
tests can drive it.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import Self

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

from ._summary import SummaryBuilder

__all__ = ["BatchProgress"]

PUSH_INTERVAL = 0.1
"""Seconds between copies of the counters into the display (rich renders at 10 Hz anyway)."""

RATE_WINDOW = 10.0
"""Seconds over which requests/s and tokens/s are measured: recent enough to show a slowdown,
long enough not to flicker. Before that much time has passed, the rates cover the whole run."""

ETA_WINDOW = 30.0
"""Seconds of progress rich's ETA is estimated from (its ``speed_estimate_period``)."""


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


class BatchProgress:
    """A context manager showing one line: bar, done/total, req/s, tok/s, errors, retries,
    elapsed and ETA.

    ``total`` is the number of results this run will record. ``enabled=None`` shows the line
    only when ``console.is_terminal``; when disabled nothing is printed, and :meth:`update` is
    a single attribute test.
    """

    __slots__ = (
        "_builder",
        "_finished",
        "_next_push",
        "_progress",
        "_samples",
        "_shown",
        "_task",
        "total",
    )

    def __init__(self, total: int, *, console: Console, enabled: bool | None = None) -> None:
        self.total = total
        if enabled is None:
            enabled = console.is_terminal
        self._progress: Progress | None = None
        if enabled:
            self._progress = Progress(
                BarColumn(bar_width=None),
                MofNCompleteColumn(table_column=_fixed()),
                _RateColumn("req_rate", "req/s"),
                _RateColumn("tok_rate", "tok/s"),
                _CountColumn("errors", "err", "red"),
                _CountColumn("retries", "retries", "yellow"),
                TimeElapsedColumn(table_column=_fixed()),
                TextColumn("eta", table_column=_fixed()),
                TimeRemainingColumn(compact=True, table_column=_fixed()),
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
        # (time, done, tokens) at past pushes, oldest first, spanning about RATE_WINDOW.
        self._samples: deque[tuple[float, int, int]] = deque()

    @property
    def enabled(self) -> bool:
        """Whether this display prints anything."""
        return self._progress is not None

    def __enter__(self) -> Self:
        progress = self._progress
        if progress is not None:
            progress.start()
            self._task = progress.add_task("batch", total=self.total, errors=0, retries=0)
            self._samples.append((progress.get_time(), 0, 0))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish()

    def update(self, builder: SummaryBuilder) -> None:
        """Show ``builder``'s live counters; copies them at most every :data:`PUSH_INTERVAL`,
        and at once when the run reaches its total."""
        progress = self._progress
        if progress is None:
            return
        self._builder = builder
        now = progress.get_time()
        done = builder.done
        if now >= self._next_push or (done >= self.total and done != self._shown):
            self._next_push = now + PUSH_INTERVAL
            self._push(progress, builder, now)

    def finish(self) -> None:
        """Show the final counters and stop, leaving the last line on screen. Idempotent."""
        progress = self._progress
        if progress is None or self._task is None or self._finished:
            return  # disabled, never entered, or already finished
        self._finished = True
        if self._builder is not None:
            self._push(progress, self._builder, progress.get_time())
        progress.stop()

    def _push(self, progress: Progress, builder: SummaryBuilder, now: float) -> None:
        if self._task is None:  # update() before __enter__: nothing is shown yet
            return
        done = self._shown = builder.done
        tokens = builder.tokens_in + builder.tokens_out
        samples = self._samples
        samples.append((now, done, tokens))
        while len(samples) > 2 and samples[1][0] <= now - RATE_WINDOW:
            samples.popleft()
        then, done_then, tokens_then = samples[0]
        span = now - then
        progress.update(
            self._task,
            completed=done,
            req_rate=(done - done_then) / span if span > 0 else None,
            tok_rate=(tokens - tokens_then) / span if span > 0 else None,
            errors=builder.failed,
            retries=builder.retries,
        )
