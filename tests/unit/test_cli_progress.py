"""The batch progress display: the live bar on a terminal, plain lines every interval elsewhere,
the proxy's outages in both, and a final rate that agrees with the summary.

Time is trio's MockClock for the watcher (``autojump_clock``) and a hand-driven console clock for
rich's bar; each sleep below moves time, it does not order steps.
"""

from __future__ import annotations

import io
import re
from typing import Any

import trio
from rich.console import Console

from trio_litellm._events import HealthTransition
from trio_litellm.batch._summary import SummaryBuilder
from trio_litellm.cli import BatchProgress


def ok(builder: SummaryBuilder, **fields: Any) -> None:
    fields.setdefault("model", "m")
    fields.setdefault("attempts", 1)
    fields.setdefault("latency", 0.1)
    builder.add(ok=True, outcome="succeeded", **fields)


def fail(builder: SummaryBuilder, **fields: Any) -> None:
    fields.setdefault("model", "m")
    fields.setdefault("attempts", 1)
    fields.setdefault("latency", 0.1)
    builder.add(ok=False, outcome="http_500", **fields)


def last_line(out: io.StringIO) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue().rsplit("\r", 1)[-1])


class FakeHealth:
    """What the progress needs of a client: its health state and a channel of transitions."""

    def __init__(self, state: str = "up") -> None:
        self.health_status = state
        self.send, self.receive = trio.open_memory_channel[HealthTransition](16)

    def health_transitions(self, buffer: int = 16) -> trio.MemoryReceiveChannel[HealthTransition]:
        return self.receive

    def go(self, state: str) -> None:
        previous = "up" if state == "down" else "down"
        self.send.send_nowait(
            HealthTransition(
                state=state,  # type: ignore[arg-type]
                previous=previous,  # type: ignore[arg-type]
                at=trio.current_time(),
                reason="cannot connect to the proxy",
            )
        )


# --- the final rate ----------------------------------------------------------------------------


def test_the_final_bar_shows_the_whole_runs_rate_as_the_summary_does() -> None:
    now = [0.0]
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, get_time=lambda: now[0])
    builder = SummaryBuilder()
    with BatchProgress(100, console=console) as bar:
        for _ in range(99):  # 99 answers in the first second...
            now[0] += 0.01
            ok(builder)
            bar.update(builder)
        now[0] = 30.0  # ...and the last one after a long wait for retries
        ok(builder)
        bar.update(builder)
    summary = builder.summary(elapsed=30.0, input_requests=100, already_done=0, invalid=0)
    assert f"{summary.requests_per_second:.2f}" == "3.33"
    assert "3.33 req/s" in last_line(out)


# --- plain lines where nobody watches a terminal -------------------------------------------------


async def test_a_non_terminal_gets_one_plain_line_every_interval(autojump_clock: object) -> None:
    out = io.StringIO()
    builder = SummaryBuilder()
    with BatchProgress(10, console=Console(file=out, width=200), interval=10.0) as bar:
        async with trio.open_nursery() as nursery:
            await nursery.start(bar.run, FakeHealth())
            await trio.sleep(5)
            ok(builder, attempts=2, cost=0.25)
            ok(builder, cost=0.25)
            fail(builder)
            bar.update(builder)
            assert out.getvalue() == ""  # nothing before the first interval
            await trio.sleep(5.5)
            first = out.getvalue()
            await trio.sleep(10)
            nursery.cancel_scope.cancel()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and first == lines[0] + "\n"
    assert "\x1b" not in out.getvalue()  # plain text, no terminal codes
    for figure in ("3/10", "0.30 req/s", "1 errors", "1 retries", "eta 24s", "cost $0.5000"):
        assert figure in lines[0], figure
    assert "0.00 req/s" in lines[1] and "eta -" in lines[1]


async def test_plain_lines_say_when_the_proxy_went_down_and_for_how_long(
    autojump_clock: object,
) -> None:
    out = io.StringIO()
    health = FakeHealth()
    with BatchProgress(10, console=Console(file=out, width=200), interval=10.0) as bar:
        async with trio.open_nursery() as nursery:
            await nursery.start(bar.run, health)
            await trio.sleep(3)
            health.go("down")
            await trio.sleep(30)  # lines at 10, 20, 30: down 7 s, 17 s, 27 s
            health.go("up")
            await trio.sleep(10)
            nursery.cancel_scope.cancel()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("proxy down: cannot connect to the proxy")
    progress = [line for line in lines if line.startswith("progress")]
    assert "proxy down for 7s" in progress[0]
    assert "proxy down for 27s" in progress[2]
    assert any(line.startswith("proxy back up after 30s") for line in lines)
    assert "proxy down" not in progress[3]


async def test_a_proxy_already_down_when_the_run_starts_shows_as_down(
    autojump_clock: object,
) -> None:
    out = io.StringIO()
    with BatchProgress(10, console=Console(file=out, width=200), interval=10.0) as bar:
        async with trio.open_nursery() as nursery:
            await nursery.start(bar.run, FakeHealth("down"))
            await trio.sleep(10.5)
            nursery.cancel_scope.cancel()
    assert "proxy down for 10s" in out.getvalue()


async def test_disabled_progress_prints_nothing_even_while_it_runs(autojump_clock: object) -> None:
    out = io.StringIO()
    health = FakeHealth()
    with BatchProgress(10, console=Console(file=out), enabled=False, interval=1.0) as bar:
        async with trio.open_nursery() as nursery:
            await nursery.start(bar.run, health)
            health.go("down")
            await trio.sleep(5)
            nursery.cancel_scope.cancel()
    assert out.getvalue() == ""


# --- the live bar -------------------------------------------------------------------------------


async def test_the_bar_shows_the_proxy_down_and_its_rate_falling(autojump_clock: object) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, get_time=trio.current_time)
    health = FakeHealth()
    builder = SummaryBuilder()
    with BatchProgress(100, console=console) as bar:
        async with trio.open_nursery() as nursery:
            await nursery.start(bar.run, health)
            for _ in range(10):
                await trio.sleep(0.5)
                ok(builder)
                bar.update(builder)
            health.go("down")
            await trio.sleep(42.5)  # ticks every second: the last at 47
            assert bar._progress is not None
            task = bar._progress.tasks[0]
            assert task.fields["health"] == "proxy down 42s"
            assert task.fields["req_rate"] == 0.0  # no answers in the last 10 s
            nursery.cancel_scope.cancel()
