"""Whose limit a 429 hit, against the real proxy: a model group's pauses that model only, a key's
pauses everyone.

The upstream 429 test uses the session's proxy (throttled-gpt's upstream always answers 429 with
Retry-After 1). The others use a proxy of their own (limits_config.yaml), so that using up its
quotas (limited-gpt's rpm 2, a key's rpm 4, both per minute with a 60 s Retry-After) disturbs no
other test. Timing assertions have whole pauses of slack: a request is only required to finish
before a pause that would otherwise have held it has ended. Each test of a key's limit uses a key
of its own (the proxy counts per key), so they do not share a minute's count.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from trio_litellm import Client, RateLimitError, open_client
from trio_litellm.testing._devstack import DevStack, Stack

INTEGRATION_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = INTEGRATION_DIR.parents[1]


@pytest.fixture(scope="module")
def limits_stack() -> Iterator[DevStack]:
    """A proxy (and fake provider) started from limits_config.yaml for this module."""
    with DevStack(
        config_path=INTEGRATION_DIR / "limits_config.yaml",
        project_root=PROJECT_ROOT,
        log_dir=PROJECT_ROOT / "run" / "test-logs" / "limits",
    ) as dev:
        yield dev


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def test_an_upstream_429_for_one_model_does_not_hold_up_another_models_requests(
    stack: Stack,
) -> None:
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, max_retries=2
    ) as client:
        throttled_done = trio.Event()
        errors: list[Exception] = []
        inside_a_pause = 0  # local-gpt requests started and finished within throttled-gpt's pause
        paused_everyone = []
        local_ok = 0

        async def throttled() -> None:
            try:
                await client.complete(model="throttled-gpt", messages=ask("x"))
            except RateLimitError as exc:
                errors.append(exc)
            finally:
                throttled_done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(throttled)
            while not throttled_done.is_set():
                before = client.statistics().throttle
                pause_end = before.paused_models.get("throttled-gpt")
                paused_everyone.append(before.paused_until)
                reply = await client.complete(model="local-gpt", messages=ask("local"))
                local_ok += reply.text == "Echo: local"
                if pause_end is not None and trio.current_time() < pause_end:
                    inside_a_pause += 1
        stats = client.statistics()
    assert len(errors) == 1 and errors[0].status == 429  # 3 attempts, 2 pauses of 1 s
    assert "model group 'throttled-gpt'" in errors[0].message
    assert local_ok >= 1
    assert inside_a_pause >= 1
    assert set(paused_everyone) == {None}
    assert stats.throttle.pauses >= 2
    assert stats.throttle.paused_until is None


async def test_a_deployment_rpm_429_pauses_its_model_while_other_models_go_on(
    limits_stack: DevStack,
) -> None:
    async with open_client(
        proxy_url=limits_stack.proxy_url, api_key=limits_stack.api_key, max_retries=0
    ) as client:
        saw_none_left = False
        for _ in range(12):  # rpm 2 per minute: the 3rd gets a 429, unless a minute turns over
            try:
                reply = await client.complete(model="limited-gpt", messages=ask("x"))
            except RateLimitError as exc:
                error = exc
                break
            if reply.meta.ratelimit.remaining_requests == 0:
                # The deployment's own limit, in the plain headers: its model pauses, no other.
                await wait_all_tasks_blocked()
                throttle = client.statistics().throttle
                assert "limited-gpt" in throttle.paused_models
                assert throttle.paused_until is None
                saw_none_left = True
        else:
            pytest.fail("limited-gpt never answered 429")
        assert saw_none_left
        assert "Model rate limit exceeded" in error.message
        assert "model group 'limited-gpt'" in error.message
        assert error.retry_after == 60.0

        await wait_all_tasks_blocked()
        throttle = client.statistics().throttle
        assert throttle.paused_until is None
        pause_end = throttle.paused_models["limited-gpt"]

        replies = []
        with trio.move_on_at(pause_end) as scope:
            async with trio.open_nursery() as nursery:
                for i in range(10):
                    nursery.start_soon(
                        complete_into, client, replies, ("local-gpt", "other-gpt")[i % 2]
                    )
        assert not scope.cancelled_caught, "other models waited for limited-gpt's pause"
        assert len(replies) == 10

        async with trio.open_nursery() as nursery:
            nursery.start_soon(complete_into, client, replies, "limited-gpt")
            await wait_all_tasks_blocked()
            throttle = client.statistics().throttle
            assert (throttle.queued, throttle.parked) == (1, 1)
            nursery.cancel_scope.cancel()
        assert len(replies) == 10


async def complete_into(client: Client, replies: list[str], model: str) -> None:
    reply = await client.complete(model=model, messages=ask(model))
    replies.append(reply.text)


async def test_a_keys_rpm_429_pauses_every_model(limits_stack: DevStack) -> None:
    async with open_client(
        proxy_url=limits_stack.proxy_url, api_key="sk-key-rpm-everyone", max_retries=0
    ) as client:
        # rpm 4 per key, any model. Sent all at once, before any answer says what is left: the
        # proxy answers the 5th and 6th with a 429.
        errors: list[RateLimitError] = []

        async def complete(model: str) -> None:
            try:
                await client.complete(model=model, messages=ask("x"))
            except RateLimitError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(complete, ("local-gpt", "other-gpt")[i % 2])
        assert len(errors) == 2
        for error in errors:
            assert error.message.startswith("Rate limit exceeded for api_key: ")
            assert error.retry_after == 60.0

        await wait_all_tasks_blocked()
        throttle = client.statistics().throttle
        assert throttle.paused_until is not None
        assert throttle.paused_models == {}
        assert throttle.pauses >= 2  # the 429s (and the answer that said none was left)
        replies: list[str] = []
        async with trio.open_nursery() as nursery:
            for model in ("local-gpt", "other-gpt"):
                nursery.start_soon(complete_into, client, replies, model)
            await wait_all_tasks_blocked()
            throttle = client.statistics().throttle
            assert (throttle.queued, throttle.parked) == (2, 0)
            nursery.cancel_scope.cancel()
        assert replies == []


async def test_the_keys_own_headers_pause_everyone_before_the_proxy_answers_429(
    limits_stack: DevStack,
) -> None:
    async with open_client(
        proxy_url=limits_stack.proxy_url, api_key="sk-key-rpm-headers", max_retries=0
    ) as client:
        left = []
        # rpm 4 per key: LiteLLM's limiter says what is left on each answer, down to 0 on the 4th.
        # No request gets a 429 (max_retries=0: one would raise RateLimitError here).
        for i in range(4):
            reply = await client.complete(
                model=("local-gpt", "other-gpt")[i % 2], messages=ask("x")
            )
            info = reply.meta.scope_ratelimits["api_key"]
            assert info.limit_requests == 4
            left.append(info.remaining_requests)
            if info.remaining_requests == 0:
                break
        assert left == [3, 2, 1, 0]

        await wait_all_tasks_blocked()
        throttle = client.statistics().throttle
        assert throttle.paused_until is not None
        assert throttle.paused_until >= trio.current_time() + 55.0  # the limiter's 60 s window
        assert throttle.paused_models == {}
        assert throttle.requests_available == 0

        # The next requests, for any model, wait in the throttle: none reaches the proxy.
        replies: list[str] = []
        async with trio.open_nursery() as nursery:
            for model in ("local-gpt", "other-gpt"):
                nursery.start_soon(complete_into, client, replies, model)
            await wait_all_tasks_blocked()
            throttle = client.statistics().throttle
            assert (throttle.queued, throttle.parked) == (2, 0)
            nursery.cancel_scope.cancel()
        assert replies == []
        assert client.statistics().throttle.pauses == 1  # the headers' pause, no 429's
