"""Lag arithmetic of the lag exporter: offsets in, rows out (no broker).

Offsets are written as a small table per test: committed offset, log start, last stable
offset (LSO), and the record the probe found at the group's position.
"""

from __future__ import annotations

import argparse

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streams.lag_exporter import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_PORT,
    GroupLag,
    LagMetrics,
    LagRow,
    NextRecord,
    PartitionOffsets,
    add_lag_commands,
    group_lag,
    lag_families,
    lag_of,
    next_unprocessed,
    topics_to_report,
)

NOW = 1_700_000_000.0
TOPIC = "billing.events.v1"


def offsets(committed: int | None, last_stable: int, log_start: int = 0, partition: int = 0):
    return PartitionOffsets(TOPIC, partition, committed, log_start, last_stable)


def test_lag_is_zero_when_committed_offset_is_the_last_stable_offset():
    caught_up = offsets(committed=1000, last_stable=1000)
    assert next_unprocessed(caught_up) is None
    assert lag_of(caught_up, None, NOW) == LagRow(TOPIC, 0, 0, 0.0)


def test_lag_is_zero_when_only_a_commit_marker_follows_the_committed_offset():
    # Faust committed "last record + 1" = the offset of the transaction's commit marker;
    # the LSO is past the marker. The naive difference stays 1 forever.
    at_marker = offsets(committed=411, last_stable=412)
    assert at_marker.last_stable - at_marker.committed == 1
    assert next_unprocessed(at_marker) == 411
    # The read_committed probe skips the marker and reaches the end: no record.
    assert lag_of(at_marker, NextRecord(None), NOW) == LagRow(TOPIC, 0, 0, 0.0)


def test_lag_counts_from_the_next_record_when_markers_precede_it():
    # committed on a marker (offset 10), 1,000 records at 11..1010, LSO 1011.
    row = lag_of(offsets(10, 1011), NextRecord(11, int((NOW - 90) * 1000)), NOW)
    assert row.messages == 1000
    assert row.seconds == pytest.approx(90.0)


def test_lag_is_the_offset_distance_when_the_topic_is_not_transactional():
    row = lag_of(offsets(5, 1005), NextRecord(5, int((NOW - 3.5) * 1000)), NOW)
    assert (row.messages, row.seconds) == (1000, pytest.approx(3.5))


def test_lag_counts_from_the_log_start_when_the_group_never_committed():
    never = offsets(committed=None, last_stable=120, log_start=20)
    assert next_unprocessed(never) == 20
    assert lag_of(never, NextRecord(20, int(NOW * 1000)), NOW).messages == 100
    assert next_unprocessed(offsets(committed=None, last_stable=20, log_start=20)) is None


def test_lag_counts_from_the_log_start_when_retention_deleted_the_committed_offset():
    assert next_unprocessed(offsets(committed=3, last_stable=50, log_start=10)) == 10


def test_lag_is_at_least_one_when_the_record_found_is_past_the_lso_read_before():
    # The LSO was read, then more was committed; the probe found a record beyond it.
    assert lag_of(offsets(100, 100 + 1), NextRecord(105, int(NOW * 1000)), NOW).messages == 1


def test_lag_seconds_is_zero_when_the_record_is_stamped_in_the_future():
    assert lag_of(offsets(0, 10), NextRecord(0, int((NOW + 60) * 1000)), NOW).seconds == 0.0


def test_lag_seconds_is_unknown_when_the_record_has_no_timestamp():
    row = lag_of(offsets(0, 10), NextRecord(0, None), NOW)
    assert (row.messages, row.seconds) == (10, None)


def test_group_rows_are_sorted_and_kept_when_the_group_has_no_member():
    partitions = [
        PartitionOffsets("payments.events.v1", 0, 7, 0, 7),
        PartitionOffsets(TOPIC, 1, 0, 0, 600),
        PartitionOffsets(TOPIC, 0, 0, 0, 400),
    ]
    found = {
        (TOPIC, 0): NextRecord(0, int((NOW - 10) * 1000)),
        (TOPIC, 1): NextRecord(0, int((NOW - 20) * 1000)),
    }
    lag = group_lag("revledger", 0, partitions, found, NOW)
    assert lag.members == 0
    assert [(r.topic, r.partition, r.messages, r.seconds) for r in lag.rows] == [
        (TOPIC, 0, 400, 10.0),
        (TOPIC, 1, 600, 20.0),
        ("payments.events.v1", 0, 0, 0.0),
    ]


def test_topics_are_the_committed_and_the_named_ones_when_listed():
    committed = {(TOPIC, 0): 4, (TOPIC, 1): 2, ("control.v1", 0): 1}
    assert topics_to_report(committed, ["usage.events.v1", TOPIC]) == [
        TOPIC,
        "control.v1",
        "usage.events.v1",
    ]
    assert topics_to_report({}, []) == []


class _Snapshot:
    def __init__(self, snapshot: list[GroupLag]) -> None:
        self.snapshot = snapshot

    def collect(self):
        return lag_families(self.snapshot)


def _exposition(snapshot: list[GroupLag]) -> list[str]:
    registry = CollectorRegistry()
    registry.register(_Snapshot(snapshot))
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_exposition_has_lag_and_members_when_rendered():
    lag = GroupLag(
        "revledger",
        0,
        (LagRow(TOPIC, 0, 1000, 12.5), LagRow("ledger.inputs.v1", 1, 0, 0.0)),
    )
    assert _exposition([lag]) == [
        f'revledger_consumer_group_lag_messages{{group="revledger",partition="0",topic="{TOPIC}"}}'
        " 1000.0",
        'revledger_consumer_group_lag_messages{group="revledger",partition="1",'
        'topic="ledger.inputs.v1"} 0.0',
        f'revledger_consumer_group_lag_seconds{{group="revledger",partition="0",topic="{TOPIC}"}}'
        " 12.5",
        'revledger_consumer_group_lag_seconds{group="revledger",partition="1",'
        'topic="ledger.inputs.v1"} 0.0',
        'revledger_consumer_group_members{group="revledger"} 0.0',
    ]


def test_exposition_leaves_out_seconds_when_the_record_has_no_timestamp():
    lines = _exposition([GroupLag("g", 1, (LagRow(TOPIC, 0, 3, None),))])
    assert not any(line.startswith("revledger_consumer_group_lag_seconds") for line in lines)
    assert any(line.startswith("revledger_consumer_group_lag_messages") for line in lines)


def test_exporter_registry_is_its_own_and_names_its_health_when_created():
    import prometheus_client

    metrics = LagMetrics()
    metrics.snapshot["g"] = GroupLag("g", 2, ())
    text = generate_latest(metrics.registry).decode()
    assert "revledger_lag_exporter_scrape_errors_total 0.0" in text
    assert "revledger_lag_exporter_last_success_timestamp_seconds 0.0" in text
    assert 'revledger_consumer_group_members{group="g"} 2.0' in text
    assert "revledger_lag_exporter" not in generate_latest(prometheus_client.REGISTRY).decode()


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_lag_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["lag-exporter", *argv])


def test_command_takes_several_groups_and_defaults_when_parsed():
    args = _parse("--group", "revledger", "--group", "revledger-batcher")
    assert args.group == ["revledger", "revledger-batcher"]
    assert (args.port, args.interval, args.topic, args.once) == (
        DEFAULT_PORT,
        DEFAULT_INTERVAL_SECONDS,
        [],
        False,
    )
    assert DEFAULT_PORT == 9308


def test_command_refuses_to_run_when_no_group_is_named(capsys):
    with pytest.raises(SystemExit):
        _parse("--port", "9308")
    assert "--group" in capsys.readouterr().err
