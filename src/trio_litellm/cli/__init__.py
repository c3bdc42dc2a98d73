"""The ``trio-litellm`` command: batch jobs, their status and usage, a streamed chat, a realtime
session, models, health, recorder dumps, the fake provider.

Exit codes (every command):

- 0: done; for ``batch``, every request succeeded (or the dry-run plan is valid)
- 1: a request failed: ``batch`` finished but its output holds failed lines, this run's or
  earlier ones' (``--retry-failed`` runs them again); the proxy answered the request of ``chat``,
  ``models`` or ``model-info`` with an error (an unknown model, an upstream 500), or it timed
  out; a ``realtime`` session failed (an error event, an abnormal close, an upstream that is
  down) or ended before its answer did; ``health --deep`` found an unhealthy deployment
- 2: bad usage or an invalid input file (every bad line is listed with its number)
- 3: the proxy could not be used at all: it cannot be reached, it refused the key, or the
  configuration is invalid
- 130: interrupted (Ctrl-C); a ``batch`` run resumes where it stopped when run again

What only a terminal needs lives here, so that ``trio_litellm`` and ``trio_litellm.batch`` never
import rich or cyclopts:

- ``_app``        the cyclopts application, its commands, ``main`` and the exit-code mapping
- ``_common``     exit codes, the consoles, the proxy options shared by the commands
- ``_batch``      ``batch``: options, Ctrl-C handling, the dry run's prices, the recorder dump
- ``_reports``    ``usage``, ``status``, ``recorded``: commands that only read files
- ``_proxy``      ``chat``, ``models``, ``model-info``, ``health``
- ``_realtime``   ``realtime``: one prompt over a realtime session
- ``_progress``   :class:`BatchProgress`, a run's live bar or plain progress lines
- ``_tables``     the summary, usage, status and plan tables
- ``_dump_view``  a recorder dump as a table
- ``demo``        ``python -m trio_litellm.cli.demo``, the demo batch through a local stack
"""

from ._app import app, main
from ._progress import BatchProgress
from ._tables import render_output_usage, render_status, render_summary

__all__ = ["BatchProgress", "app", "main", "render_output_usage", "render_status", "render_summary"]
