"""``python -m trio_litellm``: the ``trio-litellm`` command."""

import sys

from .cli import main

sys.exit(main())
