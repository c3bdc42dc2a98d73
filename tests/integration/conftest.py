"""Integration fixtures: one real LiteLLM proxy (and fake provider) per test session.

The stack is a session-scoped *sync* fixture: pytest-trio cannot run session-scoped async fixtures,
and starting two subprocesses needs no trio. Set TRIO_LITELLM_TEST_PROXY_URL (and, for tests that
talk to the provider directly, TRIO_LITELLM_TEST_FAKE_URL) to use a stack that is already running,
e.g. one started by `just proxy` (a fleet's URLs comma-separated; `stack.proxy_url` is the
first); TRIO_LITELLM_TEST_API_KEY overrides the key (default sk-test).
Tests that stop or kill the proxy need a DevStack and should skip on an ExternalStack.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from trio_litellm.testing._devstack import MASTER_KEY, DevStack, ExternalStack, Stack

PROJECT_ROOT = Path(__file__).resolve().parents[2]
INTEGRATION_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration `integration` (deselect: -m 'not integration')."""
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The running stack: a DevStack started for this session, or the one the environment names."""
    external_url = os.environ.get("TRIO_LITELLM_TEST_PROXY_URL")
    if external_url:
        urls = tuple(url.strip().rstrip("/") for url in external_url.split(",") if url.strip())
        yield ExternalStack(
            proxy_url=urls[0],
            proxy_urls=urls,
            fake_provider_url=os.environ.get("TRIO_LITELLM_TEST_FAKE_URL", "").rstrip("/") or None,
            api_key=os.environ.get("TRIO_LITELLM_TEST_API_KEY", MASTER_KEY),
        )
        return
    with DevStack(log_dir=PROJECT_ROOT / "run" / "test-logs", project_root=PROJECT_ROOT) as dev:
        yield dev
