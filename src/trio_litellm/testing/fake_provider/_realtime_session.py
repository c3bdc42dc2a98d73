"""One realtime session's state machine and the server events it answers with; no IO.

A ``RealtimeSession`` is fed each client event (the text of a WebSocket message) and returns the
events to send back, speaking the OpenAI Realtime GA protocol as far as a text or audio turn
needs it. A ``response.create`` also returns a ``ResponsePlan``: the whole answer decided up
front, grouped by delta, so the IO side can pace it and inject faults between deltas. While the
IO side streams it the response is ``active``: a ``response.cancel`` then asks the IO side to
stop (``Reply.cancel``), and ``cancelled(delivered)`` says how the response ends.

Answers are deterministic, like the HTTP echo: the text is ``Echo: <last user input_text>``, one
delta per word (or ``deltas=N`` pieces), audio is PCM derived from each piece by a hash, and
token counts are whitespace-separated words.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any, Final

import msgspec

from ._directives import RealtimeDirectives
from ._responses import split_pieces

Event = dict[str, Any]
"""A server event as sent: a JSON object with ``type`` and ``event_id``."""

AUDIO_BYTES_PER_DELTA: Final = 2400
"""PCM bytes in each audio delta: 50 ms of 24 kHz 16-bit mono."""
AUDIO_FORMAT: Final = {"type": "audio/pcm", "rate": 24000}

_decoder = msgspec.json.Decoder()

CLIENT_EVENT_TYPES: Final = (
    "session.update",
    "conversation.item.create",
    "conversation.item.retrieve",
    "conversation.item.truncate",
    "conversation.item.delete",
    "response.create",
    "response.cancel",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "output_audio_buffer.clear",
)
"""The client event types the fake answers; any other type gets an ``error`` event."""


def audio_for(piece: str, size: int = AUDIO_BYTES_PER_DELTA) -> bytes:
    """The PCM bytes spoken for ``piece``: its SHA-256 repeated to ``size`` bytes."""
    seed = hashlib.sha256(piece.encode()).digest()
    whole, rest = divmod(size, len(seed))
    return seed * whole + seed[:rest]


def echo_text(user_text: str, deltas: int | None = None) -> str:
    """The answer to ``user_text``; with ``deltas=N`` repeated until it has N characters."""
    echo = " ".join(["Echo:", *user_text.split()])
    if deltas is None or len(echo) >= deltas:
        return echo
    copies = math.ceil((deltas + 1) / (len(echo) + 1))
    return " ".join([echo] * copies)


def answer_pieces(text: str, deltas: int | None) -> list[str]:
    """The deltas of ``text``: one per word, or exactly ``deltas`` pieces."""
    return split_pieces(text, deltas)


def wants_audio(settings: object) -> bool | None:
    """Whether a session or response object asks for audio; None when it does not say."""
    if not isinstance(settings, dict):
        return None
    for key in ("output_modalities", "modalities"):
        modalities = settings.get(key)
        if isinstance(modalities, list):
            return "audio" in modalities
    return None


def _words(item: Event) -> int:
    """Words in an item's text content (input and output text, transcripts)."""
    count = 0
    content = item.get("content")
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                for key in ("text", "transcript"):
                    value = part.get(key)
                    if isinstance(value, str):
                        count += len(value.split())
    return count


def _user_text(item: Event) -> str | None:
    """The ``input_text`` of a user message item, joined; None if it has none."""
    if item.get("type") != "message" or item.get("role") != "user":
        return None
    content = item.get("content")
    if not isinstance(content, list):
        return None
    texts = [
        part["text"]
        for part in content
        if isinstance(part, dict)
        and part.get("type") == "input_text"
        and isinstance(part.get("text"), str)
    ]
    return " ".join(texts) if texts else None


class ResponsePlan(msgspec.Struct, frozen=True, kw_only=True):
    """One response, event by event: ``opening``, then one group per delta, then ``closing``."""

    opening: list[Event]
    """``response.created`` (and, for ``big_audio``, the one big audio delta)."""
    groups: list[list[Event]]
    """Per text delta: the delta event (in audio, the audio delta and the transcript delta)."""
    closing: list[Event]
    """The ``.done`` events and ``response.done``."""
    text: str
    """The whole answer (the transcript, in audio)."""
    pieces: list[str]
    """The text of each delta group."""
    response: Event
    """The response object as ``response.created`` showed it."""
    item: Event
    """The assistant item, as it stands in the conversation."""
    audio: bool
    input_tokens: int


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """What one client event causes: events to send now, and maybe a response to stream."""

    events: list[Event]
    response: ResponsePlan | None = None
    """A response to stream; it is ``active`` until the IO side calls ``finished()``."""
    cancel: bool = False
    """Stop streaming the active response; then send ``cancelled(delivered)``."""


class RealtimeSession:
    """The state of one connection: session settings, conversation items, the audio buffer.

    ``next_number`` numbers ids (events, items, responses); the server passes one shared
    counter so ids stay unique across sessions.
    """

    def __init__(
        self,
        model: str,
        directives: RealtimeDirectives,
        next_number: Callable[[], int] | None = None,
    ) -> None:
        self.model = model
        self.directives = directives
        self._next = next_number or itertools.count(1).__next__
        audio = directives.audio or directives.big_audio is not None
        self.session: Event = {
            "type": "realtime",
            "object": "realtime.session",
            "id": self._id("sess"),
            "model": model,
            "output_modalities": ["audio" if audio else "text"],
            "instructions": "",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "audio": {
                "input": {"format": AUDIO_FORMAT, "turn_detection": None},
                "output": {"format": AUDIO_FORMAT, "voice": "alloy", "speed": 1.0},
            },
        }
        self.conversation_id = self._id("conv")
        self.items: list[Event] = []
        self.audio_buffer = 0
        """Bytes appended to the input audio buffer since the last commit or clear."""
        self.active: ResponsePlan | None = None
        """The response being streamed, if any."""
        self._handlers: dict[str, Callable[[Event], Reply]] = {
            "session.update": self._session_update,
            "conversation.item.create": self._item_create,
            "conversation.item.retrieve": self._item_retrieve,
            "conversation.item.truncate": self._item_truncate,
            "conversation.item.delete": self._item_delete,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
            "input_audio_buffer.append": self._buffer_append,
            "input_audio_buffer.commit": self._buffer_commit,
            "input_audio_buffer.clear": self._buffer_clear,
            "output_audio_buffer.clear": self._output_clear,
        }

    # --- ids and event shapes ------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake_{self._next()}"

    def event(self, type_: str, **fields: Any) -> Event:
        """A server event of ``type_`` with a fresh ``event_id``."""
        return {"type": type_, "event_id": self._id("event"), **fields}

    def error(
        self,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        client_event_id: object = None,
    ) -> Event:
        """An ``error`` event; ``client_event_id`` names the client event it answers."""
        return self.event(
            "error",
            error={
                "type": kind,
                "code": code,
                "message": message,
                "param": param,
                "event_id": client_event_id if isinstance(client_event_id, str) else None,
            },
        )

    def created(self) -> Event:
        """``session.created``: the first event of a session."""
        return self.event("session.created", session=self.session)

    def refusal(self) -> Event:
        """The error event an ``error_first`` session sends before it closes."""
        return self.error(
            "Incorrect API key provided (fake upstream refusal).",
            code="invalid_api_key",
        )

    @property
    def audio(self) -> bool:
        """Whether the session answers in audio (a response may say otherwise)."""
        return bool(wants_audio(self.session))

    # --- the state machine ---------------------------------------------------------------

    def receive(self, message: str | bytes) -> Reply:
        """Answer one client message (the text of a WebSocket message)."""
        try:
            event = _decoder.decode(message)
        except msgspec.DecodeError as exc:
            return Reply(events=[self.error(f"Invalid JSON: {exc}", code="invalid_json")])
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return Reply(
                events=[
                    self.error(
                        "Missing required parameter: 'type'.",
                        code="missing_required_parameter",
                        param="type",
                    )
                ]
            )
        handler = self._handlers.get(event["type"])
        if handler is None:
            supported = ", ".join(f"'{name}'" for name in CLIENT_EVENT_TYPES)
            message_ = f"Invalid value: '{event['type']}'. Supported values are: {supported}."
            return self._fail(event, message_, code="invalid_value", param="type")
        return handler(event)

    def _fail(self, event: Event, message: str, *, code: str, param: str | None = None) -> Reply:
        error = self.error(message, code=code, param=param, client_event_id=event.get("event_id"))
        return Reply(events=[error])

    def _find(self, item_id: object) -> int | None:
        for index, item in enumerate(self.items):
            if item.get("id") == item_id:
                return index
        return None

    def _last_id(self) -> str | None:
        return self.items[-1]["id"] if self.items else None

    def _session_update(self, event: Event) -> Reply:
        settings = event.get("session")
        if not isinstance(settings, dict):
            return self._fail(
                event, "Missing required parameter: 'session'.", code="missing_required_parameter"
            )
        for key, value in settings.items():
            if key not in {"id", "object", "model"}:
                self.session[key] = value
        if "modalities" in settings and "output_modalities" not in settings:
            audio = wants_audio(settings)
            self.session["output_modalities"] = ["audio" if audio else "text"]
        return Reply(events=[self.event("session.updated", session=self.session)])

    def _item_create(self, event: Event) -> Reply:
        given = event.get("item")
        if not isinstance(given, dict):
            return self._fail(
                event, "Missing required parameter: 'item'.", code="missing_required_parameter"
            )
        item: Event = {"id": self._id("item"), "object": "realtime.item", **given}
        item.setdefault("status", "completed")
        if self._find(item["id"]) is not None:
            return self._fail(
                event, f"Item with id '{item['id']}' already exists.", code="duplicate_item_id"
            )
        previous = self._last_id()
        self.items.append(item)
        return Reply(
            events=[
                self.event("conversation.item.added", previous_item_id=previous, item=item),
                self.event("conversation.item.done", previous_item_id=previous, item=item),
            ]
        )

    def _item_lookup(self, event: Event) -> int | Reply:
        item_id = event.get("item_id")
        index = self._find(item_id)
        if index is None:
            return self._fail(
                event, f"Item with item_id not found: {item_id}", code="item_not_found"
            )
        return index

    def _item_retrieve(self, event: Event) -> Reply:
        index = self._item_lookup(event)
        if isinstance(index, Reply):
            return index
        return Reply(events=[self.event("conversation.item.retrieved", item=self.items[index])])

    def _item_truncate(self, event: Event) -> Reply:
        index = self._item_lookup(event)
        if isinstance(index, Reply):
            return index
        truncated = self.event(
            "conversation.item.truncated",
            item_id=self.items[index]["id"],
            content_index=event.get("content_index", 0),
            audio_end_ms=event.get("audio_end_ms", 0),
        )
        return Reply(events=[truncated])

    def _item_delete(self, event: Event) -> Reply:
        index = self._item_lookup(event)
        if isinstance(index, Reply):
            return index
        item = self.items.pop(index)
        return Reply(events=[self.event("conversation.item.deleted", item_id=item["id"])])

    def _response_cancel(self, event: Event) -> Reply:
        if self.active is None:
            return self._fail(
                event,
                "Cancellation failed: no active response found",
                code="response_cancel_not_active",
            )
        return Reply(events=[], cancel=True)

    def _buffer_append(self, event: Event) -> Reply:
        audio = event.get("audio")
        if not isinstance(audio, str):
            return self._fail(
                event, "Missing required parameter: 'audio'.", code="missing_required_parameter"
            )
        try:
            self.audio_buffer += len(base64.b64decode(audio, validate=True))
        except binascii.Error:
            return self._fail(event, "Invalid 'audio'. Expected base64.", code="invalid_value")
        return Reply(events=[])

    def _buffer_commit(self, event: Event) -> Reply:
        if self.audio_buffer == 0:
            return self._fail(
                event,
                "Error committing input audio buffer: buffer is empty.",
                code="input_audio_buffer_commit_empty",
            )
        previous = self._last_id()
        item: Event = {
            "id": self._id("item"),
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self.items.append(item)
        self.audio_buffer = 0
        committed = self.event(
            "input_audio_buffer.committed", previous_item_id=previous, item_id=item["id"]
        )
        return Reply(events=[committed])

    def _buffer_clear(self, _event: Event) -> Reply:
        self.audio_buffer = 0
        return Reply(events=[self.event("input_audio_buffer.cleared")])

    def _output_clear(self, _event: Event) -> Reply:
        return Reply(events=[self.event("output_audio_buffer.cleared", response_id=None)])

    # --- responses -----------------------------------------------------------------------

    def _response_create(self, event: Event) -> Reply:
        if self.active is not None:
            active = self.active.response["id"]
            message = f"Conversation already has an active response in progress: {active}."
            return self._fail(event, message, code="conversation_already_has_active_response")
        options = event.get("response")
        audio = wants_audio(options)
        if audio is None:
            audio = self.audio
        if self.directives.big_audio is not None:
            audio = True
        return Reply(events=[], response=self._plan(audio=audio))

    def _input_tokens(self) -> int:
        words = len(str(self.session.get("instructions") or "").split())
        return max(1, words + sum(_words(item) for item in self.items))

    @staticmethod
    def _usage(input_tokens: int, output_tokens: int, *, audio: bool) -> Event:
        return {
            "total_tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_token_details": {
                "text_tokens": input_tokens,
                "audio_tokens": 0,
                "cached_tokens": 0,
            },
            "output_token_details": {
                "text_tokens": 0 if audio else output_tokens,
                "audio_tokens": output_tokens if audio else 0,
            },
        }

    def _plan(self, *, audio: bool) -> ResponsePlan:
        user_text = next(
            (text for item in reversed(self.items) if (text := _user_text(item)) is not None), ""
        )
        text = echo_text(user_text, self.directives.deltas)
        pieces = answer_pieces(text, self.directives.deltas)
        response_id, item_id = self._id("resp"), self._id("item")
        modalities = ["audio" if audio else "text"]
        response: Event = {
            "object": "realtime.response",
            "id": response_id,
            "status": "in_progress",
            "status_details": None,
            "output": [],
            "conversation_id": self.conversation_id,
            "output_modalities": modalities,
            "max_output_tokens": "inf",
            "audio": {"output": {"format": AUDIO_FORMAT, "voice": "alloy"}},
            "usage": None,
            "metadata": None,
        }
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        part = {**where, "content_index": 0}
        opening = [self.event("response.created", response=dict(response))]
        groups: list[list[Event]]
        if not audio:
            groups = [[self.event("response.output_text.delta", **part, delta=p)] for p in pieces]
            content: Event = {"type": "output_text", "text": text}
            done = [self.event("response.output_text.done", **part, text=text)]
        else:
            big = self.directives.big_audio
            if big is not None:
                pcm = base64.b64encode(audio_for(text, big)).decode()
                opening.append(self.event("response.output_audio.delta", **part, delta=pcm))
            groups = [
                [
                    *self._audio_delta(part, piece, skip=big is not None),
                    self.event("response.output_audio_transcript.delta", **part, delta=piece),
                ]
                for piece in pieces
            ]
            content = {"type": "output_audio", "transcript": text}
            done = [
                self.event("response.output_audio.done", **part),
                self.event("response.output_audio_transcript.done", **part, transcript=text),
            ]
        item: Event = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [content],
        }
        input_tokens = self._input_tokens()
        usage = self._usage(input_tokens, max(1, len(text.split())), audio=audio)
        self.items.append(item)
        finished = {**response, "status": "completed", "output": [item], "usage": usage}
        done.append(self.event("response.done", response=finished))
        self.active = ResponsePlan(
            opening=opening,
            groups=groups,
            closing=done,
            text=text,
            pieces=pieces,
            response=response,
            item=item,
            audio=audio,
            input_tokens=input_tokens,
        )
        return self.active

    def finished(self) -> None:
        """The IO side has sent the active response's last delta: it can no longer be cancelled."""
        self.active = None

    def cancelled(self, delivered: int) -> list[Event]:
        """End the active response after ``delivered`` delta groups: ``response.done`` cancelled.

        The assistant item keeps the text sent so far, as the conversation would.
        """
        plan = self.active
        if plan is None:
            return []
        self.active = None
        text = "".join(plan.pieces[:delivered])
        key, kind = ("transcript", "output_audio") if plan.audio else ("text", "output_text")
        plan.item["content"] = [{"type": kind, key: text}]
        plan.item["status"] = "incomplete"
        usage = self._usage(plan.input_tokens, len(text.split()), audio=plan.audio)
        response = {
            **plan.response,
            "status": "cancelled",
            "status_details": {"type": "cancelled", "reason": "client_cancelled"},
            "output": [plan.item],
            "usage": usage,
        }
        return [self.event("response.done", response=response)]

    def _audio_delta(self, part: Event, piece: str, *, skip: bool) -> Iterator[Event]:
        if not skip:
            pcm = base64.b64encode(audio_for(piece)).decode()
            yield self.event("response.output_audio.delta", **part, delta=pcm)
