"""The Realtime API's server events as msgspec structs, tagged by ``type``; no IO.

The events of a text or an audio turn decode into their own struct (GA names, and the beta
names the proxy uses for a client that sent ``OpenAI-Beta: realtime=v1``, as subclasses of the GA
ones, so ``isinstance`` and the fields are the same). Any other type, or a known type whose
fields are not what the protocol says, decodes into :class:`RealtimeEvent` with its raw fields:
an event the client does not know is never an error. Every field but ``type`` is optional:
events LiteLLM makes itself carry no ``event_id``, and a server may leave out what a turn does
not use.
"""

from __future__ import annotations

import base64
from typing import Any, TypeAlias

import msgspec

__all__ = [
    "ConversationItemAdded",
    "ConversationItemCreated",
    "ConversationItemDone",
    "ErrorEvent",
    "InputAudioBufferCommitted",
    "RealtimeErrorDetail",
    "RealtimeEvent",
    "RealtimeResponse",
    "RealtimeUsage",
    "ResponseAudioDelta",
    "ResponseAudioDone",
    "ResponseAudioTranscriptDelta",
    "ResponseAudioTranscriptDone",
    "ResponseCreated",
    "ResponseDone",
    "ResponseOutputAudioDelta",
    "ResponseOutputAudioDone",
    "ResponseOutputAudioTranscriptDelta",
    "ResponseOutputAudioTranscriptDone",
    "ResponseOutputTextDelta",
    "ResponseOutputTextDone",
    "ResponseTextDelta",
    "ResponseTextDone",
    "ServerEvent",
    "SessionCreated",
    "SessionUpdated",
    "decode_event",
]


class RealtimeUsage(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """Tokens one response used (``response.done``'s ``response.usage``)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_token_details: dict[str, Any] | None = None
    output_token_details: dict[str, Any] | None = None


class RealtimeResponse(msgspec.Struct, kw_only=True):
    """A response as ``response.created`` / ``response.done`` carry it."""

    id: str | None = None
    status: str | None = None
    status_details: dict[str, Any] | None = None
    output: list[dict[str, Any]] = msgspec.field(default_factory=list)
    usage: RealtimeUsage | None = None


class RealtimeErrorDetail(msgspec.Struct, kw_only=True):
    """The ``error`` of an error event."""

    type: str | None = None
    code: str | int | None = None
    message: str | None = None
    param: str | None = None
    event_id: str | None = None


class _Event(msgspec.Struct, kw_only=True, tag_field="type"):
    """A server event; ``type`` is its tag."""

    event_id: str | None = None

    @property
    def type(self) -> str:
        tag = self.__struct_config__.tag
        assert isinstance(tag, str)
        return tag


class SessionCreated(_Event, tag="session.created"):
    session: dict[str, Any] = msgspec.field(default_factory=dict)


class SessionUpdated(_Event, tag="session.updated"):
    session: dict[str, Any] = msgspec.field(default_factory=dict)


class ConversationItemAdded(_Event, tag="conversation.item.added"):
    item: dict[str, Any] = msgspec.field(default_factory=dict)
    previous_item_id: str | None = None


class ConversationItemCreated(ConversationItemAdded, tag="conversation.item.created"):
    """The beta name of ``conversation.item.added``."""


class ConversationItemDone(_Event, tag="conversation.item.done"):
    item: dict[str, Any] = msgspec.field(default_factory=dict)
    previous_item_id: str | None = None


class InputAudioBufferCommitted(_Event, tag="input_audio_buffer.committed"):
    item_id: str | None = None
    previous_item_id: str | None = None


class ResponseCreated(_Event, tag="response.created"):
    response: RealtimeResponse = msgspec.field(default_factory=RealtimeResponse)


class ResponseDone(_Event, tag="response.done"):
    response: RealtimeResponse = msgspec.field(default_factory=RealtimeResponse)

    @property
    def usage(self) -> RealtimeUsage | None:
        return self.response.usage


class _Part(_Event):
    response_id: str | None = None
    item_id: str | None = None
    output_index: int = 0
    content_index: int = 0


class ResponseOutputTextDelta(_Part, tag="response.output_text.delta"):
    delta: str = ""


class ResponseTextDelta(ResponseOutputTextDelta, tag="response.text.delta"):
    """The beta name of ``response.output_text.delta``."""


class ResponseOutputTextDone(_Part, tag="response.output_text.done"):
    text: str = ""


class ResponseTextDone(ResponseOutputTextDone, tag="response.text.done"):
    """The beta name of ``response.output_text.done``."""


class ResponseOutputAudioDelta(_Part, tag="response.output_audio.delta"):
    delta: str = ""  # base64 on the wire

    @property
    def audio(self) -> bytes:
        """The audio of this delta, decoded from base64."""
        return base64.b64decode(self.delta)


class ResponseAudioDelta(ResponseOutputAudioDelta, tag="response.audio.delta"):
    """The beta name of ``response.output_audio.delta``."""


class ResponseOutputAudioDone(_Part, tag="response.output_audio.done"):
    pass


class ResponseAudioDone(ResponseOutputAudioDone, tag="response.audio.done"):
    """The beta name of ``response.output_audio.done``."""


class ResponseOutputAudioTranscriptDelta(_Part, tag="response.output_audio_transcript.delta"):
    delta: str = ""


class ResponseAudioTranscriptDelta(
    ResponseOutputAudioTranscriptDelta, tag="response.audio_transcript.delta"
):
    """The beta name of ``response.output_audio_transcript.delta``."""


class ResponseOutputAudioTranscriptDone(_Part, tag="response.output_audio_transcript.done"):
    transcript: str = ""


class ResponseAudioTranscriptDone(
    ResponseOutputAudioTranscriptDone, tag="response.audio_transcript.done"
):
    """The beta name of ``response.output_audio_transcript.done``."""


class ErrorEvent(_Event, tag="error"):
    error: RealtimeErrorDetail = msgspec.field(default_factory=RealtimeErrorDetail)


class RealtimeEvent(msgspec.Struct, kw_only=True):
    """A server event of a type this client has no struct for (or whose fields were not what
    the protocol says): its ``type`` and every raw field in ``data``."""

    type: str
    data: dict[str, Any]

    @property
    def event_id(self) -> str | None:
        value = self.data.get("event_id")
        return value if isinstance(value, str) else None


_Known: TypeAlias = (
    SessionCreated
    | SessionUpdated
    | ConversationItemAdded
    | ConversationItemCreated
    | ConversationItemDone
    | InputAudioBufferCommitted
    | ResponseCreated
    | ResponseDone
    | ResponseOutputTextDelta
    | ResponseTextDelta
    | ResponseOutputTextDone
    | ResponseTextDone
    | ResponseOutputAudioDelta
    | ResponseAudioDelta
    | ResponseOutputAudioDone
    | ResponseAudioDone
    | ResponseOutputAudioTranscriptDelta
    | ResponseAudioTranscriptDelta
    | ResponseOutputAudioTranscriptDone
    | ResponseAudioTranscriptDone
    | ErrorEvent
)

ServerEvent: TypeAlias = _Known | RealtimeEvent
"""Any event the server sends: one of the typed events, or a :class:`RealtimeEvent`."""

_known_decoder = msgspec.json.Decoder(_Known)
_raw_decoder = msgspec.json.Decoder(dict[str, Any])


def decode_event(frame: str | bytes) -> ServerEvent:
    """The event of one text frame; ``msgspec.DecodeError`` only when it is not a JSON object
    with a string ``type``."""
    try:
        return _known_decoder.decode(frame)
    except msgspec.DecodeError:
        data = _raw_decoder.decode(frame)  # not JSON, or not an object: the caller's to report
        kind = data.get("type")
        if not isinstance(kind, str):
            raise msgspec.DecodeError("a realtime event without a string `type`") from None
        return RealtimeEvent(type=kind, data=data)
