"""Memory soak: does trio-litellm's RSS level off, or grow with the requests it has served?

Sends 200,000 requests (``--requests``) at 256 in flight through one client against the same
upstream as ``clients.py`` (nginx serving fixed bodies, in another process), through the method
API (``--api methods``: ``complete`` / ``stream`` / ``embed`` from C worker tasks) or through
``open_jobs`` (``--api jobs``: one producer keeping C jobs outstanding). A task samples this
process's RSS (``/proc/self/statm``) every second. Reported: RSS at the start (client open, no
request sent), after the warm-up (the first 10%), the peak, at the end (every request answered,
client still open), the growth from warm-up to end, and the slope of RSS over the requests after
the warm-up (least squares, KiB per 100k requests): a leak shows as a steady slope. Every answer
is checked; the first failure aborts the run.

    python bench/soak.py [--requests 200000] [--concurrency 256] [--api methods|jobs]
        [--kind chat|stream|embed] [--warmup 20000] [--upstream nginx|fake] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import trio
from rich import box
from rich.console import Console
from rich.table import Table

from trio_litellm import Client, Job, open_client
from upstream import (
    API_KEY,
    EMBEDDING_INPUT,
    MAX_TOKENS,
    MESSAGES,
    Upstream,
    UpstreamError,
    check_completion,
    check_embedding,
    check_stream,
    describe_machine,
    machine,
    open_upstream,
    rss_mib,
)

Api = Literal["methods", "jobs"]
Kind = Literal["chat", "stream", "embed"]

SAMPLE_INTERVAL = 1.0
PROGRESS_INTERVAL = 10.0
REPORT_WIDTH = 160


class BenchError(Exception):
    """The soak cannot go on: the upstream failed, or a request did."""


@dataclass(frozen=True)
class RssSample:
    """This process's RSS at one moment of the soak."""

    elapsed_s: float
    completed: int
    rss_mib: float


class Soak:
    """The soak's state: requests claimed and answered, RSS samples, the warm-up mark."""

    def __init__(self, total: int, warmup: int) -> None:
        self.total = total
        self.warmup = warmup
        self.started = 0
        self.completed = 0
        self.start_time = time.perf_counter()
        self.samples: list[RssSample] = []
        self.rss_after_warmup: float | None = None

    def take(self) -> bool:
        """Claim the next request; False once all have been claimed."""
        if self.started >= self.total:
            return False
        self.started += 1
        return True

    def answered(self) -> None:
        self.completed += 1
        if self.completed == self.warmup:
            self.rss_after_warmup = rss_mib()
            self.sample()

    def sample(self) -> RssSample:
        sample = RssSample(time.perf_counter() - self.start_time, self.completed, rss_mib())
        self.samples.append(sample)
        return sample

    async def sample_every_second(self, log: Console) -> None:
        """Sample RSS every second (and say how it goes every PROGRESS_INTERVAL) until cancelled."""
        last_log = 0.0
        while True:
            await trio.sleep(SAMPLE_INTERVAL)
            sample = self.sample()
            if sample.elapsed_s - last_log >= PROGRESS_INTERVAL:
                last_log = sample.elapsed_s
                log.print(
                    f"{sample.elapsed_s:5.0f} s  {sample.completed:>9,} of {self.total:,}  "
                    f"{sample.completed / sample.elapsed_s:6,.0f} req/s  RSS {sample.rss_mib:.1f} MiB"
                )


# --- the requests ---------------------------------------------------------------------------------


async def one_request(client: Client, upstream: Upstream, kind: Kind) -> None:
    """One request through the method API, its answer checked."""
    if kind == "chat":
        reply = await client.complete(
            model=upstream.chat_model, messages=MESSAGES, max_tokens=MAX_TOKENS
        )
        check_completion(
            reply.choices[0].message.content, reply.usage.total_tokens if reply.usage else None
        )
    elif kind == "stream":
        content_chunks = 0
        usage_seen = False
        async with client.stream(
            model=upstream.chat_model, messages=MESSAGES, max_tokens=MAX_TOKENS
        ) as stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    content_chunks += 1
                usage_seen = usage_seen or chunk.usage is not None
        check_stream(content_chunks, usage_seen)
    else:
        embedding = await client.embed(
            model=upstream.embedding_model, input=[EMBEDDING_INPUT], encoding_format="float"
        )
        check_embedding(len(embedding.data[0].embedding))


async def run_methods(
    client: Client, upstream: Upstream, kind: Kind, concurrency: int, soak: Soak
) -> None:
    async def worker() -> None:
        while soak.take():
            try:
                await one_request(client, upstream, kind)
            except Exception as exc:
                raise BenchError(f"request {soak.started} failed: {exc!r}") from exc
            soak.answered()

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)


async def run_jobs(
    client: Client, upstream: Upstream, kind: Kind, concurrency: int, soak: Soak
) -> None:
    if kind == "chat":
        request: dict[str, Any] = {
            "model": upstream.chat_model,
            "messages": MESSAGES,
            "max_tokens": MAX_TOKENS,
        }
    else:
        request = {
            "model": upstream.embedding_model,
            "input": [EMBEDDING_INPUT],
            "encoding_format": "float",
        }
    outstanding = trio.Semaphore(concurrency)
    async with client.open_jobs() as (send_jobs, receive_results):

        async def produce() -> None:
            async with send_jobs:
                while soak.take():
                    await outstanding.acquire()
                    await send_jobs.send(Job(id=soak.started, request=request))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            async for result in receive_results:
                outstanding.release()
                try:
                    if result.error is not None:
                        raise result.error
                    response: Any = result.response
                    if kind == "chat":
                        usage = response.usage.total_tokens if response.usage else None
                        check_completion(response.choices[0].message.content, usage)
                    else:
                        check_embedding(len(response.data[0].embedding))
                except Exception as exc:
                    raise BenchError(f"job {result.id} failed: {exc!r}") from exc
                soak.answered()


# --- the soak -------------------------------------------------------------------------------------


async def run_soak(upstream: Upstream, args: argparse.Namespace, log: Console) -> dict[str, Any]:
    base_url = upstream.stream_base_url if args.kind == "stream" else upstream.base_url
    rss_before_client = rss_mib()
    async with open_client(
        proxy_url=base_url,
        api_key=API_KEY,
        max_connections=args.concurrency,
        health_check_interval=None,
        max_retries=0,
    ) as client:
        gc.collect()
        soak = Soak(args.requests, args.warmup)
        soak.sample()
        run = run_methods if args.api == "methods" else run_jobs
        before = resource.getrusage(resource.RUSAGE_SELF)
        upstream_before = upstream.cpu_seconds()
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(soak.sample_every_second, log)
            await run(client, upstream, args.kind, args.concurrency, soak)
            nursery.cancel_scope.cancel()
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        upstream_cpu = upstream.cpu_seconds() - upstream_before
        end = soak.sample()
    rss_after_close = rss_mib()
    if soak.completed != args.requests:
        raise BenchError(f"{soak.completed} of {args.requests} requests were answered")
    assert soak.rss_after_warmup is not None  # warm-up < requests, checked by parse_args
    start_rss = soak.samples[0].rss_mib
    settled = [s for s in soak.samples if s.completed >= args.warmup]
    slope = None
    if len({s.completed for s in settled}) >= 2:
        fit = statistics.linear_regression(
            [s.completed for s in settled], [s.rss_mib for s in settled]
        )
        slope = fit.slope * 1024 * 100_000
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "requests": args.requests,
        "wall_s": wall,
        "requests_per_s": args.requests / wall,
        "cpu_us_per_request": cpu / args.requests * 1e6,
        "upstream_cpu_us_per_request": upstream_cpu / args.requests * 1e6,
        "rss_before_client_mib": rss_before_client,
        "rss_start_mib": start_rss,
        "rss_after_warmup_mib": soak.rss_after_warmup,
        "rss_peak_mib": max(s.rss_mib for s in soak.samples),
        "rss_end_mib": end.rss_mib,
        "rss_after_close_mib": rss_after_close,
        "growth_mib": end.rss_mib - soak.rss_after_warmup,
        "slope_kib_per_100k": slope,
        "samples": [asdict(s) for s in soak.samples],
    }


# --- reporting ------------------------------------------------------------------------------------


def render(result: dict[str, Any], args: argparse.Namespace) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        title=(
            f"{args.requests:,} {args.kind} requests through {args.api}, "
            f"{args.concurrency} in flight, warm-up {args.warmup:,}"
        ),
        title_justify="left",
    )
    slope = result["slope_kib_per_100k"]
    columns = {
        "req/s": f"{result['requests_per_s']:,.0f}",
        "CPU µs/req": f"{result['cpu_us_per_request']:,.0f}",
        "RSS start": f"{result['rss_start_mib']:.1f}",
        "after warm-up": f"{result['rss_after_warmup_mib']:.1f}",
        "peak": f"{result['rss_peak_mib']:.1f}",
        "end": f"{result['rss_end_mib']:.1f}",
        "growth": f"{result['growth_mib']:+.1f}",
        "KiB/100k req": "-" if slope is None else f"{slope:+,.0f}",
    }
    for name in columns:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_row(*columns.values())
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200_000, metavar="N", help="in all")
    parser.add_argument("--concurrency", type=int, default=256, metavar="C", help="in flight")
    parser.add_argument(
        "--api", choices=("methods", "jobs"), default="methods", help="method calls or open_jobs"
    )
    parser.add_argument(
        "--kind", choices=("chat", "stream", "embed"), default="chat", help="what to request"
    )
    parser.add_argument(
        "--warmup", type=int, metavar="W", help="requests before growth is counted (default N/10)"
    )
    parser.add_argument(
        "--upstream", choices=("nginx", "fake"), default="nginx", help="default nginx"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.requests < 2 or args.concurrency < 1:
        parser.error("--requests must be at least 2 and --concurrency at least 1")
    if args.warmup is None:
        args.warmup = max(1, args.requests // 10)
    if not 1 <= args.warmup < args.requests:
        parser.error("--warmup must be at least 1 and less than --requests")
    if args.api == "jobs" and args.kind == "stream":
        parser.error("open_jobs cannot stream: use --api methods with --kind stream")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Console(highlight=False)
    log = Console(stderr=True, highlight=False, soft_wrap=True)
    if not out.is_terminal:
        out.width = REPORT_WIDTH
    command = shlex.join(sys.orig_argv)
    host = machine()
    if not args.json:
        out.print(describe_machine(host), soft_wrap=True)
        out.print(f"command: {command}", soft_wrap=True)
    try:
        with open_upstream(args.upstream, log.print) as upstream:
            if not args.json:
                out.print(f"upstream: {upstream.version} at {upstream.base_url}")
            result = trio.run(run_soak, upstream, args, log)
    except (BenchError, UpstreamError) as exc:
        log.print(f"error: {exc}", markup=False)
        return 1
    except KeyboardInterrupt:
        log.print("interrupted")
        return 130
    if args.json:
        config = {
            key: getattr(args, key)
            for key in ("requests", "concurrency", "api", "kind", "warmup", "upstream")
        }
        print(
            json.dumps(
                {"machine": host, "command": command, "config": config, "result": result},
                indent=2,
            )
        )
        return 0
    out.print(render(result, args))
    out.print(
        "RSS in MiB, sampled every second. start: client open, before the first request; "
        "end: every request answered, client still open; growth: end minus after warm-up; "
        "KiB/100k req: slope of RSS over requests after warm-up (least squares). "
        f"After closing the client: {result['rss_after_close_mib']:.1f} MiB."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
