"""Writing the OpenAI Batch API output file, and finding where a crashed run left it.

The output is JSON Lines of ``BatchRequestOutput`` records, one per ``custom_id``, appended in
completion order. Resuming exactly once rests on three rules. A record is one line written by a
single ``os.write`` on an ``O_APPEND`` descriptor, so our own buffering never splits or
interleaves it. A file that does not end in ``\\n`` lost its last line to a crash, and
:func:`recover_output` cuts that fragment off before anything is appended. Every complete line
must be a record with an id seen once, or the file is refused: it was changed by someone else,
and guessing would send a request twice or never. Only one run may write an output at a time
(:class:`~trio_litellm.batch.OutputLock`, in ``_lock``): two would each send what the other is
sending. This module is synchronous and imports no trio.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
from types import TracebackType
from typing import Any

import msgspec

from .._errors import OutputCorruptError

__all__ = [
    "OutputState",
    "OutputWriter",
    "ProxyFigures",
    "drop_failed",
    "error_record",
    "record_outcome",
    "recover_output",
    "response_record",
]

_CHUNK = 64 * 1024


class OutputState(msgspec.Struct, kw_only=True):
    """What the output file holds: ``done`` maps each ``custom_id`` to whether it succeeded.

    ``torn_bytes`` is the size of the torn last line :func:`recover_output` removed (0 if none).
    """

    path: str
    done: dict[str, bool]
    lines: int
    torn_bytes: int
    succeeded: int
    failed: int

    def failed_ids(self) -> list[str]:
        """The ``custom_id`` of every failed record."""
        return [custom_id for custom_id, ok in self.done.items() if not ok]


# --- records --------------------------------------------------------------------------------------


class _Response(msgspec.Struct):
    status_code: int
    request_id: str | None
    body: msgspec.Raw


class _Error(msgspec.Struct):
    code: str
    message: str


class ProxyFigures(msgspec.Struct, kw_only=True):
    """The ``"litellm"`` key of an output line: what the proxy said of the request in its
    headers, which the OpenAI fields have no place for (OpenAI batch readers ignore the key).

    ``response_cost`` is ``x-litellm-response-cost`` (the only place the proxy sends a chat
    answer's cost); ``call_id``, ``model_id`` and ``model_group`` its ``x-litellm-*`` headers;
    ``attempts`` the tries the client made. None where the proxy did not say (no answer came).
    """

    response_cost: float | None = None
    call_id: str | None = None
    model_id: str | None = None
    model_group: str | None = None
    attempts: int = 0


class _Record(msgspec.Struct):
    id: str
    custom_id: str
    response: _Response | None
    error: _Error | None


class _RecordWithProxy(_Record):
    litellm: ProxyFigures


class _ResponseIn(msgspec.Struct):
    status_code: int


class _RecordIn(msgspec.Struct):
    """What recovery reads of a record; unknown fields are skipped (but must still be JSON)."""

    id: str
    custom_id: str
    response: _ResponseIn | None
    error: dict[str, Any] | None


_encoder = msgspec.json.Encoder()
_record_decoder = msgspec.json.Decoder(_RecordIn)
_raw_decoder = msgspec.json.Decoder(msgspec.Raw)


def response_record(
    custom_id: str,
    *,
    status_code: int,
    request_id: str | None,
    body: bytes,
    litellm: ProxyFigures | None = None,
) -> bytes:
    """The output line for an HTTP answer, success or error, with ``body`` embedded as it came.

    ``body`` is not decoded or re-encoded. Two cases are mended so the line stays one valid JSON
    record: a body spread over several lines is compacted, and a body that is not JSON at all (a
    load balancer's HTML page) is embedded as a JSON string. ``litellm`` adds the proxy's
    figures under a ``"litellm"`` key.
    """
    response = _Response(
        status_code=status_code, request_id=request_id, body=msgspec.Raw(_one_line_json(body))
    )
    return _encode_record(custom_id, response, None, litellm)


def error_record(
    custom_id: str, *, code: str, message: str, litellm: ProxyFigures | None = None
) -> bytes:
    """The output line for a request that got no HTTP answer: connection, timeout, invalid line."""
    return _encode_record(custom_id, None, _Error(code=code, message=message), litellm)


def _encode_record(
    custom_id: str,
    response: _Response | None,
    error: _Error | None,
    litellm: ProxyFigures | None,
) -> bytes:
    record_id = _record_id()
    record = (
        _Record(record_id, custom_id, response, error)
        if litellm is None
        else _RecordWithProxy(record_id, custom_id, response, error, litellm)
    )
    return _encoder.encode(record) + b"\n"


def record_outcome(line: bytes) -> tuple[str, bool]:
    """The ``custom_id`` of one output line and whether it succeeded; ValueError if not a record.

    A record succeeded when it has a response with a 2xx status and no error.
    """
    try:
        record = _record_decoder.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a batch output record: {exc}") from None
    if record.response is None and record.error is None:
        raise ValueError("not a batch output record: both response and error are null")
    ok = (
        record.response is not None
        and 200 <= record.response.status_code < 300
        and record.error is None
    )
    return record.custom_id, ok


def _record_id() -> str:
    return "batch_req_" + secrets.token_hex(12)


def _one_line_json(body: bytes) -> bytes:
    try:
        _raw_decoder.decode(body)
    except msgspec.DecodeError:
        return _encoder.encode(body.decode("utf-8", "replace"))
    if b"\n" in body or b"\r" in body:
        return msgspec.json.format(body, indent=-1)
    return body


# --- recovery -------------------------------------------------------------------------------------


def recover_output(path: str | os.PathLike[str]) -> OutputState:
    """Make the output file safe to append to, and say which ``custom_id`` it already holds.

    Creates the file (and its directory) if missing. A last line without its ``\\n`` was torn by a
    crash: it is cut off, and ``torn_bytes`` says how much went. Raises
    :class:`OutputCorruptError` for a complete line that is not a record, or an id seen twice.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
    state = OutputState(path=path, done={}, lines=0, torn_bytes=0, succeeded=0, failed=0)
    with open(fd, "r+b") as file:
        size = os.fstat(fd).st_size
        if size == 0:
            _fsync_directory(directory)
            return state
        keep = _end_of_last_line(file, size)
        if keep < size:
            file.truncate(keep)
            file.flush()
            os.fsync(fd)
            state.torn_bytes = size - keep
        file.seek(0)
        done = state.done
        for line_no, raw in enumerate(file, 1):
            try:
                custom_id, ok = record_outcome(raw)
            except ValueError as exc:
                raise OutputCorruptError(path, line_no, str(exc)) from None
            if custom_id in done:
                first = _first_line_of(path, custom_id)
                raise OutputCorruptError(
                    path,
                    line_no,
                    f"custom_id {custom_id!r} is also on line {first}; our writer never writes "
                    "an id twice, so the file was edited or two runs wrote to it at once",
                )
            done[custom_id] = ok
            if ok:
                state.succeeded += 1
            else:
                state.failed += 1
        state.lines = state.succeeded + state.failed
    return state


def drop_failed(path: str | os.PathLike[str], state: OutputState) -> list[str]:
    """Rewrite the output keeping only its successful records; return the failed ``custom_id``.

    For ``--retry-failed``. The new file is written beside the old one, synced and swapped in
    with ``os.replace``, so a crash leaves either the old file or the new one, never a mix. Call
    it after :func:`recover_output` and before opening an :class:`OutputWriter`.
    """
    path = os.fspath(path)
    if state.failed == 0:
        return []
    directory = os.path.dirname(os.path.abspath(path))
    failed: list[str] = []
    kept = 0
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with open(fd, "wb") as out, open(path, "rb") as source:
            os.chmod(temp, stat.S_IMODE(os.fstat(source.fileno()).st_mode))
            for line_no, raw in enumerate(source, 1):
                if not raw.endswith(b"\n"):
                    raise OutputCorruptError(
                        path, line_no, "torn last line; call recover_output() first"
                    )
                try:
                    custom_id, ok = record_outcome(raw)
                except ValueError as exc:
                    raise OutputCorruptError(path, line_no, str(exc)) from None
                if ok:
                    out.write(raw)
                    kept += 1
                else:
                    failed.append(custom_id)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_directory(directory)
    for custom_id in failed:
        state.done.pop(custom_id, None)
    state.lines = state.succeeded = kept
    state.failed = 0
    return failed


def _end_of_last_line(file: Any, size: int) -> int:
    """The offset just after the last ``\\n`` of the file (0 if it has none)."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        file.seek(start)
        chunk: bytes = file.read(end - start)
        index = chunk.rfind(b"\n")
        if index >= 0:
            return start + index + 1
        end = start
    return 0


def _first_line_of(path: str, custom_id: str) -> int:
    with open(path, "rb") as file:
        for line_no, raw in enumerate(file, 1):
            if record_outcome(raw)[0] == custom_id:
                return line_no
    return 0  # pragma: no cover - the caller just saw it


def _fsync_directory(directory: str) -> None:
    """Make a created or replaced directory entry durable (POSIX only; Windows cannot)."""
    if os.name == "nt":  # pragma: no cover
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- writing --------------------------------------------------------------------------------------


class OutputWriter:
    """Appends whole records to the output file, each with one ``os.write``.

    ``lines`` and ``bytes`` count what this writer wrote. A write that fails part-way leaves a
    torn line at the end of the file, so the writer refuses further writes; the next run's
    :func:`recover_output` cuts the fragment off.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.lines = 0
        self.bytes = 0
        self._broken = False
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        self._fd: int | None = os.open(self.path, flags, 0o644)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def write(self, record: bytes) -> None:
        """Append one record: a single line ending in ``\\n``."""
        _check_record(record)
        self._write_all(record)
        self.lines += 1

    def write_many(self, records: list[bytes]) -> None:
        """Append several records with one write."""
        for record in records:
            _check_record(record)
        self._write_all(b"".join(records))
        self.lines += len(records)

    def sync(self) -> None:
        """Flush what was written to the disk."""
        os.fsync(self._open_fd())

    def close(self) -> None:
        """Sync and close; closing twice is fine."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open_fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path}: the output writer is closed")
        return self._fd

    def _write_all(self, data: bytes) -> None:
        fd = self._open_fd()
        if self._broken:
            raise ValueError(
                f"{self.path}: an earlier write failed part-way; reopen after recovery"
            )
        view = memoryview(data)
        try:
            while view:
                written = os.write(fd, view)
                self.bytes += written
                view = view[written:]
        except BaseException:
            if len(view) < len(data):
                self._broken = True
            raise


def _check_record(record: bytes) -> None:
    if not record.endswith(b"\n") or record.count(b"\n") != 1:
        raise ValueError("a record must be exactly one line ending in '\\n'")
