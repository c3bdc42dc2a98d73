"""Where a request's CPU goes: the client's chat, stream or embedding path under cProfile.

Against nginx serving fixed bodies (see ``upstream.py``), one ``trio.run`` (client opened, C
warm-up requests, N requests from C worker tasks, client closed) runs under cProfile, every
function of that run counted; figures are divided by the requests made (warm-up included), and
for streams also by the chunks received. Before it, unless ``--no-baseline``, the same run without
the profiler gives the CPU per request the profile should be read against: cProfile adds a fixed
cost to every Python call, so small functions called often look dearer than they are.

Printed: the tottime of each layer (httpx2, our HTTP pool, trio's scheduler, each of our modules,
msgspec, socket syscalls...; a builtin such as ``bytes.decode`` counts in the layer of its
caller; httptools' parser is Cython, which cProfile does not see as a call, so its time is in
``Exchange._feed`` and ``Exchange.__init__``), then the top functions by tottime and by
cumtime: ncalls, calls per request, and tottime / cumtime in µs per request. A coroutine's ncalls
counts each time it was resumed.

    python bench/profile.py [--kind chat|stream|embed] [--api client|bare|jobs] [--requests N]
        [--concurrency 64] [--top 20] [--max-retries N] [--no-baseline] [--out FILE.prof]
        [--no-profile]

``--api bare`` profiles the bare transport of ``overhead.py`` (chat and embed), ``--api jobs``
``client.open_jobs()`` (chat and embed); the default is the method API (``complete``,
``stream``, ``embed``). ``--out`` saves the pstats file (``python -m pstats FILE.prof``, or
snakeviz). ``--no-profile`` only runs the requests (the run without the profiler), for a
sampling profiler: ``py-spy record -o stream.svg -- python bench/profile.py --kind stream
--no-profile``.
"""

from __future__ import annotations

import argparse
import gc
import pstats
import resource
import shlex
import sys
import sysconfig
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import trio

from overhead import (
    BenchError,
    GcTimer,
    bare_pool,
    client_options,
    client_pool,
    describe,
    jobs_pool,
    workers,
)
from trio_litellm import Client, open_client
from trio_litellm._calls import prepare
from trio_litellm._config import resolve_config
from trio_litellm._transport import Transport
from trio_litellm._wire import EmbeddingRequest, EmbeddingResponse, embedding_decoder
from upstream import (
    EMBEDDING_INPUT,
    MAX_TOKENS,
    MESSAGES,
    Upstream,
    UpstreamError,
    check_embedding,
    check_stream,
    machine,
    open_upstream,
)

if TYPE_CHECKING:
    import cProfile

Kind = Literal["chat", "stream", "embed"]
DEFAULT_REQUESTS = {"chat": 5000, "stream": 1000, "embed": 3000}
"""Enough that opening the client (about 25 ms of CPU, an SSL context for the probe pool)
weighs little per request."""

Func = tuple[str, int, str]
"""pstats' key of a function: file, line, name (file ``~`` for builtins)."""

_HERE = Path(__file__).resolve().parent
_SITE = sysconfig.get_paths()["purelib"]
_STDLIB = sysconfig.get_paths()["stdlib"]


def _new_profiler() -> cProfile.Profile:
    """A cProfile profiler. cProfile imports the standard library's ``profile``, which this file
    hides while its directory leads ``sys.path``: import it with that directory out of the way."""
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    try:
        import cProfile
    finally:
        sys.path[:] = saved
    return cProfile.Profile()


# --- the runs -------------------------------------------------------------------------------------

Pool = Callable[[int], Awaitable[int]]
"""Runs ``n`` checked requests; returns the stream chunks received (0 for other kinds)."""


def _counting(pool: Callable[[int], Awaitable[None]]) -> Pool:
    async def run(n: int) -> int:
        await pool(n)
        return 0

    return run


def stream_pool(client: Client, upstream: Upstream, concurrency: int) -> Pool:
    params: dict[str, Any] = {
        "model": upstream.chat_model,
        "messages": MESSAGES,
        "max_tokens": MAX_TOKENS,
    }

    async def run(n: int) -> int:
        chunks = 0

        async def request() -> None:
            nonlocal chunks
            content_chunks = 0
            usage_seen = False
            async with client.stream(**params) as chat_stream:
                async for chunk in chat_stream:
                    chunks += 1
                    if chunk.choices and chunk.choices[0].delta.content:
                        content_chunks += 1
                    if chunk.usage is not None:
                        usage_seen = True
            check_stream(content_chunks, usage_seen)

        await workers(request, n, concurrency)
        return chunks

    return run


def embed_params(upstream: Upstream) -> dict[str, Any]:
    return {
        "model": upstream.embedding_model,
        "input": [EMBEDDING_INPUT],
        "encoding_format": "float",
    }


def embed_pool(client: Client, upstream: Upstream, concurrency: int) -> Pool:
    params = embed_params(upstream)

    async def request() -> None:
        reply = await client.embed(**params)
        check_embedding(len(reply.data[0].embedding))

    return _counting(lambda n: workers(request, n, concurrency))


def bare_embed_pool(transport: Transport, upstream: Upstream, concurrency: int) -> Pool:
    params = embed_params(upstream)

    async def request() -> None:
        call = prepare(EmbeddingRequest(**params), estimate=False)
        answer = await transport.request(
            "POST", call.path, body=call.body, headers=call.headers, model=call.model
        )
        reply: EmbeddingResponse = embedding_decoder.decode(answer.content)
        check_embedding(len(reply.data[0].embedding))

    return _counting(lambda n: workers(request, n, concurrency))


async def run_once(upstream: Upstream, args: argparse.Namespace) -> tuple[int, int]:
    """One client (or bare transport), a warm-up, ``args.requests`` requests; (requests, chunks)."""
    options = client_options(upstream, args)
    if args.kind == "stream":
        options["proxy_url"] = upstream.stream_base_url
    requests = args.requests + args.concurrency
    if args.api == "bare":
        config = resolve_config(None, options)
        transport = Transport(config)
        try:
            if args.kind == "chat":
                pool = _counting(bare_pool(transport, config, upstream))
            else:
                pool = bare_embed_pool(transport, upstream, args.concurrency)
            chunks = await pool(args.concurrency) + await pool(args.requests)
        finally:
            await transport.aclose()
        return requests, chunks
    async with open_client(**options) as client:
        if args.api == "jobs":
            if args.kind == "chat":
                pool = _counting(jobs_pool(client, upstream, args.concurrency))
            else:
                pool = _counting(
                    jobs_pool(
                        client,
                        upstream,
                        args.concurrency,
                        request=embed_params(upstream),
                        check=lambda reply: check_embedding(len(reply.data[0].embedding)),
                    )
                )
        elif args.kind == "chat":
            pool = _counting(client_pool(client, upstream, args.concurrency))
        elif args.kind == "stream":
            pool = stream_pool(client, upstream, args.concurrency)
        else:
            pool = embed_pool(client, upstream, args.concurrency)
        chunks = await pool(args.concurrency) + await pool(args.requests)
        health = client.statistics().health
        if health is None or not health.gate_open:
            raise BenchError(f"the health gate was not open at the end: {health}")
    return requests, chunks


def timed_run(
    upstream: Upstream, args: argparse.Namespace, profiler: cProfile.Profile | None
) -> dict[str, float]:
    """One whole ``trio.run``, under ``profiler`` if given: requests, chunks, wall, CPU and GC
    time (the collector's time is spread over whatever allocated when it ran)."""
    gc.collect()
    timer = GcTimer()
    gc.callbacks.append(timer)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    try:
        requests, chunks = trio.run(run_once, upstream, args)
    finally:
        if profiler is not None:
            profiler.disable()
        gc.callbacks.remove(timer)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {
        "requests": requests,
        "chunks": chunks,
        "wall_s": wall,
        "cpu_s": cpu,
        "gc_s": timer.seconds,
    }


# --- reading the profile --------------------------------------------------------------------------


def where(func: Func) -> str:
    """``file:line`` relative to site-packages, src/ or the standard library; ``C`` for builtins."""
    file, line, _ = func
    if file == "~":
        return "C"
    for prefix, shown in ((_SITE + "/", ""), ("/src/", ""), (_STDLIB + "/", "stdlib/")):
        index = file.find(prefix)
        if index >= 0:
            return f"{shown}{file[index + len(prefix) :]}:{line}"
    if file.startswith(str(_HERE)):
        return f"bench/{Path(file).name}:{line}"
    return f"{file}:{line}"


def name(func: Func) -> str:
    file, _, function = func
    if file == "~":  # "<method 'send' of '_socket.socket' objects>" → "_socket.socket.send"
        text = function.strip("<>")
        if text.startswith("method '") and " of '" in text:
            method, _, owner = text[len("method '") :].partition("' of '")
            return owner.partition("'")[0] + "." + method
        return text.removeprefix("built-in method ")
    return function


_C_LAYERS = (
    ("msgspec", "msgspec (C)"),
    ("_socket.socket", "socket syscalls"),
    ("select.epoll", "epoll (trio's IO wait)"),
    ("_lsprof", "profiler"),
)
_OUR_LAYERS = {
    "_fasthttp": "our _fasthttp pool (+ httptools)",
    "_transport.py": "our _transport",
    "_dispatcher.py": "our dispatcher",
    "_throttle.py": "our throttle",
    "_rate_window.py": "our throttle",
    "_restrictions.py": "our throttle",
    "_rate_limit.py": "our throttle",
    "_bucket.py": "our throttle",
    "_admission.py": "our throttle",
    "_health.py": "our health gate/monitor",
    "_probes.py": "our health probes",
    "_events.py": "our event bus",
    "_client.py": "our Client + observer",
    "_usage.py": "our usage ledger",
    "_ledger.py": "our usage ledger",
    "_histogram.py": "our usage ledger",
    "_meta.py": "our response meta",
    "_calls.py": "our request building",
    "_jobs.py": "our jobs",
    "_requests.py": "our request path",
    "_retry.py": "our request path",
    "_observer.py": "our Client + observer",
    "_proxy_api.py": "our Client + observer",
    "_wire.py": "our request building",
    "_reader.py": "our stream reader",
    "_sse.py": "our SSE parser",
    "_aggregate.py": "our stream accumulator",
}


_TRANSPARENT_STDLIB = frozenset(
    {"contextlib", "_weakrefset", "abc", "re", "ipaddress", "collections", "enum", "functools"}
)
"""Standard-library helpers whose time counts in their callers' layer (httpx2's URL parsing
calls ``re`` and ``ipaddress``; trio's cancel scopes and httpx2 use ``contextlib``...)."""


def layer(func: Func) -> str | None:
    """The layer a function belongs to; None for one whose time counts in its callers' layers
    (most builtins, standard-library helpers)."""
    file, _, function = func
    if file == "~":
        for marker, label in _C_LAYERS:
            if marker in function:
                return label
        return None
    path = file.replace("\\", "/")
    if path.startswith("<attrs generated methods "):  # attrs classes' __init__ and friends
        if "outcome" in path or "trio._core" in path:
            return "trio core (scheduler, cancel scopes)"
        return "trio other (sync, channels, timeouts)" if "trio" in path else None
    if path.startswith("<frozen "):
        return None
    if "/trio_litellm/" in path:
        module = path.rsplit("/trio_litellm/", 1)[1].split("/", 1)[0]  # a file, or a package
        return _OUR_LAYERS.get(module, "our other modules")
    if "/httpx2/" in path:
        return "httpx2 client layer"
    if "/httpcore2/" in path:
        return "httpcore2"
    if "/outcome/" in path:
        return "trio core (scheduler, cancel scopes)"
    if "/trio/" in path:
        if "/trio/_core/" in path:
            return "trio core (scheduler, cancel scopes)"
        if path.endswith(("_socket.py", "_highlevel_socket.py")):
            return "trio socket streams"
        return "trio other (sync, channels, timeouts)"
    if "/stamina/" in path:
        return "stamina (retries)"
    if "/msgspec/" in path:
        return "msgspec (C)"
    if path.startswith(str(_HERE)):
        return "bench script"
    if path.startswith(_STDLIB):
        module = path[len(_STDLIB) + 1 :].split("/", 1)[0].removesuffix(".py")
        return None if module in _TRANSPARENT_STDLIB else f"stdlib {module}"
    return "other"


def layers(stats: dict[Func, Any]) -> dict[str, float]:
    """Seconds of tottime per layer. A function without a layer of its own (a builtin, a
    standard-library helper) passes its time up to its callers, split as cProfile saw the calls
    from each, until a caller with a layer takes it."""
    totals: dict[str, float] = defaultdict(float)

    def attribute(func: Func, seconds: float, depth: int) -> None:
        own = layer(func)
        if own is not None:
            totals[own] += seconds
            return
        callers = stats[func][4] if func in stats else {}
        shares = {caller: values[2] for caller, values in callers.items() if caller != func}
        total = sum(shares.values())
        if not total or depth > 10:
            totals["unattributed"] += seconds
            return
        for caller, share in shares.items():
            attribute(caller, seconds * share / total, depth + 1)

    for func, values in stats.items():
        attribute(func, values[2], 0)
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def report(
    stats: dict[Func, Any],
    run: dict[str, float],
    baseline: dict[str, float] | None,
    args: argparse.Namespace,
) -> str:
    requests = run["requests"]
    chunks = run["chunks"]
    per = 1e6 / requests
    total = sum(values[2] for values in stats.values())
    lines = []
    profiled = f"{run['cpu_s'] * per:,.0f}"
    figures = (
        f"profiled run: {profiled} µs CPU/request, profile total {total * per:,.0f} µs/request"
    )
    if baseline is not None:
        plain = baseline["cpu_s"] / baseline["requests"] * 1e6
        figures = (
            f"without the profiler: {plain:,.0f} µs CPU/request "
            f"({baseline['requests'] / baseline['wall_s']:,.0f} req/s); "
            f"{figures} ({run['cpu_s'] * per / plain:.1f} times the plain run)"
        )
    lines.append(figures)
    if baseline is not None:
        lines.append(
            f"garbage collector: {baseline['gc_s'] / baseline['requests'] * 1e6:,.1f} µs/request "
            "in the plain run, counted in the profile under whatever allocated when it ran"
        )
    chunk_per = 1e6 / chunks if chunks else None
    if chunks:
        lines.append(f"{chunks / requests:.0f} chunks per stream; µs/chunk = µs/request / that")
    lines.append("")
    plain_per_request = baseline["cpu_s"] / baseline["requests"] * 1e6 if baseline else None
    lines.append(
        "tottime by layer (builtins and standard-library helpers count in their callers' layers;"
        " ≈plain: the share times the run without the profiler):"
    )
    for label, seconds in layers(stats).items():
        share = seconds / total * 100
        if share < 0.2:
            continue
        extra = f" {seconds * chunk_per:7.2f} µs/chunk" if chunk_per else ""
        if plain_per_request is not None:
            extra += f"  ≈plain {share / 100 * plain_per_request:6.0f} µs/req"
        lines.append(f"  {label:40} {seconds * per:8.1f} µs/req {share:5.1f}%{extra}")
    for key, title in ((2, "tottime"), (3, "cumtime")):
        lines.append("")
        lines.append(f"top {args.top} by {title} (µs per request):")
        unit = "  tot/chunk" if chunk_per else ""
        lines.append(
            f"  {'tottime':>8} {'cumtime':>8} {'ncalls':>9} {'/req':>6}{unit}  function  (where)"
        )
        ranked = sorted(stats.items(), key=lambda item: -item[1][key])
        for func, (_, ncalls, tottime, cumtime, _) in ranked[: args.top]:
            extra = f" {tottime * chunk_per:10.2f}" if chunk_per else ""
            lines.append(
                f"  {tottime * per:8.1f} {cumtime * per:8.1f} {ncalls:9,} {ncalls / requests:6.1f}"
                f"{extra}  {name(func)}  ({where(func)})"
            )
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kind", choices=("chat", "stream", "embed"), default="chat")
    parser.add_argument(
        "--api",
        choices=("client", "bare", "jobs"),
        default="client",
        help="the method API (default), the bare transport, or open_jobs (chat and embed only)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=None,
        metavar="N",
        help="requests measured (default 5000 chat, 1000 stream, 3000 embed)",
    )
    parser.add_argument("--concurrency", type=int, default=64, metavar="C", help="(default 64)")
    parser.add_argument("--top", type=int, default=20, metavar="K", help="functions listed (20)")
    parser.add_argument(
        "--max-retries",
        type=int,
        default=None,
        metavar="N",
        help="the client's max_retries (default: the config's, 2); 0 skips the retry wrapper",
    )
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the run without the profiler",
    )
    parser.add_argument("--out", type=Path, metavar="FILE.prof", help="save the pstats file here")
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="only the run without the profiler (for a sampling profiler such as py-spy)",
    )
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = DEFAULT_REQUESTS[args.kind]
    if args.kind == "stream" and args.api != "client":
        parser.error("--kind stream goes through the method API only (--api client)")
    if min(args.requests, args.concurrency, args.top) < 1:
        parser.error("--requests, --concurrency and --top must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    profiler = _new_profiler()
    try:
        with open_upstream("nginx", lambda text: print(text, file=sys.stderr)) as upstream:
            baseline = (
                timed_run(upstream, args, None) if args.baseline or not args.profile else None
            )
            if not args.profile:
                assert baseline is not None
                per_request = baseline["cpu_s"] / baseline["requests"] * 1e6
                print(
                    f"{args.kind} through {args.api}: {baseline['requests']:,.0f} requests, "
                    f"{per_request:,.0f} µs CPU/request, "
                    f"{baseline['requests'] / baseline['wall_s']:,.0f} req/s (not profiled)"
                )
                return 0
            run = timed_run(upstream, args, profiler)
    except (BenchError, UpstreamError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a failed request: say so, and stop
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    profiler.create_stats()
    stats = pstats.Stats(profiler)
    if args.out is not None:
        stats.dump_stats(args.out)
    print(describe(machine()))
    print(f"command: {shlex.join(sys.orig_argv)}")
    print(
        f"upstream: {upstream.version}; {args.kind} through {args.api}, {run['requests']:,.0f} "
        f"requests ({args.requests:,} + {args.concurrency} warm-up) at {args.concurrency} in "
        "flight, the whole trio.run profiled (client open and close included)"
    )
    print(report(stats.stats, run, baseline, args))  # type: ignore[attr-defined]
    if args.out is not None:
        print(f"\npstats saved to {args.out} (python -m pstats {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
