"""Custom auth for limits_config.yaml: gives keys named ``sk-key-rpm...`` a limit of their own.

Virtual keys with limits need the proxy's database; LiteLLM's ``general_settings.custom_auth``
hook gives a key its limits without one. Every other key (the master key ``sk-test`` too) is let
through without limits. The proxy imports this module: it runs in the proxy's environment, never
in the test process.
"""

from __future__ import annotations

from typing import Any

from litellm.proxy._types import UserAPIKeyAuth

KEY_RPM = 4
"""Requests per minute a ``sk-key-rpm...`` key may start, counted by the proxy across all models."""


async def user_api_key_auth(request: Any, api_key: str) -> UserAPIKeyAuth:
    if api_key.startswith("sk-key-rpm"):
        return UserAPIKeyAuth(api_key=api_key, rpm_limit=KEY_RPM)
    return UserAPIKeyAuth(api_key=api_key)
