"""Health of every revledger process: ``/healthz``, ``/readyz``, and a worker's own lag.

- ``/healthz`` answers 200 ``ok`` while the process serves HTTP at all.
- ``/readyz`` answers 200 when every check of the process passes, else 503 with a JSON
  body naming each check and why it fails (``{"status": "not_ready", "reason": ...,
  "checks": {...}}``). Checks are cheap: they read state other code keeps, never the
  broker or the database on the request path.

  ============  ==========================================================================
  process       checks
  ============  ==========================================================================
  worker,       ``partitions`` (some assigned), ``tables`` (recovered, no rebalance under
  batcher       way), ``broker`` (the lag timer's last read of the broker succeeded
                recently), ``invariants`` (no unbalanced entry refused)
  projector     ``partitions`` (assigned), ``broker``, ``database`` (the monitor's last
                ``SELECT 1`` succeeded recently)
  lag exporter  ``broker`` (its last read of every group succeeded recently)
  ============  ==========================================================================

A Faust worker (:func:`observe_worker`) also gets a sensor that sees every message handed
to its streams, every commit and every rebalance, and a timer that reads the last stable
offsets (LSO) of its assigned partitions, one broker request per interval. From those it
computes its consumer lag (:func:`worker_lag`): LSO minus the committed offset, except that
a partition whose consumer position has reached the LSO and whose received records are all
committed is caught up (on a transactional topic the last committed offset is a commit
marker, which no one will ever process). That is what the lag exporter reads from the
broker alone, so the two agree once both settle.

An unbalanced entry found before produce (:func:`refuse_unbalanced`) stops the worker, but
first holds the commit lock for a scrape interval or two so that Prometheus sees
``revledger_imbalanced_entries_total`` and ``/readyz`` says why; no transaction can commit
meanwhile, and the crash that follows leaves the open ones to be aborted.

Must not import faust at module level (the projector and the lag exporter use this module);
the Faust parts import it when called.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric

from ledger.errors import InvariantViolation
from streams import metrics
from streams.settings import Settings

log = logging.getLogger(__name__)

# Longer than two 15 s scrape intervals, shorter than aiokafka's 60 s transaction timeout.
IMBALANCE_GRACE_SECONDS = 35.0
# A broker or database check passes when its last success is this many intervals old at
# most: one slow or failed read does not flap readiness.
STALE_INTERVALS = 3
MIN_STALE_SECONDS = 30.0
# Asking a consumer for its position waits for an offset reset at worst: never for long.
POSITION_TIMEOUT_SECONDS = 2.0

ALIVE = b"ok\n"  # what the lag exporter always answered: probes compare it
JSON = "application/json"

Check = Callable[[], str | None]  # None: passes; a text: why not ready


class Readiness:
    """Named checks; ``/readyz`` passes when all pass."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        """Add (or replace) the check ``name``."""
        self._checks[name] = check

    def status(self) -> tuple[bool, dict[str, str]]:
        """Whether every check passes, and each check's answer (``ok`` or a reason)."""
        answers: dict[str, str] = {}
        for name, check in self._checks.items():
            try:
                reason = check()
            except Exception as exc:  # a broken check must not break the probe
                reason = f"check failed: {exc!r}"
            answers[name] = "ok" if reason is None else reason
        return bool(answers) and all(a == "ok" for a in answers.values()), answers

    def answer(self) -> tuple[int, bytes]:
        """HTTP status and JSON body of ``/readyz``."""
        ready, answers = self.status()
        body: dict[str, Any] = {"status": "ready" if ready else "not_ready"}
        if not ready:
            body["reason"] = "; ".join(f"{k}: {v}" for k, v in answers.items() if v != "ok")
        body["checks"] = answers
        return (200 if ready else 503), (json.dumps(body) + "\n").encode()


@dataclass
class Heartbeat:
    """When something last succeeded (monotonic seconds) and the last error seen."""

    what: str
    max_age_seconds: float
    last_ok: float | None = None
    last_error: str | None = None
    now: Callable[[], float] = time.monotonic

    def ok(self) -> None:
        """Record a success."""
        self.last_ok = self.now()
        self.last_error = None

    def failed(self, error: object) -> None:
        """Record a failure (the last success stands until it is too old)."""
        self.last_error = str(error)[:300]

    def check(self) -> str | None:
        """A readiness check: passes while the last success is recent enough."""
        if self.last_ok is None:
            return f"{self.what} not reached yet" + (
                f" ({self.last_error})" if self.last_error else ""
            )
        age = self.now() - self.last_ok
        if age > self.max_age_seconds:
            return f"{self.what} not reached for {age:.0f}s ({self.last_error or 'no answer'})"
        return None


def stale_after(interval_seconds: float) -> float:
    """How old a last success may be before its check fails."""
    return max(MIN_STALE_SECONDS, STALE_INTERVALS * interval_seconds)


# --- plain HTTP, for the processes without Faust ------------------------------------------


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


def probe_app(registry: CollectorRegistry, readiness: Readiness) -> Callable:
    """A WSGI app serving ``/metrics`` (``registry``), ``/healthz`` and ``/readyz``."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [ALIVE]
        if path == "/readyz":
            status, body = readiness.answer()
            phrase = "OK" if status == 200 else "Service Unavailable"
            start_response(f"{status} {phrase}", [("Content-Type", JSON)])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"see /metrics, /healthz, /readyz\n"]

    return app


def serve_probes(
    registry: CollectorRegistry, readiness: Readiness, host: str, port: int, name: str
) -> WSGIServer:
    """Serve :func:`probe_app` on a daemon thread; returns the server (port 0: any)."""
    server = make_server(
        host, port, probe_app(registry, readiness), _ThreadingServer, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name=f"{name}-http", daemon=True).start()
    return server


# --- a worker's lag (pure) ----------------------------------------------------------------


def worker_lag(
    last_stable: int, committed: int | None, position: int | None, last_received: int | None
) -> int:
    """Records of a partition not yet processed and committed, as a worker sees them.

    Args:
        last_stable: the partition's last stable offset (read_committed end).
        committed: the group's committed offset (None: never committed; the log starts at 0
            for the topics this project keeps forever).
        position: the consumer's position (next offset it will fetch), None if unknown.
        last_received: offset of the last record handed to the agents, None if none since
            the assignment.

    Returns:
        0 when nothing is left but commit markers or aborted records: the consumer fetched
        up to the LSO and every record it received is committed. Otherwise LSO − committed
        (markers in between still count: an upper bound, as the lag exporter's).
    """
    start = committed or 0
    if last_stable <= start:
        return 0
    fetched_all = position is not None and position >= last_stable
    processed_all = last_received is None or last_received < start
    if fetched_all and processed_all:
        return 0
    return last_stable - start


def lag_seconds(
    messages: int, next_timestamp: float | None, done_timestamp: float | None, now: float
) -> float | None:
    """Age of the next unprocessed record (0 when caught up, None when unknown).

    When that record was not fetched yet, the timestamp of the last record processed bounds
    it from above (the next record came later): the age reported is then an upper bound.
    """
    if messages == 0:
        return 0.0
    stamp = next_timestamp if next_timestamp is not None else done_timestamp
    return None if stamp is None else max(0.0, now - stamp)


TopicPartitionKey = tuple[str, int]


@dataclass
class _Received:
    records: deque = field(default_factory=deque)  # (offset, timestamp) not yet committed
    last_offset: int | None = None
    done_timestamp: float | None = None  # timestamp of the last record committed


class PartitionWatch:
    """Records received and commits per partition: what :func:`worker_lag` needs.

    Fed by the Faust sensor; pruned at every commit, so it holds at most the records
    received since the last commit (Faust's stream buffer plus a commit interval).
    """

    def __init__(self) -> None:
        self._partitions: dict[TopicPartitionKey, _Received] = {}
        self.committed_offsets: dict[TopicPartitionKey, int] = {}

    def received(self, topic: str, partition: int, offset: int, timestamp: float | None) -> None:
        """A record was handed to the agents."""
        state = self._partitions.setdefault((topic, partition), _Received())
        state.records.append((offset, timestamp))
        state.last_offset = offset

    def committed(self, topic: str, partition: int, offset: int) -> None:
        """The group committed ``offset`` (next to read) on the partition."""
        self.committed_offsets[(topic, partition)] = offset
        state = self._partitions.get((topic, partition))
        if state is None:
            return
        while state.records and state.records[0][0] < offset:
            _, stamp = state.records.popleft()
            if stamp is not None:
                state.done_timestamp = stamp

    def assigned(self, partitions: Iterable[TopicPartitionKey]) -> None:
        """Keep only ``partitions``: a new owner starts from what it receives itself."""
        kept = set(partitions)
        self._partitions = {k: v for k, v in self._partitions.items() if k in kept}
        self.committed_offsets = {k: v for k, v in self.committed_offsets.items() if k in kept}

    def figure(
        self,
        key: TopicPartitionKey,
        last_stable: int,
        committed: int | None,
        position: int | None,
        now: float,
    ) -> metrics.LagFigure:
        """Lag of one partition from the broker's LSO and the consumer's offsets."""
        state = self._partitions.get(key, _Received())
        messages = worker_lag(last_stable, committed, position, state.last_offset)
        start = committed or 0
        following = next((stamp for offset, stamp in state.records if offset >= start), None)
        return metrics.LagFigure(
            messages, lag_seconds(messages, following, state.done_timestamp, now)
        )


# --- Faust workers ------------------------------------------------------------------------

_HALTED: list[str] = []  # why this process stopped taking commits (an invariant broke)


def _invariants_check() -> str | None:
    return _HALTED[0] if _HALTED else None


async def refuse_unbalanced(
    entries: Sequence[Any], grace_seconds: float = IMBALANCE_GRACE_SECONDS
) -> None:
    """The last check before entries are produced: every one must balance.

    On an unbalanced entry the counter is incremented (:func:`streams.metrics.check_balanced`),
    ``/readyz`` turns 503, and, when no commit is under way, the commit lock is taken and
    held for ``grace_seconds`` so a scrape sees it before the process stops; then the
    InvariantViolation propagates and the agent's supervisor exits without commit.

    Raises:
        InvariantViolation: an entry does not balance.
    """
    try:
        metrics.check_balanced(entries)
    except InvariantViolation as exc:
        _HALTED[:] = [f"halted: {exc}"]
        metrics.WORKER_READY.set(0)
        log.critical("%s; stopping in %.0fs, nothing more commits", exc, grace_seconds)
        await _hold_commits(grace_seconds)
        raise


async def _hold_commits(seconds: float) -> None:
    from streams.faust_fixes import event_lock

    lock = event_lock()
    if seconds <= 0:
        return
    # Called from an event handler, which holds the lock (streams.supervision.each_event):
    # no commit can come while it sleeps. Free (a caller outside an event), it is taken
    # without yielding to the loop, so no commit slips in either.
    if not lock.locked():
        await lock.acquire()
    await asyncio.sleep(seconds)  # kept: the crash that follows aborts the transactions


_TRANSACTIONS_COUNTED: list[bool] = []


def count_transactions() -> None:
    """Count commits, aborts and fencings where Faust's aiokafka producer makes them (once).

    Wraps ``Producer.commit_transactions`` (one transaction per partition in its map;
    ``ProducerFenced`` counts a fencing, any other error an abort: the transaction is left
    to time out or be fenced) and ``Producer.abort_transaction``.
    """
    if _TRANSACTIONS_COUNTED:
        return
    from aiokafka.errors import ProducerFenced
    from faust.transport.drivers import aiokafka as driver

    commit_transactions = driver.Producer.commit_transactions
    abort_transaction = driver.Producer.abort_transaction

    async def counted_commits(
        self: Any, tid_to_offset_map: Mapping, group_id: str, start_new_transaction: bool = True
    ) -> None:
        try:
            await commit_transactions(
                self, tid_to_offset_map, group_id, start_new_transaction=start_new_transaction
            )
        except ProducerFenced:
            metrics.PRODUCER_FENCINGS.inc()
            raise
        except Exception:
            metrics.TRANSACTION_ABORTS.inc()
            raise
        metrics.TRANSACTION_COMMITS.inc(len(tid_to_offset_map))

    async def counted_abort(self: Any, transactional_id: str) -> None:
        metrics.TRANSACTION_ABORTS.inc()
        await abort_transaction(self, transactional_id)

    driver.Producer.commit_transactions = counted_commits
    driver.Producer.abort_transaction = counted_abort
    _TRANSACTIONS_COUNTED.append(True)


class WorkerHealth:
    """What a Faust worker watches about itself: lag, commits, rebalances, readiness."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.group = settings.app_id
        self.interval = settings.metrics_interval_seconds
        self.watch = PartitionWatch()
        self.broker = Heartbeat("broker", stale_after(self.interval))
        self.readiness = Readiness()
        self.readiness.add("partitions", self._partitions_check)
        self.readiness.add("tables", self._tables_check)
        self.readiness.add("broker", self.broker.check)
        self.readiness.add("invariants", _invariants_check)
        # Called with the partition numbers this worker actively owns after each rebalance.
        self.on_assigned: list[Callable[[set[int]], Awaitable[None]]] = []
        self._tasks: set[asyncio.Future] = set()

    # readiness

    def _partitions_check(self) -> str | None:
        return None if self.app.assignor.assigned_actives() else "no partition assigned"

    def _tables_check(self) -> str | None:
        if self.app.rebalancing:
            return "rebalancing"
        if not self.app.tables.recovery.completed.is_set():
            return "tables recovering"
        return None

    # partitions

    def active_partitions(self) -> list[Any]:
        """Assigned partitions of the agents' topics (table changelogs left out)."""
        changelogs = self.app.tables.changelog_topics
        return sorted(
            (tp for tp in self.app.assignor.assigned_actives() if tp.topic not in changelogs),
            key=lambda tp: (tp.topic, tp.partition),
        )

    # the sensor's callbacks

    def on_commit(self, consumer: Any) -> None:
        """After Faust committed: note what moved, when."""
        now = time.time()
        # Faust's Consumer keeps what it committed here; it has no public accessor.
        for tp, offset in list(consumer._committed_offset.items()):
            if offset is None or self.watch.committed_offsets.get(tp) == offset:
                continue
            self.watch.committed(tp.topic, tp.partition, offset)
            metrics.CONSUMER_LAG.committed((self.group, tp.topic, tp.partition), now)

    def on_assignment_done(self) -> None:
        """After a rebalance and table recovery: forget revoked partitions, rescan."""
        actives = self.active_partitions()
        self.watch.assigned((tp.topic, tp.partition) for tp in actives)
        now = time.time()
        for tp in actives:  # "since the last commit" starts at the assignment
            key = (self.group, tp.topic, tp.partition)
            metrics.CONSUMER_LAG.committed_at.setdefault(key, now)
        numbers = {tp.partition for tp in actives}
        for callback in self.on_assigned:
            task = asyncio.ensure_future(callback(numbers))
            # Keep a reference until done: the loop holds tasks only weakly.
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # the timer

    async def refresh(self) -> None:
        """Read the LSOs of the assigned partitions and recompute the lag figures."""
        actives = self.active_partitions()
        if not actives:
            metrics.CONSUMER_LAG.replace({})
            return
        consumer = self.app.consumer
        try:
            stable = await consumer.highwaters(*actives)
        except Exception as exc:  # the broker is away: readiness says so
            self.broker.failed(exc)
            log.warning("lag: cannot read the last stable offsets: %s", exc)
            return
        self.broker.ok()
        committed = consumer._committed_offset  # see on_commit
        now = time.time()
        figures = {}
        for tp in actives:
            end = stable.get(tp)
            if end is None or end < 0:
                continue
            position = await self._position(consumer, tp)
            key = (tp.topic, tp.partition)
            figures[(self.group, *key)] = self.watch.figure(
                key, end, committed.get(tp), position, now
            )
        metrics.CONSUMER_LAG.replace(figures)
        ready, _ = self.readiness.status()
        metrics.WORKER_READY.set(1 if ready else 0)

    @staticmethod
    async def _position(consumer: Any, tp: Any) -> int | None:
        try:
            return await asyncio.wait_for(consumer.position(tp), POSITION_TIMEOUT_SECONDS)
        except Exception:  # unknown for now (offset reset under way): lag counts it
            return None


def _sensor(health: WorkerHealth) -> Any:
    """A Faust sensor that feeds ``health`` (built here: Faust is imported on use)."""
    import faust

    class HealthSensor(faust.Sensor):
        def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
            health.watch.received(tp.topic, tp.partition, offset, message.timestamp)

        def on_commit_completed(self, consumer: Any, state: Any) -> None:
            health.on_commit(consumer)

        def on_rebalance_start(self, app: Any) -> dict:
            metrics.REBALANCES.inc()
            metrics.WORKER_READY.set(0)
            started = time.monotonic()
            return {"started": started, "assigned": started}

        def on_rebalance_return(self, app: Any, state: dict) -> None:
            state["assigned"] = time.monotonic()

        def on_rebalance_end(self, app: Any, state: dict) -> None:
            metrics.TABLE_RECOVERY_SECONDS.observe(time.monotonic() - state["assigned"])
            health.on_assignment_done()

    return HealthSensor()


def observe_worker(app: Any, settings: Settings) -> WorkerHealth:
    """Give a Faust worker its ``/metrics``, ``/healthz``, ``/readyz``, sensor and lag timer.

    Call once, while building the app (before it starts).
    """
    from streams.worker import add_metrics_page

    health = WorkerHealth(app, settings)
    metrics.set_build_info(settings.service_version)
    count_transactions()
    app.sensors.add(_sensor(health))
    add_metrics_page(app)

    @app.page("/healthz")
    async def _healthz(web: Any, request: Any) -> Any:
        return web.bytes(ALIVE, headers={"Content-Type": "text/plain"})

    @app.page("/readyz")
    async def _readyz(web: Any, request: Any) -> Any:
        status, body = health.readiness.answer()
        return web.bytes(body, status=status, headers={"Content-Type": JSON})

    @app.task
    async def _lag_timer() -> None:
        # Tasks start once the tables are recovered; then every interval, for good.
        while True:
            try:
                await health.refresh()
            except Exception:  # a metric must never stop the worker
                log.exception("lag: refresh failed")
            await asyncio.sleep(health.interval)

    return health


# --- the projector ------------------------------------------------------------------------


class ProjectionHealth:
    """The projector's lag (rows behind per partition), broker and database checks.

    A daemon thread reads every ``interval`` the LSO of each assigned partition, the record
    at the projector's stored offset (the lag exporter's read_committed probe: commit
    markers are not rows) and runs ``SELECT 1``; the figures are served from its registry.
    """

    def __init__(
        self,
        settings: Settings,
        name: str,
        database_url: str,
        stored: Callable[[], Mapping[TopicPartitionKey, int]],
        assigned: Callable[[], Iterable[TopicPartitionKey]],
        interval_seconds: float | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.database_url = database_url
        self.stored = stored
        self.assigned = assigned
        self.interval = interval_seconds or settings.metrics_interval_seconds
        self.rows: list[Any] = []
        self.broker = Heartbeat("broker", stale_after(self.interval))
        self.database = Heartbeat("database", stale_after(self.interval))
        self.readiness = Readiness()
        self.readiness.add(
            "partitions", lambda: None if list(self.assigned()) else "no partition assigned"
        )
        self.readiness.add("broker", self.broker.check)
        self.readiness.add("database", self.database.check)
        self.registry = CollectorRegistry()
        self.registry.register(self)  # type: ignore[arg-type]
        metrics.build_info(self.registry, settings.service_version)
        self.errors = Counter(
            "revledger_projection_lag_read_errors",
            "Reads of the projection's lag that failed (the figures are kept)",
            registry=self.registry,
        )
        self.last_success = Gauge(
            "revledger_projection_lag_last_success_timestamp_seconds",
            "End of the last read of the projection's lag without error",
            registry=self.registry,
        )
        self._stop = threading.Event()
        self._reader: Any = None

    def describe(self) -> list[Metric]:
        """The lag families without samples."""
        return self._families()

    def collect(self) -> list[Metric]:
        """Rows behind and seconds behind per topic and partition."""
        messages, seconds = families = self._families()
        for row in self.rows:
            labels = [self.name, row.topic, str(row.partition)]
            messages.add_metric(labels, row.messages)
            if row.seconds is not None:
                seconds.add_metric(labels, row.seconds)
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        labels = ["name", "topic", "partition"]
        return [
            GaugeMetricFamily(
                "revledger_projection_lag_messages",
                "Records from the projection's next unprojected one to the last stable offset",
                labels=labels,
            ),
            GaugeMetricFamily(
                "revledger_projection_lag_seconds",
                "Now minus the timestamp of the next record not yet in the database (0: none)",
                labels=labels,
            ),
        ]

    def read_once(self) -> bool:
        """One read of the lag and one database ping; True when both worked."""
        from streams.lag_exporter import BrokerReader, LagReadError, read_lag_from

        ok = True
        try:
            if self._reader is None:  # one admin client for the process, not one per read
                self._reader = BrokerReader(self.settings)
            self.rows = read_lag_from(self._reader, dict(self.stored()), sorted(self.assigned()))
            self.broker.ok()
        except LagReadError as exc:
            ok = False
            self.errors.inc()
            self.broker.failed(exc)
            log.warning("projection lag: %s", exc)
        if self._ping_database():
            self.database.ok()
        else:
            ok = False
        if ok:
            self.last_success.set(time.time())
        return ok

    def _ping_database(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.database_url, connect_timeout=5, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            self.database.failed(type(exc).__name__)  # no conninfo: it may hold a password
            return False
        return True

    def start(self) -> None:
        """Read every interval on a daemon thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.read_once()
                except Exception:  # keep serving the last figures
                    log.exception("projection lag: read failed")
                self._stop.wait(self.interval)

        threading.Thread(target=loop, name="projection-health", daemon=True).start()

    def stop(self) -> None:
        """Stop the reading thread."""
        self._stop.set()

    def serve(self, host: str, port: int) -> WSGIServer:
        """Start reading and serve ``/metrics``, ``/healthz``, ``/readyz`` (port 0: any)."""
        self.start()
        return serve_probes(self.registry, self.readiness, host, port, "projection")


__all__ = [
    "IMBALANCE_GRACE_SECONDS",
    "Heartbeat",
    "PartitionWatch",
    "ProjectionHealth",
    "Readiness",
    "WorkerHealth",
    "count_transactions",
    "lag_seconds",
    "observe_worker",
    "probe_app",
    "refuse_unbalanced",
    "serve_probes",
    "worker_lag",
]
