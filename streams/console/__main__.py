"""``python -m streams.console serve|user ...``: the same parser as ``revledger console``."""

from __future__ import annotations

import sys

from streams.console.cli import main

if __name__ == "__main__":
    sys.exit(main())
