"""plan_batch and estimate_cost: what a dry run counts and how it prices it, from files alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from trio_litellm._wire import ModelInfo
from trio_litellm.batch import estimate_cost, plan_batch, prices_from_infos

encoder = msgspec.json.Encoder()


def write_input(path: Path, bodies: dict[str, dict[str, Any]]) -> Path:
    with path.open("wb") as file:
        for custom_id, body in bodies.items():
            url = "/v1/embeddings" if "input" in body else "/v1/chat/completions"
            line = {"custom_id": custom_id, "method": "POST", "url": url, "body": body}
            file.write(encoder.encode(line) + b"\n")
    return path


def write_output(path: Path, outcomes: dict[str, bool]) -> Path:
    with path.open("wb") as file:
        for custom_id, ok in outcomes.items():
            record = {
                "id": "batch_req_x",
                "custom_id": custom_id,
                "response": {"status_code": 200 if ok else 500, "request_id": "r", "body": {}},
                "error": None,
            }
            file.write(encoder.encode(record) + b"\n")
    return path


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "12345678"}], **extra}


def test_completion_is_counted_at_max_tokens_for_each_choice_else_the_default(
    tmp_path: Path,
) -> None:
    requests = write_input(
        tmp_path / "in.jsonl",
        {"a": chat("m", max_tokens=10, n=3), "b": chat("m"), "e": {"model": "e", "input": "abcd"}},
    )
    plan = plan_batch(requests, tmp_path / "out.jsonl")
    assert plan.per_model["m"].requests == 2
    assert plan.per_model["m"].prompt_tokens == 3 + 3  # 8 characters // 4 + 1, twice
    assert plan.per_model["m"].completion_tokens == 30 + 256
    assert plan.per_model["e"].completion_tokens == 0


def test_only_the_requests_left_to_run_are_planned_and_failed_ones_with_retry_failed(
    tmp_path: Path,
) -> None:
    requests = write_input(tmp_path / "in.jsonl", {cid: chat("m") for cid in "abcd"})
    results = write_output(tmp_path / "out.jsonl", {"a": True, "b": False})
    plan = plan_batch(requests, results)
    assert (plan.already_done, plan.to_retry, plan.to_run) == (2, 0, 2)
    retry = plan_batch(requests, results, retry_failed=True)
    assert (retry.already_done, retry.to_retry, retry.to_run) == (1, 1, 3)
    assert retry.per_model["m"].requests == 3


def test_output_ids_the_input_lacks_are_counted_apart_not_as_done(tmp_path: Path) -> None:
    requests = write_input(tmp_path / "in.jsonl", {cid: chat("m") for cid in "abc"})
    results = write_output(tmp_path / "out.jsonl", {"a": True, "x": True, "y": True})
    plan = plan_batch(requests, results)
    assert (plan.already_done, plan.to_run) == (1, 2)
    assert (plan.foreign, plan.foreign_example) == (2, "x")


def test_a_model_without_a_price_or_not_served_is_unknown_never_zero(tmp_path: Path) -> None:
    requests = write_input(
        tmp_path / "in.jsonl",
        {"a": chat("priced", max_tokens=100), "b": chat("free-text"), "c": chat("gone")},
    )
    prices = prices_from_infos(
        [
            ModelInfo(model_name="priced", input_cost_per_token=1e-6, output_cost_per_token=2e-6),
            ModelInfo(model_name="free-text"),
        ]
    )
    cost = estimate_cost(plan_batch(requests, tmp_path / "out.jsonl"), prices)
    assert cost.per_model["priced"].cost == pytest.approx(3 * 1e-6 + 100 * 2e-6)
    assert cost.per_model["free-text"].cost is None
    assert cost.per_model["free-text"].unknown_because == "no price in /v1/model/info"
    assert cost.per_model["gone"].unknown_because == "the proxy serves no model of that name"
    assert cost.known == pytest.approx(3 * 1e-6 + 100 * 2e-6)
    assert cost.unknown == ["free-text", "gone"]


def test_an_embedding_needs_only_an_input_price(tmp_path: Path) -> None:
    requests = write_input(tmp_path / "in.jsonl", {"e": {"model": "e", "input": "abcd"}})
    prices = prices_from_infos([ModelInfo(model_name="e", input_cost_per_token=1e-6)])
    cost = estimate_cost(plan_batch(requests, tmp_path / "out.jsonl"), prices)
    assert cost.per_model["e"].cost == pytest.approx(2e-6)


def test_a_group_is_priced_at_its_dearest_deployment_and_unknown_if_one_lacks_a_price() -> None:
    prices = prices_from_infos(
        [
            ModelInfo(model_name="g", input_cost_per_token=1e-6, output_cost_per_token=4e-6),
            ModelInfo(model_name="g", input_cost_per_token=2e-6, output_cost_per_token=3e-6),
            ModelInfo(model_name="h", input_cost_per_token=1e-6, output_cost_per_token=1e-6),
            ModelInfo(model_name="h"),
        ]
    )
    assert (prices["g"].input_cost_per_token, prices["g"].output_cost_per_token) == (2e-6, 4e-6)
    assert prices["h"].input_cost_per_token is None


def test_without_prices_every_model_is_unknown_for_the_reason_given(tmp_path: Path) -> None:
    requests = write_input(tmp_path / "in.jsonl", {"a": chat("m")})
    cost = estimate_cost(plan_batch(requests, tmp_path / "out.jsonl"), None, unknown_because="x")
    assert (cost.unknown, cost.unknown_because, cost.per_model) == (["m"], "x", {})
