"""What a refused API key looks like, from a real LiteLLM proxy without a database.

Such a proxy knows only its master key: any other key is answered 400 ``no_db_connection``
("No connected db."), no key at all 401 ``auth_error``. Either way the error must say that the
key was refused, keep the proxy's words, and never show the key.
"""

from __future__ import annotations

import pytest

from trio_litellm import AuthenticationError, open_client
from trio_litellm.testing._devstack import Stack

MESSAGES = [{"role": "user", "content": "who am I"}]


async def test_a_wrong_key_says_the_proxy_refused_it(stack: Stack) -> None:
    key = "sk-wrong-4f9c2e"
    async with open_client(proxy_url=stack.proxy_url, api_key=key, max_retries=0) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.complete(model="local-gpt", messages=MESSAGES)
    error = caught.value
    assert (error.status, error.type) == (400, "no_db_connection")
    assert str(error).startswith("the proxy refused the API key")
    assert "No connected db." in str(error)
    assert key not in str(error) + repr(error)


async def test_no_key_says_the_proxy_refused_it(stack: Stack) -> None:
    async with open_client(proxy_url=stack.proxy_url, max_retries=0) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.embed(model="local-embed", input="x")
    assert (caught.value.status, caught.value.type) == (401, "auth_error")
    assert str(caught.value).startswith(
        "the proxy refused the API key: Authentication Error, No api key passed in."
    )
