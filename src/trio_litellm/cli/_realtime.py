"""``realtime``: one prompt over a realtime session (``/v1/realtime``), the answer printed as it
streams, then its usage."""

from __future__ import annotations

from typing import Annotated, Any

from cyclopts import Parameter

from .._client import open_client
from ._common import EXIT_FAILED, EXIT_OK, ApiKey, Exit, ProxyUrl, client_config, consoles

__all__ = ["realtime"]

_TEXT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.output_audio_transcript.delta",
        # The same two under the beta protocol's names (--beta).
        "response.text.delta",
        "response.audio_transcript.delta",
    }
)
"""Events whose ``delta`` is text to print: the answer, or the transcript of a spoken one."""


async def realtime(
    prompt: str,
    /,
    *,
    model: Annotated[str, Parameter(help="Realtime model group to ask.")],
    instructions: Annotated[
        str | None, Parameter(help="The session's instructions (a system prompt).")
    ] = None,
    beta: Annotated[
        bool,
        Parameter(
            help="Speak the beta protocol (OpenAI-Beta: realtime=v1), for beta-only deployments.",
            negative=(),
        ),
    ] = False,
    proxy_url: ProxyUrl = None,
    api_key: ApiKey = None,
) -> int:
    """Ask one prompt over a realtime session and stream the answer to the terminal; the usage
    goes to stderr. Exit code 1 when the session fails or ends before the answer does."""
    async with (
        open_client(client_config(proxy_url, api_key)) as client,
        client.realtime(model=model, beta=beta) as conn,
    ):
        if instructions is not None:
            await conn.session.update(session={"instructions": instructions})
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": prompt}],
            }
        )
        await conn.response.create()
        async for event in conn:
            if event.type in _TEXT_DELTAS:
                consoles.out.print(_field(event, "delta"), end="", highlight=False, markup=False)
            elif event.type == "error":
                consoles.out.print()
                raise Exit(EXIT_FAILED, f"the session answered an error: {_error_text(event)}")
            elif event.type == "response.done":
                consoles.out.print()
                _print_usage(_field(event, "response"))
                return EXIT_OK
    consoles.out.print()
    raise Exit(EXIT_FAILED, "the session closed before the answer was complete")


def _field(event: Any, name: str) -> Any:
    """A field of a typed event, or of a generic one (``RealtimeEvent.data``)."""
    data = getattr(event, "data", None)
    if isinstance(data, dict):
        return data.get(name)
    return getattr(event, name, None)


def _get(value: Any, name: str) -> Any:
    """``value.name`` or ``value[name]``: parts of an event are structs or, in a generic event,
    dicts."""
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def _error_text(event: Any) -> str:
    error = _field(event, "error")
    message = _get(error, "message") or "no message"
    kind = _get(error, "type") or _get(error, "code")
    return f"{message} ({kind})" if kind else str(message)


def _print_usage(response: Any) -> None:
    usage = _get(response, "usage")
    status = _get(response, "status")
    if status not in (None, "completed"):
        consoles.err.print(f"[yellow]response {status}[/]")
    if usage is None:
        consoles.err.print("[dim]no usage reported[/]")
        return
    consoles.err.print(
        f"[dim]{_get(usage, 'input_tokens')} tokens in, {_get(usage, 'output_tokens')} out, "
        f"{_get(usage, 'total_tokens')} total[/]"
    )
