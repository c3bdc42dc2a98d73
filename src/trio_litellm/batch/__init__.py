"""Batch completion jobs: an OpenAI Batch API input file through the proxy, exactly once each.

``await run_batch(client, "requests.jsonl", "results.jsonl")`` returns a :class:`BatchSummary`;
the ``trio-litellm batch`` command wraps it with a progress bar and a summary table, which live
in :mod:`trio_litellm.cli` with the rest of what only a terminal needs: nothing here imports rich.
"""

from .._errors import BatchInputError, OutputCorruptError, OutputLockedError
from ._input import BatchLine, InputProblem, InputScan, scan_input, shard_of
from ._lock import OutputLock
from ._output import OutputState, recover_output
from ._plan import BatchPlan, CostEstimate, estimate_cost, plan_batch, prices_from_infos
from ._report import ModelTotals, OutputUsage, read_output_usage
from ._runner import BatchDisplay, run_batch
from ._summary import BatchSummary, write_summary_json

__all__ = [
    "BatchDisplay",
    "BatchInputError",
    "BatchLine",
    "BatchPlan",
    "BatchSummary",
    "CostEstimate",
    "InputProblem",
    "InputScan",
    "ModelTotals",
    "OutputCorruptError",
    "OutputLock",
    "OutputLockedError",
    "OutputState",
    "OutputUsage",
    "estimate_cost",
    "plan_batch",
    "prices_from_infos",
    "read_output_usage",
    "recover_output",
    "run_batch",
    "scan_input",
    "shard_of",
    "write_summary_json",
]
