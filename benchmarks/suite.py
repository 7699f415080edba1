"""``make bench``: every benchmark, one table of figures against the targets of issue 7, JSON.

Benchmarks (``--only NAME``, repeatable; default: all):

=============  =================================================================================
micro          pure code: ledger replay, engine replay, serde, state codec, batching core
recognition    month-end tick over a contract book (10,000 contracts; engine and worker-like)
e2e            ledger worker + batcher: max throughput and latency at half of it (commit 1 s)
e2e-short      the same with a shorter exactly-once commit interval (0.1 s, the default)
passthrough    pass-through Faust agent (decode + produce, exactly-once), same burst
raw            raw confluent-kafka consume + decode loop, same burst
workers        2 ledger workers + batcher, same burst (ratio to e2e)
projection     ``revledger project`` of the e2e topics into a fresh PostgreSQL database
rss            peak RSS of one ledger worker holding 10,000 and 100,000 customers' state
profile        the ledger worker under cProfile (CPU time) during a burst
=============  =================================================================================

A run starts a private Kafka + PostgreSQL under a temporary directory (``--reuse``: the
running dev stack; ``KAFKA_BOOTSTRAP_SERVERS`` + ``DATABASE_URL``: those), prints a table
with each figure next to its target (``met`` / ``NOT met``) and writes
``benchmarks/results/latest.json`` (``--out``) with the load average at start and end:
the machine may be shared, and the figures are only as good as the quiet they ran in.

Must not import faust.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    TARGET_ONE_WORKER,
    TARGET_P99,
    TARGET_PROJECTION,
    TARGET_RECOGNITION,
    TARGET_RSS,
    TARGET_VS_PASSTHROUGH,
    Figure,
    format_table,
    results_document,
)
from benchmarks.infra import ROOT, BenchError, Endpoints, broker_and_database
from benchmarks.pipeline import (
    LedgerRun,
    PipelineSizes,
    Throughput,
    company_stream,
    run_ledger,
    run_passthrough,
    run_raw,
    run_rss,
    summarise_profile,
)

NAMES = (
    "micro",
    "recognition",
    "e2e",
    "e2e-short",
    "passthrough",
    "raw",
    "workers",
    "projection",
    "rss",
    "profile",
)
BROKER_NAMES = frozenset(NAMES) - {"micro", "recognition"}
RESULTS = ROOT / "benchmarks" / "results"
TARGET_CONTRACTS = 10_000
TARGET_CUSTOMERS = 100_000
MIB = 1024  # KiB per MiB
SCENARIO_ATTEMPTS = 3  # seen: Faust crashing on its first records twice in a row


@dataclass(frozen=True, slots=True)
class Sizes:
    """Everything that differs between ``--quick`` and a full run."""

    mode: str
    pipeline: PipelineSizes
    micro_events: int
    contracts: int
    skip: frozenset[str] = frozenset()  # not run unless named with --only


QUICK = Sizes(
    "quick",
    PipelineSizes(
        partitions=4,
        customers=100,
        warmup=150,
        burst=1_000,
        latency_seconds=8,
        rss_customers=(1_000,),
        profile_events=400,
    ),
    micro_events=2_000,
    contracts=500,
    skip=frozenset({"profile"}),
)
FULL = Sizes(
    "full",
    PipelineSizes(
        partitions=4,
        customers=400,
        warmup=400,
        burst=8_000,
        latency_seconds=30,
        rss_customers=(10_000, TARGET_CUSTOMERS),
        profile_events=1_500,
    ),
    micro_events=10_000,
    contracts=TARGET_CONTRACTS,
)


@dataclass
class Suite:
    """One run: what to run, where, and the figures so far."""

    sizes: Sizes
    only: frozenset[str]
    workdir: Path
    say: Callable[[str], None] = print
    figures: list[Figure] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    ledger_runs: dict[str, LedgerRun] = field(default_factory=dict)
    bursts: dict[str, Throughput] = field(default_factory=dict)

    def wants(self, name: str) -> bool:
        """Whether benchmark ``name`` runs: named with ``--only``, or not skipped by the mode."""
        return name in self.only if self.only else name not in self.sizes.skip

    def add(self, *figures: Figure) -> None:
        self.figures.extend(figures)

    def attempt(
        self, label: str, scenario: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Any:
        """Run a broker scenario; once more, on fresh topics, if it failed. None if both did.

        A worker can crash on its first records on a loaded machine (seen: Faust's
        ``PartitionsMismatch`` on a changelog topic whose metadata is not there yet), or
        stall (seen: after a second worker joined, partitions whose transaction was open at
        the rebalance never processed again); a supervisor would restart it, so the
        scenario restarts, and the JSON says so. A scenario that fails twice is reported
        as not measured, and the run goes on with the next.
        """
        for attempt in range(1, SCENARIO_ATTEMPTS + 1):
            # The load each scenario started under: one run may see the machine change.
            self.extra.setdefault("loadavg_at_start_of", {})[label] = [
                round(x, 2) for x in os.getloadavg()
            ]
            try:
                return scenario(*args, **kwargs)
            except BenchError as exc:
                lines = str(exc).splitlines()
                cause = next((x for x in lines if "stopping the worker" in x), "") or next(
                    (x for x in lines if "WARNING" in x or "ERROR" in x), ""
                )
                failure = {"scenario": label, "attempt": attempt, "error": lines[0]}
                failure["cause"] = cause[:500]
                self.extra.setdefault("failures", []).append(failure)
                self.say(f"  {label}: attempt {attempt} failed: {lines[0]}\n    {cause[:300]}")
        self.add(
            Figure(
                f"{label.replace(' ', '_')}.not_measured",
                f"{label}: not measured",
                None,
                "",
                note=f"failed {SCENARIO_ATTEMPTS} times: {lines[0]}",
            )
        )
        return None

    # --- the pure benchmarks ---------------------------------------------------------------

    def micro(self) -> None:
        from benchmarks.micro import run_micro

        self.say("\n== micro (pure code)")
        self.add(*run_micro(self.sizes.micro_events))

    def recognition(self) -> None:
        from benchmarks.recognition import run_recognition

        self.say(f"\n== recognition: month-end tick over ~{self.sizes.contracts:,} contracts")
        run = run_recognition(self.sizes.contracts)
        self.say(
            f"  {run.customers:,} customers, {run.contracts:,} contracts, {run.obligations:,}"
            f" obligations built in {run.build_seconds:.0f} s; tick {run.tick}: {run.visited:,}"
            f" customers visited, {run.recognised:,} obligations recognised, {run.entries:,}"
            f" entries"
        )
        scale = TARGET_CONTRACTS / run.contracts
        scaled = run.worker_seconds * scale
        note = f"{run.contracts:,} contracts" + (
            "" if run.contracts >= TARGET_CONTRACTS else f"; x{scale:.1f} to 10,000 (linear)"
        )
        details = {
            "customers": run.customers,
            "contracts": run.contracts,
            "obligations": run.obligations,
            "visited": run.visited,
            "recognised": run.recognised,
            "entries": run.entries,
            "engine_seconds": run.engine_seconds,
            "worker_seconds": run.worker_seconds,
            "build_seconds": run.build_seconds,
            "tick": run.tick,
        }
        self.add(
            Figure(
                "recognition.seconds_for_10000_contracts",
                "month-end tick, 10,000 contracts (as the worker: + state JSON)",
                scaled,
                "s",
                TARGET_RECOGNITION,
                note,
                details,
            ),
            Figure(
                "recognition.engine_seconds",
                "month-end tick, 10,000 contracts (pure engine)",
                run.engine_seconds * scale,
                "s",
                note=note,
            ),
            Figure(
                "recognition.obligations_per_second",
                "obligations recognised/s (as the worker)",
                run.per_second(run.worker_seconds),
                "obligations/s",
            ),
            Figure(
                "recognition.engine_obligations_per_second",
                "obligations recognised/s (pure engine)",
                run.per_second(run.engine_seconds),
                "obligations/s",
            ),
        )

    # --- the broker benchmarks -------------------------------------------------------------

    def broker(self, endpoints: Endpoints) -> None:
        """Every broker scenario asked for; their figures, also when one of them failed."""
        try:
            self._scenarios(endpoints)
        finally:
            self._broker_figures()

    def _scenarios(self, endpoints: Endpoints) -> None:
        sizes = self.sizes.pipeline
        stream = company_stream(sizes)
        self.say(
            f"company stream: {len(stream.events):,} events, {sizes.customers:,} customers;"
            f" {sizes.partitions} partitions; burst {sizes.burst:,} events"
        )
        if self.wants("e2e") or (self.wants("projection") and not self.wants("e2e")):
            self._ledger(endpoints, stream, "e2e", sizes.commit_interval, latency=self.wants("e2e"))
        if self.wants("e2e-short"):
            self._ledger(endpoints, stream, "e2e-short", sizes.short_commit_interval, latency=True)
        if self.wants("passthrough"):
            self.say("\n== passthrough: Faust agent, decode + produce, exactly-once")
            passthrough = self.attempt(
                "passthrough", run_passthrough, endpoints, self.workdir, sizes, stream, self.say
            )
            if passthrough is not None:
                self.bursts["passthrough"] = passthrough
        if self.wants("raw"):
            self.say("\n== raw: confluent-kafka consume + decode")
            raw = self.attempt("raw", run_raw, endpoints, self.workdir, sizes, stream, self.say)
            if raw is not None:
                self.bursts["raw"] = raw
        if self.wants("workers"):
            self.say("\n== workers: 2 ledger workers + batcher")
            run = self.attempt(
                "workers",
                run_ledger,
                endpoints,
                self.workdir,
                sizes,
                stream,
                self.say,
                name="workers2",
                workers=2,
                commit_interval=sizes.commit_interval,
            )
            if run is not None:
                self.ledger_runs["workers"] = run
        if self.wants("projection") and "e2e" in self.ledger_runs:
            self._projection(endpoints)
        if self.wants("rss"):
            self._rss(endpoints)
        if self.wants("profile"):
            self._profile(endpoints, stream)

    def _ledger(
        self, endpoints: Endpoints, stream: Any, name: str, interval: float, *, latency: bool
    ) -> None:
        self.say(f"\n== {name}: ledger worker + batcher, commit interval {interval:g} s")
        run = self.attempt(
            name,
            run_ledger,
            endpoints,
            self.workdir,
            self.sizes.pipeline,
            stream,
            self.say,
            name=name,
            commit_interval=interval,
            latency=latency,
        )
        if run is None:
            return
        self.ledger_runs[name] = run
        self.say(
            f"  {run.burst.events:,} events: {run.burst.events_per_second('committed'):,.0f}/s"
            f" committed, {run.burst.events_per_second():,.0f}/s batched; {run.entries:,}"
            f" entries read, {run.dlq_records} DLQ records"
        )

    def _projection(self, endpoints: Endpoints) -> None:
        from benchmarks.projection_rate import median_of, run_projections

        source = self.ledger_runs["e2e"].settings
        self.say("\n== projection: the e2e topics into a fresh database, several times")
        runs = run_projections(source, endpoints.database_url)
        for run in runs:
            self.say(
                f"  {run.records:,} records -> {run.rows:,} rows in {run.batches} transactions,"
                f" {run.seconds:.1f} s; sink {run.write_seconds:.2f} s"
                f" ({run.rows_per_second(sink_only=True):,.0f} rows/s)"
            )
        sink = median_of(runs, lambda run: run.rows_per_second(sink_only=True))
        whole = median_of(runs, lambda run: run.rows_per_second())
        per_cpu = median_of(runs, lambda run: run.rows_per_cpu_second())
        samples = ", ".join(f"{run.rows_per_second(sink_only=True):,.0f}" for run in runs)
        rows = median_of(runs, lambda run: run.rows)
        details = {
            "runs": [
                {
                    "by_table": run.by_table,
                    "rows": run.rows,
                    "seconds": run.seconds,
                    "write_seconds": run.write_seconds,
                    "client_cpu_seconds": run.client_cpu_seconds,
                    "server_cpu_seconds": run.server_cpu_seconds,
                    "records": run.records,
                    "transactions": run.batches,
                }
                for run in runs
            ],
        }
        self.add(
            Figure(
                "projection.rows_per_second",
                "projection: rows/s into PostgreSQL (sink time)",
                sink,
                "rows/s",
                TARGET_PROJECTION,
                f"median of {len(runs)} runs of {rows:,.0f} rows: {samples}",
                details,
            ),
            Figure(
                "projection.run_rows_per_second",
                "  same, whole revledger project run",
                whole,
                "rows/s",
                note="median; reading, decoding and mapping included",
            ),
            Figure(
                "projection.rows_per_cpu_second",
                "  same, rows per CPU second of the sink",
                per_cpu,
                "rows/s",
                note="client thread + database backend CPU: moves less with others' load",
            ),
        )

    def _rss(self, endpoints: Endpoints) -> None:
        self.say("\n== rss: one ledger worker, N customers' state")
        for customers in self.sizes.pipeline.rss_customers:
            run = self.attempt(
                f"rss {customers}",
                run_rss,
                endpoints,
                self.workdir,
                self.sizes.pipeline,
                customers,
                self.say,
            )
            if run is None:
                continue
            self.say(
                f"  {customers:,} customers ({run.events:,} events, {run.seconds:.0f} s):"
                f" peak {run.peak_kib / MIB:,.0f} MiB, at the end {run.final_kib / MIB:,.0f} MiB"
            )
            self.add(
                Figure(
                    f"rss.peak_mib_{customers}",
                    f"peak RSS, ledger worker, {customers:,} customers",
                    run.peak_kib / MIB,
                    "MiB",
                    TARGET_RSS if customers == TARGET_CUSTOMERS else None,
                    f"{run.events:,} events at {run.events / run.seconds:,.0f}/s",
                    {"final_mib": run.final_kib / MIB, "events": run.events},
                )
            )
        if TARGET_CUSTOMERS not in self.sizes.pipeline.rss_customers:
            self.add(
                Figure(
                    "rss.peak_mib_100000",
                    "peak RSS, ledger worker, 100,000 customers",
                    None,
                    "MiB",
                    TARGET_RSS,
                    f"{self.sizes.mode} run: not measured",
                )
            )

    def _profile(self, endpoints: Endpoints, stream: Any) -> None:
        sizes = self.sizes.pipeline
        path = self.workdir / "ledger-worker.prof"
        self.say(f"\n== profile: ledger worker under cProfile, {sizes.profile_events:,} events")
        run = self.attempt(
            "profile",
            run_ledger,
            endpoints,
            self.workdir,
            sizes,
            stream,
            self.say,
            name="profile",
            commit_interval=sizes.commit_interval,
            profile_to=path,
            burst_events=sizes.profile_events,
        )
        if run is None:
            return
        profile = summarise_profile(path)
        events = run.burst.events
        self.say(
            f"  {profile.cpu_seconds:.1f} CPU s profiled during the burst of {events:,} events"
            f" ({profile.cpu_seconds / events * 1000:.1f} ms/event, profiler overhead"
            f" included); own time by group:"
        )
        for group, share in profile.groups:
            self.say(f"    {share * 100:5.1f} %  {group}")
        self.say("  hot path, cumulative (callees included; coroutine resumptions add up):")
        for label, seconds, share in profile.hot:
            self.say(f"    {share * 100:5.1f} %  {seconds:6.2f} s  {label}")
        self.say("  functions with the most own time:")
        for function, seconds, share in profile.top[:15]:
            self.say(f"    {share * 100:5.1f} %  {seconds:6.2f} s  {function}")
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "profile.txt").write_text(profile.text)
        shutil.copy(path, RESULTS / "ledger-worker.prof")
        self.extra["profile"] = {
            "cpu_seconds": profile.cpu_seconds,
            "burst_events": events,
            "groups": [{"group": g, "share": s} for g, s in profile.groups],
            "top": [{"function": f, "seconds": s, "share": p} for f, s, p in profile.top],
            "hot_path": [{"step": f, "seconds": s, "share": p} for f, s, p in profile.hot],
        }

    def _broker_figures(self) -> None:
        """Throughput, latency, ratios and RSS of the ledger scenarios (target order)."""
        e2e = self.ledger_runs.get("e2e")
        short = self.ledger_runs.get("e2e-short")
        two = self.ledger_runs.get("workers")
        passthrough, raw = self.bursts.get("passthrough"), self.bursts.get("raw")
        if e2e is not None:
            self.add(*_ledger_figures("e2e", e2e, TARGET_ONE_WORKER))
        if short is not None:
            self.add(*_ledger_figures("e2e_short", short, None))
            if e2e is not None:
                self.add(
                    _ratio(
                        "ratio.short_commit_vs_default",
                        f"ratio throughput commit {short.commit_interval:g} s /"
                        f" {e2e.commit_interval:g} s",
                        short.burst.events_per_second(),
                        e2e.burst.events_per_second(),
                    )
                )
        for name, burst in (("passthrough", passthrough), ("raw", raw)):
            if burst is None:
                continue
            label = (
                "pass-through Faust agent (decode + produce, EOS)"
                if name == "passthrough"
                else "raw confluent-kafka loop (consume + decode)"
            )
            self.add(
                Figure(
                    f"{name}.events_per_second",
                    f"{label}: events/s",
                    burst.events_per_second(),
                    "events/s",
                    note=_cpu_note(burst),
                    details=_burst_details(burst),
                )
            )
        if e2e is not None and passthrough is not None:
            self.add(
                _ratio(
                    "ratio.e2e_vs_passthrough",
                    "ratio end-to-end / pass-through agent",
                    e2e.burst.events_per_second(),
                    passthrough.events_per_second(),
                    TARGET_VS_PASSTHROUGH,
                )
            )
        if e2e is not None and raw is not None:
            self.add(
                _ratio(
                    "ratio.e2e_vs_raw",
                    "ratio end-to-end / raw loop",
                    e2e.burst.events_per_second(),
                    raw.events_per_second(),
                )
            )
        if two is not None:
            self.add(
                Figure(
                    "workers2.events_per_second",
                    "2 ledger workers + batcher: events/s",
                    two.burst.events_per_second(),
                    "events/s",
                    note=f"committed only: {two.burst.events_per_second('committed'):,.0f}/s; "
                    + _cpu_note(two.burst),
                    details=_burst_details(two.burst),
                )
            )
            if e2e is not None:
                self.add(
                    _ratio(
                        "ratio.two_workers_vs_one",
                        f"ratio 2 workers / 1 ({two.settings.partitions} partitions)",
                        two.burst.events_per_second(),
                        e2e.burst.events_per_second(),
                    ),
                    _ratio(
                        "ratio.two_workers_vs_one_committed",
                        "  same, to entries committed (batcher left out)",
                        two.burst.events_per_second("committed"),
                        e2e.burst.events_per_second("committed"),
                    ),
                )
        for name, run in (("e2e", e2e), ("e2e_short", short), ("workers2", two)):
            if run is not None:
                self.extra.setdefault("scenarios", {})[name] = _scenario_details(run)


def _burst_details(burst: Throughput) -> dict[str, Any]:
    return {
        "events": burst.events,
        "seconds": (burst.batched or burst.committed) - burst.first_sent,
        "producer_events_per_second": burst.events_per_second("sent"),
        "cpu_seconds": burst.cpu,
    }


def _cpu_note(burst: Throughput) -> str:
    """``ledger 3.1 ms/event, 55 % busy``: CPU per event and busy share of each process."""
    seconds = (burst.batched or burst.committed) - burst.first_sent
    parts = []
    for name, cpu in burst.cpu.items():
        short = name.rsplit("-", 2)[-2] if "-ledger-" in name else name.rsplit("-", 1)[-1]
        parts.append(
            f"{short} {cpu / burst.events * 1000:.2f} ms/event, {cpu / seconds * 100:.0f} % busy"
        )
    return "; ".join(parts)


def _ledger_figures(key: str, run: LedgerRun, target: Any) -> list[Figure]:
    """Throughput, latency and RSS figures of one ledger scenario."""
    interval = f"commit {run.commit_interval:g} s"
    burst = run.burst
    figures = [
        Figure(
            f"{key}.events_per_second",
            f"end-to-end, 1 worker + batcher, {interval}: events/s",
            burst.events_per_second(),
            "events/s",
            target,
            _cpu_note(burst),
            _burst_details(burst),
        ),
        Figure(
            f"{key}.committed_events_per_second",
            "  same, to entries committed (batcher left out)",
            burst.events_per_second("committed"),
            "events/s",
        ),
    ]
    if run.latency is not None:
        summary = run.latency.summary()
        note = (
            f"{len(run.latency.latencies):,} events matched at {run.latency.offered_rate:,.0f}"
            f" events/s offered (half max)"
        )
        for quantile in ("p50", "p99"):
            figures.append(
                Figure(
                    f"{key}.latency_{quantile}",
                    f"latency {quantile} at half max, {interval}",
                    summary.get(quantile, math.nan),
                    "s",
                    TARGET_P99 if quantile == "p99" else None,
                    note if quantile == "p50" else f"max {summary.get('max', math.nan):.2f} s",
                    {"summary": summary, "offered_rate": run.latency.offered_rate}
                    if quantile == "p50"
                    else {},
                )
            )
    peak = max(run.peak_rss_kib, default=0)
    figures.append(
        Figure(
            f"{key}.peak_rss_mib",
            "  peak RSS of the ledger worker",
            peak / MIB,
            "MiB",
        )
    )
    figures.append(
        Figure(
            f"{key}.records_written_per_event",
            "  Kafka records written per input event",
            run.records_written_per_event,
            "records",
            note="ledger.inputs, entries, schedules, changelogs, batches; markers included",
        )
    )
    return figures


def _ratio(
    key: str, label: str, numerator: float, denominator: float, target: Any = None
) -> Figure:
    value = numerator / denominator if denominator else math.nan
    return Figure(key, label, value, "x", target, f"{numerator:,.0f} / {denominator:,.0f}")


def _scenario_details(run: LedgerRun) -> dict[str, Any]:
    return {
        "app_id": run.settings.app_id,
        "workers": run.workers,
        "partitions": run.settings.partitions,
        "commit_interval_seconds": run.commit_interval,
        "burst": _burst_details(run.burst),
        "latency": None
        if run.latency is None
        else {
            "offered_rate": run.latency.offered_rate,
            "events": run.latency.events,
            "matched": len(run.latency.latencies),
            **run.latency.summary(),
        },
        "entries_read": run.entries,
        "dlq_records": run.dlq_records,
        "records_written_per_event": run.records_written_per_event,
        "peak_rss_mib": [kib / MIB for kib in run.peak_rss_kib],
    }


# --- the command ------------------------------------------------------------------------------


def add_bench_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``revledger bench`` to the CLI's sub-commands."""
    parser = subparsers.add_parser(
        "bench", help="run the benchmarks: figures against the targets, table and JSON"
    )
    add_bench_arguments(parser)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``revledger bench`` / ``python -m benchmarks.run``."""
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=NAMES,
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(NAMES)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS / "latest.json",
        metavar="FILE",
        help="where the JSON goes (default benchmarks/results/latest.json)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="use the running dev stack instead of starting a private one",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")


def main_bench(args: argparse.Namespace) -> int:
    """Run the benchmarks asked for; print the table; write the JSON. 0, or 1 on failure."""
    sizes = QUICK if args.quick else FULL
    workdir = Path(tempfile.mkdtemp(prefix="revledger-bench-"))
    suite = Suite(sizes, frozenset(args.only or ()), workdir)
    load_start, started = os.getloadavg(), time.monotonic()
    print(
        f"revledger benchmarks ({sizes.mode}); load average {_load(load_start)} on"
        f" {os.cpu_count()} CPUs; work directory {workdir}",
        flush=True,
    )
    failed: str | None = None
    try:
        if suite.wants("micro"):
            suite.micro()
        if suite.wants("recognition"):
            suite.recognition()
        if any(suite.wants(name) for name in BROKER_NAMES):
            with broker_and_database(workdir, args.reuse, suite.say) as endpoints:
                suite.extra["broker"] = endpoints.source
                suite.broker(endpoints)
    except Exception as exc:  # the table and the JSON of what was measured come out anyway
        failed = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        print(f"\nbenchmark failed: {failed}", file=sys.stderr)
        args.keep = True
    load_end, seconds = os.getloadavg(), time.monotonic() - started
    print(f"\n== figures ({sizes.mode} run, {seconds / 60:.1f} min)")
    print(format_table(suite.figures))
    print(f"load average: start {_load(load_start)}, end {_load(load_end)}")
    document = results_document(
        suite.figures,
        mode=sizes.mode,
        load_start=load_start,
        load_end=load_end,
        seconds=seconds,
        extra={**suite.extra, "commit": _commit(), "failed": failed, "only": args.only},
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out}")
    if args.keep:
        print(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def _load(values: Sequence[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def _commit() -> str | None:
    """The repository's HEAD commit (``+dirty`` with uncommitted changes), if known."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.run [--quick] [--only NAME] ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0]
    )
    add_bench_arguments(parser)
    return main_bench(parser.parse_args(argv))
