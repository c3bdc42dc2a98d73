"""trio-litellm against a floor and the openai SDK: throughput, latency, CPU and memory per request.

In one process, against one local upstream (nginx serving fixed bodies, see ``upstream.py``), for
each concurrency C and each kind of request (chat completions, streams consumed to the last
chunk, embeddings), N requests (S streams) go through each client from C worker tasks:

    trio-litellm     client.complete / client.stream / client.embed, on trio
    open_jobs        client.open_jobs: one producer keeping C jobs outstanding (no streams)
    aiohttp          the floor: aiohttp + msgspec under asyncio.run, the least a Python client
                     does (POST, read the body or the SSE lines, decode into a small Struct)
    openai-trio      openai.AsyncOpenAI on trio (the SDK runs on trio through anyio and httpx2)
    openai-asyncio   openai.AsyncOpenAI under asyncio.run, measured the same way

Each client gets a fresh instance per part, a pool of C connections, no retries and no health
probes, and a warm-up of C requests (one per connection) before the timers start. Then only the
requests are measured: wall time, each request's latency, this process's user+sys CPU
(``getrusage``, every thread included), the upstream's CPU (``/proc``) and this process's RSS
(sampled every 20 ms). Every answer is checked (every request succeeded, every stream had its 64
content chunks and its usage, every embedding its 1536 floats); a wrong one aborts the run. The
order of the clients rotates each round; figures are medians over rounds, with ratios to the
floor (aiohttp) and to the SDK on trio and on asyncio. The report ends with trio-litellm's CPU
over the floor's against the targets: at most 1.2 per request for completions and embeddings, at
most 1.0 per stream chunk.

    python bench/clients.py [--requests 1000] [--streams 250] [--rounds 3] [--concurrency 64,256]
        [--kinds chat,stream,embed]
        [--clients trio-litellm,open_jobs,aiohttp,openai-trio,openai-asyncio]
        [--upstream nginx|fake] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Literal

import aiohttp
import httpx2
import msgspec
import openai
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

Kind = Literal["chat", "stream", "embed"]
KINDS: tuple[Kind, ...] = ("chat", "stream", "embed")
KIND_TITLES = {"chat": "chat completions", "stream": "streamed completions", "embed": "embeddings"}

CLIENTS = ("trio-litellm", "open_jobs", "aiohttp", "openai-trio", "openai-asyncio")
STREAMLESS = {"open_jobs"}
"""Clients that cannot stream (jobs answer in one body)."""
FLOOR = "aiohttp"
"""The least a Python client can do per request; trio-litellm's targets are ratios to it."""
BASES = (FLOOR, "openai-trio", "openai-asyncio")
"""The clients the others are compared with."""
TARGETS: dict[Kind, tuple[str, float]] = {
    "chat": ("cpu_us_per_request", 1.2),
    "stream": ("cpu_us_per_chunk", 1.0),
    "embed": ("cpu_us_per_request", 1.2),
}
"""Per kind, the figure of trio-litellm's over the floor's, and the most that ratio may be."""
RATIO_FIGURES = ("requests_per_s", "p50_ms", "p99_ms", "cpu_us_per_request", "cpu_us_per_chunk")

RSS_INTERVAL = 0.02
REPORT_WIDTH = 160
MAX_REPORTED_FAILURES = 3


class BenchError(Exception):
    """The benchmark cannot go on: the upstream failed, or a client's answers were wrong."""


@dataclass(frozen=True)
class Part:
    """One measured part: ``requests`` requests of one kind through one client, C at once."""

    upstream: Upstream
    client: str
    kind: Kind
    concurrency: int
    requests: int
    round: int

    @property
    def label(self) -> str:
        return f"{self.client} {self.kind} C={self.concurrency}"

    @property
    def base_url(self) -> str:
        """Streams go to the upstream's stream route; our client takes the URL without /v1."""
        if self.kind == "stream":
            return self.upstream.stream_base_url
        return self.upstream.base_url


@dataclass(frozen=True)
class Sample:
    """One part's measurement."""

    client: str
    kind: Kind
    concurrency: int
    round: int
    requests: int
    chunks: int
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    upstream_cpu_s: float
    p50_ms: float
    p99_ms: float
    rss_before_mib: float
    rss_peak_mib: float

    def figures(self) -> dict[str, float]:
        """The figures reported (chunks only for streams)."""
        cpu = self.cpu_user_s + self.cpu_sys_s
        figures = {
            "requests_per_s": self.requests / self.wall_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "cpu_us_per_request": cpu / self.requests * 1e6,
            "upstream_cpu_us_per_request": self.upstream_cpu_s / self.requests * 1e6,
            "rss_peak_mib": self.rss_peak_mib,
            "rss_growth_mib": self.rss_peak_mib - self.rss_before_mib,
        }
        if self.chunks:
            figures["chunks_per_stream"] = self.chunks / self.requests
            figures["cpu_us_per_chunk"] = cpu / self.chunks * 1e6
        return figures


# --- what each client does for one request ---------------------------------------------------------

Request = Callable[[], Awaitable[int]]
"""One request, answer checked; returns the stream chunks it received (0 for other kinds)."""


def ours_request(client: Client, part: Part) -> Request:
    """A request through trio-litellm's method API."""
    chat_model, embedding_model = part.upstream.chat_model, part.upstream.embedding_model

    async def chat() -> int:
        reply = await client.complete(model=chat_model, messages=MESSAGES, max_tokens=MAX_TOKENS)
        usage = reply.usage.total_tokens if reply.usage else None
        check_completion(reply.choices[0].message.content, usage)
        return 0

    async def stream() -> int:
        chunks = content_chunks = 0
        usage_seen = False
        async with client.stream(
            model=chat_model, messages=MESSAGES, max_tokens=MAX_TOKENS
        ) as chat_stream:
            async for chunk in chat_stream:
                chunks += 1
                if chunk.choices and chunk.choices[0].delta.content:
                    content_chunks += 1
                if chunk.usage is not None:
                    usage_seen = True
        check_stream(content_chunks, usage_seen)
        return chunks

    async def embed() -> int:
        reply = await client.embed(
            model=embedding_model, input=[EMBEDDING_INPUT], encoding_format="float"
        )
        check_embedding(len(reply.data[0].embedding))
        return 0

    return {"chat": chat, "stream": stream, "embed": embed}[part.kind]


def sdk_request(client: openai.AsyncOpenAI, part: Part) -> Request:
    """The same request through the openai SDK (asking for usage in streams, as ours does)."""
    chat_model, embedding_model = part.upstream.chat_model, part.upstream.embedding_model

    async def chat() -> int:
        reply = await client.chat.completions.create(
            model=chat_model, messages=MESSAGES, max_tokens=MAX_TOKENS
        )
        usage = reply.usage.total_tokens if reply.usage else None
        check_completion(reply.choices[0].message.content, usage)
        return 0

    async def stream() -> int:
        chunks = content_chunks = 0
        usage_seen = False
        chat_stream = await client.chat.completions.create(
            model=chat_model,
            messages=MESSAGES,
            max_tokens=MAX_TOKENS,
            stream=True,
            stream_options={"include_usage": True},
        )
        async with chat_stream:
            async for chunk in chat_stream:
                chunks += 1
                if chunk.choices and chunk.choices[0].delta.content:
                    content_chunks += 1
                if chunk.usage is not None:
                    usage_seen = True
        check_stream(content_chunks, usage_seen)
        return chunks

    async def embed() -> int:
        reply = await client.embeddings.create(
            model=embedding_model, input=[EMBEDDING_INPUT], encoding_format="float"
        )
        check_embedding(len(reply.data[0].embedding))
        return 0

    return {"chat": chat, "stream": stream, "embed": embed}[part.kind]


# The floor: aiohttp on asyncio, decoding with msgspec into Structs holding only what is checked.
# No retries, no validation beyond the status, no objects for the fields it skips: what a
# hand-written client costs, against which a library's layers are measured.


class _Usage(msgspec.Struct):
    total_tokens: int = 0


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message


class _Completion(msgspec.Struct):
    choices: list[_Choice]
    usage: _Usage | None = None


class _Delta(msgspec.Struct):
    content: str | None = None


class _ChunkChoice(msgspec.Struct):
    delta: _Delta


class _Chunk(msgspec.Struct):
    choices: list[_ChunkChoice] = []
    usage: _Usage | None = None


class _Embedding(msgspec.Struct):
    embedding: list[float]


class _Embeddings(msgspec.Struct):
    data: list[_Embedding]


_completion_decoder = msgspec.json.Decoder(_Completion)
_chunk_decoder = msgspec.json.Decoder(_Chunk)
_embeddings_decoder = msgspec.json.Decoder(_Embeddings)
_encode = msgspec.json.encode
_SSE_DATA = b"data: "
_SSE_DONE = b"[DONE]"


def aiohttp_request(session: aiohttp.ClientSession, part: Part) -> Request:
    """The same request, POSTed by aiohttp and decoded by msgspec (the body encoded each time)."""
    chat_model, embedding_model = part.upstream.chat_model, part.upstream.embedding_model
    chat_url = f"{part.base_url}/v1/chat/completions"
    embeddings_url = f"{part.base_url}/v1/embeddings"
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

    async def chat() -> int:
        body = _encode({"model": chat_model, "messages": MESSAGES, "max_tokens": MAX_TOKENS})
        async with session.post(chat_url, data=body, headers=headers) as response:
            response.raise_for_status()
            reply = _completion_decoder.decode(await response.read())
        usage = reply.usage.total_tokens if reply.usage else None
        check_completion(reply.choices[0].message.content, usage)
        return 0

    async def stream() -> int:
        chunks = content_chunks = 0
        usage_seen = False
        body = _encode(
            {
                "model": chat_model,
                "messages": MESSAGES,
                "max_tokens": MAX_TOKENS,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        )
        async with session.post(chat_url, data=body, headers=headers) as response:
            response.raise_for_status()
            async for line in response.content:
                if not line.startswith(_SSE_DATA):
                    continue  # the blank line between events
                data = line[len(_SSE_DATA) :].rstrip()
                if data == _SSE_DONE:
                    break
                chunk = _chunk_decoder.decode(data)
                chunks += 1
                if chunk.choices and chunk.choices[0].delta.content:
                    content_chunks += 1
                if chunk.usage is not None:
                    usage_seen = True
        check_stream(content_chunks, usage_seen)
        return chunks

    async def embed() -> int:
        body = _encode(
            {"model": embedding_model, "input": [EMBEDDING_INPUT], "encoding_format": "float"}
        )
        async with session.post(embeddings_url, data=body, headers=headers) as response:
            response.raise_for_status()
            reply = _embeddings_decoder.decode(await response.read())
        check_embedding(len(reply.data[0].embedding))
        return 0

    return {"chat": chat, "stream": stream, "embed": embed}[part.kind]


# --- running requests ---------------------------------------------------------------------------


class Tally:
    """What one batch of requests did: how many started, their latencies, chunks and failures."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.started = 0
        self.latencies: list[float] = []
        self.chunks = 0
        self.failed = 0
        self.failures: list[str] = []

    def take(self) -> bool:
        """Claim the next request; False once all have been claimed."""
        if self.started >= self.total:
            return False
        self.started += 1
        return True

    def succeeded(self, latency: float, chunks: int) -> None:
        self.latencies.append(latency)
        self.chunks += chunks

    def fail(self, exc: BaseException) -> None:
        self.failed += 1
        if len(self.failures) < MAX_REPORTED_FAILURES:
            self.failures.append(f"{type(exc).__name__}: {exc}")

    def check(self, label: str) -> None:
        if len(self.latencies) != self.total or self.failed:
            shown = "; ".join(self.failures) or "no error reported"
            raise BenchError(
                f"{label}: {len(self.latencies)} of {self.total} requests succeeded "
                f"({self.failed} failed: {shown})"
            )


async def _worker(request: Request, tally: Tally) -> None:
    """Runs requests one after another until the tally has none left (trio or asyncio alike)."""
    while tally.take():
        start = time.perf_counter()
        try:
            chunks = await request()
        except Exception as exc:  # recorded, and the part aborted once it ends
            tally.fail(exc)
        else:
            tally.succeeded(time.perf_counter() - start, chunks)


async def trio_pool(request: Request, tally: Tally, concurrency: int) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(_worker, request, tally)


async def asyncio_pool(request: Request, tally: Tally, concurrency: int) -> None:
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(_worker(request, tally))


async def jobs_pool(client: Client, part: Part, tally: Tally) -> None:
    """``tally.total`` jobs through ``open_jobs``, never more than C outstanding.

    Like the workers, the producer keeps C jobs outstanding, so the latency (from handing a job
    over to reading its result) counts the same as a method call's.
    """
    if part.kind == "chat":
        request: dict[str, Any] = {
            "model": part.upstream.chat_model,
            "messages": MESSAGES,
            "max_tokens": MAX_TOKENS,
        }
    else:
        request = {
            "model": part.upstream.embedding_model,
            "input": [EMBEDDING_INPUT],
            "encoding_format": "float",
        }
    outstanding = trio.Semaphore(part.concurrency)
    sent_at: dict[int, float] = {}
    async with client.open_jobs() as (send_jobs, receive_results):

        async def produce() -> None:
            async with send_jobs:
                while tally.take():
                    await outstanding.acquire()
                    sent_at[tally.started] = time.perf_counter()
                    await send_jobs.send(Job(id=tally.started, request=request))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            async for result in receive_results:
                latency = time.perf_counter() - sent_at.pop(result.id)
                outstanding.release()
                try:
                    if result.error is not None:
                        raise result.error
                    response: Any = result.response
                    if part.kind == "chat":
                        usage = response.usage.total_tokens if response.usage else None
                        check_completion(response.choices[0].message.content, usage)
                    else:
                        check_embedding(len(response.data[0].embedding))
                except Exception as exc:
                    tally.fail(exc)
                else:
                    tally.succeeded(latency, 0)


Pool = Callable[[Tally], Awaitable[None]]
"""Runs a tally's requests through one client."""


# --- measuring ------------------------------------------------------------------------------------


class RssSampler:
    """This process's RSS every RSS_INTERVAL seconds on a thread, keeping the peak."""

    def __init__(self) -> None:
        self.before = rss_mib()
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(RSS_INTERVAL):
            self.peak = max(self.peak, rss_mib())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


async def measure(part: Part, pool: Pool) -> Sample:
    """Warm the client up (one request per connection), then time ``part.requests`` requests."""
    warmup = Tally(part.concurrency)
    await pool(warmup)
    warmup.check(f"{part.label} (warm-up)")
    tally = Tally(part.requests)
    gc.collect()
    upstream_before = part.upstream.cpu_seconds()
    with RssSampler() as rss:
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        await pool(tally)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
    upstream_cpu = part.upstream.cpu_seconds() - upstream_before
    tally.check(part.label)
    cuts = statistics.quantiles(tally.latencies, n=100, method="inclusive")
    return Sample(
        client=part.client,
        kind=part.kind,
        concurrency=part.concurrency,
        round=part.round,
        requests=part.requests,
        chunks=tally.chunks,
        wall_s=wall,
        cpu_user_s=after.ru_utime - before.ru_utime,
        cpu_sys_s=after.ru_stime - before.ru_stime,
        upstream_cpu_s=upstream_cpu,
        p50_ms=cuts[49] * 1e3,
        p99_ms=cuts[98] * 1e3,
        rss_before_mib=rss.before,
        rss_peak_mib=rss.peak,
    )


async def run_ours(part: Part) -> Sample:
    async with open_client(
        proxy_url=part.base_url,
        api_key=API_KEY,
        max_connections=part.concurrency,
        health_check_interval=None,
        max_retries=0,
    ) as client:
        if part.client == "open_jobs":
            return await measure(part, lambda tally: jobs_pool(client, part, tally))
        request = ours_request(client, part)
        return await measure(part, lambda tally: trio_pool(request, tally, part.concurrency))


async def run_sdk(part: Part, pool: Callable[[Request, Tally, int], Awaitable[None]]) -> Sample:
    limits = httpx2.Limits(
        max_connections=part.concurrency, max_keepalive_connections=part.concurrency
    )
    async with openai.AsyncOpenAI(
        api_key=API_KEY,
        base_url=f"{part.base_url}/v1",
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits),
    ) as client:
        request = sdk_request(client, part)
        return await measure(part, lambda tally: pool(request, tally, part.concurrency))


async def run_aiohttp(part: Part) -> Sample:
    """The floor: one session, a connector of C connections (aiohttp's default is 100)."""
    connector = aiohttp.TCPConnector(limit=part.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        request = aiohttp_request(session, part)
        return await measure(part, lambda tally: asyncio_pool(request, tally, part.concurrency))


def run_part(part: Part) -> Sample:
    """One part on its own event loop: asyncio for ``aiohttp`` and ``openai-asyncio``, else trio."""
    if part.client == FLOOR:
        return asyncio.run(run_aiohttp(part))
    if part.client == "openai-asyncio":
        return asyncio.run(run_sdk(part, asyncio_pool))
    if part.client == "openai-trio":
        return trio.run(run_sdk, part, trio_pool)
    return trio.run(run_ours, part)


def run_rounds(upstream: Upstream, args: argparse.Namespace, log: Console) -> list[Sample]:
    """Every part, round after round; each round starts one client later than the previous one."""
    samples = []
    for concurrency in args.concurrency:
        for round_no in range(args.rounds):
            for kind in args.kinds:
                clients = [c for c in args.clients if not (kind == "stream" and c in STREAMLESS)]
                shift = round_no % len(clients)
                for client in clients[shift:] + clients[:shift]:
                    requests = args.streams if kind == "stream" else args.requests
                    part = Part(upstream, client, kind, concurrency, requests, round_no)
                    sample = run_part(part)
                    figures = sample.figures()
                    log.print(
                        f"C={concurrency} round {round_no + 1}/{args.rounds} {kind:6} "
                        f"{client:14} {figures['requests_per_s']:7,.0f} req/s "
                        f"{figures['cpu_us_per_request']:7,.0f} µs CPU/req "
                        f"p99 {figures['p99_ms']:6.1f} ms"
                    )
                    samples.append(sample)
    return samples


# --- reporting ------------------------------------------------------------------------------------

Summary = dict[int, dict[Kind, dict[str, dict[str, float]]]]
"""concurrency → kind → client → figure → median (and ``vs_<base>_<figure>`` ratios)."""


def summarize(samples: list[Sample]) -> Summary:
    """Medians over rounds of every figure, and each one's ratio to the SDK's (trio, asyncio)."""
    summary: Summary = {}
    for sample in samples:
        by_client = summary.setdefault(sample.concurrency, {}).setdefault(sample.kind, {})
        by_client.setdefault(sample.client, {})
    for concurrency, kinds in summary.items():
        for kind, clients in kinds.items():
            for client in clients:
                mine = [
                    s.figures()
                    for s in samples
                    if (s.concurrency, s.kind, s.client) == (concurrency, kind, client)
                ]
                clients[client] = {key: statistics.median(f[key] for f in mine) for key in mine[0]}
            for base in BASES:
                if base not in clients:
                    continue
                reference = {k: v for k, v in clients[base].items() if k in RATIO_FIGURES}
                for figures in clients.values():
                    for key, value in reference.items():
                        if key in figures and value:
                            figures[f"vs_{base}_{key}"] = figures[key] / value
    return summary


def render(
    kind: Kind, concurrency: int, clients: dict[str, dict[str, float]], rounds: int
) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        title=f"{KIND_TITLES[kind]}, {concurrency} in flight, median of {rounds} rounds",
        title_justify="left",
    )
    columns: list[tuple[str, Callable[[dict[str, float]], str]]] = [
        ("req/s", lambda f: f"{f['requests_per_s']:,.0f}"),
        ("vs F", lambda f: _ratio(f, FLOOR, "requests_per_s")),
        ("vs T", lambda f: _ratio(f, "openai-trio", "requests_per_s")),
        ("vs A", lambda f: _ratio(f, "openai-asyncio", "requests_per_s")),
        ("p50 ms", lambda f: f"{f['p50_ms']:.1f}"),
        ("p99 ms", lambda f: f"{f['p99_ms']:.1f}"),
        ("CPU µs/req", lambda f: f"{f['cpu_us_per_request']:,.0f}"),
        ("vs F", lambda f: _ratio(f, FLOOR, "cpu_us_per_request")),
        ("vs T", lambda f: _ratio(f, "openai-trio", "cpu_us_per_request")),
        ("vs A", lambda f: _ratio(f, "openai-asyncio", "cpu_us_per_request")),
    ]
    if kind == "stream":
        columns += [
            ("µs/chunk", lambda f: f"{f['cpu_us_per_chunk']:.1f}"),
            ("vs F", lambda f: _ratio(f, FLOOR, "cpu_us_per_chunk")),
        ]
    columns += [
        ("upstream µs/req", lambda f: f"{f['upstream_cpu_us_per_request']:,.0f}"),
        ("peak RSS MiB", lambda f: f"{f['rss_peak_mib']:.0f}"),
    ]
    table.add_column("client", no_wrap=True)
    for name, _ in columns:
        table.add_column(name, justify="right", no_wrap=True)
    for client, figures in clients.items():
        table.add_row(client, *(cell(figures) for _, cell in columns))
    return table


def target_checks(summary: Summary, client: str = "trio-litellm") -> list[dict[str, Any]]:
    """trio-litellm's CPU over the floor's, per concurrency and kind, against the targets."""
    checks = []
    for concurrency, kinds in summary.items():
        for kind, clients in kinds.items():
            if client not in clients or FLOOR not in clients:
                continue
            figure, limit = TARGETS[kind]
            ratio = clients[client][f"vs_{FLOOR}_{figure}"]
            checks.append(
                {
                    "concurrency": concurrency,
                    "kind": kind,
                    "figure": figure,
                    "ours": clients[client][figure],
                    "floor": clients[FLOOR][figure],
                    "ratio": ratio,
                    "target": limit,
                    "met": ratio <= limit,
                }
            )
    return checks


def render_targets(checks: list[dict[str, Any]]) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        title=f"targets: trio-litellm's CPU over the floor's ({FLOOR})",
        title_justify="left",
    )
    for name in ("in flight", "kind", "figure", "trio-litellm", FLOOR, "ratio", "target", ""):
        table.add_column(name, justify="left" if name in ("kind", "figure", "") else "right")
    for check in checks:
        table.add_row(
            str(check["concurrency"]),
            check["kind"],
            "CPU µs/chunk" if check["figure"] == "cpu_us_per_chunk" else "CPU µs/req",
            f"{check['ours']:,.1f}",
            f"{check['floor']:,.1f}",
            f"{check['ratio']:.2f}",
            f"≤ {check['target']:.1f}",
            "met" if check["met"] else "MISSED",
        )
    return table


def _ratio(figures: dict[str, float], base: str, key: str) -> str:
    ratio = figures.get(f"vs_{base}_{key}")
    return "-" if ratio is None else f"{ratio:.2f}"


def _order(summary: Summary, args: argparse.Namespace) -> Summary:
    """The summary in the order the arguments list concurrencies, kinds and clients."""
    return {
        c: {
            k: {name: summary[c][k][name] for name in args.clients if name in summary[c][k]}
            for k in args.kinds
            if k in summary[c]
        }
        for c in args.concurrency
        if c in summary
    }


def _csv(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(choices)}; got {text!r}"
            )
        return list(dict.fromkeys(items))

    return parse


def _int_list(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 64,256; got {text!r}")
    return list(dict.fromkeys(values))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--requests",
        type=int,
        default=1000,
        metavar="N",
        help="completions and embeddings per client and round (default 1000)",
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=250,
        metavar="S",
        help="streams per client and round, each 67 chunks (default 250)",
    )
    parser.add_argument("--rounds", type=int, default=3, metavar="R", help="medians are over these")
    parser.add_argument(
        "--concurrency",
        type=_int_list,
        default=[64, 256],
        metavar="C,...",
        help="requests in flight (and connections), each a run of its own (default 64,256)",
    )
    parser.add_argument(
        "--kinds", type=_csv(KINDS), default=list(KINDS), metavar="K,...", help=", ".join(KINDS)
    )
    parser.add_argument(
        "--clients",
        type=_csv(CLIENTS),
        default=list(CLIENTS),
        metavar="NAME,...",
        help=", ".join(CLIENTS),
    )
    parser.add_argument(
        "--upstream",
        choices=("nginx", "fake"),
        default="nginx",
        help="nginx with fixed bodies (default), or the fake provider",
    )
    parser.add_argument(
        "--ratelimit-headers",
        action="store_true",
        help="nginx answers with the x-ratelimit-* headers a real provider sends through the "
        "proxy (each one makes our throttle adjust)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    for name in ("requests", "streams", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Console(highlight=False)
    log = Console(stderr=True, highlight=False, soft_wrap=True)
    if not out.is_terminal:
        out.width = REPORT_WIDTH  # a file or a pipe gets whole tables, not 80 columns
    command = shlex.join(sys.orig_argv)
    host = machine()
    if not args.json:
        out.print(describe_machine(host), soft_wrap=True)
        out.print(f"command: {command}", soft_wrap=True)
    try:
        with open_upstream(
            args.upstream, log.print, ratelimit_headers=args.ratelimit_headers
        ) as upstream:
            if not args.json:
                out.print(f"upstream: {upstream.version} at {upstream.base_url}")
            samples = run_rounds(upstream, args, log)
    except (BenchError, UpstreamError) as exc:
        log.print(f"error: {exc}", markup=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        log.print("interrupted")
        return 130
    summary = _order(summarize(samples), args)
    if args.json:
        result = {
            "machine": host,
            "command": command,
            "upstream": {"kind": upstream.kind, "version": upstream.version},
            "config": {
                "requests": args.requests,
                "streams": args.streams,
                "rounds": args.rounds,
                "concurrency": args.concurrency,
                "kinds": args.kinds,
                "clients": args.clients,
                "warmup_requests": "one per connection (= concurrency)",
            },
            "median": {str(c): kinds for c, kinds in summary.items()},
            "targets": target_checks(summary),
            "samples": [{**asdict(s), **s.figures()} for s in samples],
        }
        print(json.dumps(result, indent=2))
        return 0
    out.print(
        f"{args.requests:,} completions or embeddings, {args.streams:,} streams per client and "
        "round, after a warm-up of one per connection; every answer checked."
    )
    for concurrency, kinds in summary.items():
        for kind, clients in kinds.items():
            out.print()
            out.print(render(kind, concurrency, clients, args.rounds))
    out.print(
        f"vs F / vs T / vs A: ratio to {FLOOR} (the floor) / openai-trio / openai-asyncio "
        "(req/s: above 1 is faster; CPU: below 1 is cheaper). CPU: this process's user+sys over "
        "the requests; µs/chunk divides it by every chunk received. upstream: the upstream's CPU "
        "per request. peak RSS: this whole process's (every client's imports included) while "
        "the part ran."
    )
    checks = target_checks(summary)
    if checks:
        out.print()
        out.print(render_targets(checks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
