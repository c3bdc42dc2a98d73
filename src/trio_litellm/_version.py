"""The package's version, read once from its installed metadata (pyproject.toml writes it).

``__init__`` exports it, the command line prints it for ``--version`` and the transport sends it
in the ``User-Agent``. A source tree on ``sys.path`` without an installed distribution still
imports, and says ``0+unknown``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["DISTRIBUTION", "__version__"]

DISTRIBUTION = "trio-litellm"
"""The distribution's name on the package index."""


def _installed_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _installed_version()
