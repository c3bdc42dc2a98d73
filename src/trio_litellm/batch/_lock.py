"""The output's lock: one run at a time writes a batch output, or two would each send what the
other is sending. Synchronous, no trio."""

from __future__ import annotations

import os
import sys
from types import TracebackType

from .._errors import OutputLockedError

__all__ = ["OutputLock"]


class OutputLock:
    """An exclusive ``flock`` on ``<output>.lock``, beside the output, held for a whole run.

    The lock is on a file of its own because ``--retry-failed`` replaces the output file (a lock
    on the old one would not hold the new one). The holder writes its PID in it, for the message
    of the run it refuses. The kernel releases the lock when the process ends, however it ends
    (``kill -9`` too), so a stale lock file is harmless and is never removed: removing it would
    let a third run lock a new file while the second still holds the old one. On Windows
    (no ``flock``) nothing is locked.
    """

    def __init__(self, output_path: str | os.PathLike[str]) -> None:
        self.output_path = os.fspath(output_path)
        self.path = self.output_path + ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock without waiting; raise :class:`OutputLockedError` if a run holds it."""
        if self._fd is not None:
            raise ValueError(f"{self.path}: already held")
        if sys.platform == "win32":  # pragma: no cover
            return
        import fcntl

        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise OutputLockedError(self.output_path, self.path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (closing the descriptor releases it); releasing twice is fine."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    """The PID the lock's holder wrote (None while it has not yet written it)."""
    try:
        return int(os.pread(fd, 32, 0).strip() or b"-")
    except (OSError, ValueError):
        return None
