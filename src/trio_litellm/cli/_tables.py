"""What the commands print as tables: a run's summary, an output file's usage, a batch's status,
a dry run's plan. Rendering only: the figures come from :mod:`trio_litellm.batch`.

Names, outcomes and paths from the files are printed as plain text, never as rich markup. On a
non-terminal rich prints no colour, and the layouts fit 80 columns, so they read fine in a log.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._histogram import Percentiles
from ..batch import BatchPlan, BatchSummary, CostEstimate, OutputUsage
from ..batch._plan import COMPLETION_DEFAULT, ModelCost
from ..batch._status import BatchStatus
from ..batch._summary import SUCCEEDED

__all__ = ["render_output_usage", "render_plan", "render_status", "render_summary"]


def _ms(seconds: float) -> str:
    """Milliseconds with the precision a reader needs: 0.42, 8.31, 42.7, 1,234."""
    ms = seconds * 1000.0
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 100:
        return f"{ms:.1f}"
    return f"{ms:,.0f}"


def _money(cost: float | None) -> str:
    """A cost in dollars, with the digits a small one needs; ``unknown`` for None."""
    if cost is None:
        return "unknown"
    return f"${cost:.6f}" if cost < 0.01 else f"${cost:,.4f}"


def _rate(value: float) -> str:
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"


def _percentiles_text(values: Percentiles | None, missing: str) -> Text:
    if values is None:
        return Text(missing, style="dim")
    return Text(
        f"p50 {_ms(values.p50)} · p95 {_ms(values.p95)} · "
        f"p99 {_ms(values.p99)} · max {_ms(values.max)} ms"
    )


def render_summary(summary: BatchSummary, console: Console) -> None:
    """Print the summary: labelled lines of requests, time, tokens and cost, an outcome table,
    latency and TTFT percentiles in milliseconds, and a per-model table.

    Model names and outcomes are printed as plain text, never as rich markup. On a non-terminal
    rich prints no colour, and the layout fits 80 columns, so it reads fine in a log.
    """
    s = summary
    cost = Text(_money(s.cost))
    if s.cost is None:
        cost.stylize("dim")
    elif not s.cost_complete:
        cost.append(" (incomplete: not every success reported a cost)", style="yellow")
    lines = Table.grid(padding=(0, 2))
    lines.add_column(style="bold", no_wrap=True)
    lines.add_column()
    lines.add_row(
        "Requests",
        f"{s.input_requests:,} in input · {s.already_done:,} already done · "
        f"{s.invalid:,} invalid · {s.ran:,} ran · {s.failed:,} failed",
    )
    lines.add_row(
        "Time",
        f"{s.elapsed:,.1f} s · {_rate(s.requests_per_second)} req/s · {s.retries:,} retries",
    )
    lines.add_row(
        "Tokens",
        f"{s.tokens_in:,} in · {s.tokens_out:,} out · {_rate(s.tokens_per_second)} tok/s",
    )
    lines.add_row("Cost", cost)
    if s.job is not None:
        job = s.job
        lines.add_row(
            "Whole job",
            f"{job.requests:,} in the output (every run) · {job.succeeded:,} succeeded · "
            f"{job.failed:,} failed",
        )
        job_cost = Text(
            f"{job.tokens_in:,} tokens in · {job.tokens_out:,} out · cost {_money(job.cost)}"
        )
        if job.cost is not None and not job.cost_complete:
            job_cost.append(" (incomplete)", style="yellow")
        lines.add_row("", job_cost)
    lines.add_row("Latency", _percentiles_text(s.latency, "no request reached the proxy"))
    lines.add_row("TTFT", _percentiles_text(s.ttft, "no streams"))
    if s.interrupted:
        lines.add_row(
            "Stopped",
            Text(
                "interrupted: the requests in flight were cancelled and are not in the output; "
                "the same command runs them",
                style="yellow",
            ),
        )
    if s.failed_in_output:
        plural = "line remains" if s.failed_in_output == 1 else "lines remain"
        lines.add_row(
            "Output",
            Text(
                f"{s.failed_in_output:,} failed {plural} in the output; "
                "--retry-failed runs them again",
                style="yellow",
            ),
        )

    outcomes = Table(box=None, pad_edge=False, padding=(0, 2))
    outcomes.add_column("outcome")
    outcomes.add_column("count", justify="right")
    outcomes.add_column("share", justify="right")
    for outcome, count in s.outcomes.items():
        style = "green" if outcome == SUCCEEDED else "red"
        share = f"{100.0 * count / s.ran:.1f}%" if s.ran else "-"
        outcomes.add_row(Text(outcome, style=style), f"{count:,}", share)

    models = Table(box=None, pad_edge=False, padding=(0, 1))
    models.add_column("model", overflow="fold")
    for name in ("requests", "failed", "tokens in", "tokens out", "cost", "p50 ms", "p99 ms"):
        models.add_column(name, justify="right", no_wrap=True)
    for model, m in s.per_model.items():
        lat = m.latency
        models.add_row(
            Text(model),
            f"{m.requests:,}",
            f"{m.failed:,}",
            f"{m.tokens_in:,}",
            f"{m.tokens_out:,}",
            "-" if m.cost is None else _money(m.cost),
            "-" if lat is None else _ms(lat.p50),
            "-" if lat is None else _ms(lat.p99),
        )

    console.print(lines)
    if s.outcomes:
        console.print(outcomes)
    if s.per_model:
        console.print(models)


def render_output_usage(usage: OutputUsage, console: Console) -> None:
    """Print the totals, an outcome table and a per-model table (plain text, fits 80 columns)."""
    u = usage
    cost = Text(_money(u.cost))
    if u.cost is None:
        cost.append(" (no line in the file carries a cost)", style="dim")
    elif not u.cost_complete:
        cost.append(" (incomplete: not every success carries a cost)", style="yellow")
    lines = Table.grid(padding=(0, 2))
    lines.add_column(style="bold", no_wrap=True)
    lines.add_column()
    lines.add_row("File", Text(u.path))
    lines.add_row("Requests", f"{u.requests:,} · {u.succeeded:,} succeeded · {u.failed:,} failed")
    if u.duplicates:
        lines.add_row(
            "Duplicates",
            Text(
                f"of {u.requests:,} lines, {u.duplicates:,} repeat a custom_id an earlier line "
                "has (two runs wrote the file at once, or it was edited); every line is counted",
                style="yellow",
            ),
        )
    lines.add_row("Tokens", f"{u.tokens_in:,} in · {u.tokens_out:,} out")
    lines.add_row("Cost", cost)
    lines.add_row("Latency", Text("not in the output file (see the run's summary)", style="dim"))

    outcomes = Table(box=None, pad_edge=False, padding=(0, 2))
    outcomes.add_column("outcome")
    outcomes.add_column("count", justify="right")
    outcomes.add_column("share", justify="right")
    for outcome, count in u.outcomes.items():
        style = "green" if outcome == SUCCEEDED else "red"
        outcomes.add_row(
            Text(outcome, style=style), f"{count:,}", f"{100.0 * count / u.requests:.1f}%"
        )

    models = Table(box=None, pad_edge=False, padding=(0, 1))
    models.add_column("model", overflow="fold")
    for column in ("requests", "failed", "tokens in", "tokens out", "cost"):
        models.add_column(column, justify="right", no_wrap=True)
    for model, m in u.per_model.items():
        models.add_row(
            Text(model),
            f"{m.requests:,}",
            f"{m.failed:,}",
            f"{m.tokens_in:,}",
            f"{m.tokens_out:,}",
            "-" if m.cost is None else _money(m.cost),
        )

    console.print(lines)
    if u.outcomes:
        console.print(outcomes)
    if u.per_model:
        console.print(models)


def render_status(status: BatchStatus, console: Console, *, title: str) -> None:
    """The status as a two-column table."""
    table = Table(title=title, show_header=False)
    table.add_row("input requests", f"{status.input_requests:,}")
    table.add_row("done", f"{status.done:,}")
    table.add_row("  succeeded", f"{status.succeeded:,}")
    table.add_row("  failed", f"{status.failed:,}")
    table.add_row("remaining", f"{status.remaining:,}")
    table.add_row(
        "cost so far",
        f"${status.cost:.6f} ({status.costed:,} answers)" if status.cost is not None else "unknown",
    )
    if status.input_duplicates or status.invalid_input_lines:
        table.add_row("input duplicates", f"{status.input_duplicates:,}")
        table.add_row("input lines without an id", f"{status.invalid_input_lines:,}")
    table.add_row("duplicates in output", _counted(status.output_duplicates, status.duplicate_ids))
    table.add_row("not in the input", _counted(status.unknown, status.unknown_ids))
    if status.torn_bytes:
        table.add_row(
            "last line", f"incomplete ({status.torn_bytes:,} bytes: being written, or torn)"
        )
    console.print(table)


def _counted(count: int, ids: list[str]) -> str:
    if not count:
        return "0"
    more = ", ..." if count > len(ids) else ""
    return f"{count:,}: {', '.join(ids)}{more}"


def render_plan(
    plan: BatchPlan, cost: CostEstimate, console: Console, *, rpm: int | None, tpm: int | None
) -> None:
    """A dry run's plan: what would run, its tokens and cost, per model, and the least time the
    rate limits allow."""
    scan = plan.scan
    table = Table(title=f"plan for {scan.path}", show_header=False)
    table.add_row("requests in file", str(scan.lines))
    table.add_row("in this shard", str(scan.in_shard))
    for url, count in sorted(scan.by_url.items()):
        table.add_row(f"  {url}", str(count))
    table.add_row("already in the output", str(plan.already_done))
    if plan.foreign:
        table.add_row(
            "not in the input",
            f"{plan.foreign:,} custom_id{'s' if plan.foreign != 1 else ''} of the output, "
            f"e.g. {plan.foreign_example!r}: "
            "another job's output?",
        )
    retry = f" ({plan.to_retry:,} failed before)" if plan.to_retry else ""
    table.add_row("to run", f"{plan.to_run}{retry}")
    table.add_row(
        "estimated tokens",
        f"{plan.prompt_tokens + plan.completion_tokens:,} = {plan.prompt_tokens:,} prompt + "
        f"{plan.completion_tokens:,} completion",
    )
    table.add_row("completion counted at", f"max_tokens, else {COMPLETION_DEFAULT} per choice")
    for name, figures in sorted(plan.per_model.items()):
        table.add_row(
            f"  model {name}",
            f"{figures.requests:,} requests, {figures.prompt_tokens:,} + "
            f"{figures.completion_tokens:,} tokens, {_model_cost(cost.per_model.get(name))}",
        )
    table.add_row("estimated cost", _cost_line(plan, cost))
    to_run = plan.to_run
    if rpm:
        table.add_row("at least (rpm)", f"{to_run / rpm:.1f} min")
    if tpm:
        table.add_row(
            "at least (tpm)", f"{(plan.prompt_tokens + plan.completion_tokens) / tpm:.1f} min"
        )
    console.print(table)


def _model_cost(cost: ModelCost | None) -> str:
    if cost is None:  # no prices at all: the total says why
        return "cost unknown"
    if cost.cost is None:
        return f"cost unknown ({cost.unknown_because})"
    return _money(cost.cost)


def _cost_line(plan: BatchPlan, cost: CostEstimate) -> str:
    """The total: known, partly known (naming what it leaves out) or unknown (saying why)."""
    if not plan.per_model:
        return _money(0.0)
    if cost.unknown_because is not None:
        return f"unknown ({cost.unknown_because})"
    if not cost.unknown:
        return _money(cost.known)
    if len(cost.unknown) == len(plan.per_model):
        return "unknown (no model is priced)"
    return f"{_money(cost.known)} and unknown for {', '.join(cost.unknown)} (not priced)"
