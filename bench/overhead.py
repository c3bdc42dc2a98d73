"""What the actors cost: the full client against the bare transport, CPU per request.

In one process, against nginx serving a fixed completion (see ``upstream.py``), N non-stream chat
completions at C in flight go three ways:

    bare      our Transport called directly from C worker tasks: ``transport.request("POST",
              "/v1/chat/completions", ...)`` and the msgspec decode the request path does;
              no dispatcher, throttle, health gate, observer or ledger
    client    ``client.complete(...)`` from C worker tasks, default config (health monitor on,
              no rpm/tpm, so the throttle admits on its fast path)
    jobs      ``client.open_jobs()``: one producer keeping C jobs outstanding

The bare way builds its Transport as ``open_client`` does (``resolve_config`` of the same options,
``Transport(config)``) and each request the way ``complete`` does (``chat_request`` + ``prepare``,
one msgspec encode), so what ``client`` and ``jobs`` add over ``bare`` is the actors' path: the
dispatcher's slot (limiter and deadline), the health gate, the throttle's fast path, the retry
wrapper, the response's meta, the observer's record and the usage ledger.

Each part is a fresh client (or transport) on its own ``trio.run``: C warm-up requests (one per
connection), then N measured requests; this process's user+sys CPU (``getrusage``) over the N,
divided by N. Ways alternate within a round, their order rotating each round; figures are medians
over rounds. Every answer is checked.

    python bench/overhead.py [--requests 2000] [--rounds 5] [--concurrency 64]
        [--ways bare,client,jobs] [--max-retries N] [--ratelimit-headers] [--json]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import trio

import trio_litellm
from trio_litellm import Client, Job, open_client
from trio_litellm._calls import chat_request, prepare
from trio_litellm._config import ClientConfig, resolve_config
from trio_litellm._transport import Transport
from trio_litellm._wire import ChatCompletion, completion_decoder
from upstream import (
    API_KEY,
    MAX_TOKENS,
    MESSAGES,
    Upstream,
    UpstreamError,
    check_completion,
    describe_machine,
    machine,
    open_upstream,
)

WAYS = ("bare", "client", "jobs")
WAY_TITLES = {
    "bare": "bare transport",
    "client": "client.complete",
    "jobs": "client.open_jobs",
}


def describe(host: dict[str, Any]) -> str:
    """The machine line, then which trio_litellm ran: this checkout's src/ (its commit, and a
    digest of its uncommitted changes, since src/ may change between runs) or a copy found
    first on the path (``PYTHONPATH=/some/copy/src``, to measure a fixed snapshot)."""
    machine_line, _, checkout_line = describe_machine(host).partition("\n")
    package = Path(trio_litellm.__file__).resolve().parent
    repo = Path(__file__).resolve().parent.parent
    if package != repo / "src" / "trio_litellm":
        return f"{machine_line}\nsource: trio_litellm imported from {package}, not this checkout"
    try:
        diff = subprocess.run(
            ["git", "-C", str(repo), "diff", "HEAD", "--", "src"], capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        diff = b""
    if diff:
        checkout_line += f" (diff sha1 {hashlib.sha1(diff).hexdigest()[:10]})"
    return f"{machine_line}\n{checkout_line}"


class BenchError(Exception):
    """A request failed or answered wrongly, or the health gate closed."""


@dataclass(frozen=True)
class Sample:
    """One part: N requests one way, in one round."""

    way: str
    round: int
    requests: int
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    gc_s: float
    gc_collections: int

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.wall_s

    @property
    def cpu_us_per_request(self) -> float:
        return (self.cpu_user_s + self.cpu_sys_s) / self.requests * 1e6

    @property
    def gc_us_per_request(self) -> float:
        return self.gc_s / self.requests * 1e6


# --- the three ways -------------------------------------------------------------------------------

Pool = Callable[[int], Awaitable[None]]
"""Runs ``n`` checked requests at the part's concurrency; raises BenchError if one fails."""


def client_options(upstream: Upstream, args: argparse.Namespace) -> dict[str, Any]:
    """The options every way's client (or bare transport) is built from."""
    options: dict[str, Any] = {
        "proxy_url": upstream.base_url,
        "api_key": API_KEY,
        "max_connections": args.concurrency,
    }
    if args.max_retries is not None:
        options["max_retries"] = args.max_retries
    return options


def chat_params(upstream: Upstream) -> dict[str, Any]:
    return {"model": upstream.chat_model, "messages": MESSAGES, "max_tokens": MAX_TOKENS}


def _check(reply: ChatCompletion) -> None:
    usage = reply.usage.total_tokens if reply.usage else None
    check_completion(reply.choices[0].message.content, usage)


async def workers(request: Callable[[], Awaitable[None]], n: int, concurrency: int) -> None:
    """``n`` requests from ``concurrency`` tasks, each taking the next as soon as one ends."""
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await request()

    async with trio.open_nursery() as nursery:
        for _ in range(min(concurrency, n)):
            nursery.start_soon(worker)


def bare_pool(transport: Transport, config: ClientConfig, upstream: Upstream) -> Pool:
    """Requests through the Transport alone, built and decoded as ``Client.complete`` does."""
    params = chat_params(upstream)
    estimate = config.tpm is not None  # what Client passes to prepare()

    async def request() -> None:
        call = prepare(chat_request(None, dict(params), stream=False), estimate=estimate)
        answer = await transport.request(
            "POST", call.path, body=call.body, headers=call.headers, model=call.model
        )
        reply: ChatCompletion = completion_decoder.decode(answer.content)
        if not reply.choices:
            raise BenchError("an answer without choices")
        _check(reply)

    return lambda n: workers(request, n, config.max_connections)


def client_pool(client: Client, upstream: Upstream, concurrency: int) -> Pool:
    params = chat_params(upstream)

    async def request() -> None:
        _check(await client.complete(**params))

    return lambda n: workers(request, n, concurrency)


def jobs_pool(
    client: Client,
    upstream: Upstream,
    concurrency: int,
    *,
    request: dict[str, Any] | None = None,
    check: Callable[[Any], None] | None = None,
) -> Pool:
    """``n`` jobs through one ``open_jobs`` block, never more than ``concurrency`` outstanding.

    Chat completions unless ``request`` (an OpenAI-shaped dict) and ``check`` (of each response)
    say otherwise.
    """
    request = chat_params(upstream) if request is None else request
    checked: Callable[[Any], None] = _check if check is None else check

    async def run(n: int) -> None:
        outstanding = trio.Semaphore(concurrency)
        async with client.open_jobs() as (send_jobs, receive_results):

            async def produce() -> None:
                async with send_jobs:
                    for number in range(n):
                        await outstanding.acquire()
                        await send_jobs.send(Job(id=number, request=request))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                received = 0
                async for result in receive_results:
                    outstanding.release()
                    received += 1
                    if result.error is not None:
                        raise BenchError(f"job {result.id} failed: {result.error!r}")
                    checked(result.response)
        if received != n:
            raise BenchError(f"{received} of {n} jobs answered")

    return run


# --- measuring ------------------------------------------------------------------------------------


class GcTimer:
    """Time spent in the cyclic garbage collector (``gc.callbacks``), part of the CPU measured:
    a path that allocates more triggers more collections."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1


async def measure(way: str, round_no: int, pool: Pool, requests: int, warmup: int) -> Sample:
    await pool(warmup)
    gc.collect()
    timer = GcTimer()
    gc.callbacks.append(timer)
    try:
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        await pool(requests)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        gc.callbacks.remove(timer)
    return Sample(
        way=way,
        round=round_no,
        requests=requests,
        wall_s=wall,
        cpu_user_s=after.ru_utime - before.ru_utime,
        cpu_sys_s=after.ru_stime - before.ru_stime,
        gc_s=timer.seconds,
        gc_collections=timer.collections,
    )


async def run_part(way: str, round_no: int, upstream: Upstream, args: argparse.Namespace) -> Sample:
    options = client_options(upstream, args)
    if way == "bare":
        config = resolve_config(None, options)
        transport = Transport(config)
        try:
            pool = bare_pool(transport, config, upstream)
            return await measure(way, round_no, pool, args.requests, args.concurrency)
        finally:
            await transport.aclose()
    async with open_client(**options) as client:
        if way == "client":
            pool = client_pool(client, upstream, args.concurrency)
        else:
            pool = jobs_pool(client, upstream, args.concurrency)
        sample = await measure(way, round_no, pool, args.requests, args.concurrency)
        health = client.statistics().health
        if health is None or not health.gate_open:
            raise BenchError(f"{way}: the health gate was not open at the end: {health}")
        return sample


def run_rounds(upstream: Upstream, args: argparse.Namespace) -> list[Sample]:
    samples = []
    for round_no in range(args.rounds):
        shift = round_no % len(args.ways)
        for way in args.ways[shift:] + args.ways[:shift]:
            try:
                sample = trio.run(run_part, way, round_no, upstream, args)
            except BenchError:
                raise
            except Exception as exc:  # a failed request: say which way, and stop
                raise BenchError(f"{way}: {type(exc).__name__}: {exc}") from exc
            print(
                f"round {round_no + 1}/{args.rounds} {way:6} {sample.requests_per_s:7,.0f} req/s "
                f"{sample.cpu_us_per_request:6,.0f} µs CPU/req",
                file=sys.stderr,
            )
            samples.append(sample)
    return samples


# --- reporting ------------------------------------------------------------------------------------


def summarize(samples: list[Sample], ways: list[str]) -> dict[str, dict[str, Any]]:
    """Per way: median req/s and CPU µs/request over rounds, and the CPU overhead vs bare in %."""
    summary: dict[str, dict[str, Any]] = {}
    for way in ways:
        mine = [s for s in samples if s.way == way]
        cpu = [s.cpu_us_per_request for s in mine]
        summary[way] = {
            "requests_per_s": statistics.median(s.requests_per_s for s in mine),
            "cpu_us_per_request": statistics.median(cpu),
            "cpu_us_per_request_min": min(cpu),
            "cpu_us_per_request_max": max(cpu),
            "gc_us_per_request": statistics.median(s.gc_us_per_request for s in mine),
            "gc_collections_per_1000": statistics.median(
                s.gc_collections / s.requests * 1000 for s in mine
            ),
        }
    bare = summary.get("bare", {}).get("cpu_us_per_request")
    if bare:
        for figures in summary.values():
            figures["overhead_vs_bare_pct"] = (figures["cpu_us_per_request"] / bare - 1) * 100
    # Per round against that round's bare: the spread tells how far the median can be trusted.
    for way in ways:
        if way == "bare" or not bare:
            continue
        per_round = []
        for sample in samples:
            if sample.way != way:
                continue
            base = [s for s in samples if s.way == "bare" and s.round == sample.round]
            if base:
                per_round.append((sample.cpu_us_per_request / base[0].cpu_us_per_request - 1) * 100)
        if per_round:
            summary[way]["overhead_per_round_pct"] = per_round
    return summary


def render(summary: dict[str, dict[str, Any]]) -> str:
    header = (
        f"{'way':18} {'req/s':>7} {'CPU µs/req':>11} {'min-max':>11} {'vs bare':>8} "
        f"{'GC µs/req':>10}  vs bare per round"
    )
    lines = [header, "-" * len(header)]
    for way, figures in summary.items():
        overhead = figures.get("overhead_vs_bare_pct")
        rounds = figures.get("overhead_per_round_pct")
        low, high = figures["cpu_us_per_request_min"], figures["cpu_us_per_request_max"]
        shown = "-" if overhead is None or way == "bare" else f"{overhead:+.1f}%"
        lines.append(
            f"{WAY_TITLES[way]:18} {figures['requests_per_s']:7,.0f} "
            f"{figures['cpu_us_per_request']:11,.0f} {f'{low:,.0f}-{high:,.0f}':>11} {shown:>8} "
            f"{figures['gc_us_per_request']:10.1f}  "
            + (" ".join(f"{value:+.0f}%" for value in rounds) if rounds else "")
        )
    return "\n".join(lines)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _ways(text: str) -> list[str]:
    items = list(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not items or any(item not in WAYS for item in items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(WAYS)}")
    return items


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--requests", type=_positive, default=2000, metavar="N", help="per way and round (2000)"
    )
    parser.add_argument("--rounds", type=_positive, default=5, metavar="R", help="(default 5)")
    parser.add_argument(
        "--concurrency", type=_positive, default=64, metavar="C", help="in flight (default 64)"
    )
    parser.add_argument(
        "--ways", type=_ways, default=list(WAYS), metavar="W,...", help="bare,client,jobs"
    )
    parser.add_argument(
        "--max-retries",
        type=int,
        default=None,
        metavar="N",
        help="the client's max_retries (default: the config's, 2); 0 skips the retry wrapper",
    )
    parser.add_argument(
        "--ratelimit-headers",
        action="store_true",
        help="answer with the x-ratelimit-* headers a real provider sends through the proxy "
        "(each one makes the throttle adjust)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(sys.orig_argv)
    host = machine()
    try:
        with open_upstream(
            "nginx",
            lambda text: print(text, file=sys.stderr),
            ratelimit_headers=args.ratelimit_headers,
        ) as upstream:
            samples = run_rounds(upstream, args)
    except (BenchError, UpstreamError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    summary = summarize(samples, args.ways)
    if args.json:
        result = {
            "machine": host,
            "source": describe(host).partition("\n")[2],
            "command": command,
            "upstream": {"kind": upstream.kind, "version": upstream.version},
            "config": {
                "requests": args.requests,
                "rounds": args.rounds,
                "concurrency": args.concurrency,
                "ways": args.ways,
                "max_retries": args.max_retries,
                "ratelimit_headers": args.ratelimit_headers,
                "warmup_requests": args.concurrency,
            },
            "median": summary,
            "samples": [
                {
                    **asdict(s),
                    "requests_per_s": s.requests_per_s,
                    "cpu_us_per_request": s.cpu_us_per_request,
                    "gc_us_per_request": s.gc_us_per_request,
                }
                for s in samples
            ],
        }
        print(json.dumps(result, indent=2))
        return 0
    print(describe(host))
    print(f"command: {command}")
    print(f"upstream: {upstream.version} at {upstream.base_url}")
    retries = "config default" if args.max_retries is None else args.max_retries
    print(
        f"{args.requests:,} chat completions per way and round at {args.concurrency} in flight, "
        f"after {args.concurrency} warm-up requests; median of {args.rounds} rounds; "
        f"max_retries: {retries}"
        f"{'; x-ratelimit-* headers on every answer' if args.ratelimit_headers else ''}.\n"
    )
    print(render(summary))
    print(
        "\nCPU: this process's user+sys over the measured requests / requests (min-max over "
        "rounds). vs bare: the median's CPU over the bare transport's median; per round: each "
        "round against that round's bare. GC: time in the cyclic garbage collector, included "
        "in the CPU."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
