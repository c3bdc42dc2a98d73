"""What the parts that do no IO cost: the SSE parser, the usage ledger, the batch summary and the
batch input scan, in wall-clock time per operation, in one process, with no upstream.

These figures were once printed (or bounded by a generous wall-clock limit) by unit tests. A bound
loose enough never to fail on a busy machine catches no regression either, so they are measured
here and compared run to run:

    sse        one event of N bytes fed to SSEParser one byte at a time, at N and at 2N: the
               parser keeps an unfinished line without scanning it again, so the ratio is about
               2 (linear); a parser that re-scanned its buffer would show about 4
    ledger     UsageLedger.add of 200k records over five models, then usage()
    summary    SummaryBuilder.add one million times, then summary()
    scan       scan_input, then iter_input, of a 200k-line JSONL file (shard 1 of 2)

Each part runs ``--rounds`` times; figures are medians. Every result is checked (the event parsed
whole, every record counted, every line found); a wrong one aborts with exit status 1.

    python bench/pure.py [--parts sse,ledger,summary,scan] [--rounds 3] [--scale 1.0] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from trio_litellm._sse import SSEParser
from trio_litellm._usage import RequestRecord, UsageLedger
from trio_litellm.batch._input import iter_input, scan_input
from trio_litellm.batch._summary import SummaryBuilder
from upstream import describe_machine, machine

PARTS = ("sse", "ledger", "summary", "scan")
T0 = 1_700_000_040.0

Figures = dict[str, float]


class WrongResult(Exception):
    """A part computed something other than what it was given: its timing means nothing."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise WrongResult(what)


def sse(scale: float) -> Figures:
    def feed_bytewise(size: int) -> float:
        body = b'{"content":"' + b"x" * size + b'"}'
        stream = b"data: " + body + b"\r\n\r\n"
        parser = SSEParser()
        events = []
        start = time.perf_counter()
        for i in range(len(stream)):
            events += parser.feed(stream[i : i + 1])
        took = time.perf_counter() - start
        check([event.data for event in events] == [body.decode()], "the event came out whole")
        return took

    size = int(500_000 * scale)
    once, twice = feed_bytewise(size), feed_bytewise(2 * size)
    return {
        "event_bytes": size,
        "seconds": once,
        "us_per_byte": once / size * 1e6,
        "seconds_at_twice_the_size": twice,
        "ratio_at_twice_the_size": twice / once,
    }


def ledger(scale: float) -> Figures:
    count = int(200_000 * scale)
    models = [f"model-{i}" for i in range(5)]
    records = [
        RequestRecord(
            kind="chat",
            model=models[i % 5],
            served_model=models[i % 5],
            deployment_id="dep-1",
            call_id="call-1",
            started_at=T0 + i * 0.01,
            latency=0.01 + (i % 1000) * 0.01,
            ttft=0.005 if i % 2 else None,
            stream=False,
            attempts=1,
            outcome="ok" if i % 50 else "RateLimitError",
            status=200 if i % 50 else 429,
            prompt_tokens=10,
            completion_tokens=20,
            cost=0.001,
            cost_source="header",
            overhead_ms=3.0,
        )
        for i in range(count)
    ]
    book = UsageLedger()
    start = time.perf_counter()
    for record in records:
        book.add(record)
    added = time.perf_counter() - start
    start = time.perf_counter()
    usage = book.usage(now=T0 + count * 0.01 + 1)
    asked = time.perf_counter() - start
    check(usage.requests == count, f"the ledger counted {usage.requests} of {count} records")
    return {"records": count, "add_us": added / count * 1e6, "usage_ms": asked * 1e3}


def summary(scale: float) -> Figures:
    count = int(1_000_000 * scale)
    builder = SummaryBuilder()
    add = builder.add
    models = ["gpt-4o-mini", "claude-haiku", "llama-3"]
    start = time.perf_counter()
    for i in range(count):
        add(
            model=models[i % 3],
            ok=True,
            outcome="succeeded",
            attempts=1,
            latency=0.25,
            tokens_in=100,
            tokens_out=20,
            cost=0.0001,
        )
    added = time.perf_counter() - start
    start = time.perf_counter()
    result = builder.summary(elapsed=added, input_requests=count, already_done=0, invalid=0)
    summed = time.perf_counter() - start
    check(result.ran == count, f"the summary counted {result.ran} of {count} requests")
    check(math.isclose(result.cost or 0.0, count * 0.0001, rel_tol=1e-6), "the cost adds up")
    return {"adds": count, "add_us": added / count * 1e6, "summary_ms": summed * 1e3}


def scan(scale: float) -> Figures:
    count = int(200_000 * scale)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "input.jsonl"
        with path.open("wb") as file:
            for i in range(count):
                custom_id = f"request-{i:07d}"
                body: dict[str, Any] = (
                    {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}
                    if i % 4
                    else {"model": "emb", "input": "some text"}
                )
                url = "/v1/chat/completions" if i % 4 else "/v1/embeddings"
                line = {"custom_id": custom_id, "method": "POST", "url": url, "body": body}
                file.write(msgspec.json.encode(line) + b"\n")
        size = path.stat().st_size
        start = time.perf_counter()
        scanned = scan_input(path, shard=(0, 2))
        scan_took = time.perf_counter() - start
        start = time.perf_counter()
        sent = sum(1 for _ in iter_input(path, shard=(0, 2)))
        iter_took = time.perf_counter() - start
    check(scanned.ok and scanned.lines == scanned.valid == count, "every line scanned valid")
    check(sent == scanned.in_shard, f"iter_input gave {sent} of the {scanned.in_shard} in shard")
    return {
        "lines": count,
        "megabytes": size / 1e6,
        "scan_lines_per_s": count / scan_took,
        "iter_lines_per_s": count / iter_took,
    }


MEASURES: dict[str, Callable[[float], Figures]] = {
    "sse": sse,
    "ledger": ledger,
    "summary": summary,
    "scan": scan,
}


def median_figures(samples: list[Figures]) -> Figures:
    return {key: statistics.median(sample[key] for sample in samples) for key in samples[0]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS)
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every size")
    parser.add_argument("--json", action="store_true", help="print everything as JSON")
    args = parser.parse_args(argv)
    args.parts = [part for part in args.parts.split(",") if part]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    host = machine()
    results: dict[str, dict[str, Any]] = {}
    try:
        for part in args.parts:
            samples = []
            for round_no in range(args.rounds):
                print(f"{part}: round {round_no + 1}/{args.rounds}", file=sys.stderr)
                samples.append(MEASURES[part](args.scale))
            results[part] = {"median": median_figures(samples), "samples": samples}
    except WrongResult as exc:
        print(f"wrong result: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"machine": host, "argv": sys.argv, "results": results}, indent=2))
        return 0
    print(describe_machine(host))
    print("command: " + shlex.join([sys.executable, *sys.argv]))
    print()
    width = max(len(f"{part}.{key}") for part in results for key in results[part]["median"])
    for part, result in results.items():
        for key, value in result["median"].items():
            shown = f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"
            print(f"{part + '.' + key:<{width}}  {shown:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
