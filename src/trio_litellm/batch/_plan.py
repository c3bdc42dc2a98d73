"""What a run would do, sending nothing (``batch --dry-run``): counts, tokens and cost per model.

:func:`plan_batch` reads the two files: the input (validated whole, then read once more for the
requests left to run) and the output, which it does not repair. :func:`estimate_cost` prices that
plan with the proxy's per-token prices (``/v1/model/info``, fetched by the caller: this module does
no IO beyond the files and imports no trio). A price the proxy does not know is unknown, never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec

from .._calls import DEFAULT_COMPLETION_ESTIMATE
from .._wire import ModelInfo
from ._input import BatchLine, InputScan, iter_input, scan_input, shard_of

__all__ = [
    "BatchPlan",
    "CostEstimate",
    "ModelCost",
    "ModelPlan",
    "ModelPrice",
    "estimate_cost",
    "plan_batch",
    "plan_to_json",
    "prices_from_infos",
]

COMPLETION_DEFAULT = DEFAULT_COMPLETION_ESTIMATE
"""Completion tokens counted for a chat request that sets no ``max_tokens``, per choice."""


class ModelPlan(msgspec.Struct, frozen=True, kw_only=True):
    """The requests for one model that a run would send, and their estimated tokens: prompt
    characters / 4, completion at each request's ``max_tokens`` (else :data:`COMPLETION_DEFAULT`)."""

    requests: int
    prompt_tokens: int
    completion_tokens: int


class BatchPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What a run would do: the input's shape, what the output already holds, what is left.

    ``per_model`` describes the ``to_run`` requests. ``foreign`` counts the custom_ids of the
    output (of this shard) that the input does not hold, ``foreign_example`` names the first:
    an output of another job, most likely, which a run would append to.
    """

    scan: InputScan
    already_done: int
    to_retry: int
    to_run: int
    per_model: dict[str, ModelPlan] = msgspec.field(default_factory=dict)
    foreign: int = 0
    foreign_example: str | None = None

    @property
    def prompt_tokens(self) -> int:
        """Estimated prompt tokens of the requests to run."""
        return sum(model.prompt_tokens for model in self.per_model.values())

    @property
    def completion_tokens(self) -> int:
        """Estimated completion tokens of the requests to run (their budget)."""
        return sum(model.completion_tokens for model in self.per_model.values())


class ModelPrice(msgspec.Struct, frozen=True, kw_only=True):
    """A model group's price per token; None where the proxy does not know it."""

    input_cost_per_token: float | None
    output_cost_per_token: float | None


class ModelCost(msgspec.Struct, frozen=True, kw_only=True):
    """One model's estimated cost, or None with the reason it is unknown."""

    cost: float | None
    unknown_because: str | None = None


class CostEstimate(msgspec.Struct, frozen=True, kw_only=True):
    """The plan's estimated cost: ``known`` sums the models whose cost is known; ``unknown``
    names the others. ``unknown_because`` is set when no price could be had at all (offline,
    the proxy unreachable), and then ``per_model`` is empty."""

    per_model: dict[str, ModelCost]
    known: float
    unknown: list[str]
    unknown_because: str | None = None


def plan_batch(
    input_path: str | Path,
    output_path: str | Path,
    *,
    model: str | None = None,
    shard: tuple[int, int] | None = None,
    retry_failed: bool = False,
) -> BatchPlan:
    """Validate the input and read the output, sending nothing (``--dry-run``); raises
    :class:`BatchInputError` listing every bad line."""
    scan = scan_input(input_path, model=model, shard=shard)
    scan.raise_for_problems()
    done = {
        cid: ok
        for cid, ok in _peek_output(Path(output_path)).items()
        if shard is None or shard_of(cid, shard[1]) == shard[0]
    }
    seen: set[str] = set()
    already = retry = 0
    per_model: dict[str, list[int]] = {}
    for item in iter_input(input_path, model=model, shard=shard):
        if not isinstance(item, BatchLine):  # the scan found no problem: cannot happen
            continue
        seen.add(item.custom_id)
        ok = done.get(item.custom_id)
        if ok is not None and (ok or not retry_failed):
            already += 1
            continue
        if ok is not None:
            retry += 1
        figures = per_model.setdefault(item.model, [0, 0, 0])
        figures[0] += 1
        figures[1] += item.prompt_tokens
        figures[2] += item.completion_tokens
    foreign = [cid for cid in done if cid not in seen]
    return BatchPlan(
        scan=scan,
        already_done=already,
        to_retry=retry,
        to_run=sum(figures[0] for figures in per_model.values()),
        per_model={
            name: ModelPlan(requests=n, prompt_tokens=prompt, completion_tokens=completion)
            for name, (n, prompt, completion) in per_model.items()
        },
        foreign=len(foreign),
        foreign_example=foreign[0] if foreign else None,
    )


def prices_from_infos(infos: Iterable[ModelInfo]) -> dict[str, ModelPrice]:
    """Each model group's price from its deployments (``Client.model_infos()``).

    A group whose deployments differ is priced at the highest of each price (the estimate is an
    upper bound, as its completion budget is); a price one deployment lacks is unknown.
    """
    prices: dict[str, ModelPrice] = {}
    for info in infos:
        here = ModelPrice(
            input_cost_per_token=info.input_cost_per_token,
            output_cost_per_token=info.output_cost_per_token,
        )
        before = prices.get(info.model_name)
        prices[info.model_name] = (
            here
            if before is None
            else ModelPrice(
                input_cost_per_token=_highest(
                    before.input_cost_per_token, here.input_cost_per_token
                ),
                output_cost_per_token=_highest(
                    before.output_cost_per_token, here.output_cost_per_token
                ),
            )
        )
    return prices


def estimate_cost(
    plan: BatchPlan,
    prices: Mapping[str, ModelPrice] | None,
    *,
    unknown_because: str | None = None,
) -> CostEstimate:
    """Price the requests to run; ``prices`` None means none could be had (say why in
    ``unknown_because``)."""
    if prices is None:
        return CostEstimate(
            per_model={},
            known=0.0,
            unknown=sorted(plan.per_model),
            unknown_because=unknown_because or "no prices",
        )
    per_model = {
        name: _model_cost(name, figures, prices) for name, figures in plan.per_model.items()
    }
    return CostEstimate(
        per_model=per_model,
        known=sum(cost.cost for cost in per_model.values() if cost.cost is not None),
        unknown=sorted(name for name, cost in per_model.items() if cost.cost is None),
    )


def plan_to_json(plan: BatchPlan, cost: CostEstimate) -> bytes:
    """The plan and its cost as one JSON object (``batch --dry-run --json``); an unknown cost is
    ``null`` with the reason beside it."""
    scan = plan.scan
    per_model = {}
    for name, figures in sorted(plan.per_model.items()):
        model_cost = cost.per_model.get(name)
        per_model[name] = {
            "requests": figures.requests,
            "prompt_tokens": figures.prompt_tokens,
            "completion_tokens": figures.completion_tokens,
            "cost": None if model_cost is None else model_cost.cost,
            "cost_unknown_because": (
                cost.unknown_because if model_cost is None else model_cost.unknown_because
            ),
        }
    return msgspec.json.encode(
        {
            "input": scan.path,
            "requests_in_file": scan.lines,
            "in_shard": scan.in_shard,
            "already_done": plan.already_done,
            "to_retry": plan.to_retry,
            "to_run": plan.to_run,
            "not_in_input": {"count": plan.foreign, "example": plan.foreign_example},
            "by_url": scan.by_url,
            "prompt_tokens": plan.prompt_tokens,
            "completion_tokens": plan.completion_tokens,
            "completion_default": COMPLETION_DEFAULT,
            "per_model": per_model,
            "cost": {
                "known": cost.known,
                "complete": not cost.unknown,
                "unknown_models": cost.unknown,
                "unknown_because": cost.unknown_because,
            },
        }
    )


def _model_cost(name: str, figures: ModelPlan, prices: Mapping[str, ModelPrice]) -> ModelCost:
    price = prices.get(name)
    if price is None:
        return ModelCost(cost=None, unknown_because="the proxy serves no model of that name")
    cost = 0.0
    for tokens, per_token in (
        (figures.prompt_tokens, price.input_cost_per_token),
        (figures.completion_tokens, price.output_cost_per_token),
    ):
        if not tokens:
            continue  # an embedding has no completion: its output price does not matter
        if per_token is None:
            return ModelCost(cost=None, unknown_because="no price in /v1/model/info")
        cost += tokens * per_token
    return ModelCost(cost=cost)


def _highest(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else max(a, b)


def _peek_output(path: Path) -> dict[str, bool]:
    """The done map of an output file without repairing it (a dry run changes nothing)."""
    if not path.exists():
        return {}
    done: dict[str, bool] = {}
    with path.open("rb") as file:
        for line in file:
            if not line.endswith(b"\n"):
                break
            try:
                record = msgspec.json.decode(line)
                response = record.get("response")
                ok = (
                    bool(response)
                    and record.get("error") is None
                    and 200 <= response.get("status_code", 0) < 300
                )
                done[record["custom_id"]] = ok
            except (msgspec.DecodeError, AttributeError, KeyError, TypeError):
                continue
    return done
