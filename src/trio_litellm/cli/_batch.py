"""``trio-litellm batch``: a batch file through the proxy, with its options checked first, Ctrl-C
turned into a clean stop, a dry run's plan and prices, and the recorder's dump at the end."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path
from typing import Annotated

import trio
from cyclopts import Parameter

from .._client import open_client
from .._config import ClientConfig, ModelLimits
from .._errors import (
    AuthenticationError,
    ConfigError,
    LiteLLMError,
    ProxyCertificateError,
    ProxyConnectionError,
)
from .._recorder import DebugRecorder
from ..batch import estimate_cost, plan_batch, prices_from_infos, run_batch, write_summary_json
from ..batch._input import check_input_file
from ..batch._plan import ModelPrice, plan_to_json
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PROXY,
    EXIT_USAGE,
    ApiKey,
    Exit,
    ProxyUrl,
    client_config,
    consoles,
    proxy_urls,
)
from ._progress import BatchProgress
from ._tables import render_plan, render_summary

__all__ = ["PRICE_TIMEOUT", "batch"]


class Interrupts:
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
        raise Exit(EXIT_USAGE, f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {shard!r}")
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
            raise Exit(EXIT_USAGE, f"--model-limit must be {_MODEL_LIMIT_USAGE}, got {flag!r}")
        if model in limits:
            raise Exit(EXIT_USAGE, f"--model-limit: {model!r} is given twice")
        values: dict[str, int] = {}
        for part in spec.split(","):
            name, colon, value = part.strip().partition(":")
            field = _MODEL_LIMIT_FIELDS.get(name.strip())
            if field is None or not colon:
                raise Exit(
                    EXIT_USAGE,
                    f"--model-limit {flag!r}: {part.strip()!r} is not one of rpm:N, tpm:N, "
                    "concurrency:N",
                )
            if field in values:
                raise Exit(EXIT_USAGE, f"--model-limit {flag!r}: {name.strip()} is given twice")
            if not value.strip().isdigit() or int(value) < 1:
                raise Exit(
                    EXIT_USAGE,
                    f"--model-limit {flag!r}: {name.strip()} must be a whole number >= 1, "
                    f"got {value.strip()!r}",
                )
            values[field] = int(value)
        limits[model] = ModelLimits(**values)
    return limits


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
        raise Exit(EXIT_USAGE, f"the output's directory does not exist: {output.parent}")
    if (offline or json) and not dry_run:
        flag = "--offline" if offline else "--json"
        raise Exit(EXIT_USAGE, f"{flag} goes with --dry-run (a run's figures: --summary-json)")
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
            render_plan(plan, cost, consoles.out, rpm=rpm, tpm=tpm)
            consoles.out.print("dry run: nothing was sent")
        return EXIT_OK
    check_input_file(input)  # a typo in its name is named before the proxy is asked
    if concurrency < 1:
        raise Exit(EXIT_USAGE, f"--concurrency must be at least 1, got {concurrency}")
    if not progress_interval > 0:
        raise Exit(EXIT_USAGE, f"--progress-interval must be above 0, got {progress_interval}")
    if record_to is not None and (record_last < 1 or record_body_limit < 0):
        raise Exit(
            EXIT_USAGE, "--record-last must be at least 1 and --record-body-limit at least 0"
        )
    config = client_config(
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
    interrupts = Interrupts()
    summary = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(interrupts.watch)
            with interrupts.scope:
                async with open_client(config) as client:
                    recorder = client.recorder
                    health = await client.health()
                    if not health.healthy:
                        raise Exit(
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
                        progress=lambda total: BatchProgress(
                            total,
                            console=consoles.err,
                            enabled=progress,
                            interval=progress_interval,
                        ),
                        stop=interrupts.stop,
                    )
                    interrupts.graceful = False
            nursery.cancel_scope.cancel()
    finally:
        # After the client closed, so the requests it cancelled are recorded too.
        if recorder is not None and record_to is not None:
            _write_dump(recorder, record_to)
    if summary is not None:
        render_summary(summary, consoles.err)
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
        consoles.err.print("[yellow]could not write the recording:[/] ", end="")
        consoles.err.print(str(exc), markup=False, highlight=False)
        return
    consoles.err.print(f"recorded the last {written:,} requests to ", end="")
    consoles.err.print(str(path), markup=False, highlight=False)


PRICE_TIMEOUT = 15.0
"""Seconds a dry run waits for the proxy's prices before it prints the plan without them."""


async def _fetch_prices(
    proxy_url: list[str] | None, api_key: str | None
) -> tuple[dict[str, ModelPrice] | None, str | None]:
    """The proxy's prices per model group, or None and why they could not be had: a dry run
    prints its plan whatever the proxy does."""
    try:
        config = ClientConfig(
            proxy_url=proxy_urls(proxy_url),
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
