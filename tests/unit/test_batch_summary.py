"""The statistics a batch run keeps, their rendering, and the progress line."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from trio_litellm.batch._summary import (
    BatchSummary,
    JobTotals,
    Percentiles,
    SummaryBuilder,
    summary_to_dict,
    write_summary_json,
)
from trio_litellm.cli import BatchProgress, render_summary


def summarize(builder: SummaryBuilder, *, elapsed: float = 10.0) -> BatchSummary:
    return builder.summary(elapsed=elapsed, input_requests=builder.done, already_done=0, invalid=0)


def ok(builder: SummaryBuilder, **fields: Any) -> None:
    fields.setdefault("model", "m")
    fields.setdefault("attempts", 1)
    fields.setdefault("latency", 0.1)
    builder.add(ok=True, outcome="succeeded", **fields)


def fail(builder: SummaryBuilder, outcome: str = "RateLimitError", **fields: Any) -> None:
    fields.setdefault("model", "m")
    fields.setdefault("attempts", 1)
    fields.setdefault("latency", 0.1)
    builder.add(ok=False, outcome=outcome, **fields)


def nearest_rank_reference(values: list[float], percent: int) -> float:
    """The smallest observed value with at least ``percent``% of the values at or below it."""
    n = len(values)
    return min(v for v in values if sum(1 for w in values if w <= v) * 100 >= percent * n)


durations = st.lists(
    st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=300,
)


# ---- percentiles ------------------------------------------------------------------------------


@given(durations)
def test_latency_percentiles_are_nearest_rank(values: list[float]) -> None:
    builder = SummaryBuilder()
    for value in values:
        ok(builder, latency=value)
    latency = summarize(builder).latency
    assert latency == Percentiles(
        p50=nearest_rank_reference(values, 50),
        p95=nearest_rank_reference(values, 95),
        p99=nearest_rank_reference(values, 99),
        max=max(values),
    )


@given(durations)
def test_ttft_percentiles_are_nearest_rank(values: list[float]) -> None:
    builder = SummaryBuilder()
    for value in values:
        ok(builder, ttft=value)
    ttft = summarize(builder).ttft
    assert ttft is not None
    assert (ttft.p50, ttft.p95, ttft.p99, ttft.max) == tuple(
        nearest_rank_reference(values, p) for p in (50, 95, 99, 100)
    )


@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), durations, min_size=1))
def test_per_model_latency_covers_only_that_model(by_model: dict[str, list[float]]) -> None:
    builder = SummaryBuilder()
    for model, values in by_model.items():
        for value in values:
            ok(builder, model=model, latency=value)
    summary = summarize(builder)
    for model, values in by_model.items():
        latency = summary.per_model[model].latency
        assert latency is not None
        assert latency.p50 == nearest_rank_reference(values, 50)
        assert latency.max == max(values)
    everything = [v for values in by_model.values() for v in values]
    assert summary.latency is not None
    assert summary.latency.p99 == nearest_rank_reference(everything, 99)


def test_percentiles_of_one_hundred_values_are_the_ranked_values() -> None:
    builder = SummaryBuilder()
    for ms in range(100, 0, -1):
        ok(builder, latency=ms / 1000)
    assert summarize(builder).latency == Percentiles(p50=0.05, p95=0.095, p99=0.099, max=0.1)


def test_no_requests_means_no_latency_and_no_ttft() -> None:
    summary = summarize(SummaryBuilder())
    assert summary.latency is None
    assert summary.ttft is None
    assert summary.ran == 0
    assert summary.per_model == {}


def test_ttft_is_none_without_streams() -> None:
    builder = SummaryBuilder()
    ok(builder)
    fail(builder)
    summary = summarize(builder)
    assert summary.latency is not None
    assert summary.ttft is None


def test_requests_that_never_reached_the_proxy_have_no_latency() -> None:
    builder = SummaryBuilder()
    fail(builder, "invalid_line", model="-", attempts=0, latency=0.0)
    ok(builder, latency=0.5)
    summary = summarize(builder)
    assert summary.latency == Percentiles(p50=0.5, p95=0.5, p99=0.5, max=0.5)
    assert summary.per_model["-"].latency is None
    assert summary.outcomes["invalid_line"] == 1
    assert summary.retries == 0


# ---- counts -------------------------------------------------------------------------------------


def test_outcomes_are_counted_successes_first_then_by_frequency() -> None:
    builder = SummaryBuilder()
    for _ in range(3):
        ok(builder)
    fail(builder, "http_400")
    for _ in range(2):
        fail(builder, "RateLimitError")
    summary = summarize(builder)
    assert list(summary.outcomes.items()) == [
        ("succeeded", 3),
        ("RateLimitError", 2),
        ("http_400", 1),
    ]
    assert (summary.ran, summary.succeeded, summary.failed) == (6, 3, 3)


def test_counts_are_kept_per_model() -> None:
    builder = SummaryBuilder()
    ok(builder, model="a", tokens_in=10, tokens_out=5)
    ok(builder, model="a", tokens_in=20, tokens_out=7)
    fail(builder, model="a")
    fail(builder, model="b", outcome="ProxyConnectionError")
    per_model = summarize(builder).per_model
    a, b = per_model["a"], per_model["b"]
    assert (a.requests, a.succeeded, a.failed, a.tokens_in, a.tokens_out) == (3, 2, 1, 30, 12)
    assert (b.requests, b.succeeded, b.failed, b.tokens_in, b.tokens_out) == (1, 0, 1, 0, 0)


def test_retries_are_the_attempts_beyond_the_first() -> None:
    builder = SummaryBuilder()
    for attempts in (1, 2, 5, 1, 3):
        ok(builder, attempts=attempts)
    assert builder.retries == 0 + 1 + 4 + 0 + 2
    assert summarize(builder).retries == 7


def test_the_summary_copies_the_inputs_counts() -> None:
    builder = SummaryBuilder()
    ok(builder)
    summary = builder.summary(elapsed=1.0, input_requests=10, already_done=7, invalid=2)
    assert (summary.input_requests, summary.already_done, summary.invalid) == (10, 7, 2)


def test_failed_lines_in_the_output_count_earlier_runs_and_this_one() -> None:
    builder = SummaryBuilder()
    ok(builder)
    fail(builder)
    summary = builder.summary(
        elapsed=1.0, input_requests=5, already_done=3, invalid=0, failed_before=2
    )
    assert (summary.failed, summary.failed_in_output) == (1, 3)


def test_a_run_with_nothing_to_do_still_tells_the_failures_left_in_the_output() -> None:
    summary = SummaryBuilder().summary(
        elapsed=0.0, input_requests=3, already_done=3, invalid=0, failed_before=1
    )
    text = rendered(summary)
    assert "0 failed" in text
    assert "1 failed line remains in the output; --retry-failed runs them again" in text


def test_an_interrupted_run_says_so_in_its_summary_and_json(tmp_path: Path) -> None:
    builder = SummaryBuilder()
    ok(builder)
    summary = builder.summary(
        elapsed=1.0, input_requests=5, already_done=0, invalid=0, interrupted=True
    )
    assert "interrupted" in rendered(summary)
    write_summary_json(summary, tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["interrupted"] is True


def test_the_whole_job_adds_this_run_to_what_the_output_held() -> None:
    builder = SummaryBuilder()
    ok(builder, tokens_in=3, tokens_out=4, cost=0.5)
    fail(builder)
    before = JobTotals(
        requests=10,
        succeeded=9,
        failed=1,
        tokens_in=30,
        tokens_out=40,
        cost=4.5,
        cost_complete=True,
    )
    summary = builder.summary(
        elapsed=1.0, input_requests=12, already_done=10, invalid=0, failed_before=1, before=before
    )
    assert summary.cost == 0.5  # this run's, beside the job's
    assert summary.job == JobTotals(
        requests=12,
        succeeded=10,
        failed=2,
        tokens_in=33,
        tokens_out=44,
        cost=5.0,
        cost_complete=True,
    )
    text = rendered(summary)
    assert "12 in the output (every run)" in text and "cost $5.0000" in text


def test_live_counters_follow_every_add() -> None:
    builder = SummaryBuilder()
    ok(builder, tokens_in=3, tokens_out=4, cost=0.5, attempts=2)
    fail(builder, attempts=3)
    assert (builder.done, builder.failed, builder.succeeded, builder.retries) == (2, 1, 1, 3)
    assert (builder.tokens_in, builder.tokens_out, builder.cost) == (3, 4, 0.5)


# ---- tokens, cost and rates ---------------------------------------------------------------------


def test_tokens_and_cost_are_summed() -> None:
    builder = SummaryBuilder()
    ok(builder, model="a", tokens_in=100, tokens_out=10, cost=0.25)
    ok(builder, model="b", tokens_in=200, tokens_out=20, cost=0.5)
    summary = summarize(builder)
    assert (summary.tokens_in, summary.tokens_out) == (300, 30)
    assert summary.cost == pytest.approx(0.75)
    assert summary.cost_complete is True
    assert summary.per_model["a"].cost == pytest.approx(0.25)


def test_cost_is_none_when_no_request_reported_one() -> None:
    builder = SummaryBuilder()
    ok(builder, model="a")
    fail(builder, model="b")
    summary = summarize(builder)
    assert summary.cost is None
    assert summary.cost_complete is False
    assert summary.per_model["a"].cost is None


def test_cost_is_incomplete_when_only_some_successes_reported_one() -> None:
    builder = SummaryBuilder()
    ok(builder, model="a", cost=0.1)
    ok(builder, model="b")
    summary = summarize(builder)
    assert summary.cost == pytest.approx(0.1)
    assert summary.cost_complete is False
    assert summary.per_model["b"].cost is None


def test_failures_without_cost_leave_the_cost_complete() -> None:
    builder = SummaryBuilder()
    ok(builder, cost=0.1)
    fail(builder)
    assert summarize(builder).cost_complete is True


def test_rates_are_over_the_elapsed_time() -> None:
    builder = SummaryBuilder()
    for _ in range(10):
        ok(builder, tokens_in=30, tokens_out=20)
    summary = summarize(builder, elapsed=4.0)
    assert summary.requests_per_second == 2.5
    assert summary.tokens_per_second == 125.0


def test_rates_are_zero_when_no_time_elapsed() -> None:
    builder = SummaryBuilder()
    ok(builder, tokens_in=1)
    summary = summarize(builder, elapsed=0.0)
    assert summary.requests_per_second == 0.0
    assert summary.tokens_per_second == 0.0


# ---- output -------------------------------------------------------------------------------------


def sample_summary() -> BatchSummary:
    builder = SummaryBuilder()
    for i in range(95):
        ok(
            builder,
            model="gpt-4o-mini",
            latency=0.2,
            ttft=0.05,
            tokens_in=1000,
            tokens_out=500,
            cost=0.01,
            attempts=1 + i % 2,
        )
    for _ in range(5):
        fail(builder, "RateLimitError", model="claude-[haiku]", latency=1.5, attempts=3)
    return builder.summary(elapsed=20.0, input_requests=120, already_done=20, invalid=0)


def rendered(summary: BatchSummary) -> str:
    out = io.StringIO()
    render_summary(summary, Console(file=out, width=120))
    return out.getvalue()


def test_render_summary_shows_the_key_figures() -> None:
    text = rendered(sample_summary())
    for figure in (
        "120 in input",
        "20 already done",
        "100 ran",
        "5 failed",
        "succeeded",
        "95.0%",
        "RateLimitError",
        "5.0%",
        "20.0 s",
        "5.00 req/s",
        "57 retries",
        "95,000 in",
        "47,500 out",
        "7,125 tok/s",
        "$0.9500",
        "p50 200",
        "max 1,500 ms",
        "p99 50.0",
        "gpt-4o-mini",
        "claude-[haiku]",
    ):
        assert figure in text, figure
    assert "\x1b[" not in text  # no colour when not a terminal


def test_render_summary_says_when_cost_and_ttft_are_unknown() -> None:
    builder = SummaryBuilder()
    ok(builder)
    text = rendered(summarize(builder))
    assert "unknown" in text
    assert "no streams" in text


def test_render_summary_of_an_empty_run() -> None:
    text = rendered(summarize(SummaryBuilder(), elapsed=0.0))
    assert "0 ran" in text
    assert "no request reached the proxy" in text


def test_render_summary_flags_an_incomplete_cost() -> None:
    builder = SummaryBuilder()
    ok(builder, cost=0.002)
    ok(builder)
    text = rendered(summarize(builder))
    assert "$0.002000" in text
    assert "incomplete" in text


def test_write_summary_json_round_trips(tmp_path: Path) -> None:
    summary = sample_summary()
    path = tmp_path / "summary.json"
    write_summary_json(summary, path)
    assert msgspec.json.decode(path.read_bytes(), type=BatchSummary) == summary
    assert json.loads(path.read_text()) == summary_to_dict(summary)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_write_summary_json_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text("old")
    empty = summarize(SummaryBuilder())
    write_summary_json(empty, str(path))
    assert msgspec.json.decode(path.read_bytes(), type=BatchSummary) == empty
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_summary_to_dict_holds_plain_values() -> None:
    as_dict = summary_to_dict(sample_summary())
    assert as_dict["ran"] == 100
    assert as_dict["outcomes"] == {"succeeded": 95, "RateLimitError": 5}
    per_model: Any = as_dict["per_model"]
    assert per_model["gpt-4o-mini"]["latency"]["p50"] == 0.2


def last_line(out: io.StringIO) -> str:
    """The last frame a live display drew, without its escape codes."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue().rsplit("\r", 1)[-1])


# ---- progress -----------------------------------------------------------------------------------


def test_disabled_progress_writes_nothing() -> None:
    out = io.StringIO()
    builder = SummaryBuilder()
    with BatchProgress(3, console=Console(file=out), enabled=False) as bar:
        ok(builder)
        bar.update(builder)
        bar.finish()
    assert out.getvalue() == ""


def test_progress_on_a_non_terminal_is_no_bar_and_prints_nothing_by_itself() -> None:
    out = io.StringIO()
    builder = SummaryBuilder()
    with BatchProgress(3, console=Console(file=out)) as bar:
        assert not bar.live  # plain lines instead, printed by bar.run (test_batch_progress)
        fail(builder)
        bar.update(builder)
    assert out.getvalue() == ""


def test_progress_on_a_terminal_shows_done_total_errors_and_retries() -> None:
    now = [100.0]
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, get_time=lambda: now[0])
    builder = SummaryBuilder()
    with BatchProgress(10, console=console) as bar:
        assert bar.enabled
        for attempts in (1, 2, 1):
            now[0] += 1.0
            ok(builder, attempts=attempts, tokens_out=40)
            bar.update(builder)
        now[0] += 1.0
        fail(builder, attempts=3)
        fail(builder)
        bar.update(builder)
    final = last_line(out)
    for figure in (" 5/10", "2 err", "3 retries", "1.25 req/s", "30.0 tok/s"):
        assert figure in final, figure


def test_progress_finish_leaves_the_final_line_and_is_idempotent() -> None:
    out = io.StringIO()
    builder = SummaryBuilder()
    bar = BatchProgress(2, console=Console(file=out, force_terminal=True, width=120))
    with bar:
        ok(builder)
        ok(builder)
        bar.update(builder)
        bar.finish()
        written = out.getvalue()
        bar.finish()
    assert out.getvalue() == written
    assert "2/2" in last_line(out)


def test_progress_updates_are_throttled_but_the_last_one_is_shown() -> None:
    now = [0.0]
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, get_time=lambda: now[0])
    builder = SummaryBuilder()
    with BatchProgress(1000, console=console) as bar:
        for _ in range(999):
            ok(builder)
            bar.update(builder)
        # The clock stood still, so only the first update reached the display.
        assert bar._progress is not None
        assert bar._progress.tasks[0].completed == 1
        now[0] = 1.0
    assert " 999/1000" in last_line(out)
