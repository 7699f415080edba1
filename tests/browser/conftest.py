"""Fixtures of the console's browser tests (helpers: ``browser_harness.py``).

``browser``: one headless Chromium for the session; ``fresh_browser``: the same, without
cookies. ``devstack`` (Kafka + PostgreSQL) comes from ``tests/conftest.py``; the helpers of
the integration tests (``worker_process``, ``pg_data``) and of this directory are imported
by module name, as the chaos suite does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser_harness import ChromiumUnavailable, chromium, skip_without_chromium


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session; each test starts with no cookies."""
    try:
        session = chromium()
        driver = session.__enter__()
    except ChromiumUnavailable as exc:
        skip_without_chromium(str(exc))
        raise  # unreachable: skip_without_chromium always raises
    try:
        yield driver
    finally:
        session.__exit__(None, None, None)


@pytest.fixture
def fresh_browser(browser: Any) -> Any:
    """``browser`` with its cookies cleared: nobody logged in."""
    browser.delete_all_cookies()
    return browser
