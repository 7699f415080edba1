"""``revledger project`` started while PostgreSQL is down: backoff, then EX_TEMPFAIL."""

from __future__ import annotations

import socket

import pytest

from connectors.postgres.migrate import DatabaseUnreachable
from streams import projection


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nobody listens


def test_an_unreachable_database_at_start_is_retried_with_backoff_then_reported() -> None:
    url = f"postgresql://revledger@127.0.0.1:{_closed_port()}/revledger?connect_timeout=2"
    slept: list[float] = []
    with pytest.raises(DatabaseUnreachable, match="4 attempts: cannot connect"):
        projection._migrate_when_reachable(url, delays=(0.5, 1.0, 2.0), sleep=slept.append)
    assert slept == [0.5, 1.0, 2.0]


def test_the_command_exits_75_not_1_when_the_database_stays_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(projection, "RETRY_DELAYS_SECONDS", ())
    monkeypatch.setattr(
        projection,
        "_migrate_when_reachable",
        lambda url: (_ for _ in ()).throw(DatabaseUnreachable("1 attempts: cannot connect")),
    )
    parser = projection.argparse.ArgumentParser()
    projection.add_project_commands(parser.add_subparsers(dest="command"))
    url = f"postgresql://revledger@127.0.0.1:{_closed_port()}/revledger"
    args = parser.parse_args(["project", "--database-url", url])
    assert projection.main_project(args) == projection.EXIT_UNAVAILABLE == 75
