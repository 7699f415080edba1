"""A non-editable install into a fresh venv works outside the source tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import datetime as dt, streams.schemas, streams.serde
from streams.messages import MODELS
from ledger.events import ClockAdvanced
schemas = streams.schemas.load_schemas()
assert len(schemas) >= len(MODELS), (len(schemas), len(MODELS))
tick = ClockAdvanced(event_id="c1", occurred_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                     source_system="scheduler", source_id="c1", business_date=dt.date(2026, 1, 1))
codec = streams.serde.Codec()
assert codec.decode(codec.encode(tick)) == tick
print(len(schemas), "schemas loaded from", streams.schemas.__file__)
from connectors.postgres.migrate import shipped_migrations
print(len(shipped_migrations()), "migrations shipped")
"""


@pytest.mark.slow
def test_wheel_install_loads_every_schema_when_run_outside_the_tree(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, str(ROOT)], check=True, cwd=tmp_path, timeout=900)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    help_text = subprocess.run(
        [str(venv / "bin" / "revledger"), "--help"],
        cwd=outside,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    commands = (
        "dev",
        "topics",
        "worker",
        "batcher",
        "erp-import",
        "erp-resend",
        "db",
        "dlq",
        "demo",
        "schemas",
        "simulate",
    )
    for command in commands:
        assert command in help_text
    loaded = subprocess.run(
        [str(venv / "bin" / "python"), "-c", CHECK],
        cwd=outside,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "schemas loaded from" in loaded
    in_tree = len(list((ROOT / "connectors/postgres/migrations").glob("*.sql")))
    assert f"{in_tree} migrations shipped" in loaded
    assert str(venv) in loaded, "schemas must come from the installed package"
