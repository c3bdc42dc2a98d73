"""Fixtures the unit tests share (the fakes they share are in ``tests/_fakes.py``)."""

from __future__ import annotations

import pytest
import trio

from trio_litellm.testing.fake_provider import FakeProviderConfig, serve_fake_provider


@pytest.fixture
async def provider_url(nursery: trio.Nursery) -> str:
    """The fake provider, in-process on a free port, for the test's duration: its base URL."""
    url: str = await nursery.start(serve_fake_provider, FakeProviderConfig(port=0))
    return url
