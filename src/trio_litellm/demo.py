"""The demo: start the local stack, then complete, stream and embed through a real LiteLLM proxy.

``python -m trio_litellm.demo`` (what ``bash scripts/demo.sh`` runs). It starts the fake provider
and the proxy from ``litellm_config.yaml`` on free loopback ports, makes one call of each kind
with trio-litellm, shows the answers and what the proxy said about them, and stops both.
"""

from __future__ import annotations

import sys

import trio
from rich.console import Console
from rich.table import Table

from . import LiteLLMError, open_client
from ._devstack import DevStack, DevStackError

console = Console()


async def tour(proxy_url: str, api_key: str) -> None:
    """One call of each kind through the proxy, printed as it goes."""
    async with open_client(proxy_url=proxy_url, api_key=api_key) as client:
        health = await client.health()
        console.print(
            f"[bold]proxy[/] {proxy_url}: {health.status} ({health.latency * 1000:.0f} ms)"
        )

        reply = await client.complete(
            model="fake-gpt", messages=[{"role": "user", "content": "hi"}], max_tokens=16
        )
        console.print(
            f"[bold]complete[/] fake-gpt -> {reply.text!r}  tokens={reply.usage.total_tokens if reply.usage else '?'}"
            f"  cost={reply.meta.response_cost}  call_id={reply.meta.call_id}"
        )

        console.print("[bold]stream[/] local-gpt -> ", end="")
        prompt = "trio makes structured concurrency feel natural"
        async with client.stream(
            model="local-gpt", messages=[{"role": "user", "content": prompt}]
        ) as stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    console.print(chunk.choices[0].delta.content, end="", highlight=False)
                    await trio.sleep(0.05)  # so a person can watch it arrive
        final = stream.result()
        usage = final.usage
        tokens = f"{usage.prompt_tokens} in / {usage.completion_tokens} out" if usage else "?"
        console.print(f"\n  finish_reason={final.choices[0].finish_reason}  tokens={tokens}")

        emb = await client.embed(model="local-embed", input=["structured", "concurrency"])
        console.print(
            f"[bold]embed[/] local-embed -> {len(emb.data)} vectors of {len(emb.data[0].embedding)} floats"
            f"  cost={emb.meta.response_cost}"
        )

        table = Table(title="models served by the proxy")
        for column in ("id", "mode", "max input tokens", "input $/token"):
            table.add_column(column)
        infos = {info.model_name: info for info in await client.model_infos()}
        for model in await client.list_models():
            info = infos.get(model.id)
            table.add_row(
                model.id,
                (info.mode if info else None) or "-",
                str(info.max_input_tokens if info and info.max_input_tokens else "-"),
                str(info.input_cost_per_token if info and info.input_cost_per_token else "-"),
            )
        console.print(table)


def main() -> int:
    """Run the demo; 0 on success, 1 with a clear message otherwise, 130 on Ctrl-C."""
    stack = DevStack()
    try:
        with console.status("starting the fake provider and the LiteLLM proxy (about 10 s)..."):
            stack.start()
        trio.run(tour, stack.proxy_url, stack.api_key)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
