"""``meta.cache_hit`` / ``meta.cache_key`` against a real LiteLLM proxy with its cache on.

This module starts its own stack from litellm_cache_config.yaml (``cache: true``, in memory), so
the project's litellm_config.yaml keeps caching off for every other test. LiteLLM 1.110.2 sends
``x-litellm-cache-key`` only on an answer served from its cache, for chat completions and streams;
a miss sends none.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from trio_litellm import Client, open_client
from trio_litellm.testing._devstack import DevStack

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def caching_stack() -> Iterator[DevStack]:
    with DevStack(
        config_path=HERE / "litellm_cache_config.yaml",
        log_dir=HERE.parents[1] / "run" / "test-logs" / "cache",
        project_root=HERE.parents[1],
    ) as stack:
        yield stack


@pytest.fixture
async def client(caching_stack: DevStack) -> AsyncIterator[Client]:
    async with open_client(
        proxy_url=caching_stack.proxy_url, api_key=caching_stack.api_key, max_retries=0
    ) as client:
        yield client


def unique_messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": f"cache me {uuid.uuid4().hex}"}]


async def test_a_repeated_completion_is_a_cache_hit_and_the_first_is_not(client: Client) -> None:
    messages = unique_messages()
    first = await client.complete(model="local-gpt", messages=messages)
    second = await client.complete(model="local-gpt", messages=messages)
    assert (first.meta.cache_hit, first.meta.cache_key) == (False, None)
    assert second.meta.cache_hit is True
    assert second.meta.cache_key
    assert second.text == first.text
    assert second.meta.response_cost == 0.0  # a cached answer costs nothing


async def test_the_same_request_hits_the_same_cache_key(client: Client) -> None:
    messages = unique_messages()
    await client.complete(model="local-gpt", messages=messages)
    hits = [await client.complete(model="local-gpt", messages=messages) for _ in range(2)]
    assert hits[0].meta.cache_key == hits[1].meta.cache_key is not None
    other = unique_messages()
    await client.complete(model="local-gpt", messages=other)
    third = await client.complete(model="local-gpt", messages=other)
    assert third.meta.cache_key not in (None, hits[0].meta.cache_key)


async def test_a_repeated_stream_reports_its_cache_hit(client: Client) -> None:
    messages = unique_messages()
    metas = []
    for _ in range(2):
        async with client.stream(model="local-gpt", messages=messages) as stream:
            async for _chunk in stream:
                pass
        metas.append(stream.meta)
    assert (metas[0].cache_hit, metas[1].cache_hit) == (False, True)
    assert metas[1].cache_key


async def test_a_cached_embedding_is_not_marked_by_the_proxy(client: Client) -> None:
    # LiteLLM 1.110.2 sends no x-litellm-cache-key for embeddings; only the cost shows the hit.
    text = f"cache me {uuid.uuid4().hex}"
    first = await client.embed(model="local-embed", input=text)
    second = await client.embed(model="local-embed", input=text)
    assert second.data[0].embedding == first.data[0].embedding
    assert first.meta.response_cost and first.meta.response_cost > 0
    assert second.meta.response_cost == 0.0
    assert (second.meta.cache_hit, second.meta.cache_key) == (False, None)
