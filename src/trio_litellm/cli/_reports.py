"""The commands that read files and send nothing: ``usage`` (an output file's totals),
``status`` (where a batch stands) and ``recorded`` (a recorder dump)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

from cyclopts import Parameter

from .._errors import DumpFileError, OutputCorruptError
from .._recorder import RecordedExchange, read_dump
from ..batch import read_output_usage
from ..batch._report import usage_to_json
from ..batch._status import read_status, status_to_json
from ._common import EXIT_OK, EXIT_USAGE, Exit, consoles
from ._dump_view import render_dump
from ._tables import render_output_usage, render_status

__all__ = ["recorded", "status", "usage"]


def usage(
    output: Annotated[Path, Parameter(help="A batch output file (`batch -o FILE`).")],
    /,
    *,
    input: Annotated[
        Path | None,
        Parameter(
            help="The run's input file: count every line, failures too, under the model "
            "its request asked for (default: the model the answer names)."
        ),
    ] = None,
    json: Annotated[bool, Parameter(help="Print the totals as JSON instead of tables.")] = False,
    recorded: Annotated[
        Path | None,
        Parameter(help="Also show this recorder dump (written by `batch --record-to`)."),
    ] = None,
    failed_only: Annotated[
        bool, Parameter(help="With --recorded: show only the failed requests.")
    ] = False,
) -> int:
    """Show what a batch output file holds: requests, outcomes, tokens and cost, per model.

    Read from the file alone (latencies are not in it). A torn or invalid line is an error
    naming the line (exit code 2).
    """
    try:
        totals = read_output_usage(output, input_path=input)
    except OutputCorruptError as exc:
        raise Exit(EXIT_USAGE, str(exc)) from None
    except OSError as exc:
        raise Exit(EXIT_USAGE, f"cannot read {exc.filename}: {exc.strerror}") from None
    entries = _read_recorded(recorded, failed_only=failed_only) if recorded is not None else None
    if json:
        sys.stdout.buffer.write(usage_to_json(totals) + b"\n")
        sys.stdout.flush()
    else:
        render_output_usage(totals, consoles.out)
    if entries is not None:
        consoles.out.print()
        render_dump(entries, consoles.out)
    return EXIT_OK


def status(
    input: Annotated[Path, Parameter(help="The batch's input file (OpenAI Batch API format).")],
    output: Annotated[Path, Parameter(help="Its output file (`batch -o FILE`), if any yet.")],
    /,
    *,
    json: Annotated[bool, Parameter(help="Print the figures as JSON instead of a table.")] = False,
) -> int:
    """Where a batch stands: done, failed, remaining, duplicates, ids the input does not hold,
    cost so far. Reads the two files only: sends nothing, changes nothing, safe beside a run.

    An output line that is not a record is an error naming the line (exit code 2).
    """
    try:
        figures = read_status(input, output)
    except OutputCorruptError as exc:
        raise Exit(EXIT_USAGE, str(exc)) from None
    except OSError as exc:
        raise Exit(EXIT_USAGE, f"cannot read {exc.filename}: {exc.strerror}") from None
    if json:
        sys.stdout.buffer.write(status_to_json(figures) + b"\n")
        sys.stdout.flush()
    else:
        render_status(figures, consoles.out, title=f"{input} -> {output}")
    return EXIT_OK


def recorded(
    dump: Annotated[Path, Parameter(help="A recorder dump (JSON Lines).")],
    /,
    *,
    failed_only: Annotated[bool, Parameter(help="Show only the failed requests.")] = False,
    last: Annotated[int | None, Parameter(help="Show only the last N requests.")] = None,
    full: Annotated[
        bool, Parameter(help="Show every field of each request: headers, whole kept bodies.")
    ] = False,
) -> int:
    """Show a recorder dump (`batch --record-to`, or DebugRecorder.dump): one line per request
    with its time, model, outcome, status, latency, tokens, request and answer."""
    entries = _read_recorded(dump, failed_only=failed_only)
    if last is not None:
        if last < 1:
            raise Exit(EXIT_USAGE, f"--last must be at least 1, got {last}")
        entries = entries[-last:]
    render_dump(entries, consoles.out, full=full)
    return EXIT_OK


def _read_recorded(path: Path, *, failed_only: bool) -> list[RecordedExchange]:
    try:
        entries = read_dump(path)
    except DumpFileError as exc:
        raise Exit(EXIT_USAGE, str(exc)) from None
    except OSError as exc:
        raise Exit(EXIT_USAGE, f"cannot read {exc.filename}: {exc.strerror}") from None
    return [entry for entry in entries if not entry.ok] if failed_only else entries
