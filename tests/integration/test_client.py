"""The client against a real LiteLLM proxy started from litellm_config.yaml (see conftest.py).

Faults are injected upstream by the fake provider, chosen by a `[fake ...]` tag in the last user
message; each test tags its requests with a unique id so counters never collide.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
import trio

from trio_litellm import (
    AuthenticationError,
    ChatRequest,
    Client,
    InternalServerError,
    Message,
    ModelNotFoundError,
    RateLimitError,
    RequestTimeoutError,
    RoutingHints,
    StreamInterruptedError,
    open_client,
)
from trio_litellm.testing._devstack import Stack

_run = uuid.uuid4().hex[:8]
_ids = itertools.count()


def tagged(text: str, **directives: Any) -> list[dict[str, str]]:
    """One user message carrying fake-provider directives, with a unique id."""
    tag = " ".join(f"{k}={v}" for k, v in {**directives, "id": f"{_run}-{next(_ids)}"}.items())
    return [{"role": "user", "content": f"{text} [fake {tag}]"}]


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, max_retries=0
    ) as client:
        yield client


async def upstream_stats(stack: Stack) -> dict[str, Any]:
    assert stack.fake_provider_url is not None
    async with httpx2.AsyncClient() as http:
        answer = await http.get(f"{stack.fake_provider_url}/_stats")
    stats: dict[str, Any] = answer.json()
    return stats


# --- every call ---------------------------------------------------------------------------------


async def test_complete_returns_the_mock_answer_with_usage_and_proxy_headers(
    client: Client,
) -> None:
    reply = await client.complete(
        model="fake-gpt", messages=[{"role": "user", "content": "hi"}], max_tokens=16
    )
    assert reply.choices[0].message.content == "Hello"
    assert reply.usage is not None and reply.usage.total_tokens == 30
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == "fake-gpt"
    assert reply.meta.call_id
    assert reply.meta.response_cost is not None and reply.meta.response_cost > 0
    assert reply.meta.attempted_retries == 0
    assert reply.meta.model_group == "fake-gpt"
    assert reply.meta.attempts == 1


async def test_complete_echoes_through_the_fake_provider(client: Client) -> None:
    reply = await client.complete(
        model="local-gpt",
        messages=[
            Message(role="system", content="be brief"),
            {"role": "user", "content": "one two three"},
        ],
        temperature=0.0,
        seed=7,
        user="tester",
    )
    assert reply.text == "Echo: one two three"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (5, 4)


async def test_max_tokens_reaches_the_upstream(client: Client) -> None:
    reply = await client.complete(
        model="local-gpt", messages=[{"role": "user", "content": "a b c d e f"}], max_tokens=3
    )
    assert reply.text == "Echo: a b"
    assert reply.choices[0].finish_reason == "length"


async def test_a_chat_request_struct_and_routing_hints_are_accepted(client: Client) -> None:
    request = ChatRequest(
        model="local-gpt",
        messages=[{"role": "user", "content": "structs"}],
        routing_hints=RoutingHints(
            priority="cost", max_cost=0.01, required_capabilities=("tools",)
        ),
        metadata={"tag": "x"},
    )
    reply = await client.complete(request, extra_headers={"x-litellm-tags": "tests"})
    assert reply.text == "Echo: structs"


async def test_tool_calls_come_back_parsed(client: Client) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    reply = await client.complete(
        model="local-gpt", messages=[{"role": "user", "content": "find it"}], tools=tools
    )
    call = reply.choices[0].message.tool_calls
    assert call is not None and call[0].function.name == "lookup"
    assert json.loads(call[0].function.arguments) == {"echo": "find it"}
    assert reply.choices[0].finish_reason == "tool_calls"


async def test_stream_yields_chunks_and_aggregates_text_and_usage(client: Client) -> None:
    pieces = []
    async with client.stream(
        model="local-gpt", messages=[{"role": "user", "content": "hello streaming world"}]
    ) as stream:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == "Echo: hello streaming world"
    assert len(pieces) == 4
    final = stream.result()
    assert final.text == "Echo: hello streaming world"
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.completion_tokens == 4
    assert stream.meta is not None and stream.meta.call_id
    assert final.meta is stream.meta


async def test_stream_aggregates_streamed_tool_calls(client: Client) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    async with client.stream(
        model="local-gpt", messages=[{"role": "user", "content": "find it"}], tools=tools
    ) as stream:
        async for _ in stream:
            pass
    final = stream.result()
    calls = final.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "lookup"
    assert json.loads(calls[0].function.arguments) == {"echo": "find it"}


async def test_stream_of_the_mock_model(client: Client) -> None:
    async with client.stream(
        model="fake-gpt", messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        texts = [
            c.choices[0].delta.content
            async for c in stream
            if c.choices and c.choices[0].delta.content
        ]
    assert "".join(texts) == "Hello"


async def test_embed_returns_one_vector_per_input(client: Client, stack: Stack) -> None:
    emb = await client.embed(model="local-embed", input=["a", "b"])
    assert [e.index for e in emb.data] == [0, 1]
    assert len(emb.data[0].embedding) == 8
    assert emb.data[0].embedding != emb.data[1].embedding
    assert emb.usage is not None and emb.usage.prompt_tokens == 2
    again = await client.embed(model="local-embed", input="a")
    assert again.data[0].embedding == pytest.approx(emb.data[0].embedding)


async def test_list_models_names_the_configured_groups(client: Client) -> None:
    ids = {model.id for model in await client.list_models()}
    assert {"fake-gpt", "local-gpt", "local-embed", "failing-gpt"} <= ids


async def test_model_info_reports_limits_prices_and_capabilities(client: Client) -> None:
    info = await client.model_info("fake-gpt")
    assert info.model_name == "fake-gpt"
    assert info.max_input_tokens == 128000
    assert info.input_cost_per_token is not None and info.input_cost_per_token > 0
    assert info.mode == "chat"
    assert info.supports_function_calling is True
    assert "api_key" not in info.litellm_params


async def test_model_info_of_an_unknown_model_raises(client: Client) -> None:
    with pytest.raises(ModelNotFoundError):
        await client.model_info("no-such-model")


async def test_health_reports_a_ready_proxy(client: Client) -> None:
    health = await client.health()
    assert health.status == "healthy" and health.live and health.ready
    assert health.latency > 0
    assert health.details.get("status") == "healthy"


async def test_health_reports_an_unreachable_proxy_as_unhealthy() -> None:
    async with open_client(proxy_url="http://127.0.0.1:9", api_key="sk-x") as client:
        health = await client.health()
    assert health.status == "unhealthy" and not health.live
    assert health.error and "connect" in health.error


async def test_deployment_health_checks_one_model_group(client: Client) -> None:
    report = await client.deployment_health("local-gpt")
    assert report.healthy_count == 1 and report.unhealthy_count == 0
    assert report.healthy_endpoints[0].model == "openai/echo"


# --- every error the proxy can be made to produce -----------------------------------------------


async def test_no_key_is_an_authentication_error(stack: Stack) -> None:
    async with open_client(proxy_url=stack.proxy_url, max_retries=0) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.list_models()
    assert caught.value.status == 401


async def test_a_wrong_key_is_an_authentication_error_without_leaking_it(stack: Stack) -> None:
    async with open_client(
        proxy_url=stack.proxy_url, api_key="sk-wrong-secret-123", max_retries=0
    ) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.complete(model="local-gpt", messages=[{"role": "user", "content": "x"}])
    assert "sk-wrong-secret-123" not in str(caught.value) + repr(caught.value) + repr(client)


async def test_an_unknown_model_is_model_not_found(client: Client) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        await client.complete(model="nope", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status == 400
    assert caught.value.model == "nope"


async def test_unknown_model_on_a_stream_raises_at_entry(client: Client) -> None:
    with pytest.raises(ModelNotFoundError):
        async with client.stream(model="nope", messages=[{"role": "user", "content": "x"}]):
            pytest.fail("the block must not run")


async def test_upstream_429_is_a_rate_limit_error_with_retry_after(client: Client) -> None:
    with pytest.raises(RateLimitError) as caught:
        await client.complete(model="throttled-gpt", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status == 429
    assert caught.value.retry_after == 1.0
    assert caught.value.call_id


async def test_upstream_429_is_retried_after_the_wait_it_asked_for(stack: Stack) -> None:
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, max_retries=2
    ) as client:
        start = trio.current_time()
        reply = await client.complete(
            model="local-gpt", messages=tagged("retry me", status=429, retry_after=1, fail_first=1)
        )
        elapsed = trio.current_time() - start
    assert reply.text == "Echo: retry me"
    assert reply.meta.attempts == 2
    assert elapsed >= 1.0


async def test_upstream_500_is_retried_then_raised(stack: Stack) -> None:
    before = (await upstream_stats(stack))["by_model"].get("status=500", 0)
    async with open_client(
        proxy_url=stack.proxy_url,
        api_key=stack.api_key,
        max_retries=2,
        backoff_initial=0.05,
        backoff_max=0.1,
    ) as client:
        with pytest.raises(InternalServerError) as caught:
            await client.complete(model="failing-gpt", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status == 500
    after = (await upstream_stats(stack))["by_model"].get("status=500", 0)
    assert after - before == 3


async def test_drop_mid_stream_raises_interrupted_with_the_partial_text(client: Client) -> None:
    received = []
    with pytest.raises(StreamInterruptedError) as caught:
        async with client.stream(
            model="local-gpt", messages=tagged("a b c d e f", drop_after=3)
        ) as stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
    assert caught.value.partial.text == "Echo: a b"
    assert "".join(received) == "Echo: a b"
    assert isinstance(caught.value.__cause__, InternalServerError)


async def test_an_in_band_error_before_content_is_retried(stack: Stack) -> None:
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, max_retries=1
    ) as client:
        async with client.stream(
            model="local-gpt", messages=tagged("later", error_after=0, fail_first=1)
        ) as stream:
            async for _ in stream:
                pass
    assert stream.result().text == "Echo: later"
    assert stream.meta is not None and stream.meta.attempts == 2


async def test_a_stalled_upstream_hits_the_client_timeout_and_frees_the_connection(
    stack: Stack,
) -> None:
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, read_timeout=1.0, max_retries=0
    ) as client:
        with pytest.raises(RequestTimeoutError):
            await client.complete(model="local-gpt", messages=tagged("slow", latency=20))
        assert client.open_connections == 0
        reply = await client.complete(
            model="local-gpt", messages=[{"role": "user", "content": "after"}]
        )
        assert reply.text == "Echo: after"


async def test_a_stream_that_stalls_mid_way_is_interrupted_by_the_idle_timeout(
    stack: Stack,
) -> None:
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, stream_idle_timeout=1.0, max_retries=0
    ) as client:
        with pytest.raises(StreamInterruptedError) as caught:
            async with client.stream(
                model="local-gpt", messages=tagged("a b c d", stall_after=2, stall=30)
            ) as stream:
                async for _ in stream:
                    pass
        assert isinstance(caught.value.__cause__, RequestTimeoutError)
        assert caught.value.partial.text == "Echo: a"
        assert client.open_connections == 0


async def test_no_first_token_in_time_raises_at_entry(stack: Stack) -> None:
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, first_token_timeout=1.0, max_retries=0
    ) as client:
        with pytest.raises(RequestTimeoutError):
            async with client.stream(
                model="local-gpt", messages=tagged("x", stall_after=0, stall=30)
            ):
                pytest.fail("the block must not run")


async def test_cancelling_mid_stream_leaves_no_task_or_connection(stack: Stack) -> None:
    async with open_client(proxy_url=stack.proxy_url, api_key=stack.api_key) as client:
        seen = 0
        nurseries = len(trio.lowlevel.current_task().child_nurseries)
        with trio.CancelScope() as scope:
            async with client.stream(
                model="local-gpt", messages=tagged("a b c d e f g h", tps=5)
            ) as stream:
                assert client.statistics().dispatcher.in_flight == 1
                async for _ in stream:
                    seen += 1
                    if seen == 3:
                        scope.cancel()
        assert scope.cancelled_caught
        assert seen == 3
        assert client.open_connections == 0
        assert client.statistics().dispatcher.in_flight == 0
        assert len(trio.lowlevel.current_task().child_nurseries) == nurseries
        reply = await client.complete(
            model="local-gpt", messages=[{"role": "user", "content": "still works"}]
        )
        assert reply.text == "Echo: still works"


async def test_breaking_out_of_a_stream_closes_it(client: Client) -> None:
    async with client.stream(
        model="local-gpt", messages=tagged("a b c d e f g h", tps=20)
    ) as stream:
        async for _ in stream:
            break
    assert not stream.finished
    assert client.open_connections == 0
