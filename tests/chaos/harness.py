"""Fault injection for the whole pipeline: ledger workers, batcher and projector under faults.

What it does (``docs/CHAOS.md`` is the operator's account):

* :class:`PrivateStack` starts a Kafka broker and an embedded PostgreSQL of the run's own
  (under the test's temporary directory, never the shared devstack directory, on ports of
  their own), so restarting or stopping them hurts no other test; :meth:`PrivateStack.close`
  stops both and anything else still running from that directory;
* :class:`Supervisor` runs the services as production's process manager would: the ledger
  worker (one, then two in one group), the batcher and ``revledger project --follow``, each
  restarted about a second after it exits, whatever the cause; every exit is counted;
* :func:`feed` produces a simulated company (:func:`connectors.simulation.saas.simulate_company`,
  with its redeliveries and early or late payments), paced by
  :class:`streams.simulate.LedgerWatch` before each tick and close (see ARCHITECTURE "Known
  defects"), and slips poison messages in between (:func:`poison_for`);
* :class:`FaultInjector` follows a schedule keyed on the feed's progress: SIGKILL of a ledger
  worker while it processes, right after it logs a commit's flush, or while its group
  rebalances; a broker restart; PostgreSQL stopped for a while;
* :func:`settle` waits until every output caught up, then reads every topic back at
  read_committed, for the invariants the tests check.

Must not import faust (the services run as subprocesses, as in production).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.simulation.saas import Simulation, simulate_company
from ledger.events import PeriodClosed, Record
from streams.devstack import kafka, paths, postgres, procs
from streams.devstack import stack as devstack
from streams.producer import RecordProducer, key_for, topic_for
from streams.reading import read_partitions_to_end
from streams.serde import SINGLE_OBJECT_MAGIC, Codec
from streams.settings import Settings
from streams.simulate import LedgerWatch
from streams.topics import BILLING, CONTRACTS, CONTROL, LEDGER_INPUTS, PAYMENTS, USAGE

from worker_process import ROOT, WorkerProcess, encode_unvalidated, start_worker

CODEC = Codec()
PROFILE_ENV = "REVLEDGER_CHAOS_PROFILE"
SEED_ENV = "REVLEDGER_CHAOS_SEED"
LEDGER = [sys.executable, "-m", "streams.cli", "worker"]
BATCHER = [sys.executable, "-m", "streams.cli", "batcher"]
# A restarted service waits this long first, as a process manager's restart delay would.
RESTART_DELAY_SECONDS = 1.0
# Faust logs this when a worker finished recovery and processes (streams/faust_fixes.py).
READY_LINE = "Worker ready"
# How often the group's committed offsets are read to see a commit land (kill-committing).
COMMIT_POLL_SECONDS = 0.02
# Logged when a worker gets an assignment: its group is rebalancing.
REBALANCE_LINE = re.compile(r"generation id \d+ app consumers id")
POISON_KINDS = ("garbage", "unknown_schema", "invalid_value", "wrong_topic")
KILL_KINDS = ("kill-processing", "kill-committing", "kill-rebalance")


@dataclass(frozen=True)
class Profile:
    """How big a run is and how many faults it takes."""

    name: str
    customers: int
    months: int
    kills: int
    broker_restarts: int
    postgres_stops: int
    postgres_down_seconds: float
    poison_rate: float = 0.01
    duplicate_rate: float = 0.10
    early_payment_rate: float = 0.20
    late_arrival_rate: float = 0.25
    partitions: int = 4
    # Seconds each wait for the pipeline to catch up may take before the run gives up.
    settle_timeout: float = 600.0
    # The company, the poison and the fault points when REVLEDGER_CHAOS_SEED is not set:
    # a CI run is repeatable (a kill's exact instant still depends on timing).
    seed: int = 101
    # The kinds of kill, taken in turn.
    kill_kinds: tuple[str, ...] = KILL_KINDS


PROFILES = {
    # About 3,000 records; part of `make test` (about 4 minutes on 2 cores).
    "short": Profile("short", 80, 12, kills=3, broker_restarts=1, postgres_stops=1,
                     postgres_down_seconds=30.0, settle_timeout=300.0, seed=101),
    # About 20,000 records: `make chaos`.
    "full": Profile("full", 360, 24, kills=12, broker_restarts=2, postgres_stops=2,
                    postgres_down_seconds=30.0, settle_timeout=900.0, seed=303),
    # Narrow profiles to hunt one kind of fault (run with REVLEDGER_CHAOS_PROFILE=<name>
    # pytest -s tests/chaos): only kills right after a commit, one worker;
    "commit-kills": Profile("commit-kills", 160, 12, kills=10, broker_restarts=0,
                            postgres_stops=0, postgres_down_seconds=0.0,
                            settle_timeout=600.0, seed=505,
                            kill_kinds=("kill-committing",)),
    # and kills during rebalances and after commits, two workers.
    "rebalance-kills": Profile("rebalance-kills", 160, 12, kills=10, broker_restarts=0,
                               postgres_stops=0, postgres_down_seconds=0.0,
                               settle_timeout=600.0, seed=505,
                               kill_kinds=("kill-rebalance", "kill-committing")),
}  # fmt: skip


def profile_from_env() -> Profile | None:
    """The profile ``REVLEDGER_CHAOS_PROFILE`` names (default ``short``); None for ``off``.

    The short profile is part of ``make test``; ``make chaos`` runs the full one.

    Raises:
        ValueError: an unknown profile name.
    """
    name = os.environ.get(PROFILE_ENV, "short").strip().lower() or "short"
    if name == "off":
        return None
    if name not in PROFILES:
        raise ValueError(f"{PROFILE_ENV}={name!r}: expected one of {', '.join(PROFILES)}, off")
    return PROFILES[name]


def seed_from_env(profile: Profile) -> int:
    """``REVLEDGER_CHAOS_SEED``: a number, or ``random`` for a fresh one; else the profile's.

    The seed is printed by the tests, so a random run can be repeated.
    """
    value = os.environ.get(SEED_ENV, "").strip().lower()
    if value == "random":
        return random.SystemRandom().randrange(1, 10**6)
    return int(value) if value else profile.seed


# --- the private broker and database -----------------------------------------------------


# One restart at a time patches the devstack's port choice (a broker restart and a
# PostgreSQL stop run in two threads): two overlapping patches could restore each other
# in the wrong order and leave the patched function in place for the rest of the session.
_PORTS_LOCK = threading.Lock()


@contextlib.contextmanager
def _same_ports() -> Iterator[None]:
    """Restart a service on its previous port.

    The devstack picks the previous port only when a plain ``bind`` succeeds, which fails
    while connections of the stopped server sit in TIME_WAIT; both servers bind with
    SO_REUSEADDR, so the port is theirs again. Clients must find the service where it was.
    """

    def previous_or_free(preferred: int | None = None) -> int:
        return preferred if preferred else procs.free_port()

    with (
        _PORTS_LOCK,
        mock.patch.object(kafka, "free_port", previous_or_free),
        mock.patch.object(postgres, "free_port", previous_or_free),
    ):
        yield


class PrivateStack:
    """A Kafka broker and a PostgreSQL server of this run only, under ``root``."""

    def __init__(self, root: Path) -> None:
        shared = paths.devstack_dir().resolve()
        if root.resolve() == shared or shared in root.resolve().parents:
            raise ValueError(f"{root} is the shared devstack directory: faults would hit it")
        self.root = root
        self.jars = devstack.fetch()
        self.kafka = self._start_broker()
        try:
            self.postgres = postgres.start(root)
        except BaseException:
            procs.stop_process_group(self.kafka.pid, str(kafka.config_path(root)))
            raise

    def _start_broker(self) -> kafka.KafkaProcess:
        """``kafka.start``, tried twice.

        Seen once on the shared machine: the start reported "Kafka exited during startup"
        while the broker it spawned came up and kept running. Whatever runs with this
        stack's config is stopped before the second try, so nothing is left behind.
        """
        marker = str(kafka.config_path(self.root))
        for attempt in (1, 2):
            try:
                return kafka.start(self.root, self.jars)
            except kafka.KafkaError:
                for pid in procs.find_pids(marker):
                    procs.stop_process_group(pid, marker)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @property
    def bootstrap_servers(self) -> str:
        """The broker's ``host:port`` (the same across restarts)."""
        return self.kafka.bootstrap_servers

    @property
    def database_url(self) -> str:
        """The revledger database of the private server."""
        return self.postgres.database_url

    def stop_kafka(self) -> None:
        """SIGTERM the broker (controlled shutdown), SIGKILL after 30 s."""
        procs.stop_process_group(self.kafka.pid, str(kafka.config_path(self.root)))

    def start_kafka(self) -> None:
        """Start the broker again on its port and wait until it answers.

        Raises:
            RuntimeError: it came up on another port (clients would not find it).
        """
        before = self.kafka.bootstrap_servers
        with _same_ports():
            self.kafka = self._start_broker()
        if self.kafka.bootstrap_servers != before:
            raise RuntimeError(f"broker restarted on {self.kafka.bootstrap_servers}, not {before}")

    def stop_postgres(self) -> None:
        """``pg_ctl stop -m fast``: sessions are cut, as a crashed or failed-over server does."""
        postgres.stop(self.root, self.postgres.pid)

    def start_postgres(self) -> None:
        """Start the server again on its port.

        Raises:
            RuntimeError: it came up on another port.
        """
        before = self.postgres.port
        with _same_ports():
            self.postgres = postgres.start(self.root)
        if self.postgres.port != before:
            raise RuntimeError(f"PostgreSQL restarted on port {self.postgres.port}, not {before}")

    def close(self) -> list[int]:
        """Stop both servers, then anything else still running from this stack's directory.

        Also the data directories are deleted (the logs are kept): nothing of the run
        lingers for later tests. Returns the pids of leftovers that had to be stopped.
        """
        with contextlib.suppress(Exception):
            postgres.stop(self.root, self.postgres.pid)
        procs.stop_process_group(self.kafka.pid, str(kafka.config_path(self.root)))
        marker = str(self.root.resolve())
        leftovers = procs.find_pids(marker)
        for pid in leftovers:
            procs.stop_process_group(pid, marker, timeout=10.0)
        for data in (kafka.kafka_dir(self.root) / "data", postgres.data_dir(self.root)):
            shutil.rmtree(data, ignore_errors=True)
        return leftovers


# --- supervised services -----------------------------------------------------------------


@dataclass
class Service:
    """One service the supervisor keeps running, with what happened to it."""

    name: str
    settings: Settings
    log_path: Path
    argv: list[str]
    wanted: bool = True
    worker: WorkerProcess | None = None
    log_start: int = 0  # size of the log when the current process started
    starts: int = 0
    exited_at: float | None = None
    injected_kill: bool = False
    exits: Counter = field(default_factory=Counter)  # exit code (or "SIGKILL injected") -> n

    def alive(self) -> bool:
        """Whether the current process runs."""
        return self.worker is not None and self.worker.process.poll() is None

    def log_size(self) -> int:
        """Bytes in the log so far (an incarnation's lines start after its ``log_start``)."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, start: int) -> str:
        """The log from byte ``start``."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as handle:
            handle.seek(start)
            return handle.read().decode(errors="replace")


class Supervisor:
    """Restarts every wanted service that exited, after :data:`RESTART_DELAY_SECONDS`."""

    def __init__(self) -> None:
        self.services: dict[str, Service] = {}
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    def add(self, service: Service) -> Service:
        """Start ``service`` and keep it running."""
        with self.lock:
            self.services[service.name] = service
            self._start(service)
        return service

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def _start(self, service: Service) -> None:
        service.log_start = service.log_size()
        service.worker = start_worker(service.settings, service.log_path, argv=service.argv)
        service.starts += 1
        service.exited_at = None
        service.injected_kill = False
        service.wanted = True

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            with self.lock:
                for service in self.services.values():
                    self._check(service)

    def _check(self, service: Service) -> None:
        if service.worker is None or service.alive():
            return
        if service.exited_at is None:
            service.exited_at = time.monotonic()
            code = service.worker.process.returncode
            service.exits["SIGKILL injected" if service.injected_kill else code] += 1
        if service.wanted and time.monotonic() - service.exited_at >= RESTART_DELAY_SECONDS:
            self._start(service)

    def kill(self, name: str) -> bool:
        """SIGKILL ``name`` (no shutdown, no final commit); False if it was not running."""
        with self.lock:
            service = self.services[name]
            if not service.alive():
                return False
            assert service.worker is not None
            service.injected_kill = True
            service.worker.process.send_signal(signal.SIGKILL)
            service.worker.process.wait(10)
            self._check(service)
            return True

    def restart_gracefully(self, name: str) -> None:
        """SIGTERM ``name`` (it leaves its group at once), then start it again."""
        with self.lock:
            service = self.services[name]
            if service.worker is not None and service.alive():
                service.worker.stop()
                service.exits["SIGTERM (rebalance)"] += 1
            self._start(service)

    def stop_all(self) -> None:
        """Stop watching and SIGTERM every service (SIGKILL after 30 s)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with self.lock:
            for service in self.services.values():
                service.wanted = False
                if service.worker is not None:
                    service.worker.stop()

    def crashes(self) -> dict[str, dict[str, int]]:
        """Exits that were not injected, per service (exit code -> count)."""
        return {
            name: {str(code): n for code, n in s.exits.items() if code != "SIGKILL injected"}
            for name, s in self.services.items()
        }


def wait_for_line(service: Service, pattern: str | re.Pattern, start: int, timeout: float) -> bool:
    """Whether ``pattern`` appears in ``service``'s log after byte ``start`` within ``timeout``."""
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if regex.search(service.log_since(start)):
            return True
        time.sleep(0.02)
    return False


# --- input: the simulated company and poison ---------------------------------------------


def company(profile: Profile, seed: int) -> Simulation:
    """The simulated company of a run: the profile's redeliveries and out-of-order payments."""
    return simulate_company(
        profile.customers,
        profile.months,
        seed,
        duplicate_rate=profile.duplicate_rate,
        early_payment_rate=profile.early_payment_rate,
        late_arrival_rate=profile.late_arrival_rate,
    )


@dataclass(frozen=True)
class Poison:
    """A message the sequencer must dead-letter: where it went and why it is bad."""

    kind: str
    topic: str  # unprefixed
    key: bytes
    value: bytes


def poison_for(record: Record, number: int, seed: int, rng: random.Random) -> Poison:
    """A poison message beside ``record`` (same key, so the same partition), unique bytes.

    Kinds, in turn: random bytes (no known framing), single-object framing with an unknown
    schema fingerprint, Avro that pydantic refuses (``currency="usd"``), and a valid record
    of a fresh event id on a topic it does not belong to.
    """
    kind = POISON_KINDS[number % len(POISON_KINDS)]
    key = key_for(record) or b""
    topic = topic_for(record).name
    tag = f"poison-{seed}-{number}"
    if kind == "garbage":
        value = b"\x7f" + tag.encode() + rng.randbytes(16)
    elif kind == "unknown_schema":
        value = SINGLE_OBJECT_MAGIC + rng.randbytes(8) + tag.encode()
    elif kind == "invalid_value" and "currency" in type(record).model_fields:
        value = encode_unvalidated(record.model_copy(update={"event_id": tag}), currency="usd")
    else:
        kind = "wrong_topic"
        fresh = record.model_copy(update={"event_id": tag})
        topic = next(
            spec.name for spec in (BILLING, PAYMENTS, CONTRACTS, USAGE) if spec.name != topic
        )
        value = CODEC.encode(fresh, topic=topic)
    return Poison(kind, topic, key, value)


@dataclass
class Feed:
    """What :func:`feed` produced; ``done``/``total`` are read by the fault injector."""

    total: int
    done: int = 0
    sequenced: int = 0
    poison: list[Poison] = field(default_factory=list)
    seconds: float = 0.0


def feed(
    settings: Settings, simulation: Simulation, progress: Feed, seed: int, rate: float
) -> None:
    """Produce the company as :func:`streams.simulate.produce_simulation` does, plus poison.

    Before each tick or close, waits (:class:`LedgerWatch`) until the worker sequenced
    every valid record produced before it; poison is not sequenced, so it is not counted.
    """
    started = time.monotonic()
    rng = random.Random(seed * 7919)
    producer = RecordProducer(settings, CODEC)
    watch = LedgerWatch(settings, timeout=600.0)
    controls = 0
    try:
        producer.send_all(simulation.reference)
        for record in simulation.records:
            spec = topic_for(record)
            if spec is CONTROL:
                producer.flush(300)
                watch(progress.sequenced, controls if isinstance(record, PeriodClosed) else 0)
                controls += settings.partitions
            producer.send(record)
            progress.sequenced += (
                settings.partitions if spec is CONTROL else int(spec.copartitioned)
            )
            if spec is not CONTROL and key_for(record) and rng.random() < rate:
                bad = poison_for(record, len(progress.poison), seed, rng)
                producer.send_raw(bad.topic, bad.key, bad.value)
                progress.poison.append(bad)
            progress.done += 1
        producer.flush(300)
        watch(progress.sequenced, controls)
    finally:
        watch.close()
        progress.seconds = time.monotonic() - started


# --- faults --------------------------------------------------------------------------------


@dataclass
class FaultRecord:
    """One injected fault: when (feed progress), what, how long it took, what was seen."""

    kind: str
    at_progress: float
    at: float = field(default_factory=time.time)  # wall clock, to line up with records
    target: str = ""
    seconds: float = 0.0
    note: str = ""


def schedule(profile: Profile, rng: random.Random) -> list[tuple[float, str]]:
    """Faults at random points of the feed (between 5 % and 75 % of its records).

    Not later: a fault takes up to a minute (recovery, rebalance, 30 s without the
    database) and the paced feed goes on meanwhile; it must still be running.
    """
    kinds = [profile.kill_kinds[i % len(profile.kill_kinds)] for i in range(profile.kills)]
    kinds += ["broker-restart"] * profile.broker_restarts
    kinds += ["postgres-stop"] * profile.postgres_stops
    rng.shuffle(kinds)
    points = sorted(rng.uniform(0.05, 0.75) for _ in kinds)
    return list(zip(points, kinds, strict=True))


class FaultInjector:
    """Injects the scheduled faults as the feed passes their points, in its own thread."""

    def __init__(
        self,
        plan: list[tuple[float, str]],
        progress: Feed,
        supervisor: Supervisor,
        stack: PrivateStack,
        profile: Profile,
        second_ledger: Callable[[], Service],
        rng: random.Random,
        settings: Settings | None = None,
    ) -> None:
        self.plan = plan
        self.progress = progress
        self.supervisor = supervisor
        self.stack = stack
        self.profile = profile
        self.second_ledger = second_ledger
        self.rng = rng
        self.settings = settings  # the ledger's app id and topics, for kill-committing
        self.done: list[FaultRecord] = []
        self.errors: list[str] = []
        self.feed_over = threading.Event()
        self._postgres_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)

    def start(self) -> None:
        """Start injecting."""
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait until every fault was injected."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.errors.append(f"fault injection still running after {timeout:.0f} s")

    def _run(self) -> None:
        aside: list[threading.Thread] = []
        for point, kind in self.plan:
            while self.progress.done < point * self.progress.total and not self.feed_over.is_set():
                time.sleep(0.05)
            record = FaultRecord(kind, self.progress.done / self.progress.total)
            if kind == "postgres-stop":  # touches no Kafka client: kills go on meanwhile
                aside.append(threading.Thread(target=self._inject, args=(record,), daemon=True))
                aside[-1].start()
            else:
                self._inject(record)
        for thread in aside:
            thread.join()

    def _inject(self, record: FaultRecord) -> None:
        started = time.monotonic()
        try:
            getattr(self, "_" + record.kind.replace("-", "_"))(record)
        except Exception:
            self.errors.append(f"{record.kind}: {traceback.format_exc(limit=5)}")
        record.seconds = time.monotonic() - started
        self.done.append(record)

    def _ledgers(self) -> list[Service]:
        return [s for n, s in self.supervisor.services.items() if n.startswith("ledger")]

    def _ready_ledger(self, record: FaultRecord) -> Service:
        """A ledger worker that finished recovery (waits up to 3 minutes for one)."""
        candidates = self._ledgers()
        self.rng.shuffle(candidates)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            for service in candidates:
                if service.alive() and READY_LINE in service.log_since(service.log_start):
                    return service
            time.sleep(0.1)
        record.note += "no ledger worker ready after 180 s; "
        return candidates[0]

    def _kill(self, service: Service, record: FaultRecord) -> None:
        record.target = service.name
        if not self.supervisor.kill(service.name):
            record.note += "target was not running; "

    def _kill_processing(self, record: FaultRecord) -> None:
        service = self._ready_ledger(record)
        time.sleep(self.rng.uniform(0.2, 2.5))
        self._kill(service, record)

    def _kill_committing(self, record: FaultRecord) -> None:
        """SIGKILL a ledger worker as soon as its group's committed offsets move.

        A transaction commits its consumer offsets with its outputs, so offsets that moved
        mean a commit just ended: the kill lands between it and the next one (no log line
        marks a commit; Faust logs its producer flush only when the buffer was full).
        """
        service = self._ready_ledger(record)
        if not self._wait_for_commit(timeout=30):
            record.note += "no commit seen in 30 s; "
        self._kill(service, record)

    def _wait_for_commit(self, timeout: float) -> bool:
        """Whether the ledger group's committed offsets on the input log moved in time."""
        if self.settings is None:
            time.sleep(self.rng.uniform(0.0, 0.5))
            return False
        topic = self.settings.topic_prefix + LEDGER_INPUTS.name
        partitions = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
        reader = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": self.settings.app_id,  # read its offsets; never joins it
                "enable.auto.commit": False,
            }
        )
        try:
            first = [tp.offset for tp in reader.committed(partitions, timeout=10)]
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                time.sleep(COMMIT_POLL_SECONDS)
                if [tp.offset for tp in reader.committed(partitions, timeout=10)] != first:
                    return True
            return False
        finally:
            reader.close()

    def _kill_rebalance(self, record: FaultRecord) -> None:
        """Start (or restart) the second worker; kill one of the two as the group rebalances."""
        watched = self.supervisor.services["ledger-a"]
        start = watched.log_size()
        if "ledger-b" in self.supervisor.services:
            self.supervisor.restart_gracefully("ledger-b")
        else:
            self.supervisor.add(self.second_ledger())
        if not wait_for_line(watched, REBALANCE_LINE, start, timeout=60):
            record.note += "no rebalance seen on ledger-a in 60 s; "
        time.sleep(self.rng.uniform(0.0, 1.5))
        self._kill(self.supervisor.services[self.rng.choice(["ledger-a", "ledger-b"])], record)

    def _broker_restart(self, record: FaultRecord) -> None:
        record.target = "kafka"
        self.stack.stop_kafka()
        time.sleep(self.rng.uniform(2.0, 8.0))
        self.stack.start_kafka()

    def _postgres_stop(self, record: FaultRecord) -> None:
        # One outage at a time: two stops drawn close together would overlap into one.
        with self._postgres_lock:
            record.target = "postgresql"
            self.stack.stop_postgres()
            time.sleep(self.profile.postgres_down_seconds)
            self.stack.start_postgres()


# --- reading back ------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A record read back at read_committed: where it is and its bytes."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int = 0  # when it was produced (to line it up with the faults)


def read_topic(settings: Settings, name: str) -> list[Message]:
    """Every committed record of topic ``name`` (unprefixed), by partition and offset."""
    found = [
        Message(
            m.partition(),
            m.offset(),
            m.key(),
            m.value(),
            tuple(m.headers() or ()),
            m.timestamp()[1],
        )
        for m in read_partitions_to_end(settings, settings.topic_prefix + name)
    ]
    return sorted(found, key=lambda m: (m.partition, m.offset))


def by_partition(messages: list[Message], partitions: int) -> dict[int, list[Message]]:
    """``messages`` grouped by partition, each in offset order."""
    grouped: dict[int, list[Message]] = {p: [] for p in range(partitions)}
    for message in messages:
        grouped[message.partition].append(message)
    return grouped


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    interval: float = 2.0,
    progress: Callable[[], object] | None = None,
    quiet: float = 90.0,
) -> bool:
    """Poll ``condition`` until it holds; False after ``timeout`` seconds.

    With ``progress`` (e.g. a record count), also False once its value stayed the same for
    ``quiet`` seconds: a stalled stage is reported in a minute and a half, not after the
    whole timeout (which is for a slow machine, not a stuck service).
    """
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        if condition():
            return True
        now = time.monotonic()
        if now > deadline:
            return False
        if progress is not None:
            value = progress()
            if value != last:
                last, since = value, now
            elif now - since > quiet:
                return False
        time.sleep(interval)


def projected_offsets(database_url: str) -> dict[tuple[str, int], int]:
    """The projector's stored next offset per (topic, partition); empty if unreachable."""
    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT topic, kafka_partition, next_offset FROM revledger.projection_offsets"
            ).fetchall()
    except psycopg.Error:
        return {}
    return {(topic, int(partition)): int(offset) for topic, partition, offset in rows}


def projected_past(database_url: str, topics: dict[str, list[Message]]) -> bool:
    """Whether the projector stored offsets past the last record of each partition given."""
    stored = projected_offsets(database_url)
    return all(
        stored.get((topic, m.partition), 0) > m.offset
        for topic, messages in topics.items()
        for m in messages
    )


def projected_counts(database_url: str) -> tuple[int, int, int]:
    """(journal entries, journal batches, DLQ records) in the projection; -1 if unreachable."""
    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM revledger.journal_entries),"
                " (SELECT count(*) FROM revledger.journal_batches),"
                " (SELECT count(*) FROM revledger.dlq_records)"
            ).fetchone()
    except psycopg.Error:
        return (-1, -1, -1)
    assert row is not None
    return (int(row[0]), int(row[1]), int(row[2]))


def copy_topic(source: Settings, target: Settings, name: str) -> int:
    """Copy topic ``name`` record for record (key, value, headers) to the same partition.

    One idempotent producer keeps each partition's order. Returns the records copied.
    """
    producer = Producer({"bootstrap.servers": target.bootstrap_servers, "enable.idempotence": True})
    messages = read_topic(source, name)
    for message in messages:
        while True:
            try:
                producer.produce(
                    target.topic_prefix + name,
                    key=message.key,
                    value=message.value,
                    headers=list(message.headers),
                    partition=message.partition,
                )
                break
            except BufferError:
                producer.poll(0.1)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"{left} records of {name} not copied")
    return len(messages)


def service(settings: Settings, workdir: Path, name: str, argv: list[str]) -> Service:
    """A service with its own log and (for Faust apps) its own table folder."""
    own = settings.model_copy(update={"data_dir": workdir / name})
    return Service(name, own, workdir / f"{name}.log", argv)


def projector_argv(database_url: str) -> list[str]:
    """``revledger project --follow`` on ``database_url`` (what the CLI command runs)."""
    return [
        sys.executable,
        "-m",
        "streams.projection",
        "--follow",
        "--database-url",
        database_url,
        "--batch-size",
        "500",
    ]


__all__ = [
    "BATCHER",
    "CODEC",
    "LEDGER",
    "PROFILES",
    "ROOT",
    "FaultInjector",
    "Feed",
    "Message",
    "PrivateStack",
    "Profile",
    "Service",
    "Supervisor",
    "by_partition",
    "company",
    "copy_topic",
    "feed",
    "profile_from_env",
    "projected_counts",
    "projected_offsets",
    "projected_past",
    "projector_argv",
    "read_topic",
    "schedule",
    "seed_from_env",
    "service",
    "wait_until",
]
