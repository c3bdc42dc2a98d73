"""Fleet throughput: the demo's batch through one LiteLLM proxy and through a fleet sharing Redis.

One local fleet (``DevStack(proxies=N)``: a Redis server, the fake provider and N LiteLLM proxies
started from one config whose ``router_settings`` name that Redis) serves two ways in one run:

    1 proxy     the client is given only the first proxy's URL; the others stand idle
    N proxies   the client is given every proxy's URL and spreads the requests over them

Each way runs the demo's batch (``write_demo_batch``: chat completions and embeddings, one request
in fifty meeting an injected upstream 503 once) with ``run_batch``, as the demo does, without the
progress bar, on a fresh client configured as the demo's. Ways alternate within a round, their
order rotating each round; figures are medians over rounds. Every output line is checked: one
successful answer per input line, each custom_id once.

Reported per way: requests per second (the batch's wall time), this process's CPU per request
(``getrusage`` user+sys, client start and shutdown excluded), the proxies' CPU per request, and
the fake provider's and Redis's CPU per request and share of one core (``/proc``), which show
whether anything but the proxies set the pace. Then the fleet's ratios to one proxy, and the
issue's targets: at least 1.6x the throughput, client CPU per request no higher.

    python bench/fleet.py [--requests 3000] [--rounds 3] [--proxies 2] [--concurrency 32]
        [--warmup 200] [--no-faults] [--json]
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import logging
import re
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import trio

from overhead import describe
from trio_litellm import open_client
from trio_litellm.batch import run_batch
from trio_litellm.cli.demo import DEMO_REQUESTS, write_demo_batch
from trio_litellm.testing._devstack import DevStack, DevStackError, find_litellm_binary
from upstream import _CLOCK_TICKS as CLOCK_TICKS
from upstream import _process_cpu, _process_tree, machine

WARMUP_REQUESTS = 200
"""Sent through every proxy before the first round (new proxies are slower on first requests)."""


class BenchError(Exception):
    """The benchmark cannot go on: a request failed, or the output is not what it should be."""


@dataclass(frozen=True)
class ProxyServed:
    """What one proxy did for one way's client, from ``client.statistics().proxies``."""

    url: str
    answered: int
    failures: int


@dataclass(frozen=True)
class Sample:
    """One way's measurement in one round."""

    way: str
    round: int
    requests: int
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    proxies_cpu_s: float
    fake_provider_cpu_s: float
    redis_cpu_s: float
    machine_cpu_s: float
    """Every process's CPU on the machine over the batch (``/proc/stat``), ours included."""
    retries: int
    served: tuple[ProxyServed, ...]

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.wall_s

    @property
    def cpu_us_per_request(self) -> float:
        return (self.cpu_user_s + self.cpu_sys_s) / self.requests * 1e6

    @property
    def proxies_ms_per_request(self) -> float:
        return self.proxies_cpu_s / self.requests * 1e3

    @property
    def fake_provider_us_per_request(self) -> float:
        return self.fake_provider_cpu_s / self.requests * 1e6

    @property
    def fake_provider_busy(self) -> float:
        """The fake provider's share of one core over the batch (1.0: it was the limit)."""
        return self.fake_provider_cpu_s / self.wall_s

    @property
    def redis_us_per_request(self) -> float:
        return self.redis_cpu_s / self.requests * 1e6

    @property
    def others_cores(self) -> float:
        """Cores kept busy by other work on the machine (not this benchmark's processes)."""
        ours = (
            self.cpu_user_s
            + self.cpu_sys_s
            + self.proxies_cpu_s
            + self.fake_provider_cpu_s
            + self.redis_cpu_s
        )
        return max(0.0, self.machine_cpu_s - ours) / self.wall_s


# --- the fleet ------------------------------------------------------------------------------------


class Fleet:
    """The running stack, and the CPU its processes have used so far, read from ``/proc``."""

    def __init__(self, stack: DevStack) -> None:
        self.stack = stack
        # The stack's processes are its own business; a benchmark may look at them, not touch them.
        self._proxy_pids = [_pid(service) for service in stack._proxies]
        self._fake_pid = _pid(stack._fake)
        self._redis_pid = _pid(stack._redis._service) if stack._redis is not None else None

    def cpu(self) -> tuple[float, float, float]:
        """CPU seconds so far of the proxies (every process of each), the fake provider, Redis."""
        proxies = sum(_tree_cpu(pid) for pid in self._proxy_pids)
        redis = _tree_cpu(self._redis_pid) if self._redis_pid is not None else 0.0
        return proxies, _tree_cpu(self._fake_pid), redis

    def reset_fake_provider(self) -> None:
        """Forget the fake provider's ``fail_first`` tallies, so every way meets the same faults."""
        _http(self.stack.fake_provider_url, "POST", "/_reset")

    def litellm_version(self) -> str:
        """The proxies' LiteLLM version, from the package metadata beside their ``litellm``."""
        venv = find_litellm_binary(self.stack.project_root).resolve().parent.parent
        for info in sorted(venv.glob("lib/python*/site-packages/litellm-*.dist-info")):
            return info.name.removeprefix("litellm-").removesuffix(".dist-info")
        return "(version unknown)"


def machine_cpu() -> float:
    """CPU seconds every core has spent busy since boot (``/proc/stat``: all but idle and iowait)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0.0
    ticks = [int(field) for field in fields[:8]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # user nice system idle iowait irq softirq steal
    return busy / CLOCK_TICKS


def _pid(service: Any) -> int:
    process = service.process
    if process is None:
        raise BenchError(f"{service.name} is not running")
    return int(process.pid)


def _tree_cpu(pid: int) -> float:
    return sum(_process_cpu(each) for each in _process_tree(pid))


def _http(base_url: str, method: str, path: str) -> bytes:
    """One plain request on loopback (http.client: no environment proxies), its 2xx body."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        raise BenchError(f"{method} {base_url}{path} answered {response.status}: {body[:200]!r}")
    return body


# --- one way, one round ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What every way runs: the batch at ``input_path``, ``concurrency`` requests at once."""

    input_path: Path
    requests: int
    custom_ids: frozenset[str]
    workdir: Path
    concurrency: int


async def measure(fleet: Fleet, way: str, urls: Sequence[str], spec: Spec, round_no: int) -> Sample:
    """Run the batch once on a client of its own over ``urls``; time only the batch, check it."""
    output_path = spec.workdir / f"output-{round_no}-{len(urls)}.jsonl"
    output_path.unlink(missing_ok=True)
    fleet.reset_fake_provider()
    async with open_client(
        proxy_url=list(urls),
        api_key=fleet.stack.api_key,
        max_in_flight=spec.concurrency,
        max_retries=3,
        backoff_initial=0.1,
    ) as client:
        gc.collect()
        proxies_before, fake_before, redis_before = fleet.cpu()
        machine_before = machine_cpu()
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        summary = await run_batch(client, spec.input_path, output_path)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        machine_after = machine_cpu()
        proxies_after, fake_after, redis_after = fleet.cpu()
        served = tuple(
            ProxyServed(url=proxy.url, answered=proxy.answered, failures=proxy.failures)
            for proxy in client.statistics().proxies
        )
    if summary.succeeded != spec.requests or summary.failed:
        raise BenchError(
            f"{way}, round {round_no + 1}: {summary.succeeded} of {spec.requests} requests "
            f"succeeded (outcomes: {summary.outcomes})"
        )
    check_output(output_path, spec.custom_ids, f"{way}, round {round_no + 1}")
    output_path.unlink()
    return Sample(
        way=way,
        round=round_no,
        requests=spec.requests,
        wall_s=wall,
        cpu_user_s=after.ru_utime - before.ru_utime,
        cpu_sys_s=after.ru_stime - before.ru_stime,
        proxies_cpu_s=proxies_after - proxies_before,
        fake_provider_cpu_s=fake_after - fake_before,
        redis_cpu_s=redis_after - redis_before,
        machine_cpu_s=machine_after - machine_before,
        retries=summary.retries,
        served=served,
    )


def check_output(path: Path, custom_ids: frozenset[str], where: str) -> None:
    """The output holds one successful answer per input line, each custom_id once."""
    lines = path.read_bytes().splitlines()
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        record = msgspec.json.decode(line)
        response = record.get("response") or {}
        if record.get("error") is not None or response.get("status_code") != 200:
            raise BenchError(f"{where}: output line {number} is not a success: {line[:300]!r}")
        seen.add(record["custom_id"])
    if len(lines) != len(custom_ids) or seen != custom_ids:
        raise BenchError(
            f"{where}: the output has {len(lines)} lines and {len(seen)} unique custom_ids, "
            f"expected each of the input's {len(custom_ids)} once"
        )


FAULT_DIRECTIVE = re.compile(rb" \[fake [^\]]*\]")
"""The demo's injected upstream fault, at the end of one chat in fifty."""


def write_batch(path: Path, requests: int, *, faults: bool) -> None:
    """The demo's batch; without its injected faults when ``faults`` is False."""
    write_demo_batch(path, requests)
    if not faults:
        path.write_bytes(FAULT_DIRECTIVE.sub(b"", path.read_bytes()))


def read_custom_ids(path: Path) -> frozenset[str]:
    return frozenset(
        msgspec.json.decode(line)["custom_id"] for line in path.read_bytes().splitlines()
    )


# --- the rounds -----------------------------------------------------------------------------------


def way_names(proxies: int) -> tuple[str, str]:
    return "1 proxy", f"{proxies} proxies"


async def run_rounds(fleet: Fleet, spec: Spec, args: argparse.Namespace) -> list[Sample]:
    """A warm-up through every proxy, then ``rounds`` rounds of both ways, the order rotating."""
    urls = fleet.stack.proxy_urls
    one, many = way_names(len(urls))
    ways = [(one, urls[:1]), (many, urls)]
    if args.warmup:
        warmup_path = spec.workdir / "warmup.jsonl"
        write_batch(warmup_path, args.warmup, faults=args.faults)
        warmup = Spec(
            input_path=warmup_path,
            requests=args.warmup,
            custom_ids=read_custom_ids(warmup_path),
            workdir=spec.workdir,
            concurrency=spec.concurrency,
        )
        print(f"warm-up: {args.warmup} requests over {len(urls)} proxies", file=sys.stderr)
        await measure(fleet, "warm-up", urls, warmup, -1)
    samples = []
    for round_no in range(args.rounds):
        shift = round_no % len(ways)
        for name, way_urls in ways[shift:] + ways[:shift]:
            sample = await measure(fleet, name, way_urls, spec, round_no)
            print(
                f"round {round_no + 1}/{args.rounds} {name}: {sample.wall_s:.1f} s, "
                f"{sample.requests_per_s:,.1f} req/s, {sample.cpu_us_per_request:,.0f} µs "
                f"client CPU/req, {sample.proxies_ms_per_request:.1f} ms proxies CPU/req, "
                f"answered {'/'.join(str(s.answered) for s in sample.served)}, "
                f"other work {sample.others_cores:.2f} cores",
                file=sys.stderr,
            )
            samples.append(sample)
    return samples


FIGURES = (
    "wall_s",
    "requests_per_s",
    "cpu_us_per_request",
    "proxies_ms_per_request",
    "fake_provider_us_per_request",
    "fake_provider_busy",
    "redis_us_per_request",
    "others_cores",
)


def summarize(samples: list[Sample], proxies: int) -> dict[str, Any]:
    """Per way the median of each figure; the fleet's ratios to one proxy, and per round."""
    one, many = way_names(proxies)
    medians: dict[str, dict[str, float]] = {}
    for name in (one, many):
        mine = [s for s in samples if s.way == name]
        medians[name] = {key: statistics.median(getattr(s, key) for s in mine) for key in FIGURES}
    by_round: dict[int, dict[str, Sample]] = {}
    for sample in samples:
        by_round.setdefault(sample.round, {})[sample.way] = sample
    throughput = medians[many]["requests_per_s"] / medians[one]["requests_per_s"]
    cpu = medians[many]["cpu_us_per_request"] / medians[one]["cpu_us_per_request"]
    return {
        "median": medians,
        "ratio": {"requests_per_s": throughput, "cpu_us_per_request": cpu},
        "ratio_per_round": [
            {
                "requests_per_s": pair[many].requests_per_s / pair[one].requests_per_s,
                "cpu_us_per_request": pair[many].cpu_us_per_request / pair[one].cpu_us_per_request,
            }
            for _, pair in sorted(by_round.items())
        ],
        "targets": {
            "throughput_at_least_1_6x": throughput >= 1.6,
            "client_cpu_no_higher": cpu <= 1.0,
        },
    }


# --- reporting ------------------------------------------------------------------------------------


def render(summary: dict[str, Any], samples: list[Sample], proxies: int) -> str:
    one, many = way_names(proxies)
    rows = [
        (
            "way",
            "req/s",
            "wall s",
            "client CPU µs/req",
            "proxies CPU ms/req",
            "fake provider µs/req (core)",
            "Redis µs/req",
            "other work, cores",
        )
    ]
    for name in (one, many):
        f = summary["median"][name]
        rows.append(
            (
                name,
                f"{f['requests_per_s']:,.1f}",
                f"{f['wall_s']:.1f}",
                f"{f['cpu_us_per_request']:,.0f}",
                f"{f['proxies_ms_per_request']:.1f}",
                f"{f['fake_provider_us_per_request']:,.0f} ({f['fake_provider_busy']:.0%})",
                f"{f['redis_us_per_request']:,.0f}",
                f"{f['others_cores']:.2f}",
            )
        )
    ratio = summary["ratio"]
    rows.append(
        (
            f"{many} / 1",
            f"{ratio['requests_per_s']:.2f}",
            "",
            f"{ratio['cpu_us_per_request']:.2f}",
            "",
            "",
            "",
            "",
        )
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for number, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    per_round = ", ".join(
        f"{r['requests_per_s']:.2f}x req/s, {r['cpu_us_per_request']:.2f}x CPU"
        for r in summary["ratio_per_round"]
    )
    lines.append(f"\nper round, {many} / 1: {per_round}")
    last = [s for s in samples if s.way == many][-1]
    served = ", ".join(
        f"{s.url}: {s.answered:,} answered, {s.failures} failures" for s in last.served
    )
    lines.append(f"each proxy in the last round of {many}: {served}")
    targets = summary["targets"]
    lines.append(
        f"targets: throughput {ratio['requests_per_s']:.2f}x one proxy, at least 1.6x: "
        f"{'met' if targets['throughput_at_least_1_6x'] else 'MISSED'}; "
        f"client CPU per request {ratio['cpu_us_per_request']:.2f}x, no higher: "
        f"{'met' if targets['client_cpu_no_higher'] else 'MISSED'}"
    )
    return "\n".join(lines)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--requests",
        type=_positive,
        default=DEMO_REQUESTS,
        metavar="N",
        help=f"the batch's lines, per way and round (default {DEMO_REQUESTS}, the demo's)",
    )
    parser.add_argument("--rounds", type=_positive, default=3, metavar="R", help="(default 3)")
    parser.add_argument(
        "--proxies", type=int, default=2, metavar="P", help="the fleet's size (default 2)"
    )
    parser.add_argument(
        "--concurrency",
        type=_positive,
        default=32,
        metavar="C",
        help="the client's max_in_flight (default 32, the demo's)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=WARMUP_REQUESTS,
        metavar="W",
        help=f"requests over every proxy before the first round (default {WARMUP_REQUESTS})",
    )
    parser.add_argument(
        "--no-faults",
        dest="faults",
        action="store_false",
        help="leave out the demo's injected upstream 503s (one chat in fifty)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.proxies < 2:
        parser.error("--proxies must be at least 2 (the fleet is compared with one proxy)")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("stamina").setLevel(logging.ERROR)  # the demo's retries are expected
    command = shlex.join(sys.orig_argv)
    host = machine()
    project = Path(__file__).resolve().parent.parent
    try:
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
            workdir = Path(tmp)
            input_path = workdir / "requests.jsonl"
            write_batch(input_path, args.requests, faults=args.faults)
            spec = Spec(
                input_path=input_path,
                requests=args.requests,
                custom_ids=read_custom_ids(input_path),
                workdir=workdir,
                concurrency=args.concurrency,
            )
            print(
                f"starting a Redis server, the fake provider and {args.proxies} LiteLLM proxies",
                file=sys.stderr,
            )
            with DevStack(
                proxies=args.proxies,
                project_root=project,
                log_dir=project / "run" / "bench-fleet-logs",
            ) as stack:
                fleet = Fleet(stack)
                litellm = fleet.litellm_version()
                samples = trio.run(run_rounds, fleet, spec, args)
    except (BenchError, DevStackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    summary = summarize(samples, args.proxies)
    if args.json:
        result = {
            "machine": host,
            "source": describe(host).partition("\n")[2],
            "litellm": litellm,
            "command": command,
            "config": {
                "requests": args.requests,
                "rounds": args.rounds,
                "proxies": args.proxies,
                "concurrency": args.concurrency,
                "warmup": args.warmup,
                "faults": args.faults,
            },
            **summary,
            "samples": [
                {
                    **asdict(s),
                    **{key: getattr(s, key) for key in FIGURES if key != "wall_s"},
                }
                for s in samples
            ],
        }
        print(json.dumps(result, indent=2))
        return 0
    print(describe(host))
    print(f"command: {command}")
    print(
        f"LiteLLM {litellm}, {args.proxies} proxies (one worker each) sharing a Redis server; "
        f"the demo's batch of {args.requests:,} requests per way and round"
        f"{'' if args.faults else ' (without its injected faults)'} through run_batch, "
        f"{args.concurrency} in flight; median of {args.rounds} rounds.\n"
    )
    print(render(summary, samples, args.proxies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
