"""``realtime``: one prompt over a realtime session (``/v1/realtime``), the answer printed as it
streams, then its usage."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter

from .._client import open_client
from .._realtime_wire import (
    ErrorEvent,
    RealtimeResponse,
    ResponseDone,
    ResponseOutputAudioTranscriptDelta,
    ResponseOutputTextDelta,
)
from ._common import EXIT_FAILED, EXIT_OK, ApiKey, Exit, ProxyUrl, client_config, consoles

__all__ = ["realtime"]

_FAILED_STATUSES = frozenset({"failed", "cancelled"})
"""A ``response.done`` with one of these has no complete answer (``incomplete`` has one, cut at
its token limit, as a chat answer cut by ``max_tokens``)."""


async def realtime(
    prompt: str,
    /,
    *,
    model: Annotated[str, Parameter(help="Realtime model group to ask (e.g. rt-text).")],
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
    """Ask one prompt over a realtime session and stream the answer (its text, or the transcript
    of a spoken one) to the terminal; the usage goes to stderr. Exit code 1 when the session
    fails or ends before the answer does."""
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
        # The beta protocol's events (response.text.delta...) decode into subclasses of these.
        async for event in conn:
            if isinstance(event, ResponseOutputTextDelta | ResponseOutputAudioTranscriptDelta):
                consoles.out.print(event.delta, end="", highlight=False, markup=False)
            elif isinstance(event, ErrorEvent):
                consoles.out.print()
                detail = event.error
                kind = f" ({detail.type or detail.code})" if detail.type or detail.code else ""
                raise Exit(
                    EXIT_FAILED,
                    f"the session answered an error: {detail.message or 'no message'}{kind}",
                )
            elif isinstance(event, ResponseDone):
                consoles.out.print()
                return _finish(event.response)
    consoles.out.print()
    raise Exit(EXIT_FAILED, "the session closed before the answer was complete")


def _finish(response: RealtimeResponse) -> int:
    """Print the usage of the response on stderr; 1 if it failed or was cancelled."""
    usage = response.usage
    if usage is None:
        consoles.err.print("[dim]no usage reported[/]")
    else:
        consoles.err.print(
            f"[dim]{usage.input_tokens} tokens in, {usage.output_tokens} out, "
            f"{usage.total_tokens} total[/]"
        )
    if response.status in _FAILED_STATUSES:
        reason = (response.status_details or {}).get("reason")
        raise Exit(
            EXIT_FAILED, f"the response {response.status}" + (f": {reason}" if reason else "")
        )
    return EXIT_OK
