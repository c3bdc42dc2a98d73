"""Jobs: preparation of any request shape, and the channel API against the in-process fake provider."""

from __future__ import annotations

import msgspec
import pytest
import trio

from trio_litellm import (
    ChatRequest,
    EmbeddingRequest,
    InvalidRequestError,
    Job,
    JobResult,
    open_client,
)
from trio_litellm._calls import DEFAULT_COMPLETION_ESTIMATE, prepare

# --- prepare --------------------------------------------------------------------------------------


def test_a_dict_request_keeps_every_key_it_has() -> None:
    call = prepare(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "custom_flag": 3}
    )
    assert call.kind == "chat"
    assert call.path == "/v1/chat/completions"
    assert msgspec.json.decode(call.body)["custom_flag"] == 3


def test_a_dict_with_input_is_an_embedding() -> None:
    call = prepare({"model": "e", "input": ["a", "b"]})
    assert (call.kind, call.path) == ("embedding", "/v1/embeddings")


@pytest.mark.parametrize(
    ("request_", "field", "problem"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "non-empty string"),
        ({"model": "m"}, "request", "neither 'messages'"),
        ({"model": "m", "messages": []}, "messages", "must not be empty"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]", "'role'"),
        ({"model": "m", "messages": [{"role": "user"}], "stream": True}, "stream", "client.stream"),
        ({"model": "m", "messages": [{"role": "user"}], "x": object()}, "x", "JSON"),
        ("not a request", "request", "ChatRequest"),
    ],
)
def test_an_unusable_request_is_an_invalid_request_error_naming_the_field(
    request_: object, field: str, problem: str
) -> None:
    with pytest.raises(InvalidRequestError, match=problem) as caught:
        prepare(request_)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field} ")


def test_the_token_estimate_counts_prompt_characters_and_the_completion_budget() -> None:
    chat = ChatRequest(
        model="m", messages=[{"role": "user", "content": "x" * 400}], max_tokens=50, n=2
    )
    assert prepare(chat).tokens == 400 // 4 + 1 + 50 * 2
    no_limit = prepare({"model": "m", "messages": [{"role": "user", "content": ""}]})
    assert no_limit.tokens == 1 + DEFAULT_COMPLETION_ESTIMATE
    assert prepare(EmbeddingRequest(model="e", input=[[1, 2, 3], "abcd"])).tokens == 3 + 2


def test_no_estimate_is_made_when_asked_not_to() -> None:
    assert (
        prepare(
            ChatRequest(model="m", messages=[{"role": "user", "content": "x" * 400}]),
            estimate=False,
        ).tokens
        == 0
    )


def test_routing_hints_in_a_dict_travel_in_metadata() -> None:
    call = prepare(
        {"model": "m", "messages": [{"role": "user"}], "routing_hints": {"priority": "cost"}}
    )
    body = msgspec.json.decode(call.body)
    assert body["metadata"] == {"routing_hints": {"priority": "cost"}}
    assert "routing_hints" not in body


# --- the channel API ----------------------------------------------------------------------------


async def test_closing_the_send_side_finishes_pending_jobs_then_ends_the_results(
    provider_url: str,
) -> None:
    async with open_client(
        proxy_url=provider_url, api_key="k", health_check_interval=None
    ) as client:
        async with client.open_jobs(max_buffer=4) as (send_jobs, receive_results):
            async with send_jobs:
                for i in range(3):
                    await send_jobs.send(
                        Job(
                            id=i,
                            request={
                                "model": "echo",
                                "messages": [{"role": "user", "content": f"j{i}"}],
                            },
                        )
                    )
            results = [result async for result in receive_results]
    assert sorted(r.id for r in results) == [0, 1, 2]
    assert {r.response.text for r in results} == {"Echo: j0", "Echo: j1", "Echo: j2"}


async def test_a_failed_job_is_a_result_and_the_channel_goes_on(provider_url: str) -> None:
    jobs = [
        Job(
            id="bad",
            request={
                "model": "echo",
                "messages": [{"role": "user", "content": "x [fake status=400]"}],
            },
        ),
        Job(id="good", request={"model": "echo", "messages": [{"role": "user", "content": "y"}]}),
    ]
    async with open_client(
        proxy_url=provider_url, api_key="k", health_check_interval=None
    ) as client:
        async with client.open_jobs() as (send_jobs, receive_results):
            async with send_jobs:
                for job in jobs:
                    await send_jobs.send(job)
            results = {result.id: result async for result in receive_results}
    assert results["bad"].error is not None and results["bad"].error.status == 400
    assert results["good"].ok


async def test_a_producer_faster_than_the_upstream_is_held_back(provider_url: str) -> None:
    """10,000 jobs: what is sent but not yet answered stays within the buffers and the in-flight limit."""
    total, max_buffer, max_in_flight = 10_000, 32, 16
    bound = 2 * max_buffer + max_in_flight + 2
    sent = received = 0
    worst = 0
    async with open_client(
        proxy_url=provider_url, api_key="k", max_in_flight=max_in_flight, health_check_interval=None
    ) as client:
        async with client.open_jobs(max_buffer=max_buffer) as (send_jobs, receive_results):

            async def produce() -> None:
                nonlocal sent, worst
                async with send_jobs:
                    for i in range(total):
                        await send_jobs.send(
                            Job(
                                id=i,
                                request={
                                    "model": "echo",
                                    "messages": [{"role": "user", "content": "go"}],
                                },
                            )
                        )
                        sent += 1
                        worst = max(worst, sent - received)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                async for result in receive_results:
                    assert result.ok
                    received += 1
    assert received == total
    assert worst <= bound


async def test_a_job_that_is_not_a_job_gets_an_error_result(provider_url: str) -> None:
    async with open_client(
        proxy_url=provider_url, api_key="k", health_check_interval=None
    ) as client:
        async with client.open_jobs() as (send_jobs, receive_results):
            async with send_jobs:
                await send_jobs.send({"id": 1})  # type: ignore[arg-type]
            results: list[JobResult] = [result async for result in receive_results]
    assert len(results) == 1
    assert isinstance(results[0].error, InvalidRequestError)


async def test_leaving_the_block_early_cancels_the_running_jobs(provider_url: str) -> None:
    async with open_client(
        proxy_url=provider_url, api_key="k", health_check_interval=None
    ) as client:
        async with client.open_jobs() as (send_jobs, _):
            for i in range(5):
                await send_jobs.send(
                    Job(
                        id=i,
                        request={
                            "model": "echo",
                            "messages": [{"role": "user", "content": "x [fake latency=30]"}],
                        },
                    )
                )
            await trio.testing.wait_all_tasks_blocked()
            assert client.statistics().dispatcher.in_flight == 5
        await trio.testing.wait_all_tasks_blocked()
        assert client.statistics().dispatcher.in_flight == 0
        assert client.busy_connections == 0


def test_odd_but_valid_json_never_crashes_the_estimate() -> None:
    call = prepare(
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}
    )
    assert call.tokens > 0
    with pytest.raises(InvalidRequestError, match="metadata"):
        prepare({"model": "m", "messages": [{"role": "user"}], "metadata": 3, "routing_hints": {}})
