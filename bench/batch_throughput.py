"""Batch throughput: is ``run_batch`` the bottleneck, or the upstream?

Runs the same N chat requests three ways against the fake provider directly (no proxy), at the
same concurrency, in one process: (a) ``client.complete`` from C worker tasks, (b) the channel
API (``client.open_jobs``), (c) ``run_batch`` on an OpenAI Batch API input file, writing its
output file. For each it reports wall time, requests/s, client CPU per request and peak RSS, as
the median over rounds (the order rotates each round), and each figure's ratio to (a).

The fake provider runs in a subprocess so that its CPU is not counted as ours: the CPU figures
are this process's user+sys time (``getrusage``, every thread included) around the requests
only, client start and shutdown excluded. Every run is checked: a failed request or a wrong
output file aborts the benchmark.

    python bench/batch_throughput.py --requests 5000 --rounds 2 [--concurrency 64] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec
import trio
from rich import box
from rich.console import Console
from rich.table import Table

from trio_litellm import Client, Job, LiteLLMError, open_client
from trio_litellm.batch import run_batch
from upstream import UpstreamError, open_upstream

MODEL = "echo"
"""The fake provider's chat model: it echoes the last user message."""

MAX_REPORTED_FAILURES = 3

Check = Callable[[], None]
"""Verifies a way's results once its timers have stopped; raises :class:`BenchError`."""


class BenchError(Exception):
    """The benchmark cannot go on: the provider did not start, or a check failed."""


@dataclass(frozen=True)
class Spec:
    """What every way runs: ``requests`` requests, ``concurrency`` at once, against ``url``."""

    url: str
    requests: int
    concurrency: int
    input_path: Path
    workdir: Path


@dataclass(frozen=True)
class Sample:
    """One way's measurement in one round."""

    way: str
    round: int
    requests: int
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    max_rss_mib: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.wall_s

    @property
    def cpu_us_per_request(self) -> float:
        return (self.cpu_user_s + self.cpu_sys_s) / self.requests * 1e6


# --- the upstream ---------------------------------------------------------------------------------


# --- the requests ---------------------------------------------------------------------------------


def request_body(index: int) -> dict[str, Any]:
    """Request ``index``: the same body for every way."""
    return {"model": MODEL, "messages": [{"role": "user", "content": f"item {index}"}]}


def custom_id(index: int) -> str:
    return f"req-{index}"


def write_input(path: Path, requests: int) -> None:
    """An OpenAI Batch API input file of ``requests`` chat requests."""
    encoder = msgspec.json.Encoder()
    with path.open("wb") as file:
        for index in range(requests):
            line = {
                "custom_id": custom_id(index),
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": request_body(index),
            }
            file.write(encoder.encode(line) + b"\n")


def _expect_all_ok(way: str, requests: int, succeeded: int, failures: list[str]) -> Check:
    def check() -> None:
        if succeeded != requests or failures:
            shown = "; ".join(failures[:MAX_REPORTED_FAILURES]) or "no error reported"
            raise BenchError(
                f"{way}: {succeeded} of {requests} requests succeeded "
                f"({len(failures)} failed: {shown})"
            )

    return check


# --- the three ways -------------------------------------------------------------------------------


async def way_raw(client: Client, spec: Spec, round_no: int) -> Check:
    """(a) ``client.complete``, from ``concurrency`` workers taking indexes from one counter."""
    next_index = 0
    succeeded = 0
    failures: list[str] = []

    async def worker() -> None:
        nonlocal next_index, succeeded
        while next_index < spec.requests:
            index = next_index
            next_index += 1
            try:
                await client.complete(**request_body(index))
            except LiteLLMError as exc:
                failures.append(f"request {index}: {exc!r}")
            else:
                succeeded += 1

    async with trio.open_nursery() as nursery:
        for _ in range(spec.concurrency):
            nursery.start_soon(worker)
    return _expect_all_ok("raw client", spec.requests, succeeded, failures)


async def way_jobs(client: Client, spec: Spec, round_no: int) -> Check:
    """(b) ``client.open_jobs``: one producer sends every job, the results are drained."""
    seen: set[int] = set()
    failures: list[str] = []

    async with client.open_jobs() as (send_jobs, receive_results):

        async def produce() -> None:
            async with send_jobs:
                for index in range(spec.requests):
                    await send_jobs.send(Job(id=index, request=request_body(index)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            async for result in receive_results:
                if result.ok:
                    seen.add(result.id)
                else:
                    failures.append(f"job {result.id}: {result.error!r}")
    return _expect_all_ok("open_jobs", spec.requests, len(seen), failures)


async def way_batch(client: Client, spec: Spec, round_no: int) -> Check:
    """(c) ``run_batch`` from the input file to a fresh output file (no progress bar)."""
    output_path = spec.workdir / f"output-{round_no}.jsonl"
    summary = await run_batch(client, spec.input_path, output_path)

    def check() -> None:
        if summary.succeeded != spec.requests or summary.failed:
            raise BenchError(
                f"run_batch: {summary.succeeded} of {spec.requests} requests succeeded "
                f"(outcomes: {summary.outcomes})"
            )
        _check_output(output_path, spec.requests)
        output_path.unlink()

    return check


def _check_output(path: Path, requests: int) -> None:
    """The output holds one successful answer per input line, each custom_id once."""
    lines = path.read_bytes().splitlines()
    ids = set()
    for number, line in enumerate(lines, 1):
        record = msgspec.json.decode(line)
        response = record.get("response") or {}
        if record.get("error") is not None or response.get("status_code") != 200:
            raise BenchError(f"run_batch: output line {number} is not a success: {line[:200]!r}")
        ids.add(record["custom_id"])
    if len(lines) != requests or len(ids) != requests:
        raise BenchError(
            f"run_batch: the output has {len(lines)} lines and {len(ids)} unique custom_ids, "
            f"expected {requests} of each"
        )
    if ids != {custom_id(index) for index in range(requests)}:
        raise BenchError("run_batch: the output's custom_ids are not the input's")


Way = Callable[[Client, Spec, int], Awaitable[Check]]

WAYS: dict[str, Way] = {
    "(a) complete": way_raw,
    "(b) open_jobs": way_jobs,
    "(c) run_batch": way_batch,
}


# --- measuring ------------------------------------------------------------------------------------


def _max_rss_mib(usage: resource.struct_rusage) -> float:
    """``ru_maxrss`` in MiB (Linux counts KiB, macOS bytes)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return usage.ru_maxrss * scale / 2**20


async def measure(name: str, way: Way, spec: Spec, round_no: int) -> Sample:
    """Run one way on a client of its own; time only the requests, then check the results."""
    async with open_client(
        proxy_url=spec.url,
        api_key="bench",
        max_connections=spec.concurrency,
        health_check_interval=None,
        max_retries=0,
    ) as client:
        gc.collect()
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        check = await way(client, spec, round_no)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
    check()
    return Sample(
        way=name,
        round=round_no,
        requests=spec.requests,
        wall_s=wall,
        cpu_user_s=after.ru_utime - before.ru_utime,
        cpu_sys_s=after.ru_stime - before.ru_stime,
        max_rss_mib=_max_rss_mib(after),
    )


async def run_rounds(spec: Spec, rounds: int, log: Console) -> list[Sample]:
    """``rounds`` rounds of every way; each round starts one way later than the previous one."""
    names = list(WAYS)
    samples = []
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            sample = await measure(name, WAYS[name], spec, round_no)
            log.print(
                f"round {round_no + 1}/{rounds} {name}: {sample.wall_s:.2f} s, "
                f"{sample.requests_per_s:,.0f} req/s, {sample.cpu_us_per_request:,.0f} µs CPU/req"
            )
            samples.append(sample)
    return samples


def summarize(samples: list[Sample]) -> dict[str, dict[str, float]]:
    """Per way, the median of each figure over rounds, and its ratio to the first way's."""
    medians: dict[str, dict[str, float]] = {}
    for name in WAYS:
        mine = [s for s in samples if s.way == name]
        medians[name] = {
            "wall_s": statistics.median(s.wall_s for s in mine),
            "requests_per_s": statistics.median(s.requests_per_s for s in mine),
            "cpu_us_per_request": statistics.median(s.cpu_us_per_request for s in mine),
            "max_rss_mib": statistics.median(s.max_rss_mib for s in mine),
        }
    base = medians[next(iter(WAYS))]
    for figures in medians.values():
        for key in list(figures):
            figures[f"{key}_ratio"] = figures[key] / base[key]
    return medians


# --- reporting ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def render(summary: dict[str, dict[str, float]], args: argparse.Namespace) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        title=(
            f"{args.requests:,} requests, concurrency {args.concurrency}, "
            f"median of {args.rounds} rounds"
        ),
    )
    table.add_column("way", no_wrap=True)
    for column in ("wall s", "req/s", "vs a", "CPU µs/req", "vs a", "RSS MiB", "vs a"):
        table.add_column(column, justify="right", no_wrap=True)
    for name, f in summary.items():
        table.add_row(
            name,
            f"{f['wall_s']:.2f}",
            f"{f['requests_per_s']:,.0f}",
            f"{f['requests_per_s_ratio']:.2f}",
            f"{f['cpu_us_per_request']:,.0f}",
            f"{f['cpu_us_per_request_ratio']:.2f}",
            f"{f['max_rss_mib']:.0f}",
            f"{f['max_rss_mib_ratio']:.2f}",
        )
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--requests", type=int, default=20000, metavar="N", help="per way, per round"
    )
    parser.add_argument("--concurrency", type=int, default=64, metavar="C", help="requests at once")
    parser.add_argument("--rounds", type=int, default=3, metavar="R", help="medians are over these")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    for name in ("requests", "concurrency", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Console()
    log = Console(stderr=True)
    command = shlex.join(sys.orig_argv)
    host = machine()
    if not args.json:
        out.print(f"machine: {host['cpu_count']} cores, {host['implementation']} {host['python']}")
        out.print(f"command: {command}")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
            workdir = Path(tmp)
            input_path = workdir / "input.jsonl"
            write_input(input_path, args.requests)
            with open_upstream("fake", log.print) as upstream:
                spec = Spec(
                    url=upstream.base_url,
                    requests=args.requests,
                    concurrency=args.concurrency,
                    input_path=input_path,
                    workdir=workdir,
                )
                samples = trio.run(run_rounds, spec, args.rounds, log)
    except (BenchError, UpstreamError) as exc:
        log.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        log.print("interrupted")
        return 130
    summary = summarize(samples)
    if args.json:
        result = {
            "machine": host,
            "command": command,
            "config": {
                "requests": args.requests,
                "concurrency": args.concurrency,
                "rounds": args.rounds,
            },
            "median": summary,
            "samples": [
                {
                    **asdict(s),
                    "requests_per_s": s.requests_per_s,
                    "cpu_us_per_request": s.cpu_us_per_request,
                }
                for s in samples
            ],
        }
        print(json.dumps(result, indent=2))
    else:
        out.print(render(summary, args))
        out.print("vs a: ratio to (a). RSS: peak (ru_maxrss), process-wide and never decreasing.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
