"""Realtime sessions, trio-litellm against the openai SDK: events per second, CPU per event.

One session per part asks for a long answer (the fake provider's ``rt-long`` directive: 10,000
``response.output_text.delta`` events, then ``response.done``) and reads every event until
``response.done``. Measured from sending the user message to reading ``response.done``: wall
time, this process's user+sys CPU (``getrusage``; the upstream and the proxy run in processes of
their own and are reported apart), and every event received. Opening the session (the websocket
handshake, ``session.created``) happens before the timers start. Each part checks its answer:
the number of deltas, the text they add up to, the usage in ``response.done``.

    trio-litellm   client.realtime(): ``async for event in conn`` on trio
    ask            client.realtime(): ``await conn.ask(prompt)``, which collects the same events
    trio-websocket the floor under ours: trio-websocket's ``get_message()`` in a loop, each
                   message decoded by msgspec into a dict, nothing else (no reader task, no
                   typed events, no records): what any client on trio-websocket pays
    openai         AsyncOpenAI(...).realtime.connect(): ``async for event in conn`` on asyncio
                   (websockets), the SDK's only transport

Each part runs on an event loop of its own (``trio.run`` or ``asyncio.run``) in this process, the
clients alternating and their order rotating each round; figures are medians over rounds, after a
warm-up session per client that is not counted. ``--via fake`` (default) connects straight to the
fake provider's ``/v1/realtime``, so the figures are the client's alone; ``--via proxy`` goes
through a LiteLLM proxy in front of it, as users run it (the proxy re-serialises every event and
paces them with its own CPU). The report ends with the issue's target: trio-litellm's CPU per
event at most a third of the SDK's (``met`` or ``MISSED``).

    python bench/realtime.py [--via fake|proxy] [--rounds 3]
        [--clients trio-litellm,ask,trio-websocket,openai]
        [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import openai
import trio
import trio_websocket
from rich import box
from rich.console import Console
from rich.table import Table

from overhead import GcTimer
from trio_litellm import open_client
from trio_litellm.testing._devstack import DevStack, DevStackError
from upstream import _process_cpu, _process_tree, describe_machine, machine

Via = Literal["fake", "proxy"]
CLIENTS = ("trio-litellm", "ask", "trio-websocket", "openai")
OURS, SDK = "trio-litellm", "openai"
TARGET = 1 / 3
"""trio-litellm's CPU per event over the SDK's may be at most this."""

PROXY_MODEL = "rt-long"
"""The proxy's model group for the long answer (litellm_config.yaml)."""
FAKE_MODEL = "deltas=10000"
"""The same asked of the fake provider directly: its directive for an answer in 10,000 deltas."""
FAKE_KEY = "fake"
"""The key the proxy sends the fake provider (the deployment's api_key; the fake checks none)."""
PROMPT = "Tell me everything."
DELTAS = 10_000
"""Deltas in the long answer."""
TEXT_DELTA = "response.output_text.delta"
DONE = "response.done"

REPORT_WIDTH = 140
ROOT = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """The benchmark cannot go on: a session failed, or its answer was wrong."""


@dataclass(frozen=True)
class Target:
    """Where the sessions go: the fake provider itself, or a LiteLLM proxy in front of it."""

    via: Via
    base_url: str
    api_key: str
    model: str
    upstream_pid: int
    proxy_pid: int | None

    def upstream_cpu(self) -> float:
        return _process_cpu(self.upstream_pid)

    def proxy_cpu(self) -> float:
        if self.proxy_pid is None:
            return 0.0
        return sum(_process_cpu(pid) for pid in _process_tree(self.proxy_pid))


@dataclass
class Answer:
    """What one session received between the request and ``response.done``."""

    events: int = 0
    deltas: int = 0
    text: str = ""
    total_tokens: int | None = None


@dataclass(frozen=True)
class Sample:
    """One part: one session of one client, its long answer measured."""

    client: str
    round: int
    events: int
    deltas: int
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    gc_s: float
    upstream_cpu_s: float
    proxy_cpu_s: float

    def figures(self) -> dict[str, float]:
        cpu = self.cpu_user_s + self.cpu_sys_s
        return {
            "events_per_s": self.events / self.wall_s,
            "cpu_us_per_event": cpu / self.events * 1e6,
            "gc_us_per_event": self.gc_s / self.events * 1e6,
            "wall_s": self.wall_s,
            "upstream_cpu_us_per_event": self.upstream_cpu_s / self.events * 1e6,
            "proxy_cpu_us_per_event": self.proxy_cpu_s / self.events * 1e6,
        }


def user_message(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


# --- measuring ------------------------------------------------------------------------------------


class Meter:
    """Measures one read of the long answer: wall time, this process's CPU and garbage
    collection, and the upstream's and proxy's CPU, read from ``/proc`` outside the window."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.answer: Answer | None = None
        self.wall_s = self.cpu_user_s = self.cpu_sys_s = self.gc_s = 0.0
        self.upstream_cpu_s = self.proxy_cpu_s = 0.0

    async def __call__(self, read: Callable[[], Awaitable[Answer]]) -> Answer:
        gc.collect()
        timer = GcTimer()
        upstream_before, proxy_before = self.target.upstream_cpu(), self.target.proxy_cpu()
        gc.callbacks.append(timer)
        try:
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            answer = await read()
            self.wall_s = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            gc.callbacks.remove(timer)
        self.upstream_cpu_s = self.target.upstream_cpu() - upstream_before
        self.proxy_cpu_s = self.target.proxy_cpu() - proxy_before
        self.cpu_user_s = after.ru_utime - before.ru_utime
        self.cpu_sys_s = after.ru_stime - before.ru_stime
        self.gc_s = timer.seconds
        self.answer = answer
        return answer


Measure = Callable[[Callable[[], Awaitable[Answer]]], Awaitable[Answer]]
"""Runs one read of the long answer under the meter."""


# --- the clients ----------------------------------------------------------------------------------


async def ours(target: Target, measure: Measure) -> None:
    """``async for`` over trio-litellm's session, collecting the deltas."""
    async with (
        open_client(
            proxy_url=target.base_url, api_key=target.api_key, health_check_interval=None
        ) as client,
        client.realtime(model=target.model) as conn,
    ):
        first = await conn.recv()  # as the SDK's, read before the meter starts
        if first.type != "session.created":
            raise BenchError(f"trio-litellm: the session began with {first.type}")

        async def read() -> Answer:
            answer = Answer()
            parts: list[str] = []
            await conn.conversation.item.create(item=user_message(PROMPT))
            await conn.response.create()
            async for event in conn:
                answer.events += 1
                if event.type == TEXT_DELTA:
                    parts.append(event.delta)
                elif event.type == DONE:
                    usage = event.response.usage
                    answer.total_tokens = usage.total_tokens if usage else None
                    break
                elif event.type == "error":
                    raise BenchError(f"trio-litellm: an error event: {event}")
            answer.deltas = len(parts)
            answer.text = "".join(parts)
            return answer

        await measure(read)


async def ours_ask(target: Target, measure: Measure) -> None:
    """``await conn.ask(prompt)``: trio-litellm collecting the turn itself. ask() counts no
    events; the report divides by the events the other clients received of the same answer."""
    async with (
        open_client(
            proxy_url=target.base_url, api_key=target.api_key, health_check_interval=None
        ) as client,
        client.realtime(model=target.model) as conn,
    ):
        await conn.recv()  # session.created, which ask() would otherwise skip inside the meter

        async def read() -> Answer:
            turn = await conn.ask(PROMPT)
            usage = turn.usage
            return Answer(text=turn.text, total_tokens=usage.total_tokens if usage else None)

        await measure(read)


async def floor(target: Target, measure: Measure) -> None:
    """trio-websocket's ``get_message()`` in a loop, each message decoded into a dict."""
    url = target.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    headers = [(b"authorization", f"Bearer {target.api_key}".encode())]
    async with trio_websocket.open_websocket_url(
        f"{url}/v1/realtime?model={target.model}",
        extra_headers=headers,
        max_message_size=64 * 1024 * 1024,
        message_queue_size=64,
    ) as ws:
        first = msgspec.json.decode(await ws.get_message())
        if first.get("type") != "session.created":
            raise BenchError(f"trio-websocket: the session began with {first.get('type')}")

        async def read() -> Answer:
            answer = Answer()
            parts: list[str] = []
            await ws.send_message(
                json.dumps({"type": "conversation.item.create", "item": user_message(PROMPT)})
            )
            await ws.send_message(json.dumps({"type": "response.create"}))
            while True:
                event = msgspec.json.decode(await ws.get_message())
                answer.events += 1
                kind = event.get("type")
                if kind == TEXT_DELTA:
                    parts.append(event["delta"])
                elif kind == DONE:
                    usage = event["response"].get("usage")
                    answer.total_tokens = usage["total_tokens"] if usage else None
                    break
                elif kind == "error":
                    raise BenchError(f"trio-websocket: an error event: {event}")
            answer.deltas = len(parts)
            answer.text = "".join(parts)
            return answer

        await measure(read)


async def sdk(target: Target, measure: Measure) -> None:
    """``async for`` over the openai SDK's realtime connection (asyncio, websockets)."""
    client = openai.AsyncOpenAI(base_url=f"{target.base_url}/v1", api_key=target.api_key)
    async with client.realtime.connect(model=target.model) as conn:
        first = await conn.recv()
        if first.type != "session.created":
            raise BenchError(f"openai: the session began with {first.type}, not session.created")

        async def read() -> Answer:
            answer = Answer()
            parts: list[str] = []
            await conn.conversation.item.create(item=user_message(PROMPT))
            await conn.response.create()
            async for event in conn:
                answer.events += 1
                if event.type == TEXT_DELTA:
                    parts.append(event.delta)
                elif event.type == DONE:
                    usage = event.response.usage
                    answer.total_tokens = usage.total_tokens if usage else None
                    break
                elif event.type == "error":
                    raise BenchError(f"openai: an error event: {event}")
            answer.deltas = len(parts)
            answer.text = "".join(parts)
            return answer

        await measure(read)
    await client.close()


def run_part(client: str, target: Target) -> Meter:
    """One session of ``client`` on an event loop of its own."""
    meter = Meter(target)
    if client == SDK:
        asyncio.run(sdk(target, meter))
    elif client == "ask":
        trio.run(ours_ask, target, meter)
    elif client == "trio-websocket":
        trio.run(floor, target, meter)
    else:
        trio.run(ours, target, meter)
    if meter.answer is None:
        raise BenchError(f"{client}: the session ended before the answer was read")
    return meter


class Checker:
    """Every answer must be the same: the first complete one (deltas counted) is the reference."""

    def __init__(self) -> None:
        self.events: int | None = None
        self.text: str | None = None

    def check(self, client: str, answer: Answer) -> None:
        if answer.total_tokens is None:
            raise BenchError(f"{client}: response.done carried no usage")
        if client != "ask":
            if answer.deltas != DELTAS:
                raise BenchError(f"{client}: {answer.deltas:,} deltas, not {DELTAS:,}")
            if self.events is None:
                self.events = answer.events
            elif answer.events != self.events:
                raise BenchError(
                    f"{client}: {answer.events:,} events, where another session had "
                    f"{self.events:,} of the same answer"
                )
        if self.text is None:
            self.text = answer.text
        elif answer.text != self.text:
            raise BenchError(
                f"{client}: an answer of {len(answer.text):,} characters that differs from "
                f"another session's ({len(self.text):,})"
            )


def run_rounds(
    target: Target, clients: list[str], rounds: int, warmup: bool, log: Console
) -> list[Sample]:
    """A warm-up session per client (imports, first connections), then ``rounds`` rounds, each
    starting one client later than the previous one."""
    checker = Checker()
    order = sorted(clients, key=lambda name: name == "ask")  # ask needs another's event count
    if warmup:
        for client in order:
            checker.check(client, _answer(run_part(client, target)))
            log.print(f"warm-up {client}: done")
    pending: list[tuple[str, int, Meter]] = []
    for round_no in range(rounds):
        shift = round_no % len(clients)
        for client in clients[shift:] + clients[:shift]:
            meter = run_part(client, target)
            answer = _answer(meter)
            checker.check(client, answer)
            pending.append((client, round_no, meter))
            log.print(
                f"round {round_no + 1}/{rounds} {client:13} {meter.wall_s:6.2f} s "
                f"{(meter.cpu_user_s + meter.cpu_sys_s) * 1e3:8.1f} ms CPU"
            )
    if checker.events is None:
        raise BenchError("ask alone cannot count events: run it with trio-litellm or openai")
    samples = []
    for client, round_no, meter in pending:
        answer = _answer(meter)
        samples.append(
            Sample(
                client=client,
                round=round_no,
                events=answer.events if client != "ask" else checker.events,
                deltas=answer.deltas if client != "ask" else DELTAS,
                wall_s=meter.wall_s,
                cpu_user_s=meter.cpu_user_s,
                cpu_sys_s=meter.cpu_sys_s,
                gc_s=meter.gc_s,
                upstream_cpu_s=meter.upstream_cpu_s,
                proxy_cpu_s=meter.proxy_cpu_s,
            )
        )
    return samples


def _answer(meter: Meter) -> Answer:
    assert meter.answer is not None
    return meter.answer


# --- where the sessions go --------------------------------------------------------------------------


def _pid(service: Any) -> int:
    process = service.process
    if process is None:
        raise BenchError(f"{service.name} is not running")
    return int(process.pid)


def start_target(stack: DevStack, via: Via, log: Console) -> Target:
    """Start what ``via`` needs of the dev stack: the fake provider, and a proxy for ``proxy``."""
    if via == "fake":
        log.print(f"starting the fake provider (logs in {stack.log_dir}) ...")
        stack.start_fake_provider()
        return Target(
            via=via,
            base_url=stack.fake_provider_url,
            api_key=FAKE_KEY,
            model=FAKE_MODEL,
            upstream_pid=_pid(stack._fake),
            proxy_pid=None,
        )
    log.print(f"starting the fake provider and a LiteLLM proxy (logs in {stack.log_dir}) ...")
    stack.start()
    return Target(
        via=via,
        base_url=stack.proxy_url,
        api_key=stack.api_key,
        model=PROXY_MODEL,
        upstream_pid=_pid(stack._fake),
        proxy_pid=_pid(stack._proxies[0]),
    )


# --- reporting --------------------------------------------------------------------------------------


def summarize(samples: list[Sample], clients: list[str]) -> dict[str, dict[str, float]]:
    """Per client, the median of every figure over rounds, and its ratio to the SDK's."""
    summary: dict[str, dict[str, float]] = {}
    for client in clients:
        mine = [s.figures() for s in samples if s.client == client]
        summary[client] = {key: statistics.median(f[key] for f in mine) for key in mine[0]}
    if SDK in summary:
        for figures in summary.values():
            for key in ("events_per_s", "cpu_us_per_event"):
                figures[f"vs_{SDK}_{key}"] = figures[key] / summary[SDK][key]
    return summary


def target_check(summary: dict[str, dict[str, float]]) -> dict[str, Any] | None:
    if OURS not in summary or SDK not in summary:
        return None
    ratio = summary[OURS]["vs_openai_cpu_us_per_event"]
    return {
        "figure": "cpu_us_per_event",
        "ours": summary[OURS]["cpu_us_per_event"],
        "sdk": summary[SDK]["cpu_us_per_event"],
        "ratio": ratio,
        "target": TARGET,
        "met": ratio <= TARGET,
    }


def render(summary: dict[str, dict[str, float]], target: Target, rounds: int) -> Table:
    where = "the fake provider" if target.via == "fake" else "a LiteLLM proxy"
    table = Table(
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        title=f"one session, a {DELTAS:,}-delta answer from {where}, median of {rounds} rounds",
        title_justify="left",
    )
    columns: list[tuple[str, Callable[[dict[str, float]], str]]] = [
        ("events/s", lambda f: f"{f['events_per_s']:,.0f}"),
        ("vs openai", lambda f: _ratio(f, "events_per_s")),
        ("wall s", lambda f: f"{f['wall_s']:.2f}"),
        ("CPU µs/event", lambda f: f"{f['cpu_us_per_event']:.1f}"),
        ("vs openai", lambda f: _ratio(f, "cpu_us_per_event")),
        ("of it GC", lambda f: f"{f['gc_us_per_event']:.1f}"),
        ("upstream µs/event", lambda f: f"{f['upstream_cpu_us_per_event']:.1f}"),
    ]
    if target.via == "proxy":
        columns.append(("proxy µs/event", lambda f: f"{f['proxy_cpu_us_per_event']:.1f}"))
    table.add_column("client", no_wrap=True)
    for name, _ in columns:
        table.add_column(name, justify="right", no_wrap=True)
    for client, figures in summary.items():
        table.add_row(client, *(cell(figures) for _, cell in columns))
    return table


def _ratio(figures: dict[str, float], key: str) -> str:
    ratio = figures.get(f"vs_{SDK}_{key}")
    return "-" if ratio is None else f"{ratio:.2f}"


def _clients(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in CLIENTS]
    if unknown or not items:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(CLIENTS)}; got {text!r}"
        )
    return list(dict.fromkeys(items))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--via",
        choices=("fake", "proxy"),
        default="fake",
        help="straight to the fake provider (default: the client's cost alone), or through a "
        "LiteLLM proxy (as users run it)",
    )
    parser.add_argument("--rounds", type=int, default=3, metavar="R", help="medians are over these")
    parser.add_argument(
        "--clients",
        type=_clients,
        default=list(CLIENTS),
        metavar="NAME,...",
        help=", ".join(CLIENTS),
    )
    parser.add_argument(
        "--no-warmup", action="store_true", help="count every session (no warm-up session first)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Console(highlight=False)
    log = Console(stderr=True, highlight=False, soft_wrap=True)
    if not out.is_terminal:
        out.width = REPORT_WIDTH
    command = shlex.join(sys.orig_argv)
    host = machine()
    for package in ("trio-websocket", "websockets", "wsproto"):
        try:
            host["versions"][package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            host["versions"][package] = "-"
    if not args.json:
        out.print(describe_machine(host), soft_wrap=True)
        out.print(f"command: {command}", soft_wrap=True)
    stack = DevStack(log_dir=ROOT / "run" / "bench-realtime-logs")
    try:
        with stack:
            target = start_target(stack, args.via, log)
            if not args.json:
                out.print(f"target: {target.via} at {target.base_url}, model {target.model}")
            samples = run_rounds(target, args.clients, args.rounds, not args.no_warmup, log)
    except (BenchError, DevStackError) as exc:
        log.print(f"error: {exc}", markup=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        log.print("interrupted")
        return 130
    summary = summarize(samples, args.clients)
    check = target_check(summary)
    if args.json:
        result = {
            "machine": host,
            "command": command,
            "config": {
                "via": args.via,
                "model": target.model,
                "rounds": args.rounds,
                "clients": args.clients,
                "deltas": DELTAS,
                "warmup_sessions": 0 if args.no_warmup else 1,
            },
            "median": summary,
            "target": check,
            "samples": [{**asdict(s), **s.figures()} for s in samples],
        }
        print(json.dumps(result, indent=2))
        return 0
    out.print()
    out.print(render(summary, target, args.rounds))
    out.print(
        "events: every event from sending the request to response.done (ask: as many as the "
        "others received). CPU: this process's user+sys over them, the garbage collector's "
        "share apart; upstream, proxy: their processes' CPU over the same time. vs openai: "
        "ratio to the SDK's (events/s: above 1 is faster; CPU: below 1 is cheaper)."
    )
    if check is not None:
        out.print()
        out.print(
            f"target: trio-litellm's CPU per event over the openai SDK's: "
            f"{check['ours']:.1f} / {check['sdk']:.1f} µs = {check['ratio']:.2f} "
            f"(at most {TARGET:.2f}): {'met' if check['met'] else 'MISSED'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
