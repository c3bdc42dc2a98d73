"""Embeddings asked for as base64 (the openai SDK's default), through a real LiteLLM proxy.

The fake provider answers ``encoding_format: "base64"`` as OpenAI does (little-endian float32,
base64) and the proxy passes that string through; the client hands back the same floats as for a
float list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from trio_litellm import Client, EmbeddingRequest, Job, open_client
from trio_litellm.testing._devstack import Stack

INPUT = ["base64 one", "base64 two"]


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, max_retries=0
    ) as client:
        yield client


async def test_base64_embeddings_are_the_same_floats_as_float_embeddings(client: Client) -> None:
    as_floats = await client.embed(model="local-embed", input=INPUT, encoding_format="float")
    as_base64 = await client.embed(model="local-embed", input=INPUT, encoding_format="base64")
    assert len(as_base64.data) == len(as_floats.data) == 2
    for decoded, plain in zip(as_base64.data, as_floats.data, strict=True):
        assert len(decoded.embedding) == 8
        assert all(type(x) is float for x in decoded.embedding)
        assert decoded.embedding == pytest.approx(plain.embedding, rel=1e-6)


async def test_the_proxy_really_sends_base64_and_a_job_decodes_it(client: Client) -> None:
    async with client.open_jobs() as (send, receive):
        async with send:
            request = {"model": "local-embed", "input": INPUT, "encoding_format": "base64"}
            await send.send(Job(id="dict", request=request, keep_body=True))
            struct = EmbeddingRequest(model="local-embed", input=INPUT, encoding_format="base64")
            await send.send(Job(id="struct", request=struct))
        results = {result.id: result async for result in receive}
    raw = msgspec.json.decode(results["dict"].response.meta.body)  # type: ignore[union-attr]
    assert all(isinstance(item["embedding"], str) for item in raw["data"])
    expected = (await client.embed(model="local-embed", input=INPUT)).data
    for result in results.values():
        assert result.ok, result.error
        data = result.response.data  # type: ignore[union-attr]
        for decoded, plain in zip(data, expected, strict=True):
            assert decoded.embedding == pytest.approx(plain.embedding, rel=1e-6)
