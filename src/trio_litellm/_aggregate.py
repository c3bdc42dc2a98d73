"""Folding a stream's chunks into the completion they spell, sans-IO.

``add()`` runs once per chunk on the stream's hot path, so it only appends pieces to lists;
``result()`` joins them into a fresh :class:`~trio_litellm._wire.ChatCompletion`. ``result()``
may be called at any time: mid-stream it gives the partial completion that
``StreamInterruptedError.partial`` carries.
"""

from __future__ import annotations

from typing import Any

from ._wire import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    FunctionCall,
    Message,
    ToolCall,
    Usage,
)

__all__ = ["StreamAccumulator"]


class _ToolCallParts:
    """One tool call being streamed: its id, type and name as first seen, its arguments in pieces."""

    __slots__ = ("arguments", "id", "name", "type")

    def __init__(self) -> None:
        self.id: str | None = None
        self.type: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []


class _ChoiceParts:
    """One choice being streamed."""

    __slots__ = (
        "content",
        "finish_reason",
        "logprobs",
        "reasoning",
        "refusal",
        "role",
        "tool_calls",
    )

    def __init__(self) -> None:
        self.role: str | None = None
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, _ToolCallParts] = {}
        self.finish_reason: str | None = None
        self.logprobs: dict[str, Any] | None = None


class StreamAccumulator:
    """Folds :class:`ChatCompletionChunk`\\ s into the :class:`ChatCompletion` they add up to.

    Per choice index: the first role, the content, refusal and reasoning pieces concatenated, tool
    calls merged by their ``index`` (``id``, ``type`` and ``name`` from the first piece that has
    them, ``arguments`` concatenated) and the last non-null ``finish_reason``. ``usage`` comes
    from whichever chunk carried it (the final ``include_usage`` chunk has no choices); ``id``,
    ``model``, ``created`` and ``system_fingerprint`` from the first chunk that has them.
    """

    __slots__ = (
        "_choices",
        "_chunks",
        "_created",
        "_has_content",
        "_id",
        "_model",
        "_system_fingerprint",
        "_usage",
    )

    def __init__(self) -> None:
        self._choices: dict[int, _ChoiceParts] = {}
        self._chunks = 0
        self._has_content = False
        self._id = ""
        self._model = ""
        self._created = 0
        self._system_fingerprint: str | None = None
        self._usage: Usage | None = None

    @property
    def chunks(self) -> int:
        """How many chunks were added."""
        return self._chunks

    @property
    def usage(self) -> Usage | None:
        """The usage a chunk reported, if any yet (without building the whole completion)."""
        return self._usage

    @property
    def has_content(self) -> bool:
        """True once a chunk carried text, a tool call, a refusal, reasoning or a finish reason:
        the point after which a broken stream has shown the caller something and is not retried.
        A role alone, an empty string or usage alone does not count."""
        return self._has_content

    def add(self, chunk: ChatCompletionChunk) -> None:
        """Fold in the next chunk."""
        self._chunks += 1
        if not self._id and chunk.id:
            self._id = chunk.id
        if not self._model and chunk.model:
            self._model = chunk.model
        if not self._created and chunk.created:
            self._created = chunk.created
        if self._system_fingerprint is None and chunk.system_fingerprint is not None:
            self._system_fingerprint = chunk.system_fingerprint
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            parts = self._choices.get(choice.index)
            if parts is None:
                parts = self._choices[choice.index] = _ChoiceParts()
            delta = choice.delta
            if delta.role is not None and parts.role is None:
                parts.role = delta.role
            if delta.content:
                parts.content.append(delta.content)
                self._has_content = True
            if delta.refusal:
                parts.refusal.append(delta.refusal)
                self._has_content = True
            if delta.reasoning_content:
                parts.reasoning.append(delta.reasoning_content)
                self._has_content = True
            if delta.tool_calls:
                self._has_content = True
                for piece in delta.tool_calls:
                    call = parts.tool_calls.get(piece.index)
                    if call is None:
                        call = parts.tool_calls[piece.index] = _ToolCallParts()
                    if call.id is None and piece.id:
                        call.id = piece.id
                    if call.type is None and piece.type:
                        call.type = piece.type
                    function = piece.function
                    if function is not None:
                        if call.name is None and function.name:
                            call.name = function.name
                        if function.arguments:
                            call.arguments.append(function.arguments)
            if choice.finish_reason is not None:
                parts.finish_reason = choice.finish_reason
                self._has_content = True
            if choice.logprobs is not None:
                parts.logprobs = _merge_logprobs(parts.logprobs, choice.logprobs)

    def result(self) -> ChatCompletion:
        """The completion the chunks so far add up to, as a new object (later ``add`` calls do
        not change it). Choices are sorted by index."""
        return ChatCompletion(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=[_choice(index, self._choices[index]) for index in sorted(self._choices)],
            usage=self._usage,
            system_fingerprint=self._system_fingerprint,
        )


def _choice(index: int, parts: _ChoiceParts) -> Choice:
    tool_calls = [
        ToolCall(
            id=call.id or "",
            type=call.type or "function",
            function=FunctionCall(name=call.name or "", arguments="".join(call.arguments)),
        )
        for _, call in sorted(parts.tool_calls.items())
    ]
    content: str | None = "".join(parts.content)
    if not content and tool_calls:
        content = None
    message = Message(
        role=parts.role or "assistant",
        content=content,
        tool_calls=tool_calls or None,
        refusal="".join(parts.refusal) if parts.refusal else None,
        reasoning_content="".join(parts.reasoning) if parts.reasoning else None,
    )
    logprobs = parts.logprobs
    if logprobs is not None:  # a copy, so a later add() does not extend what we returned
        logprobs = {
            key: list(value) if isinstance(value, list) else value
            for key, value in logprobs.items()
        }
    return Choice(
        index=index, message=message, finish_reason=parts.finish_reason, logprobs=logprobs
    )


def _merge_logprobs(so_far: dict[str, Any] | None, piece: Any) -> dict[str, Any] | None:
    """Extend the ``content`` and ``refusal`` token lists, as openai-python's stream helper does."""
    if not isinstance(piece, dict):
        return so_far
    if so_far is None:
        return {
            key: list(value) if isinstance(value, list) else value for key, value in piece.items()
        }
    for key, value in piece.items():
        if isinstance(value, list) and isinstance(so_far.get(key), list):
            so_far[key].extend(value)
        elif so_far.get(key) is None:
            so_far[key] = list(value) if isinstance(value, list) else value
    return so_far
