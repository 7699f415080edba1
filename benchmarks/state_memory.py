"""What the ledger worker's customer state costs in memory, and whether anything leaks (issue 7).

``python -m benchmarks.state_memory [--customers 2000] [--months 12] [--seed 7] [--rocksdb]``

1. **State per customer.** A simulated company (:func:`simulate_company`, monthly ticks) goes
   through the worker's books step without Kafka (:func:`benchmarks.books_step.run_steps`:
   :class:`streams.ledger_worker.BooksStore` over in-memory tables, the decoded-books cache
   as the worker has it). Printed: the stored JSON per customer (ledger + revenue; what the
   tables and their changelogs hold) and the Python heap one decoded customer takes
   (tracemalloc, all customers decoded at once).
2. **Leak or state?** tracemalloc snapshots at each quarter of the stream: the heap that
   is neither the tables' bytes nor the decoded-books cache (bounded) should stay flat;
   growth there, per event, would be a leak. The top allocation sites of the growth between
   the first and the last checkpoint are printed.
3. ``--rocksdb faust|worker`` (instead of 1 and 2): the same run with the two tables in
   RocksDB (rocksdict), one database per table and partition opened as Faust opens a
   table's partition store, with Faust's default options (64 MiB write buffers, up to 3 per
   database, a 2 GiB block cache per database) or the worker's
   (:data:`streams.app.STATE_STORE_OPTIONS`); the process RSS at each quarter.

Projected RSS at 100,000 customers = the worker's baseline (measured separately, e.g. by
``make bench``) + what does not depend on customers (caches, RocksDB buffers), since the
tables live on disk in RocksDB. Nothing is asserted. Imports faust (through the worker
module): run it on its own, not from the suite.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.books_step import run_steps
from connectors.simulation.saas import simulate_company
from ledger.codec import state_from_json
from ledger.reference import ReferenceData
from revenue.codec import EVENT_TYPES, book_from_json
from streams.app import STATE_STORE_OPTIONS
from streams.ledger_worker import BooksStore, DecodedBooks

PARTITIONS = 4  # the dev stack's REVLEDGER_PARTITIONS
MIB = 1024 * 1024


class _RecordingTable:
    """A dict table that hands out new bytes on get (as RocksDB does) and logs its writes."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.writes = 0
        self.written_bytes = 0

    def get(self, key: bytes) -> bytes | None:
        value = self.data.get(key)
        return None if value is None else bytes(bytearray(value))

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.data[key] = value
        self.writes += 1
        self.written_bytes += len(value)

    @property
    def size(self) -> int:
        return sum(len(k) + len(v) for k, v in self.data.items())


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _checkpoints(store: BooksStore, records: list, reference: ReferenceData) -> None:
    """Run ``records``; print heap, tables and cache at each quarter."""
    ledgers, revenue = store.ledgers, store.revenue_books
    print("\nheap while the stream runs (tracemalloc; MiB)")
    print(f"{'records':>9} {'heap':>8} {'tables':>8} {'cache':>8} {'rest':>8} {'written':>9}")
    snapshots = []

    def checkpoint(done: int) -> None:
        gc.collect()
        heap, _ = tracemalloc.get_traced_memory()
        tables = ledgers.size + revenue.size
        # The cache's own bound counts stored JSON; its decoded objects are part of "rest".
        cache = store.decoded.size
        written = (ledgers.written_bytes + revenue.written_bytes) / MIB
        print(
            f"{done:>9,} {heap / MIB:>8.1f} {tables / MIB:>8.1f} {cache / MIB:>8.1f}"
            f" {(heap - tables) / MIB:>8.1f} {written:>9.1f}"
        )
        if len(snapshots) < 2:
            snapshots.append(tracemalloc.take_snapshot())
        else:
            snapshots[1] = tracemalloc.take_snapshot()

    run_steps(records, reference, store, checkpoint, every=max(1, len(records) // 4))
    if len(snapshots) == 2:
        print("\ngrowth between the first and the last checkpoint, by allocation site:")
        for stat in snapshots[1].compare_to(snapshots[0], "lineno")[:8]:
            size, count = stat.size_diff / 1024, stat.count_diff
            print(f"  {size:>9,.0f} KiB {count:>+8,} blocks  {stat.traceback}")


def _decoded_per_customer(store: BooksStore) -> tuple[float, float]:
    """(stored JSON bytes, decoded heap bytes) per customer, all customers decoded at once."""
    keys = list(store.ledgers.data)
    stored = sum(len(store.ledgers.data[k]) for k in keys) + sum(
        len(v) for v in store.revenue_books.data.values()
    )
    gc.collect()
    before, _ = tracemalloc.get_traced_memory()
    decoded = [
        (
            state_from_json(store.ledgers.data[k], EVENT_TYPES),
            book_from_json(store.revenue_books.data[k]) if k in store.revenue_books.data else None,
        )
        for k in keys
    ]
    gc.collect()
    after, _ = tracemalloc.get_traced_memory()
    del decoded
    return stored / len(keys), (after - before) / len(keys)


class _RocksTable:
    """A table over one RocksDB database per partition, opened as Faust opens a table's stores."""

    def __init__(self, folder: Path, options: dict) -> None:
        from faust.stores.rocksdb import RocksDBOptions

        settings = RocksDBOptions(**options, use_rocksdict=True)
        self.dbs = [settings.open(folder / f"p{p}.db") for p in range(PARTITIONS)]
        self.writes = 0
        self.written_bytes = 0

    def _db(self, key: bytes) -> Any:  # rocksdict.Rdict
        return self.dbs[zlib.crc32(key) % PARTITIONS]

    def get(self, key: bytes) -> bytes | None:
        return self._db(key).get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._db(key)[key] = value
        self.writes += 1
        self.written_bytes += len(value)

    def close(self) -> None:
        for db in self.dbs:
            db.close()


def _rocksdb_run(records: list, reference: ReferenceData, options: dict, label: str) -> None:
    """The stream through the books step over RocksDB tables; RSS at each quarter."""
    folder = Path(tempfile.mkdtemp(prefix="revledger-state-memory-"))
    try:
        ledgers = _RocksTable(folder / "customer-ledgers", options)
        revenue = _RocksTable(folder / "customer-revenue", options)
        store = BooksStore(ledgers, revenue, DecodedBooks())
        print(f"\nRSS with the tables in RocksDB, {label} (MiB)")
        print(f"{'records':>9} {'RSS':>8} {'written':>9}")

        def checkpoint(done: int) -> None:
            written = (ledgers.written_bytes + revenue.written_bytes) / MIB
            print(f"{done:>9,} {_rss_mib():>8.1f} {written:>9.1f}", flush=True)

        checkpoint(0)
        run_steps(records, reference, store, checkpoint, every=max(1, len(records) // 8))
        ledgers.close()
        revenue.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the company through the books step under tracemalloc; print the figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.state_memory")
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--rocksdb",
        choices=("faust", "worker"),
        help="instead: tables in RocksDB with Faust's default options or the worker's; RSS",
    )
    args = parser.parse_args(argv)
    simulation = simulate_company(customers=args.customers, months=args.months, seed=args.seed)
    reference = ReferenceData.from_records(simulation.reference)
    records = list(simulation.records)
    print(
        f"simulated company: {args.customers:,} customers x {args.months} months,"
        f" {len(records):,} records"
    )
    if args.rocksdb is not None:
        options = {} if args.rocksdb == "faust" else dict(STATE_STORE_OPTIONS)
        label = "Faust's default options" if args.rocksdb == "faust" else "STATE_STORE_OPTIONS"
        _rocksdb_run(records, reference, options, label)
        return 0
    ledgers, revenue = _RecordingTable(), _RecordingTable()
    store = BooksStore(ledgers, revenue, DecodedBooks())
    tracemalloc.start(1)  # one frame: the allocation site; more frames cost minutes
    started = time.process_time()
    _checkpoints(store, records, reference)
    seconds = time.process_time() - started
    stored, decoded = _decoded_per_customer(store)
    tracemalloc.stop()
    print(
        f"\nper customer: {stored:,.0f} bytes stored JSON (ledger + revenue),"
        f" {decoded:,.0f} bytes of Python heap decoded ({decoded / stored:.1f}x)"
    )
    cache = store.decoded
    print(
        f"decoded-books cache: {len(cache):,} customers, {cache.size / MIB:.1f} MiB of JSON"
        f" (bounds {cache.max_customers:,} / {cache.max_bytes / MIB:.0f} MiB)"
    )
    print(
        f"100,000 customers: {stored * 100_000 / MIB:,.0f} MiB stored,"
        f" {decoded * 100_000 / MIB:,.0f} MiB if all were decoded at once"
    )
    print(f"books step under tracemalloc: {seconds:.1f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
