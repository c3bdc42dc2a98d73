"""The demo: the main job, a batch of a few thousand requests through a real LiteLLM proxy.

``python -m trio_litellm.cli.demo`` (what ``bash scripts/demo.sh`` runs) starts the fake provider
and the proxy from ``litellm_config.yaml`` on free loopback ports, shows one call of each kind,
writes a demo batch in the OpenAI Batch API format to ``run/demo/requests.jsonl``, runs it with a
progress bar into ``run/demo/results.jsonl``, prints the summary, and stops both processes. A few
requests meet an injected upstream failure once, so retries show in the summary.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import msgspec
import trio
from rich.console import Console

from .. import LiteLLMError, open_client
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


async def tour(proxy_url: str, api_key: str, workdir: Path) -> int:
    """One call of each kind, then the batch; returns the number of failed batch requests."""
    async with open_client(
        proxy_url=proxy_url, api_key=api_key, max_in_flight=32, max_retries=3, backoff_initial=0.1
    ) as client:
        health = await client.health()
        console.print(
            f"[bold]proxy[/] {proxy_url}: {health.status} ({health.latency * 1000:.0f} ms)"
        )
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
    return summary.failed


def main() -> int:
    """Run the demo; 0 on success, 1 with a clear message otherwise, 130 on Ctrl-C."""
    logging.getLogger("stamina").setLevel(logging.ERROR)  # retries show in the summary instead
    stack = DevStack()
    workdir = stack.project_root / "run" / "demo"
    try:
        with console.status("starting the fake provider and the LiteLLM proxy (about 10 s)..."):
            stack.start()
        failed = trio.run(tour, stack.proxy_url, stack.api_key, workdir)
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
    console.print("[green]done[/]: the proxy and the fake provider are stopped.")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
