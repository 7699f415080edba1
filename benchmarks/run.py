"""``make bench``: ``python -m benchmarks.run [--quick] [--only NAME]`` (:mod:`benchmarks.suite`).

Also runs as ``python benchmarks/run.py``: the repository root is then put on the path.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.suite import main

    sys.exit(main())
