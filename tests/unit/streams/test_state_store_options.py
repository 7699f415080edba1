"""Bounded RocksDB buffers for the tables written on every event (``streams.app``).

The ledger worker's state tables and the batcher's window tables pass these options."""

from __future__ import annotations

from pathlib import Path

from streams.app import STATE_STORE_OPTIONS, state_store_options
from streams.settings import load_settings


def _settings(tmp_path: Path, store: str):
    return load_settings(
        {}, store=store, data_dir=tmp_path, web_port=0, app_id="options-test", partitions=2
    )


def test_each_table_gets_its_own_copy_and_the_memory_store_none(tmp_path: Path) -> None:
    first = state_store_options(_settings(tmp_path, "rocksdb://"))
    assert first == STATE_STORE_OPTIONS and first is not STATE_STORE_OPTIONS
    first.pop("write_buffer_size")  # what Faust does with the dict it is given
    assert state_store_options(_settings(tmp_path, "rocksdb://")) == STATE_STORE_OPTIONS
    assert state_store_options(_settings(tmp_path, "memory://")) is None
