"""Whose limit a 429 hit: the messages LiteLLM 1.110.2 sends, each with the scope it limits.

The first messages are copied from a running proxy (litellm_config.yaml and
tests/integration/key_limits_config.yaml); the others from LiteLLM's source, where its limiters
build them.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_litellm._limit_scope import PER_MODEL_LIMITS, rate_limit_model

MODEL_GROUP_429S = [
    # throttled-gpt: the upstream provider answered 429 (seen)
    "litellm.RateLimitError: RateLimitError: OpenAIException - fake upstream error 429\n\n"
    "LiteLLM: model group 'throttled-gpt' failed with the error above. No fallback was attempted.",
    # limited-gpt: the deployment's rpm, enforced by the router (seen)
    "litellm.RateLimitError: Model rate limit exceeded. RPM limit=20, current usage=21\n\n"
    "LiteLLM: model group 'limited-gpt' failed with the error above. No fallback was attempted.",
    # every deployment of the group cooling down (router RouterRateLimitError)
    "No deployments available for selected model, Try again in 5 seconds. Passed model=gpt. "
    "pre-call-checks=False, cooldown_list=['abc']",
    "No deployments available for selected model. Passed model=gpt. Deployments={}",
    "No healthy deployment available, passed model=gpt",
    # the dynamic limiters' share of a model
    "Key=sk-1 over available TPM=100. Model TPM=1000, Active keys=3",
    "Model capacity reached for gpt. Priority: low, Rate limit type: requests, Model TPM: 10",
    "Priority-based rate limit exceeded. Model: gpt, Priority: low, Rate limit type: tokens",
    # the proxy limiter's per-model limits of a key, team, organization or project
    "Rate limit exceeded for model_per_key: sk-1:gpt. Limit type: requests. Current limit: 5, "
    "Remaining: 0. Limit resets at: 2026-12-01 12:23:34 UTC",
    "Rate limit exceeded for model_per_team: t-1:gpt. Limit type: tokens. Current limit: 5, "
    "Remaining: 0. Limit resets at: 2026-12-01 12:23:34 UTC",
    # the legacy limiter's per-model key limit
    "Max parallel request limit reached Max parallel request limit reached. Hit limit for "
    "model_per_key. Current limits: max_parallel_requests: 1, tpm_limit: 10, rpm_limit: 10",
]

EVERYONE_429S = [
    # a key's rpm from LiteLLM's own limiter (seen, key_limits_config.yaml)
    "Rate limit exceeded for api_key: 1460db1b6902f8b1fc2a40d9381a24d0fd22c3bc1b2c6f999c521da73776"
    "fbe0. Limit type: requests. Current limit: 4, Remaining: 0. Limit resets at: 2026-12-01 "
    "12:23:34 UTC",
    "Rate limit exceeded for api_key: sk-1. Limit type: max_parallel_requests. Current limit: 1, "
    "Remaining: 0. Limit resets at: 2026-12-01 12:23:34 UTC",
    "Rate limit exceeded for team: t-1. Limit type: tokens. Current limit: 5, Remaining: 0. "
    "Limit resets at: 2026-12-01 12:23:34 UTC",
    "Rate limit exceeded for user: u-1. Limit type: requests. Current limit: 5, Remaining: 0. "
    "Limit resets at: 2026-12-01 12:23:34 UTC",
    "Rate limit exceeded for end_user: e-1. Limit type: requests. Current limit: 5, Remaining: "
    "0. Limit resets at: 2026-12-01 12:23:34 UTC",
    # the legacy limiter: a key's limits, and general_settings.global_max_parallel_requests
    "Max parallel request limit reached Max parallel request limit reached. Hit limit for key. "
    "Current limits: max_parallel_requests: 1, tpm_limit: 10, rpm_limit: 10",
    "Max parallel request limit reached Hit Global Limit: Limit=2, current: 2",
    # a 429 that says nothing of its scope
    "HTTP 429",
    "",
]


@pytest.mark.parametrize("message", MODEL_GROUP_429S)
def test_a_model_groups_limit_pauses_that_model(message: str) -> None:
    assert rate_limit_model(message, "gpt") == "gpt"


@pytest.mark.parametrize("message", EVERYONE_429S)
def test_a_key_team_user_or_proxy_limit_pauses_everyone(message: str) -> None:
    assert rate_limit_model(message, "gpt") is None


@pytest.mark.parametrize("model", [None, ""])
def test_a_request_for_no_model_can_pause_only_everyone(model: str | None) -> None:
    assert rate_limit_model(MODEL_GROUP_429S[0], model) is None


descriptors = st.from_regex(r"[a-z][a-z_]{0,24}", fullmatch=True)
values = st.from_regex(r"[A-Za-z0-9:_.-]{0,64}", fullmatch=True)  # hashes, ids, "team:model"


@given(descriptor=descriptors, value=values, model=st.text(min_size=1, max_size=20))
def test_the_proxy_limiters_scope_follows_its_descriptor(
    descriptor: str, value: str, model: str
) -> None:
    message = (
        f"Rate limit exceeded for {descriptor}: {value}. Limit type: requests. "
        "Current limit: 4, Remaining: 0. Limit resets at: 2026-12-01 12:23:34 UTC"
    )
    expected = model if descriptor in PER_MODEL_LIMITS else None
    assert rate_limit_model(message, model) == expected


@given(model=st.text(min_size=1, max_size=20), group=st.text(max_size=20), text=st.text())
def test_whatever_the_upstream_said_the_routers_model_group_suffix_scopes_it_to_the_model(
    model: str, group: str, text: str
) -> None:
    message = (
        f"litellm.RateLimitError: RateLimitError: OpenAIException - {text}\n\n"
        f"LiteLLM: model group '{group}' failed with the error above. No fallback was attempted."
    )
    assert rate_limit_model(message, model) == model
