"""The demo: the main job, a batch of a few thousand requests through a real LiteLLM proxy.

``python -m trio_litellm.cli.demo`` (what ``bash scripts/demo.sh`` runs) starts the fake provider
and the proxy from ``litellm_config.yaml`` on free loopback ports, shows one call of each kind,
writes a demo batch in the OpenAI Batch API format to ``run/demo/requests.jsonl``, runs it with a
progress bar into ``run/demo/results.jsonl``, prints the summary, and stops both processes. A few
requests meet an injected upstream failure once, so retries show in the summary.

``--proxies N`` (N > 1) runs the same over a fleet: a Redis server, the fake provider and N
proxies sharing it, every proxy's URL given to the client, which spreads the requests over them;
at the end it prints what each proxy served.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec
import trio
from rich import box
from rich.console import Console
from rich.table import Table

from .. import LiteLLMError, ProxyStatistics, open_client
from ..batch import run_batch
from ..testing._devstack import DevStack, DevStackError
from ._progress import BatchProgress
from ._tables import render_summary

console = Console()

DEMO_REQUESTS = 3000
TOPICS = ("nurseries", "cancel scopes", "memory channels", "checkpoints", "structured concurrency")


def write_demo_batch(path: Path, count: int = DEMO_REQUESTS) -> None:
    """An OpenAI Batch API input file: mostly chats, some embeddings, a few transient faults."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder = msgspec.json.Encoder()
    with path.open("wb") as file:
        for index in range(count):
            topic = TOPICS[index % len(TOPICS)]
            if index % 10 == 9:
                line = {
                    "custom_id": f"emb-{index}",
                    "method": "POST",
                    "url": "/v1/embeddings",
                    "body": {"model": "local-embed", "input": f"{topic} {index}"},
                }
            else:
                text = f"explain {topic} in one line, request {index}"
                if index % 50 == 7:  # the upstream fails once, the client retries
                    text += f" [fake status=503 fail_first=1 id=demo-{index}]"
                line = {
                    "custom_id": f"chat-{index}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": "local-gpt",
                        "messages": [{"role": "user", "content": text}],
                        "max_tokens": 32,
                    },
                }
            file.write(encoder.encode(line) + b"\n")


async def tour(proxy_urls: Sequence[str], api_key: str, workdir: Path) -> int:
    """One call of each kind, then the batch; returns the number of failed batch requests."""
    fleet = len(proxy_urls) > 1
    async with open_client(
        proxy_url=list(proxy_urls) if fleet else proxy_urls[0],
        api_key=api_key,
        max_in_flight=32,
        max_retries=3,
        backoff_initial=0.1,
    ) as client:
        health = await client.health()
        where = (
            f"[bold]fleet[/] {', '.join(proxy_urls)}"
            if fleet
            else f"[bold]proxy[/] {proxy_urls[0]}"
        )
        console.print(f"{where}: {health.status} ({health.latency * 1000:.0f} ms)")
        reply = await client.complete(
            model="fake-gpt", messages=[{"role": "user", "content": "hi"}], max_tokens=16
        )
        console.print(
            f"[bold]complete[/] fake-gpt -> {reply.text!r}  cost={reply.meta.response_cost if reply.meta else None}"
        )
        console.print("[bold]stream[/] local-gpt -> ", end="")
        async with client.stream(
            model="local-gpt",
            messages=[{"role": "user", "content": "trio makes concurrency structured"}],
        ) as stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    console.print(chunk.choices[0].delta.content, end="", highlight=False)
                    await trio.sleep(0.05)  # so a person can watch it arrive
        console.print()
        emb = await client.embed(model="local-embed", input=["structured", "concurrency"])
        console.print(
            f"[bold]embed[/] local-embed -> {len(emb.data)} vectors of {len(emb.data[0].embedding)} floats"
        )

        requests, results = workdir / "requests.jsonl", workdir / "results.jsonl"
        write_demo_batch(requests)
        results.unlink(missing_ok=True)
        console.print(f"\n[bold]batch[/] {DEMO_REQUESTS} requests from {requests} -> {results}")
        summary = await run_batch(
            client,
            requests,
            results,
            progress=lambda total: BatchProgress(total, console=console, enabled=True),
        )
    render_summary(summary, console)
    if fleet:
        render_served(client.statistics().proxies)
    return summary.failed


def render_served(proxies: Sequence[ProxyStatistics]) -> None:
    """What each proxy of the fleet served over the whole demo: answers, and failures there."""
    table = Table(title="served by each proxy", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("proxy", no_wrap=True)
    table.add_column("answered", justify="right")
    table.add_column("failures", justify="right")
    for proxy in proxies:
        table.add_row(proxy.url, f"{proxy.answered:,}", f"{proxy.failures:,}")
    console.print(table)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trio_litellm.cli.demo",
        description=(
            "The demo batch through a local LiteLLM proxy; with --proxies N (N > 1), through N "
            "proxies sharing a Redis server."
        ),
    )
    parser.add_argument(
        "--proxies", type=_at_least_one, default=1, help="LiteLLM proxies to start (default: 1)"
    )
    return parser.parse_args(argv)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 on success, 1 with a clear message otherwise, 130 on Ctrl-C."""
    args = parse_args(argv)
    logging.getLogger("stamina").setLevel(logging.ERROR)  # retries show in the summary instead
    stack = DevStack(proxies=args.proxies)
    workdir = stack.project_root / "run" / "demo"
    starting = (
        "the fake provider and the LiteLLM proxy (about 10 s)"
        if args.proxies == 1
        else f"a Redis server, the fake provider and {args.proxies} LiteLLM proxies (about 15 s)"
    )
    try:
        with console.status(f"starting {starting}..."):
            stack.start()
        failed = trio.run(tour, stack.proxy_urls, stack.api_key, workdir)
    except DevStackError as exc:
        console.print(f"[red]could not start the local stack:[/] {exc}")
        return 1
    except LiteLLMError as exc:
        console.print(f"[red]the demo failed:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("\ninterrupted")
        return 130
    finally:
        stack.stop()
    stopped = (
        "the proxy and the fake provider are"
        if args.proxies == 1
        else "the proxies, the fake provider and Redis are"
    )
    console.print(f"[green]done[/]: {stopped} stopped.")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
