"""The local stack answers as litellm_config.yaml says: a real proxy before the fake provider."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from trio_litellm.testing._devstack import Stack

CONFIGURED_MODELS = {
    "fake-gpt",
    "local-gpt",
    "local-embed",
    "limited-gpt",
    "fleet-limited-gpt",
    "failing-gpt",
    "throttled-gpt",
    "rt-text",
    "rt-audio",
    "rt-drop",
    "rt-close1011",
    "rt-reject401",
    "rt-errorfirst",
    "rt-silent",
    "rt-long",
    "rt-big",
    "rt-down",
}


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx2.Client]:
    """A plain HTTP client for the proxy, without the key (tests add it where they need it)."""
    with httpx2.Client(base_url=stack.proxy_url, timeout=30.0, trust_env=False) as client:
        yield client


def auth(stack: Stack) -> dict[str, str]:
    """The proxy's key as an Authorization header."""
    return {"Authorization": f"Bearer {stack.api_key}"}


def test_readiness_is_200_without_a_key(http: httpx2.Client) -> None:
    response = http.get("/health/readiness")

    assert response.status_code == 200
    assert response.json()["status"] == "healthy"


def test_models_lists_the_configured_model_names(http: httpx2.Client, stack: Stack) -> None:
    response = http.get("/v1/models", headers=auth(stack))

    assert response.status_code == 200
    assert {model["id"] for model in response.json()["data"]} == CONFIGURED_MODELS


def test_models_without_a_key_is_401(http: httpx2.Client) -> None:
    response = http.get("/v1/models")

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "auth_error"


def test_local_gpt_reaches_the_fake_provider(http: httpx2.Client, stack: Stack) -> None:
    body = {"model": "local-gpt", "messages": [{"role": "user", "content": "ping"}]}

    response = http.post("/v1/chat/completions", json=body, headers=auth(stack))

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Echo: ping"


def test_failing_gpt_is_500(http: httpx2.Client, stack: Stack) -> None:
    body = {"model": "failing-gpt", "messages": [{"role": "user", "content": "hi"}]}

    response = http.post("/v1/chat/completions", json=body, headers=auth(stack))

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "500"
