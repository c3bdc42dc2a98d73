"""Reading an OpenAI Batch API input file: validate every line, plan a run, feed the runner.

An input file is JSON Lines, one ``{"custom_id", "method", "url", "body"}`` request a line.
:func:`scan_input` is the first pass (every line checked, counts for a dry-run plan);
:func:`iter_input` is the second, which hands the runner the lines to submit. Both stream the
file in binary, so memory grows only with the ``custom_id → first line`` table that catching
duplicates needs. Sharding hashes the ``custom_id`` (:func:`shard_of`), so a line lands in the
same shard on every machine and every run. This module is synchronous and imports no trio.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Container, Iterator
from typing import Any, BinaryIO

import msgspec

from .._calls import completion_budget, prepare
from .._errors import BatchInputError, ConfigError, InvalidRequestError

__all__ = [
    "MAX_KEPT_PROBLEMS",
    "SUPPORTED_URLS",
    "BatchLine",
    "InputProblem",
    "InputScan",
    "iter_input",
    "parse_line",
    "scan_input",
    "shard_of",
]

SUPPORTED_URLS = {"/v1/chat/completions": "chat", "/v1/embeddings": "embedding"}
"""The Batch API endpoints we can run, and the kind of request each takes."""

MAX_KEPT_PROBLEMS = 1000
"""How many problems :func:`scan_input` keeps in ``InputScan.problems``; it counts them all.

A file that is wrong on every line would otherwise hold a million problems in memory.
"""

_URL_HINT = " or ".join(SUPPORTED_URLS)
_BOM = b"\xef\xbb\xbf"
_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}
_decoder = msgspec.json.Decoder()


class BatchLine(msgspec.Struct, frozen=True, kw_only=True):
    """One valid request of the input file.

    ``line_no`` counts from 1, blank lines included, so it matches an editor's. ``body`` carries
    the model override when one was given; ``tokens`` is :func:`prepare`'s cost estimate, of which
    ``completion_tokens`` is the completion budget (``max_tokens``, or the stated default, for each
    choice; 0 for embeddings).
    """

    line_no: int
    custom_id: str
    url: str
    body: dict[str, Any]
    tokens: int
    completion_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """The estimated prompt tokens: the estimate without the completion budget."""
        return self.tokens - self.completion_tokens

    @property
    def kind(self) -> str:
        """``"chat"`` or ``"embedding"``, from the url."""
        return SUPPORTED_URLS[self.url]

    @property
    def model(self) -> str:
        """The model the request asks for (after any override)."""
        model: str = self.body["model"]
        return model


class InputProblem(msgspec.Struct, frozen=True, kw_only=True):
    """Why one line of the input file cannot be sent.

    ``line_no`` is 0 for a problem with the file as a whole. ``custom_id`` is the line's id when
    it has a usable one. ``duplicate_of`` is the line that first used that id: such a problem
    must not be written to the output under that id, which already belongs to the first line.
    """

    line_no: int
    custom_id: str | None
    message: str
    duplicate_of: int | None = None

    @property
    def recordable(self) -> bool:
        """True when the problem can be written to the output as an error under its id."""
        return self.custom_id is not None and self.duplicate_of is None


class InputScan(msgspec.Struct, kw_only=True):
    """What :func:`scan_input` found: enough for a dry-run plan and a go / no-go.

    ``lines`` counts non-blank lines and ``blank`` the blank ones. ``problems`` holds every
    problem of the whole file (up to :data:`MAX_KEPT_PROBLEMS`; ``problem_count`` counts them
    all), ``in_shard_problems`` those that belong to this shard. ``valid`` counts the valid
    requests of the whole file; ``in_shard``, ``by_url``, ``by_model``, ``estimated_tokens`` and
    ``largest_tokens`` describe the valid requests of this shard, the ones a run would send.
    """

    path: str
    size: int
    shard: tuple[int, int] | None
    model: str | None
    lines: int
    blank: int
    problems: list[InputProblem]
    problem_count: int
    in_shard_problems: int
    valid: int
    in_shard: int
    by_url: dict[str, int]
    by_model: dict[str, int]
    estimated_tokens: int
    largest_tokens: int
    already_done: int = 0
    """Valid requests of this shard whose custom_id is in ``done`` (answered in the output)."""

    @property
    def ok(self) -> bool:
        """True when no line of the file has a problem."""
        return self.problem_count == 0

    def raise_for_problems(self) -> None:
        """Raise :class:`BatchInputError` if any line of the file has a problem."""
        if self.problem_count:
            raise BatchInputError(self.path, self.problems, total=self.problem_count)


def shard_of(custom_id: str, count: int) -> int:
    """The shard (0 ≤ shard < ``count``) of a ``custom_id``: the same on every process and machine.

    blake2b of the UTF-8 id, 8 bytes read big-endian, modulo ``count``; never Python's ``hash()``,
    which is salted per process.
    """
    digest = hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def parse_line(raw: bytes, line_no: int, *, model: str | None = None) -> BatchLine | InputProblem:
    """Decode and check one non-blank input line; a problem says what is wrong with it.

    ``model`` replaces the body's model (and makes a missing one fine). The last check is
    :func:`trio_litellm._calls.prepare`, the same one a job goes through, which also estimates the
    tokens the request will cost.
    """
    try:
        line = _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return InputProblem(line_no=line_no, custom_id=None, message=f"not valid JSON: {exc}")
    if not isinstance(line, dict):
        return _problem(line_no, None, f"a line must be a JSON object, not {_json_type(line)}")
    custom_id = line.get("custom_id")
    if custom_id is None:
        return _problem(line_no, None, "custom_id missing")
    if not isinstance(custom_id, str):
        return _problem(line_no, None, f"custom_id must be a string, not {_json_type(custom_id)}")
    if not custom_id:
        return _problem(line_no, None, "custom_id is empty")
    message = _check_request(line, model)
    if message is not None:
        return _problem(line_no, custom_id, message)
    url: str = line["url"]
    body: dict[str, Any] = line["body"]
    if model is not None:
        body = {**body, "model": model}
    try:
        call = prepare(body)
    except InvalidRequestError as exc:
        return _problem(line_no, custom_id, f"invalid request: {exc.message}")
    except (TypeError, ValueError) as exc:
        # prepare() trusts the shapes it reads (a text part's "text", "metadata"); one odd line
        # must not stop a scan of a million.
        return _problem(line_no, custom_id, f"invalid request: {exc}")
    if call.kind != SUPPORTED_URLS[url]:
        return _problem(line_no, custom_id, f"body is a {call.kind} request but url is {url!r}")
    completion = (
        completion_budget(
            body.get("max_tokens") or body.get("max_completion_tokens"), body.get("n")
        )
        if call.kind == "chat"
        else 0
    )
    return BatchLine(
        line_no=line_no,
        custom_id=custom_id,
        url=url,
        body=body,
        tokens=call.tokens,
        completion_tokens=completion,
    )


def scan_input(
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    shard: tuple[int, int] | None = None,
    done: Container[str] = (),
) -> InputScan:
    """Check every line of an input file in one streaming pass, and count what a run would send.

    ``shard`` is ``(index, count)``; duplicates are found across the whole file whatever the
    shard. ``done`` holds the custom_ids already answered: those of this shard are counted in
    ``already_done`` (an output's ids that the input does not hold are not). Raises :class:`BatchInputError` only when the file cannot be read; problems in its
    lines are returned (see :meth:`InputScan.raise_for_problems`).
    """
    _check_shard(shard)
    scan = InputScan(
        path=os.fspath(path),
        size=0,
        shard=shard,
        model=model,
        lines=0,
        blank=0,
        problems=[],
        problem_count=0,
        in_shard_problems=0,
        valid=0,
        in_shard=0,
        by_url={},
        by_model={},
        estimated_tokens=0,
        largest_tokens=0,
    )
    for item in _read(_open(path), model, scan):
        if isinstance(item, InputProblem):
            scan.problem_count += 1
            if len(scan.problems) < MAX_KEPT_PROBLEMS:
                scan.problems.append(item)
            if _problem_in_shard(item, shard):
                scan.in_shard_problems += 1
            continue
        scan.valid += 1
        if shard is not None and shard_of(item.custom_id, shard[1]) != shard[0]:
            continue
        scan.in_shard += 1
        if item.custom_id in done:
            scan.already_done += 1
        scan.by_url[item.url] = scan.by_url.get(item.url, 0) + 1
        scan.by_model[item.model] = scan.by_model.get(item.model, 0) + 1
        scan.estimated_tokens += item.tokens
        scan.largest_tokens = max(scan.largest_tokens, item.tokens)
    if scan.lines == 0:
        scan.problem_count += 1
        scan.in_shard_problems += 1
        scan.problems.append(InputProblem(line_no=0, custom_id=None, message="no requests in file"))
    return scan


def iter_input(
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    shard: tuple[int, int] | None = None,
    skip: Container[str] = (),
) -> Iterator[BatchLine | InputProblem]:
    """Stream the lines a run submits, in file order: valid lines of the shard and problems.

    A valid line whose ``custom_id`` is in ``skip`` (already in the output) is left out, and so is
    a problem whose id is in ``skip`` (its error was already written), except a duplicate, which
    is always reported. A problem belongs to the shard of its ``custom_id``; one with no usable
    id (bad JSON) to shard 0, so that over all shards each problem comes out once.
    """
    _check_shard(shard)
    return _select(_read(_open(path), model, None), shard, skip)


def _select(
    items: Iterator[BatchLine | InputProblem],
    shard: tuple[int, int] | None,
    skip: Container[str],
) -> Iterator[BatchLine | InputProblem]:
    for item in items:
        if isinstance(item, InputProblem):
            if not _problem_in_shard(item, shard):
                continue
            if item.duplicate_of is None and item.custom_id is not None and item.custom_id in skip:
                continue
            yield item
        elif item.custom_id not in skip and (
            shard is None or shard_of(item.custom_id, shard[1]) == shard[0]
        ):
            yield item


def check_input_file(path: str | os.PathLike[str]) -> None:
    """Raise :class:`BatchInputError` now if the input cannot be opened (missing, a directory,
    unreadable): a check before anything else, such as asking the proxy."""
    _open(path).close()


def _open(path: str | os.PathLike[str]) -> BinaryIO:
    """Open the input now, so a missing file is an error of the call, not of its first item."""
    try:
        return open(path, "rb")  # _read closes it
    except FileNotFoundError:
        raise _file_error(path, "file not found") from None
    except IsADirectoryError:
        raise _file_error(path, "is a directory, not a batch input file") from None
    except OSError as exc:
        raise _file_error(path, f"cannot be opened: {exc.strerror or exc}") from exc


def _read(
    file: BinaryIO, model: str | None, scan: InputScan | None
) -> Iterator[BatchLine | InputProblem]:
    """Every non-blank line parsed, duplicates turned into problems; counts lines into ``scan``."""
    first_line: dict[str, int] = {}
    with file:
        if scan is not None:
            scan.size = os.fstat(file.fileno()).st_size
        line_no = 0
        for raw in file:
            line_no += 1
            if line_no == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            if raw.isspace() or not raw:
                if scan is not None:
                    scan.blank += 1
                continue
            if scan is not None:
                scan.lines += 1
            item = parse_line(raw, line_no, model=model)
            custom_id = item.custom_id
            if custom_id is not None:
                first = first_line.setdefault(custom_id, line_no)
                if first != line_no:
                    item = InputProblem(
                        line_no=line_no,
                        custom_id=custom_id,
                        message=f"custom_id {custom_id!r} is also on line {first}",
                        duplicate_of=first,
                    )
            yield item


def _check_request(line: dict[str, Any], model: str | None) -> str | None:
    """What is wrong with a line's method, url and body, or None."""
    method = line.get("method")
    if method != "POST":
        return (
            "method missing (must be POST)"
            if method is None
            else f"method must be POST, not {method!r}"
        )
    url = line.get("url")
    if url is None:
        return f"url missing (use {_URL_HINT})"
    if url not in SUPPORTED_URLS:
        return f"url {url!r} is not supported (use {_URL_HINT})"
    body = line.get("body")
    if body is None:
        return "body missing"
    if not isinstance(body, dict):
        return f"body must be a JSON object, not {_json_type(body)}"
    if model is None:
        body_model = body.get("model")
        if body_model is None:
            return "body.model missing"
        if not isinstance(body_model, str) or not body_model:
            return "body.model must be a non-empty string"
    if body.get("stream"):
        return "streaming is not supported in batch files (remove body.stream)"
    if SUPPORTED_URLS[url] == "chat":
        return _check_messages(body)
    if "input" not in body:
        return "body has no 'input'"
    if body["input"] in ("", []):
        return "body.input is empty"
    return None


def _check_messages(body: dict[str, Any]) -> str | None:
    if "messages" not in body:
        return "body has no 'messages'"
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "body.messages must be a non-empty list"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return f"body.messages[{index}] must be an object with a string 'role'"
    return None


def _problem(line_no: int, custom_id: str | None, message: str) -> InputProblem:
    return InputProblem(line_no=line_no, custom_id=custom_id, message=message)


def _problem_in_shard(problem: InputProblem, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    if problem.custom_id is None:
        return shard[0] == 0
    return shard_of(problem.custom_id, shard[1]) == shard[0]


def _check_shard(shard: tuple[int, int] | None) -> None:
    if shard is None:
        return
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ConfigError("shard", f"must be (index, count) with 0 <= index < count, got {shard}")


def _file_error(path: str | os.PathLike[str], message: str) -> BatchInputError:
    return BatchInputError(path, [InputProblem(line_no=0, custom_id=None, message=message)])


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)
