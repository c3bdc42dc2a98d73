"""The commands that talk to the proxy for one answer: ``chat`` (a streamed reply), ``models``,
``model-info`` and ``health``."""

from __future__ import annotations

from typing import Annotated

from cyclopts import Parameter
from rich.table import Table

from .._client import Client, open_client
from .._errors import AuthenticationError
from .._probes import DeploymentStatus
from ._common import EXIT_FAILED, EXIT_OK, EXIT_PROXY, ApiKey, ProxyUrl, client_config, consoles

__all__ = ["chat", "health", "model_info", "models"]


async def chat(
    prompt: str,
    /,
    *,
    model: Annotated[str, Parameter(help="Model group to ask.")] = "local-gpt",
    system: Annotated[str | None, Parameter(help="A system message.")] = None,
    max_tokens: int | None = None,
    proxy_url: ProxyUrl = None,
    api_key: ApiKey = None,
) -> int:
    """Ask one prompt and stream the answer to the terminal."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    async with (
        open_client(client_config(proxy_url, api_key)) as client,
        client.stream(model=model, messages=messages, max_tokens=max_tokens) as stream,
    ):
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                consoles.out.print(
                    chunk.choices[0].delta.content, end="", highlight=False, markup=False
                )
    consoles.out.print()
    final = stream.result()
    if final.usage is not None:
        consoles.err.print(
            f"[dim]{final.usage.prompt_tokens} tokens in, {final.usage.completion_tokens} out[/]"
        )
    return EXIT_OK


async def models(*, proxy_url: ProxyUrl = None, api_key: ApiKey = None) -> int:
    """List the model groups the proxy serves to this key."""
    async with open_client(client_config(proxy_url, api_key)) as client:
        listed = await client.list_models()
    table = Table("id", "mode", "max input tokens", "owned by")
    for model in listed:
        table.add_row(
            model.id, model.mode or "-", str(model.max_input_tokens or "-"), model.owned_by
        )
    consoles.out.print(table)
    return EXIT_OK


async def model_info(model: str, /, *, proxy_url: ProxyUrl = None, api_key: ApiKey = None) -> int:
    """Show what the proxy knows of one model group: limits, prices, capabilities."""
    async with open_client(client_config(proxy_url, api_key)) as client:
        info = await client.model_info(model)
    table = Table(title=model, show_header=False)
    for field in (
        "id",
        "mode",
        "litellm_provider",
        "max_input_tokens",
        "max_output_tokens",
        "input_cost_per_token",
        "output_cost_per_token",
    ):
        table.add_row(field, str(getattr(info, field)))
    upstream = info.litellm_params.get("model")
    table.add_row("upstream model", str(upstream))
    supports = [
        name.removeprefix("supports_")
        for name in info.__struct_fields__
        if name.startswith("supports_") and getattr(info, name)
    ]
    table.add_row("supports", ", ".join(supports) or "-")
    consoles.out.print(table)
    return EXIT_OK


async def health(
    *,
    deep: Annotated[
        bool, Parameter(help="Also check every deployment with a real (billed) call.")
    ] = False,
    proxy_url: ProxyUrl = None,
    api_key: ApiKey = None,
) -> int:
    """Is the proxy up and ready, and does it accept the key? Exit code 3 when it is down or
    refuses the key; 1 when --deep finds an unhealthy deployment."""
    async with open_client(client_config(proxy_url, api_key)) as client:
        report = await client.health()
        consoles.out.print(
            f"{client.config.display_url}: {report.status} ({report.latency * 1000:.0f} ms)"
            + (f" - {report.error}" if report.error else ""),
            markup=False,
            highlight=False,
        )
        if not report.healthy:
            return EXIT_PROXY
        if client.config.api_key:
            # The health routes need no key: only a keyed request says whether this one works.
            try:
                listed = await client.list_models()
            except AuthenticationError as exc:
                consoles.out.print(f"key refused: {exc}", markup=False, highlight=False)
                return EXIT_PROXY
            consoles.out.print(f"key accepted ({len(listed)} model groups)")
        if deep:
            return await _deep_health(client)
    return EXIT_OK


async def _deep_health(client: Client) -> int:
    """One row per deployment, named by its model group; 1 when any is unhealthy."""
    deployments = await client.deployment_health()
    groups = {info.id: info.model_name for info in await client.model_infos() if info.id}

    def group(item: DeploymentStatus) -> str:
        # /health names the upstream model (openai/echo); the model group is what callers use.
        return groups.get(item.model_id or "") or str(item.model)

    table = Table("model group", "state", "error")
    rows = [(group(item), "healthy", "") for item in deployments.healthy_endpoints] + [
        (group(item), "unhealthy", (item.error or "")[:100])
        for item in deployments.unhealthy_endpoints
    ]
    for name, state, error in sorted(rows):
        table.add_row(name, state, error)
    consoles.out.print(table)
    if deployments.unhealthy_endpoints:
        names = sorted({group(item) for item in deployments.unhealthy_endpoints})
        consoles.err.print(f"unhealthy: {', '.join(names)}", markup=False, highlight=False)
        return EXIT_FAILED
    return EXIT_OK
