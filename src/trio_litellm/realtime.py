"""The Realtime API's server events, as ``RealtimeConnection.recv()`` and ``async for`` hand
them out: ``from trio_litellm.realtime import ResponseOutputTextDelta``.

Each is a msgspec struct with ``type`` (its tag) and the event's fields; the beta names (for a
session opened with ``beta=True``) are subclasses of the GA ones. Any other event type arrives as
:class:`RealtimeEvent` (``type`` and the raw fields in ``data``).
"""

from __future__ import annotations

from ._realtime import RealtimeConnection, RealtimeTurn
from ._realtime_wire import (
    ConversationItemAdded,
    ConversationItemCreated,
    ConversationItemDone,
    ErrorEvent,
    InputAudioBufferCommitted,
    RealtimeErrorDetail,
    RealtimeEvent,
    RealtimeResponse,
    RealtimeUsage,
    ResponseAudioDelta,
    ResponseAudioDone,
    ResponseAudioTranscriptDelta,
    ResponseAudioTranscriptDone,
    ResponseCreated,
    ResponseDone,
    ResponseOutputAudioDelta,
    ResponseOutputAudioDone,
    ResponseOutputAudioTranscriptDelta,
    ResponseOutputAudioTranscriptDone,
    ResponseOutputTextDelta,
    ResponseOutputTextDone,
    ResponseTextDelta,
    ResponseTextDone,
    ServerEvent,
    SessionCreated,
    SessionUpdated,
)

__all__ = [
    "ConversationItemAdded",
    "ConversationItemCreated",
    "ConversationItemDone",
    "ErrorEvent",
    "InputAudioBufferCommitted",
    "RealtimeConnection",
    "RealtimeErrorDetail",
    "RealtimeEvent",
    "RealtimeResponse",
    "RealtimeTurn",
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
]
