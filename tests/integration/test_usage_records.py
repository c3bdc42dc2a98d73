"""Usage records through the real proxy: tokens exact, costs from the header or the price, errors
by type, TTFT for streams, the proxy's spend without a database, and no key in any log line."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from trio_litellm import InternalServerError, SpendUnavailableError, open_client
from trio_litellm.testing._devstack import Stack

MOCK_COST = (
    1.35e-05  # x-litellm-response-cost of one fake-gpt answer (usage 10/20, gpt-4o-mini prices)
)


async def test_usage_aggregates_what_was_served(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_litellm")
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, max_retries=0
    ) as client:
        for index in range(3):
            await client.complete(
                model="fake-gpt", messages=[{"role": "user", "content": f"hi {index}"}]
            )
        for _ in range(2):
            await client.complete(
                model="local-gpt", messages=[{"role": "user", "content": "one two three"}]
            )
        async with client.stream(
            model="local-gpt", messages=[{"role": "user", "content": "a b"}]
        ) as stream:
            async for _ in stream:
                pass
        await client.embed(model="local-embed", input=["x", "y"])
        with pytest.raises(InternalServerError):
            await client.complete(model="failing-gpt", messages=[{"role": "user", "content": "x"}])
        stats = client.usage(since=timedelta(minutes=5))

    assert stats.requests == 8
    assert stats.succeeded == 7
    assert stats.errors == {"InternalServerError": 1}
    mock = stats.per_model["fake-gpt"]
    assert (mock.requests, mock.prompt_tokens, mock.completion_tokens) == (3, 30, 60)
    assert mock.cost == pytest.approx(3 * MOCK_COST)
    assert mock.cost_complete
    echo = stats.per_model["local-gpt"]
    # "one two three" -> 3 prompt words, "Echo: one two three" -> 4; the stream: 2 and 3
    assert (echo.requests, echo.prompt_tokens, echo.completion_tokens) == (3, 3 + 3 + 2, 4 + 4 + 3)
    assert echo.cost is None  # the proxy has no price for the echo model, nor does /model/info
    assert echo.ttft is not None and echo.ttft.p50 > 0
    embed = stats.per_model["local-embed"]
    assert embed.prompt_tokens == 2 and embed.cost is not None and embed.cost > 0
    assert stats.per_model["failing-gpt"].errors == {"InternalServerError": 1}
    assert stats.latency is not None and stats.latency.p50 > 0

    lines = [record.getMessage() for record in caplog.records if record.name == "trio_litellm"]
    assert sum("outcome=ok" in line for line in lines) == 7
    assert any("call_id=" in line and "None" not in line.split("call_id=")[1][:5] for line in lines)
    everything = caplog.text + "".join(repr(vars(record)) for record in caplog.records)
    assert stack.api_key not in everything


async def test_spend_without_a_proxy_database_says_so(stack: Stack) -> None:
    async with open_client(proxy_url=stack.proxy_url, api_key=stack.api_key) as client:
        with pytest.raises(SpendUnavailableError, match="no database"):
            await client.spend()
