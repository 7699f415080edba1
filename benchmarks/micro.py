"""Micro-benchmarks of the pure code: figures and ratios; nothing is asserted.

- ledger core: the pure replay of a simulated company (events/s, entries/s);
- revenue engine: the pure replay of a 24-month contract book (records/s), the same
  company stream through the engine instead of the ledger alone, and the revenue
  book JSON round trip;
- serde: Avro single-object encode and decode+validate of the same events (records/s);
- state codec: the per-customer state JSON round trip the worker does per event;
- batcher: the contract book's entries log (entries and ticks) through the pure batching
  core, and the batcher's table layout (a save per record, as the agent does).

Run by ``python -m benchmarks.run --only micro`` (and in every full run); each figure
also goes to the run's table and JSON under ``micro.*``.

Must not import: faust, confluent_kafka, psycopg.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from benchmarks.harness import Figure
from connectors.simulation import builders as b
from connectors.simulation.company import GeneratedStream, generate_company
from connectors.simulation.contracts import generate_contracts
from ledger.batching import BatchPolicy
from ledger.codec import state_from_json, state_to_json
from ledger.events import ClockAdvanced
from ledger.reference import ReferenceData
from ledger.replay import replay_all
from revenue import replay as engine_replay
from revenue.codec import book_from_json, book_to_json
from streams.batcher import WindowStore, apply_record, replay_batches
from streams.entries import entry_record
from streams.serde import Codec

EVENTS = 10_000
FIGURES: list[Figure] = []


def _timed(what: str, count: int, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    rate = count / seconds if seconds else float("inf")
    print(f"{what:38} {count:>8,} in {seconds:6.2f} s  {rate:>10,.0f}/s")
    key = "micro." + "".join(c if c.isalnum() else "_" for c in what.split(" (")[0]).strip("_")
    FIGURES.append(Figure(key, f"micro: {what}", rate, "records/s", details={"count": count}))
    return rate


def _round_trip(
    what: str, values: list, encode: Callable[[object], bytes], decode: Callable[[bytes], object]
) -> None:
    """Time the JSON encode and decode a worker does per event for ``values``."""
    blobs = [encode(v) for v in values]
    mean = sum(len(b) for b in blobs) / len(blobs)
    _timed(
        f"{what} encode (mean {mean / 1024:.1f} KiB)",
        len(values),
        lambda: [encode(v) for v in values],
    )
    _timed(f"{what} decode", len(values), lambda: [decode(b) for b in blobs])


def run_micro(events: int = EVENTS) -> list[Figure]:
    """Run every micro-benchmark, print its lines; return the figures."""
    FIGURES.clear()
    _company(events)
    return list(FIGURES)


def _company(events: int) -> None:
    stream = generate_company(
        seed=11,
        customers=250,
        events=events,
        duplicate_rate=0.05,
        out_of_order_rate=0.05,
        book_usage_contracts=False,
    )
    events = stream.events
    result = replay_all(stream.reference, events)
    print(f"simulated company: {len(events):,} events, {len(result.entries):,} entries")
    replay_rate = _timed(
        "ledger replay (pure domain)", len(events), lambda: replay_all(stream.reference, events)
    )
    codec = Codec()
    encoded = [codec.encode(e) for e in events]
    encode_rate = _timed("avro encode", len(events), lambda: [codec.encode(e) for e in events])
    decode_rate = _timed(
        "avro decode + validate", len(events), lambda: [codec.decode(b) for b in encoded]
    )
    _round_trip("state", list(result.states.values()), state_to_json, state_from_json)
    print(f"ratio avro decode / ledger replay: {decode_rate / replay_rate:.1f}")
    print(f"ratio avro encode / ledger replay: {encode_rate / replay_rate:.1f}")
    _revenue(stream, replay_rate)


def _revenue(company: GeneratedStream, ledger_rate: float) -> None:
    events, reference = company.events, company.reference
    engine_rate = _timed(
        "engine replay, same company stream (no contracts)",
        len(events),
        lambda: engine_replay.replay_all(reference, events),
    )
    book = generate_contracts(seed=17, customers=150)
    result = engine_replay.replay_all(book.reference, book.events)
    contracts = sum(len(b.revenue.contracts) for b in result.books.values())
    print(
        f"contract book: {len(book.events):,} records, {contracts:,} contracts,"
        f" {len(result.entries):,} entries over 24 monthly ticks"
    )
    book_rate = _timed(
        "engine replay, contract book",
        len(book.events),
        lambda: engine_replay.replay_all(book.reference, book.events),
    )
    books = [b.revenue for b in result.books.values()]
    _round_trip("revenue book", books, book_to_json, book_from_json)
    print(f"ratio engine / ledger replay (company stream): {engine_rate / ledger_rate:.2f}")
    print(f"ratio contract book / company stream (engine): {book_rate / engine_rate:.2f}")
    _batcher(book, result.entries, book_rate)


def _batcher(book: GeneratedStream, entries: list, engine_rate: float) -> None:
    reference = ReferenceData.from_records(book.reference)
    policy = BatchPolicy()
    ordered = sorted(entries, key=lambda e: e.posting_date)
    ticks = sorted({e.business_date for e in book.events if isinstance(e, ClockAdvanced)})
    log, at = [], 0
    for tick in ticks:
        while at < len(ordered) and ordered[at].posting_date <= tick:
            log.append(entry_record(ordered[at]))
            at += 1
        log.append(b.clock(tick))
    numbered = list(enumerate(log))
    batches, _ = replay_batches(0, numbered, reference, policy)
    print(
        f"entries log: {len(log):,} records ({len(ticks)} ticks) -> {len(batches):,} batches,"
        f" {sum(len(x.lines) for x in batches):,} lines"
    )
    core_rate = _timed(
        "batching core, entries log",
        len(log),
        lambda: replay_batches(0, numbered, reference, policy),
    )

    def with_tables() -> None:
        store = WindowStore({}, {})
        state = store.load(0)
        for offset, record in numbered:
            after = apply_record(state, offset, record, reference, policy).state
            store.save(0, state, after, offset)
            state = after

    stored_rate = _timed("batching core + table writes", len(log), with_tables)
    print(f"ratio batching core / engine replay (contract book): {core_rate / engine_rate:.2f}")
    print(f"ratio table writes / batching core: {stored_rate / core_rate:.2f}")
