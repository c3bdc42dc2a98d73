"""One realtime text turn through the official openai SDK (asyncio), for comparison with ours.

Run as a script: ``python _realtime_sdk.py PROXY_URL MODEL PROMPT`` with the key in
``OPENAI_API_KEY``. It connects with ``AsyncOpenAI(base_url=PROXY_URL/v1).realtime.connect``,
sends the prompt as a user message and ``response.create``, reads until ``response.done`` and
prints one JSON line: the text of the deltas, the event types in order, and the usage.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from openai import AsyncOpenAI


async def one_turn(proxy_url: str, model: str, prompt: str) -> dict[str, Any]:
    client = AsyncOpenAI(base_url=f"{proxy_url}/v1", api_key=os.environ["OPENAI_API_KEY"])
    deltas: list[str] = []
    types: list[str] = []
    usage: dict[str, Any] | None = None
    async with client.realtime.connect(model=model) as conn:
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": prompt}],
            }
        )
        await conn.response.create()
        async for event in conn:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.done":
                if event.response.usage is not None:
                    usage = event.response.usage.model_dump()
                break
    await client.close()
    return {"text": "".join(deltas), "types": types, "usage": usage}


def main() -> None:
    proxy_url, model, prompt = sys.argv[1:4]
    print(json.dumps(asyncio.run(one_turn(proxy_url, model, prompt))))


if __name__ == "__main__":
    main()
