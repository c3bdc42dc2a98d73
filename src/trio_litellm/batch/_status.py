"""Where a batch stands, from its input and output files alone: ``trio-litellm status``.

Nothing is sent and nothing is changed (a torn last line is reported, not cut off, unlike a
resumed run): the command is safe beside a run that is still writing. Memory holds the
custom_ids, never the files.

Cost is what the answers say: a ``"litellm": {"response_cost": ...}`` key of the output line
when there is one, else the answer body's ``usage.cost``. Every line counts, duplicates too: each
was an answer paid for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

from .._errors import OutputCorruptError
from ._output import record_outcome

__all__ = ["BatchStatus", "read_status", "status_to_json"]

SHOWN_IDS = 10
"""How many duplicate or unknown custom_ids are named (the counts are always whole)."""

_line_decoder = msgspec.json.Decoder(dict[str, Any])


class BatchStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A batch's state: ``done`` = ``succeeded`` + ``failed`` distinct input custom_ids answered
    (the last answer of an id decides), ``remaining`` those not answered yet.

    ``input_duplicates`` counts input lines repeating a custom_id, ``invalid_input_lines`` lines
    without one (not JSON, no ``custom_id``). ``output_duplicates`` counts output lines repeating
    a custom_id, ``unknown`` the distinct output custom_ids the input does not hold; the first
    :data:`SHOWN_IDS` of each are named. ``cost`` is the sum over ``costed`` lines (None when no
    line carries a cost); ``torn_bytes`` is the size of a last line still being written or torn.
    """

    input_requests: int
    done: int
    succeeded: int
    failed: int
    remaining: int
    cost: float | None
    costed: int
    input_duplicates: int = 0
    invalid_input_lines: int = 0
    output_duplicates: int = 0
    duplicate_ids: list[str] = msgspec.field(default_factory=list)
    unknown: int = 0
    unknown_ids: list[str] = msgspec.field(default_factory=list)
    torn_bytes: int = 0


def read_status(
    input_path: str | os.PathLike[str], output_path: str | os.PathLike[str]
) -> BatchStatus:
    """Read both files; raises :class:`OutputCorruptError` for an output line that is not a
    record (``file:LINE``), OSError when the input cannot be read. A missing output is empty."""
    wanted, input_duplicates, invalid = _input_ids(Path(input_path))
    outcome: dict[str, bool] = {}
    output_duplicates = 0
    duplicate_ids: list[str] = []
    unknown_ids: list[str] = []
    unknown = 0
    cost = 0.0
    costed = 0
    torn = 0
    path = Path(output_path)
    if path.exists():
        with path.open("rb") as file:
            for line_no, raw in enumerate(file, 1):
                if not raw.endswith(b"\n"):
                    torn = len(raw)
                    break
                try:
                    custom_id, ok = record_outcome(raw)
                except ValueError as exc:
                    raise OutputCorruptError(str(path), line_no, str(exc)) from None
                if custom_id in outcome:
                    output_duplicates += 1
                    if len(duplicate_ids) < SHOWN_IDS and custom_id not in duplicate_ids:
                        duplicate_ids.append(custom_id)
                elif custom_id not in wanted:
                    unknown += 1
                    if len(unknown_ids) < SHOWN_IDS:
                        unknown_ids.append(custom_id)
                outcome[custom_id] = ok
                line_cost = _cost(raw)
                if line_cost is not None:
                    cost += line_cost
                    costed += 1
    succeeded = sum(1 for cid, ok in outcome.items() if ok and cid in wanted)
    failed = sum(1 for cid, ok in outcome.items() if not ok and cid in wanted)
    return BatchStatus(
        input_requests=len(wanted),
        done=succeeded + failed,
        succeeded=succeeded,
        failed=failed,
        remaining=len(wanted) - succeeded - failed,
        cost=cost if costed else None,
        costed=costed,
        input_duplicates=input_duplicates,
        invalid_input_lines=invalid,
        output_duplicates=output_duplicates,
        duplicate_ids=duplicate_ids,
        unknown=unknown,
        unknown_ids=unknown_ids,
        torn_bytes=torn,
    )


def _input_ids(path: Path) -> tuple[set[str], int, int]:
    """(the custom_ids, lines repeating one, lines without one); blank lines are skipped."""
    ids: set[str] = set()
    duplicates = invalid = 0
    with path.open("rb") as file:
        for raw in file:
            if not raw.strip():
                continue
            try:
                custom_id = _line_decoder.decode(raw).get("custom_id")
            except (msgspec.DecodeError, UnicodeDecodeError):
                custom_id = None
            if not isinstance(custom_id, str) or not custom_id:
                invalid += 1
            elif custom_id in ids:
                duplicates += 1
            else:
                ids.add(custom_id)
    return ids, duplicates, invalid


def _cost(raw: bytes) -> float | None:
    """The line's ``litellm.response_cost``, else its answer's ``usage.cost``, else None."""
    record = _line_decoder.decode(raw)
    litellm = record.get("litellm")
    if isinstance(litellm, dict):
        value = _number(litellm.get("response_cost"))
        if value is not None:
            return value
    response = record.get("response")
    body = response.get("body") if isinstance(response, dict) else None
    usage = body.get("usage") if isinstance(body, dict) else None
    return _number(usage.get("cost")) if isinstance(usage, dict) else None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def status_to_json(status: BatchStatus) -> bytes:
    """The status as one JSON object."""
    return msgspec.json.encode(status)
