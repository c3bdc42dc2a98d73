"""The ``trio-litellm`` command: batch jobs, their status and usage, a streamed chat, models,
health, recorder dumps, the fake provider.

Exit codes (every command):

- 0: done; for ``batch``, every request succeeded (or the dry-run plan is valid)
- 1: a request failed: ``batch`` finished but its output holds failed lines, this run's or
  earlier ones' (``--retry-failed`` runs them again); the proxy answered the request of ``chat``,
  ``models`` or ``model-info`` with an error (an unknown model, an upstream 500), or it timed
  out; ``health --deep`` found an unhealthy deployment
- 2: bad usage or an invalid input file (every bad line is listed with its number)
- 3: the proxy could not be used at all: it cannot be reached, it refused the key, or the
  configuration is invalid
- 130: interrupted (Ctrl-C); a ``batch`` run resumes where it stopped when run again
"""

from __future__ import annotations

import logging
import re
import signal
import sys
from pathlib import Path
from typing import Annotated

import cyclopts
import trio
from cyclopts import Parameter
from rich.console import Console
from rich.table import Table

from ._client import Client, open_client
from ._config import ClientConfig, ModelLimits
from ._dump_view import render_dump
from ._errors import (
    AuthenticationError,
    ConfigError,
    DumpFileError,
    InvalidRequestError,
    LiteLLMError,
    ProxyCertificateError,
    ProxyConnectionError,
)
from ._nursery import single_leaf
from ._probes import DeploymentStatus
from ._recorder import DebugRecorder, RecordedExchange, read_dump
from ._version import __version__
from .batch import (
    BatchInputError,
    BatchPlan,
    CostEstimate,
    OutputCorruptError,
    OutputLockedError,
    estimate_cost,
    plan_batch,
    prices_from_infos,
    read_output_usage,
    render_output_usage,
    render_summary,
    run_batch,
    write_summary_json,
)
from .batch._plan import COMPLETION_DEFAULT, ModelCost, ModelPrice, plan_to_json
from .batch._report import usage_to_json
from .batch._status import read_status, render_status, status_to_json
from .batch._summary import _money
from .testing.fake_provider.__main__ import app as fake_provider_app

__all__ = ["app", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PROXY, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

app = cyclopts.App(
    name="trio-litellm",
    help="A trio-native client for the LiteLLM proxy.\n\nExit codes: 0 done, 1 a request failed "
    "(some batch requests, or the proxy answered an error), 2 bad usage or invalid input, "
    "3 proxy unreachable, key refused or bad configuration, 130 interrupted.",
    version=__version__,
    backend="trio",
    # Not cyclopts' sys.exit(130): main() prints the "interrupted" line, which a bare
    # KeyboardInterrupt leaving a command would otherwise never reach.
    suppress_keyboard_interrupt=False,
)
app.command(fake_provider_app, name="fake-provider")

out = Console()
err = Console(stderr=True)

ProxyUrl = Annotated[
    str | None,
    Parameter(help="LiteLLM proxy URL (default: $LITELLM_PROXY_URL or http://localhost:4000)."),
]
ApiKey = Annotated[
    str | None,
    Parameter(help="Proxy key (default: $LITELLM_API_KEY). Never printed.", show_default=False),
]


class _Exit(Exception):
    """Leave a command with an exit code after printing a message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _config(proxy_url: str | None, api_key: str | None, **options: object) -> ClientConfig:
    try:
        return ClientConfig(proxy_url=proxy_url, api_key=api_key, **options)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise _Exit(EXIT_PROXY, f"bad configuration: {exc}") from None


class _Interrupts:
    """Ctrl-C during a batch as a signal the run watches, not a KeyboardInterrupt raised at any
    bytecode: the run stops cleanly (requests in flight cancelled, the summary printed and
    written, marked interrupted). Outside the run itself (connecting, the health check) the first
    Ctrl-C cancels the command at once; so does a second one during the run."""

    def __init__(self) -> None:
        self.count = 0
        self.stop = trio.Event()
        self.scope = trio.CancelScope()
        self.graceful = False

    async def watch(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                self.count += 1
                self.stop.set()
                if not self.graceful or self.count > 1:
                    self.scope.cancel()


def _parse_shard(shard: str | None) -> tuple[int, int] | None:
    if shard is None:
        return None
    match = re.fullmatch(r"(\d+)/(\d+)", shard.strip())
    if not match or int(match.group(2)) < 1 or int(match.group(1)) >= int(match.group(2)):
        raise _Exit(EXIT_USAGE, f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {shard!r}")
    return int(match.group(1)), int(match.group(2))


_MODEL_LIMIT_USAGE = "MODEL=rpm:N,tpm:N,concurrency:N (any of the three)"
_MODEL_LIMIT_FIELDS = {"rpm": "rpm", "tpm": "tpm", "concurrency": "max_in_flight"}


def _parse_model_limits(flags: list[str] | None) -> dict[str, ModelLimits]:
    """``--model-limit`` flags as the client's ``model_limits``."""
    limits: dict[str, ModelLimits] = {}
    for flag in flags or ():
        model, _, spec = flag.rpartition("=")
        model = model.strip()
        if not model or not spec.strip():
            raise _Exit(EXIT_USAGE, f"--model-limit must be {_MODEL_LIMIT_USAGE}, got {flag!r}")
        if model in limits:
            raise _Exit(EXIT_USAGE, f"--model-limit: {model!r} is given twice")
        values: dict[str, int] = {}
        for part in spec.split(","):
            name, colon, value = part.strip().partition(":")
            field = _MODEL_LIMIT_FIELDS.get(name.strip())
            if field is None or not colon:
                raise _Exit(
                    EXIT_USAGE,
                    f"--model-limit {flag!r}: {part.strip()!r} is not one of rpm:N, tpm:N, "
                    "concurrency:N",
                )
            if field in values:
                raise _Exit(EXIT_USAGE, f"--model-limit {flag!r}: {name.strip()} is given twice")
            if not value.strip().isdigit() or int(value) < 1:
                raise _Exit(
                    EXIT_USAGE,
                    f"--model-limit {flag!r}: {name.strip()} must be a whole number >= 1, "
                    f"got {value.strip()!r}",
                )
            values[field] = int(value)
        limits[model] = ModelLimits(**values)
    return limits


@app.command
async def batch(
    input: Path,
    /,
    *,
    output: Annotated[
        Path, Parameter(name=["--output", "-o"], help="Output JSONL (appended to; resumed from).")
    ],
    proxy_url: ProxyUrl = None,
    api_key: ApiKey = None,
    concurrency: Annotated[int, Parameter(help="Requests in flight at once.")] = 64,
    rpm: Annotated[int | None, Parameter(help="Requests per minute to stay under.")] = None,
    tpm: Annotated[
        int | None, Parameter(help="Tokens per minute to stay under (estimated, then reconciled).")
    ] = None,
    model_limit: Annotated[
        list[str] | None,
        Parameter(
            negative=(),
            consume_multiple=False,
            help="Limits of one model's requests, on top of --concurrency/--rpm/--tpm: "
            "MODEL=rpm:N,tpm:N,concurrency:N, any of the three; repeat for each model.",
        ),
    ] = None,
    model: Annotated[
        str | None, Parameter(help="Send every request to this model instead of the body's.")
    ] = None,
    max_retries: Annotated[
        int, Parameter(help="Retries per request (429, 5xx, timeouts, dropped connections).")
    ] = 5,
    shard: Annotated[
        str | None, Parameter(help="Run only the custom_ids of shard I of N, e.g. 0/4.")
    ] = None,
    dry_run: Annotated[
        bool,
        Parameter(
            help="Validate every line and print the plan with its estimated cost; send no "
            "request (the proxy is asked only for its prices)."
        ),
    ] = False,
    offline: Annotated[
        bool, Parameter(help="With --dry-run: do not ask the proxy for prices (cost unknown).")
    ] = False,
    json: Annotated[
        bool, Parameter(help="With --dry-run: print the plan as JSON instead of a table.")
    ] = False,
    retry_failed: Annotated[
        bool, Parameter(help="Run again only the requests that failed before.")
    ] = False,
    skip_invalid: Annotated[
        bool, Parameter(help="Write invalid lines to the output as errors instead of stopping.")
    ] = False,
    summary_json: Annotated[
        Path | None, Parameter(help="Also write the summary as JSON to this file.")
    ] = None,
    progress: Annotated[
        bool | None,
        Parameter(
            help="Show progress: a bar on a terminal, else a plain line every "
            "--progress-interval seconds (default: on; --no-progress for none)."
        ),
    ] = None,
    progress_interval: Annotated[
        float, Parameter(help="Seconds between plain progress lines (when not on a terminal).")
    ] = 10.0,
    record_to: Annotated[
        Path | None,
        Parameter(
            help="When the run ends, however it ends, write the last --record-last requests "
            "with their bodies and answers (no key) to this JSONL file; show it with "
            "`trio-litellm recorded FILE`."
        ),
    ] = None,
    record_last: Annotated[int, Parameter(help="Requests kept for --record-to.")] = 1000,
    record_body_limit: Annotated[
        int, Parameter(help="Bytes kept of each body for --record-to; the rest is cut off.")
    ] = 4096,
    unavailable_timeout: Annotated[
        float,
        Parameter(
            help="Seconds a request waits, in all, for a proxy that went down (a restart) "
            "before it fails; failed lines rerun with --retry-failed."
        ),
    ] = 300.0,
) -> int:
    """Run an OpenAI Batch API input file through the proxy; write OpenAI batch output lines.

    Resumable: running the same command again skips the custom_ids already in the output.
    """
    shard_pair = _parse_shard(shard)
    model_limits = _parse_model_limits(model_limit)
    if not output.parent.is_dir():  # a typo in the path must not become a new directory tree
        raise _Exit(EXIT_USAGE, f"the output's directory does not exist: {output.parent}")
    if (offline or json) and not dry_run:
        flag = "--offline" if offline else "--json"
        raise _Exit(EXIT_USAGE, f"{flag} goes with --dry-run (a run's figures: --summary-json)")
    if dry_run:
        plan = plan_batch(input, output, model=model, shard=shard_pair, retry_failed=retry_failed)
        if offline:
            cost = estimate_cost(plan, None, unknown_because="--offline: the proxy was not asked")
        else:
            prices, why = await _fetch_prices(proxy_url, api_key)
            cost = estimate_cost(plan, prices, unknown_because=why)
        if json:
            sys.stdout.buffer.write(plan_to_json(plan, cost) + b"\n")
            sys.stdout.flush()
        else:
            _print_plan(plan, cost, rpm=rpm, tpm=tpm)
        return EXIT_OK
    if concurrency < 1:
        raise _Exit(EXIT_USAGE, f"--concurrency must be at least 1, got {concurrency}")
    if not progress_interval > 0:
        raise _Exit(EXIT_USAGE, f"--progress-interval must be above 0, got {progress_interval}")
    if record_to is not None and (record_last < 1 or record_body_limit < 0):
        raise _Exit(
            EXIT_USAGE, "--record-last must be at least 1 and --record-body-limit at least 0"
        )
    config = _config(
        proxy_url,
        api_key,
        max_connections=concurrency,
        max_retries=max_retries,
        rpm=rpm,
        tpm=tpm,
        model_limits=model_limits,
        record_last=record_last if record_to is not None else 0,
        record_body_limit=record_body_limit,
        unavailable_timeout=unavailable_timeout,
    )
    recorder: DebugRecorder | None = None
    interrupts = _Interrupts()
    summary = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(interrupts.watch)
            with interrupts.scope:
                async with open_client(config) as client:
                    recorder = client.recorder
                    health = await client.health()
                    if not health.healthy:
                        raise _Exit(
                            EXIT_PROXY,
                            f"the proxy at {config.display_url} is not ready: {health.error}",
                        )
                    await client.list_models()  # a refused key stops here, not once per line
                    interrupts.graceful = True
                    summary = await run_batch(
                        client,
                        input,
                        output,
                        model=model,
                        shard=shard_pair,
                        retry_failed=retry_failed,
                        skip_invalid=skip_invalid,
                        console=err,
                        progress=progress,
                        progress_interval=progress_interval,
                        stop=interrupts.stop,
                    )
                    interrupts.graceful = False
            nursery.cancel_scope.cancel()
    finally:
        # After the client closed, so the requests it cancelled are recorded too.
        if recorder is not None and record_to is not None:
            _write_dump(recorder, record_to)
    if summary is not None:
        render_summary(summary, err)
        if summary_json is not None:
            write_summary_json(summary, summary_json)
    if summary is None or interrupts.count:  # only an interrupt leaves without a summary
        raise KeyboardInterrupt
    # The output's state, not this run's: a rerun that had nothing left to do still exits 1 while
    # earlier failures are in the file, so "retry until exit 0" does not stop on a bad output.
    return EXIT_OK if summary.failed_in_output == 0 else EXIT_FAILED


def _write_dump(recorder: DebugRecorder, path: Path) -> None:
    """Write the recorder's dump; a failure is reported, never raised over the run's outcome."""
    try:
        written = recorder.dump(path)
    except OSError as exc:
        err.print("[yellow]could not write the recording:[/] ", end="")
        err.print(str(exc), markup=False, highlight=False)
        return
    err.print(f"recorded the last {written:,} requests to ", end="")
    err.print(str(path), markup=False, highlight=False)


@app.command
def usage(
    output: Annotated[Path, Parameter(help="A batch output file (`batch -o FILE`).")],
    /,
    *,
    input: Annotated[
        Path | None,
        Parameter(
            help="The run's input file: count every line, failures too, under the model "
            "its request asked for (default: the model the answer names)."
        ),
    ] = None,
    json: Annotated[bool, Parameter(help="Print the totals as JSON instead of tables.")] = False,
    recorded: Annotated[
        Path | None,
        Parameter(help="Also show this recorder dump (written by `batch --record-to`)."),
    ] = None,
    failed_only: Annotated[
        bool, Parameter(help="With --recorded: show only the failed requests.")
    ] = False,
) -> int:
    """Show what a batch output file holds: requests, outcomes, tokens and cost, per model.

    Read from the file alone (latencies are not in it). A torn or invalid line is an error
    naming the line (exit code 2).
    """
    try:
        totals = read_output_usage(output, input_path=input)
    except OutputCorruptError as exc:
        raise _Exit(EXIT_USAGE, str(exc)) from None
    except OSError as exc:
        raise _Exit(EXIT_USAGE, f"cannot read {exc.filename}: {exc.strerror}") from None
    entries = _read_recorded(recorded, failed_only=failed_only) if recorded is not None else None
    if json:
        sys.stdout.buffer.write(usage_to_json(totals) + b"\n")
        sys.stdout.flush()
    else:
        render_output_usage(totals, out)
    if entries is not None:
        out.print()
        render_dump(entries, out)
    return EXIT_OK


@app.command
def status(
    input: Annotated[Path, Parameter(help="The batch's input file (OpenAI Batch API format).")],
    output: Annotated[Path, Parameter(help="Its output file (`batch -o FILE`), if any yet.")],
    /,
    *,
    json: Annotated[bool, Parameter(help="Print the figures as JSON instead of a table.")] = False,
) -> int:
    """Where a batch stands: done, failed, remaining, duplicates, ids the input does not hold,
    cost so far. Reads the two files only: sends nothing, changes nothing, safe beside a run.

    An output line that is not a record is an error naming the line (exit code 2).
    """
    try:
        figures = read_status(input, output)
    except OutputCorruptError as exc:
        raise _Exit(EXIT_USAGE, str(exc)) from None
    except OSError as exc:
        raise _Exit(EXIT_USAGE, f"cannot read {exc.filename}: {exc.strerror}") from None
    if json:
        sys.stdout.buffer.write(status_to_json(figures) + b"\n")
        sys.stdout.flush()
    else:
        render_status(figures, out, title=f"{input} -> {output}")
    return EXIT_OK


@app.command
def recorded(
    dump: Annotated[Path, Parameter(help="A recorder dump (JSON Lines).")],
    /,
    *,
    failed_only: Annotated[bool, Parameter(help="Show only the failed requests.")] = False,
    last: Annotated[int | None, Parameter(help="Show only the last N requests.")] = None,
    full: Annotated[
        bool, Parameter(help="Show every field of each request: headers, whole kept bodies.")
    ] = False,
) -> int:
    """Show a recorder dump (`batch --record-to`, or DebugRecorder.dump): one line per request
    with its time, model, outcome, status, latency, tokens, request and answer."""
    entries = _read_recorded(dump, failed_only=failed_only)
    if last is not None:
        if last < 1:
            raise _Exit(EXIT_USAGE, f"--last must be at least 1, got {last}")
        entries = entries[-last:]
    render_dump(entries, out, full=full)
    return EXIT_OK


def _read_recorded(path: Path, *, failed_only: bool) -> list[RecordedExchange]:
    try:
        entries = read_dump(path)
    except DumpFileError as exc:
        raise _Exit(EXIT_USAGE, str(exc)) from None
    except OSError as exc:
        raise _Exit(EXIT_USAGE, f"cannot read {exc.filename}: {exc.strerror}") from None
    return [entry for entry in entries if not entry.ok] if failed_only else entries


PRICE_TIMEOUT = 15.0
"""Seconds a dry run waits for the proxy's prices before it prints the plan without them."""


async def _fetch_prices(
    proxy_url: str | None, api_key: str | None
) -> tuple[dict[str, ModelPrice] | None, str | None]:
    """The proxy's prices per model group, or None and why they could not be had: a dry run
    prints its plan whatever the proxy does."""
    try:
        config = ClientConfig(
            proxy_url=proxy_url,
            api_key=api_key,
            max_retries=1,
            health_check_interval=None,
            price_lookup=False,
            total_timeout=PRICE_TIMEOUT,
        )
    except ConfigError as exc:
        return None, f"bad configuration: {exc}"
    with trio.move_on_after(PRICE_TIMEOUT):
        try:
            async with open_client(config) as client:
                return prices_from_infos(await client.model_infos()), None
        except AuthenticationError:
            if not config.api_key:
                return None, "no key: the proxy asks for one (--api-key or $LITELLM_API_KEY)"
            return None, "the proxy refused the key"
        except ProxyCertificateError:
            return None, f"cannot reach the proxy at {config.display_url}: certificate refused"
        except ProxyConnectionError:
            return None, f"cannot reach the proxy at {config.display_url}"
        except LiteLLMError as exc:
            return None, f"the proxy's /v1/model/info failed: {exc}"
    return None, f"the proxy at {config.display_url} did not answer in {PRICE_TIMEOUT:.0f} s"


def _print_plan(plan: BatchPlan, cost: CostEstimate, *, rpm: int | None, tpm: int | None) -> None:
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
    out.print(table)
    out.print("dry run: nothing was sent")


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


@app.command
async def chat(
    prompt: str,
    /,
    *,
    model: Annotated[str, Parameter(help="Model group to ask.")] = "local-gpt",
    system: Annotated[str | None, Parameter(help="A system message.")] = None,
    max_tokens: int | None = None,
    proxy_url: ProxyUrl = None,
    api_key: ApiKey = None,
) -> int:
    """Ask one prompt and stream the answer to the terminal."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    async with (
        open_client(_config(proxy_url, api_key)) as client,
        client.stream(model=model, messages=messages, max_tokens=max_tokens) as stream,
    ):
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                out.print(chunk.choices[0].delta.content, end="", highlight=False, markup=False)
    out.print()
    final = stream.result()
    if final.usage is not None:
        err.print(
            f"[dim]{final.usage.prompt_tokens} tokens in, {final.usage.completion_tokens} out[/]"
        )
    return EXIT_OK


@app.command
async def models(*, proxy_url: ProxyUrl = None, api_key: ApiKey = None) -> int:
    """List the model groups the proxy serves to this key."""
    async with open_client(_config(proxy_url, api_key)) as client:
        listed = await client.list_models()
    table = Table("id", "mode", "max input tokens", "owned by")
    for model in listed:
        table.add_row(
            model.id, model.mode or "-", str(model.max_input_tokens or "-"), model.owned_by
        )
    out.print(table)
    return EXIT_OK


@app.command(name="model-info")
async def model_info(model: str, /, *, proxy_url: ProxyUrl = None, api_key: ApiKey = None) -> int:
    """Show what the proxy knows of one model group: limits, prices, capabilities."""
    async with open_client(_config(proxy_url, api_key)) as client:
        info = await client.model_info(model)
    table = Table(title=model, show_header=False)
    for field in (
        "id",
        "mode",
        "litellm_provider",
        "max_input_tokens",
        "max_output_tokens",
        "input_cost_per_token",
        "output_cost_per_token",
    ):
        table.add_row(field, str(getattr(info, field)))
    upstream = info.litellm_params.get("model")
    table.add_row("upstream model", str(upstream))
    supports = [
        name.removeprefix("supports_")
        for name in info.__struct_fields__
        if name.startswith("supports_") and getattr(info, name)
    ]
    table.add_row("supports", ", ".join(supports) or "-")
    out.print(table)
    return EXIT_OK


@app.command
async def health(
    *,
    deep: Annotated[
        bool, Parameter(help="Also check every deployment with a real (billed) call.")
    ] = False,
    proxy_url: ProxyUrl = None,
    api_key: ApiKey = None,
) -> int:
    """Is the proxy up and ready, and does it accept the key? Exit code 3 when it is down or
    refuses the key; 1 when --deep finds an unhealthy deployment."""
    async with open_client(_config(proxy_url, api_key)) as client:
        report = await client.health()
        out.print(
            f"{client.config.display_url}: {report.status} ({report.latency * 1000:.0f} ms)"
            + (f" - {report.error}" if report.error else ""),
            markup=False,
            highlight=False,
        )
        if not report.healthy:
            return EXIT_PROXY
        if client.config.api_key:
            # The health routes need no key: only a keyed request says whether this one works.
            try:
                listed = await client.list_models()
            except AuthenticationError as exc:
                out.print(f"key refused: {exc}", markup=False, highlight=False)
                return EXIT_PROXY
            out.print(f"key accepted ({len(listed)} model groups)")
        if deep:
            return await _deep_health(client)
    return EXIT_OK


async def _deep_health(client: Client) -> int:
    """One row per deployment, named by its model group; 1 when any is unhealthy."""
    deployments = await client.deployment_health()
    groups = {info.id: info.model_name for info in await client.model_infos() if info.id}

    def group(item: DeploymentStatus) -> str:
        # /health names the upstream model (openai/echo); the model group is what callers use.
        return groups.get(item.model_id or "") or str(item.model)

    table = Table("model group", "state", "error")
    rows = [(group(item), "healthy", "") for item in deployments.healthy_endpoints] + [
        (group(item), "unhealthy", (item.error or "")[:100])
        for item in deployments.unhealthy_endpoints
    ]
    for name, state, error in sorted(rows):
        table.add_row(name, state, error)
    out.print(table)
    if deployments.unhealthy_endpoints:
        names = sorted({group(item) for item in deployments.unhealthy_endpoints})
        err.print(f"unhealthy: {', '.join(names)}", markup=False, highlight=False)
        return EXIT_FAILED
    return EXIT_OK


def _fail(label: str, message: str, code: int) -> int:
    """Print ``label: message`` on stderr, the message verbatim (no markup, no wrapping)."""
    err.print(f"[red]{label}:[/] ", end="")
    err.print(message, markup=False, highlight=False, soft_wrap=True)
    return code


def _run(argv: list[str] | None) -> object:
    """Run the command; an exception group from trio comes out as its one exception, and any
    group holding a KeyboardInterrupt as a KeyboardInterrupt."""
    try:
        return app(argv, result_action="return_value", exit_on_error=False, print_error=True)
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is not None:
            raise KeyboardInterrupt from None
        leaf = single_leaf(group)
        if leaf is None:
            raise
        raise leaf from None


_UNUSABLE = (ConfigError, AuthenticationError, ProxyConnectionError, ProxyCertificateError)
"""Errors that mean the proxy cannot be used at all (exit code 3): a bad configuration, a
refused key, a proxy that cannot be reached. Any other error is one request's (exit code 1)."""


def _exit_code(exc: LiteLLMError) -> int:
    """3 when the proxy cannot be used at all, 1 when it answered one request with an error."""
    return EXIT_PROXY if isinstance(exc, _UNUSABLE) else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``trio-litellm`` script: run a command, map failures to exit codes."""
    # Retries are counted in the summary; stamina's own per-retry warnings would only be noise.
    logging.getLogger("stamina").setLevel(logging.ERROR)
    try:
        code = _run(argv)
    except _Exit as exc:
        return _fail("error", str(exc), exc.code)
    except BatchInputError as exc:
        return _fail("invalid input", str(exc), EXIT_USAGE)
    except OutputCorruptError as exc:
        return _fail("cannot resume", str(exc), EXIT_USAGE)
    except OutputLockedError as exc:
        return _fail("cannot run", str(exc), EXIT_USAGE)
    except InvalidRequestError as exc:
        return _fail("invalid request", str(exc), EXIT_USAGE)
    except LiteLLMError as exc:  # an AuthenticationError says that the proxy refused the key
        return _fail("error", str(exc), _exit_code(exc))
    except cyclopts.CycloptsError:
        return EXIT_USAGE
    except KeyboardInterrupt:
        code = _fail(
            "interrupted",
            "what finished is saved; run the same command again to resume",
            EXIT_INTERRUPTED,
        )
        sys.stderr.flush()
        return code
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
