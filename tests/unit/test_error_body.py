"""An error answer's body has one type wherever it is kept: text, on the error as in the recorder."""

from __future__ import annotations

import httpx2
import pytest

from _fakes import open_test_client
from trio_litellm import InternalServerError

SECRET = "sk-error-body-secret-99"
BODY = (
    '{"error":{"message":"upstream broke \u00e9 ' + SECRET + '","type":"internal_server_error",'
    '"param":null,"code":"500"}}'
).encode()


async def test_an_error_answer_body_is_text_on_the_error_and_in_the_recorder() -> None:
    async def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(500, content=BODY, headers={"content-type": "application/json"})

    async with open_test_client(answer, api_key=SECRET, max_retries=0, record_last=10) as client:
        with pytest.raises(InternalServerError) as caught:
            await client.complete(model="m", messages=[{"role": "user", "content": "hi"}])
        (entry,) = client.recorder.entries()
    masked = BODY.decode().replace(SECRET, "***")
    assert caught.value.response_body == masked
    assert entry.response_body == masked
