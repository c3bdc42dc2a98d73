"""``open_client()`` and the :class:`Client` facade: every call an application makes goes here.

``open_client`` owns one nursery and the pooled transport. On exit it cancels what still runs in
the nursery and closes every connection, so nothing outlives the ``async with``. A lone exception
from inside the block (the caller's or ours) comes out as itself, not wrapped in an
ExceptionGroup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from ._config import ClientConfig, resolve_config
from ._errors import ModelNotFoundError, ResponseDecodeError, error_from_body
from ._health import DeploymentHealth, ProxyHealth, check_deployments, probe_proxy
from ._meta import meta_from_headers
from ._nursery import open_collapsing_nursery
from ._reader import STREAM_BUFFER, ChatStream, StreamReader
from ._transport import Transport
from ._wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    Model,
    ModelInfo,
    ModelList,
    RoutingHints,
    completion_decoder,
    embedding_decoder,
    encode_chat_request,
    encode_embedding_request,
    model_infos,
    model_list_decoder,
)

if TYPE_CHECKING:
    import httpx2  # only for the test hook's annotation: HTTP lives in _transport

__all__ = ["Client", "open_client"]

_CHAT_PATH = "/v1/chat/completions"
_EMBEDDINGS_PATH = "/v1/embeddings"
_PROBE_TIMEOUT = 10.0


@asynccontextmanager
async def open_client(config: ClientConfig | None = None, **options: Any) -> AsyncIterator[Client]:
    """Open a client on a LiteLLM proxy for the duration of the ``async with`` block.

    Takes a :class:`ClientConfig`, keyword options (the same names), or both (options override
    the config). Unset values come from ``LITELLM_PROXY_URL`` / ``LITELLM_API_KEY``, then defaults.
    """
    async with _open_client(resolve_config(config, options)) as client:
        yield client


@asynccontextmanager
async def _open_client(
    config: ClientConfig, *, http_transport: httpx2.AsyncBaseTransport | None = None
) -> AsyncIterator[Client]:
    """:func:`open_client` on a resolved config; tests may put an in-memory HTTP transport under it."""
    transport = Transport(config, http_transport=http_transport)
    try:
        async with open_collapsing_nursery() as nursery:
            client = Client(config, transport, nursery)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await transport.aclose()


class Client:
    """Completions, streams, embeddings, models and health through one LiteLLM proxy.

    Made by :func:`open_client`; valid inside its ``async with`` block only.
    """

    def __init__(self, config: ClientConfig, transport: Transport, nursery: trio.Nursery) -> None:
        self._config = config
        self._transport = transport
        self._nursery = nursery

    def __repr__(self) -> str:
        return f"<trio_litellm.Client {self._config.display_url}>"

    @property
    def config(self) -> ClientConfig:
        """The configuration this client runs with."""
        return self._config

    @property
    def open_connections(self) -> int:
        """Connections to the proxy held in the pool right now, idle or busy."""
        return self._transport.open_connections

    # --- chat ---------------------------------------------------------------------------------

    async def complete(
        self,
        request: ChatRequest | None = None,
        /,
        *,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        **params: Any,
    ) -> ChatCompletion:
        """A chat completion: ``complete(model=..., messages=[...], max_tokens=..., ...)``.

        Takes every OpenAI chat parameter by keyword (or a :class:`ChatRequest`), plus
        ``routing_hints``; ``extra_body`` / ``extra_headers`` reach the proxy as given.
        ``timeout`` bounds the whole call, retries included.
        """
        chat = _chat_request(request, params, stream=False)
        body = encode_chat_request(chat, dict(extra_body) if extra_body else None)

        async def attempt(number: int) -> ChatCompletion:
            answer = await self._transport.request(
                "POST", _CHAT_PATH, body=body, headers=extra_headers, model=chat.model
            )
            completion: ChatCompletion = _decode(completion_decoder, answer.content, chat.model)
            if not completion.choices:
                raise _empty_answer(answer.status, answer.content, chat.model)
            completion.meta = meta_from_headers(
                answer.status, answer.headers, attempts=number, latency=answer.latency
            )
            return completion

        return await self._transport.call(attempt, max_retries=max_retries, timeout=timeout)

    @asynccontextmanager
    async def stream(
        self,
        request: ChatRequest | None = None,
        /,
        *,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
        **params: Any,
    ) -> AsyncIterator[ChatStream]:
        """A streamed chat completion: ``async with client.stream(...) as s: async for chunk in s``.

        Same parameters as :meth:`complete`. Usage is asked for (``stream_options.include_usage``)
        unless ``stream_options`` is given. Entering waits for the first content, retrying
        failures until then; leaving early closes the response and its connection.
        """
        chat = _chat_request(request, params, stream=True)
        if chat.stream_options is None:
            chat.stream_options = {"include_usage": True}
        config = self._config
        reader = StreamReader(
            self._transport,
            path=_CHAT_PATH,
            body=encode_chat_request(chat, dict(extra_body) if extra_body else None),
            headers=extra_headers,
            model=chat.model,
            first_token_timeout=config.first_token_timeout or config.read_timeout,
            idle_timeout=config.stream_idle_timeout,
            max_retries=max_retries,
        )
        send, receive = trio.open_memory_channel[ChatCompletionChunk](STREAM_BUFFER)
        async with open_collapsing_nursery() as nursery:
            with receive:
                await nursery.start(reader.run, send)
                try:
                    yield ChatStream(receive, reader)
                finally:
                    nursery.cancel_scope.cancel()

    # --- embeddings ---------------------------------------------------------------------------

    async def embed(
        self,
        request: EmbeddingRequest | None = None,
        /,
        *,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        **params: Any,
    ) -> EmbeddingResponse:
        """Embeddings: ``embed(model=..., input=["a", "b"])``; vectors in ``.data[i].embedding``."""
        embedding: EmbeddingRequest
        if request is None:
            embedding = _build(EmbeddingRequest, params, "embed")
        else:
            embedding = msgspec.structs.replace(request, **params) if params else request
        body = encode_embedding_request(embedding, dict(extra_body) if extra_body else None)

        async def attempt(number: int) -> EmbeddingResponse:
            answer = await self._transport.request(
                "POST", _EMBEDDINGS_PATH, body=body, headers=extra_headers, model=embedding.model
            )
            response: EmbeddingResponse = _decode(
                embedding_decoder, answer.content, embedding.model
            )
            if not response.data:
                raise _empty_answer(answer.status, answer.content, embedding.model)
            response.meta = meta_from_headers(
                answer.status, answer.headers, attempts=number, latency=answer.latency
            )
            return response

        return await self._transport.call(attempt, max_retries=max_retries, timeout=timeout)

    # --- models -------------------------------------------------------------------------------

    async def list_models(self) -> list[Model]:
        """The model groups this key may use (``/v1/models``)."""

        async def attempt(number: int) -> list[Model]:
            answer = await self._transport.request("GET", "/v1/models")
            models: ModelList = _decode(model_list_decoder, answer.content, None)
            return models.data

        return await self._transport.call(attempt)

    async def model_infos(self) -> list[ModelInfo]:
        """What the proxy knows of every deployment (``/v1/model/info``): limits, prices, modes."""

        async def attempt(number: int) -> list[ModelInfo]:
            answer = await self._transport.request("GET", "/v1/model/info")
            try:
                return model_infos(answer.content)
            except msgspec.DecodeError as exc:
                raise ResponseDecodeError(f"unreadable /v1/model/info answer: {exc}") from exc

        return await self._transport.call(attempt)

    async def model_info(self, model: str) -> ModelInfo:
        """What the proxy knows of a model group (its first deployment when it has several).

        Raises :class:`ModelNotFoundError` when the proxy serves no model of that name.
        """
        for info in await self.model_infos():
            if info.model_name == model:
                return info
        raise ModelNotFoundError(f"the proxy serves no model named {model!r}", model=model)

    # --- health -------------------------------------------------------------------------------

    async def health(self, *, timeout: float = _PROBE_TIMEOUT) -> ProxyHealth:
        """Is the proxy up and ready? Cheap (no key, no model call); never raises for a down proxy."""
        return await probe_proxy(self._transport, timeout=timeout)

    async def deployment_health(
        self, model: str | None = None, *, timeout: float = 300.0
    ) -> DeploymentHealth:
        """Check every deployment (or one model group's) with a real call through the proxy.

        This is LiteLLM's ``/health``: it bills a small call per deployment and can take seconds.
        """
        return await check_deployments(self._transport, model=model, timeout=timeout)


def _build(cls: type[Any], params: dict[str, Any], method: str) -> Any:
    try:
        return cls(**params)
    except TypeError as exc:
        raise TypeError(f"{method}(): {exc}") from None


def _chat_request(
    request: ChatRequest | None, params: dict[str, Any], *, stream: bool
) -> ChatRequest:
    method = "stream" if stream else "complete"
    if "stream" in params:
        raise ValueError(
            f"{method}(): do not pass stream=; use client.{'stream' if params['stream'] else 'complete'}()"
        )
    hints = params.get("routing_hints")
    if isinstance(hints, Mapping):
        try:
            params["routing_hints"] = msgspec.convert(hints, RoutingHints)
        except msgspec.ValidationError as exc:
            raise ValueError(f"{method}(): routing_hints: {exc}") from None
    if request is None:
        chat: ChatRequest = _build(ChatRequest, params, method)
    else:
        chat = (
            msgspec.structs.replace(request, **params)
            if params
            else msgspec.structs.replace(request)
        )
    _check_chat(chat, method)
    chat.stream = True if stream else None
    return chat


def _check_chat(chat: ChatRequest, method: str) -> None:
    if not isinstance(chat.model, str) or not chat.model:
        raise ValueError(f"{method}(): model must be a non-empty string, got {chat.model!r}")
    messages = chat.messages
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise TypeError(
            f"{method}(): messages must be a list of messages, got {type(messages).__name__}"
        )
    if not messages:
        raise ValueError(f"{method}(): messages must not be empty")
    for index, message in enumerate(messages):
        if isinstance(message, Message):
            continue
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise TypeError(
                f"{method}(): messages[{index}] must be a Message or a dict with a 'role', "
                f"got {type(message).__name__}"
            )
    if not isinstance(messages, list):
        chat.messages = list(messages)


def _decode(decoder: msgspec.json.Decoder[Any], content: bytes, model: str | None) -> Any:
    try:
        return decoder.decode(content)
    except msgspec.DecodeError as exc:
        raise ResponseDecodeError(f"the proxy's answer is not valid: {exc}", model=model) from exc


def _empty_answer(status: int, content: bytes, model: str | None) -> Exception:
    """A 200 without choices or data: an error body in disguise, or a broken answer."""
    if b'"error"' in content:
        return error_from_body(status if status >= 400 else None, content, model=model)
    return ResponseDecodeError(
        f"the proxy answered {status} with no result: {content[:200]!r}", model=model
    )
