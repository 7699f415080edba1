"""Stripe's example objects (``fixtures3.json``) for the tests that build Stripe events.

One loader for the unit tests of the translator, the end-to-end stories and the fuzz
corpus. The file is looked up in ``$REVLEDGER_STRIPE_FIXTURES``, the repository's copy,
then the shared folder beside the checkout.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = [
    Path(os.environ.get("REVLEDGER_STRIPE_FIXTURES", "/nonexistent")),
    ROOT / "tests" / "fixtures" / "stripe" / "fixtures3.json",
    ROOT.parent / "shared" / "fixtures" / "stripe" / "fixtures3.json",
]


def _resources() -> dict[str, Any]:
    for path in CANDIDATES:
        if path.is_file():
            return json.loads(path.read_text())["resources"]
    raise RuntimeError(f"Stripe fixtures3.json not found in {[str(p) for p in CANDIDATES]}")


RESOURCES = _resources()


def ts(day: dt.date, hour: int = 0) -> int:
    """Unix seconds of ``day`` at ``hour`` UTC."""
    return int(dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC).timestamp())


def fixture(name: str, **changes: Any) -> dict[str, Any]:
    """A deep copy of Stripe's example ``name`` object with ``changes`` applied."""
    obj = copy.deepcopy(RESOURCES[name])
    obj.update(changes)
    return obj
