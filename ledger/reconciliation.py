"""Reconciliation: what should have moved against what did, per entity, day and currency.

Four checks, each comparing two sides gathered elsewhere (the SQL of
``connectors/postgres/recon.py``, the entries topic read by ``streams/recon.py``):

* ``billing_vs_ar``: invoices issued (gross), voids, credit notes and write-offs, from the
  billing documents, against the movements of the customer's receivable position (accounts
  receivable, and customer credit where a credit note exceeds what is due) in the entries
  posted for them. Sign: + raises what the customer owes.
* ``payments_vs_cash_clearing``: payments settled (amount net of the processor fee, as
  ``ledger/rules_payments.py`` posts them), refunds, lost disputes and dispute fees, and
  payouts, against the cash clearing movements of their entries. Sign: + is a debit.
* ``erp_ack_*``: every journal batch has exactly one accepted ERP import; a rejection, a
  second import, or no answer after ``max_age_days`` business days is a break
  (:func:`check_acks`).
* ``projection_vs_entries``: line counts and net amounts per entity, posting day, currency
  and account in PostgreSQL against ``ledger.entries.v1`` read up to the projection's
  stored offsets (a projection that is merely behind is not a break).

A side is a list of :class:`Movement` (one per event, entry or batch and key); the
comparison is on the :class:`Total` of each :class:`ReconKey`. Totals that agree give
nothing. Totals that differ give one :class:`Break` per key, naming the items whose two
sides differ (:class:`ItemDifference`). An item that moved nothing on the actual side for
a known reason (dead-lettered, presumably held, not processed yet: :func:`explanation_for`)
is *explained*; a break whose whole difference is explained has status ``explained``, any
other is ``open``.

Worked example: on 2024-03-05 US1 issued INV-1 (event ``ev-1``, 100.00 USD) and INV-2
(``ev-2``, 50.00 USD). ``ev-1`` posted Dr AR 100.00; ``ev-2`` was dead-lettered
(``unknown_product``). Expected 150.00, actual 100.00 on key (US1, 2024-03-05, USD,
``invoice.issued``); the 50.00 difference is ``ev-2``'s, explained by the DLQ: one break
``billing_vs_ar:US1:2024-03-05:USD:invoice.issued``, status ``explained``. Had ``ev-2``
been in no DLQ, held by no rule and long processed, the same break would be ``open``.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from ledger.calendar import business_days_between
from ledger.errors import UnknownCurrency
from ledger.money import exponent


class Check(StrEnum):
    """The four comparisons, in the order a run makes them."""

    billing = "billing"
    payments = "payments"
    acks = "acks"
    projection = "projection"


class BreakKind(StrEnum):
    """What disagrees; each kind belongs to one :class:`Check`."""

    billing_vs_ar = "billing_vs_ar"
    payments_vs_cash_clearing = "payments_vs_cash_clearing"
    erp_ack_missing = "erp_ack_missing"
    erp_ack_rejected = "erp_ack_rejected"
    erp_ack_duplicated = "erp_ack_duplicated"
    projection_vs_entries = "projection_vs_entries"

    @property
    def check(self) -> Check:
        """The check that finds this kind."""
        return _CHECK_OF_KIND[self]


_CHECK_OF_KIND: Mapping[BreakKind, Check] = {
    BreakKind.billing_vs_ar: Check.billing,
    BreakKind.payments_vs_cash_clearing: Check.payments,
    BreakKind.erp_ack_missing: Check.acks,
    BreakKind.erp_ack_rejected: Check.acks,
    BreakKind.erp_ack_duplicated: Check.acks,
    BreakKind.projection_vs_entries: Check.projection,
}


class Status(StrEnum):
    """``open``: someone must look; ``explained``: the difference has a known cause."""

    open = "open"
    explained = "explained"


class Cause(StrEnum):
    """Why an item moved nothing on the actual side, when it is not a break."""

    dead_lettered = "dead_lettered"
    held = "held"
    in_flight = "in_flight"
    awaiting_erp = "awaiting_erp"


# Break ids are keys on recon.breaks.v1 and an Avro/pydantic Identifier (at most 200).
MAX_BREAK_ID = 200
# Items named in a break's details text; the table keeps all of them.
MAX_ITEMS_IN_DETAILS = 10


@dataclass(frozen=True, slots=True, order=True)
class ReconKey:
    """Where two totals are compared: entity, business day, currency and what (``reference``).

    ``reference`` is the document type for billing and payments (``invoice.issued`` ...),
    the batch id for acks, the account for the projection.
    """

    entity: str
    day: dt.date
    currency: str
    reference: str


@dataclass(frozen=True, slots=True)
class Movement:
    """What one item (an event, an entry, a batch) contributes to one side of a key.

    ``item`` is what the two sides are matched on: the source event id for billing and
    payments, the entry id for the projection. ``count`` is compared only by checks that
    count (the projection counts journal lines).
    """

    key: ReconKey
    item: str
    amount_minor: int
    count: int = 1
    event_type: str | None = None
    customer_id: str | None = None
    event_ids: tuple[str, ...] = ()
    entry_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Total:
    """Sum of one side of a key: net amount in minor units and how many lines or items."""

    amount_minor: int = 0
    count: int = 0

    def plus(self, amount_minor: int, count: int) -> Total:
        """This total with one more movement."""
        return Total(self.amount_minor + amount_minor, self.count + count)


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why an item is not a break: its cause, a short reason code and a sentence."""

    cause: Cause
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class ItemDifference:
    """One item whose two sides differ within a key, and what is known about it."""

    key: ReconKey
    item: str
    expected_minor: int
    actual_minor: int
    expected_count: int = 0
    actual_count: int = 0
    event_type: str | None = None
    customer_id: str | None = None
    event_ids: tuple[str, ...] = ()
    entry_ids: tuple[str, ...] = ()
    explanation: Explanation | None = None
    note: str = ""

    @property
    def moved_nothing(self) -> bool:
        """True when nothing at all reached the actual side for this item."""
        return self.actual_minor == 0 and self.actual_count == 0


@dataclass(frozen=True, slots=True)
class Break:
    """A key whose two totals differ, with the items behind the difference.

    ``explained_minor`` is the part of ``expected_minor - actual_minor`` that explained
    items account for; ``status`` is ``explained`` when that is all of it.
    """

    kind: BreakKind
    key: ReconKey
    status: Status
    expected_minor: int
    actual_minor: int
    explained_minor: int = 0
    expected_count: int | None = None
    actual_count: int | None = None
    items: tuple[ItemDifference, ...] = field(default=())

    @property
    def break_id(self) -> str:
        """Deterministic id: the same difference gets the same id in every run."""
        return break_id(self.kind, self.key)

    @property
    def unexplained_minor(self) -> int:
        """The part of the difference no explanation covers."""
        return self.expected_minor - self.actual_minor - self.explained_minor

    @property
    def customer_id(self) -> str | None:
        """The customer, when every item of the break belongs to the same one."""
        customers = {item.customer_id for item in self.items if item.customer_id}
        return customers.pop() if len(customers) == 1 else None

    @property
    def event_ids(self) -> tuple[str, ...]:
        """Source events behind the break, each once, in item order."""
        return tuple(dict.fromkeys(e for item in self.items for e in item.event_ids))

    @property
    def entry_ids(self) -> tuple[str, ...]:
        """Journal entries behind the break, each once, in item order."""
        return tuple(dict.fromkeys(e for item in self.items for e in item.entry_ids))

    @property
    def details(self) -> str:
        """One paragraph for people: the key, both totals, and each item (up to ten)."""
        return describe(self)


def break_id(kind: BreakKind, key: ReconKey) -> str:
    """``<kind>:<entity>:<day>:<currency>:<reference>``, hashed when longer than 200."""
    parts = [str(kind), key.entity, key.day.isoformat(), key.currency, key.reference]
    text = ":".join(parts)
    if len(text) <= MAX_BREAK_ID:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    return ":".join([*parts[:4], digest])[:MAX_BREAK_ID]


# --- sides and differences -------------------------------------------------------------------


def totals(movements: Iterable[Movement]) -> dict[ReconKey, Total]:
    """Sum each key's movements: the totals one side gives."""
    found: dict[ReconKey, Total] = {}
    for movement in movements:
        found[movement.key] = found.get(movement.key, Total()).plus(
            movement.amount_minor, movement.count
        )
    return found


def differences(
    expected: Iterable[Movement], actual: Iterable[Movement], *, counts: bool = False
) -> list[ItemDifference]:
    """Items (per key) whose expected and actual amounts (or counts) differ, in key order."""
    merged: dict[tuple[ReconKey, str], ItemDifference] = {}
    for position, movements in enumerate((expected, actual)):
        for movement in movements:
            slot = (movement.key, movement.item)
            previous = merged.get(slot) or ItemDifference(movement.key, movement.item, 0, 0)
            merged[slot] = _with_movement(previous, movement, actual=position == 1)
    found = [
        item
        for item in merged.values()
        if item.expected_minor != item.actual_minor
        or (counts and item.expected_count != item.actual_count)
    ]
    return sorted(found, key=lambda item: (item.key, item.item))


def _with_movement(item: ItemDifference, movement: Movement, *, actual: bool) -> ItemDifference:
    if actual:
        amounts = {
            "actual_minor": item.actual_minor + movement.amount_minor,
            "actual_count": item.actual_count + movement.count,
        }
    else:
        amounts = {
            "expected_minor": item.expected_minor + movement.amount_minor,
            "expected_count": item.expected_count + movement.count,
        }
    return replace(
        item,
        **amounts,
        event_type=item.event_type or movement.event_type,
        customer_id=item.customer_id or movement.customer_id,
        event_ids=_union(item.event_ids, movement.event_ids),
        entry_ids=_union(item.entry_ids, movement.entry_ids),
    )


def _union(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*first, *second)))


def explain(
    found: Iterable[ItemDifference], explanations: Mapping[str, Explanation]
) -> list[ItemDifference]:
    """Attach ``explanations`` (by item) to the differences that moved nothing.

    An item that moved part of its amount is never explained: a DLQ record or a hold
    accounts for an event that did not post, not for one that posted the wrong amount.
    """
    return [
        replace(item, explanation=explanations[item.item])
        if item.moved_nothing and item.item in explanations
        else item
        for item in found
    ]


# --- the comparison ---------------------------------------------------------------------------


def compare(
    kind: BreakKind,
    expected: Mapping[ReconKey, Total],
    actual: Mapping[ReconKey, Total],
    items: Iterable[ItemDifference] = (),
    *,
    counts: bool = False,
) -> list[Break]:
    """One break per key whose totals differ, in key order.

    Args:
        kind: the kind of every break found.
        expected: what should have moved, per key.
        actual: what did move, per key.
        items: per-item differences (:func:`differences`, :func:`explain`); each break
            carries those of its key.
        counts: compare the counts too (the projection check counts lines).

    Returns:
        The breaks; none when every key's totals agree, whatever the items say.
    """
    by_key: dict[ReconKey, list[ItemDifference]] = {}
    for item in items:
        by_key.setdefault(item.key, []).append(item)
    found = []
    for key in sorted(set(expected) | set(actual)):
        want, have = expected.get(key, Total()), actual.get(key, Total())
        same_count = not counts or want.count == have.count
        if want.amount_minor == have.amount_minor and same_count:
            continue
        found.append(_break(kind, key, want, have, tuple(by_key.get(key, ())), counts))
    return found


def _break(
    kind: BreakKind,
    key: ReconKey,
    want: Total,
    have: Total,
    items: tuple[ItemDifference, ...],
    counts: bool,
) -> Break:
    explained = [item for item in items if item.explanation is not None]
    explained_minor = sum(item.expected_minor - item.actual_minor for item in explained)
    explained_count = sum(item.expected_count - item.actual_count for item in explained)
    residual = want.amount_minor - have.amount_minor - explained_minor
    count_residual = want.count - have.count - explained_count if counts else 0
    whole = bool(explained) and residual == 0 and count_residual == 0
    return Break(
        kind=kind,
        key=key,
        status=Status.explained if whole else Status.open,
        expected_minor=want.amount_minor,
        actual_minor=have.amount_minor,
        explained_minor=explained_minor,
        expected_count=want.count if counts else None,
        actual_count=have.count if counts else None,
        items=items,
    )


def reconcile(
    kind: BreakKind,
    expected: Sequence[Movement],
    actual: Sequence[Movement],
    explanations: Mapping[str, Explanation] | None = None,
    *,
    counts: bool = False,
) -> list[Break]:
    """:func:`compare` the totals of two sides, with their explained item differences."""
    found = explain(differences(expected, actual, counts=counts), explanations or {})
    return compare(kind, totals(expected), totals(actual), found, counts=counts)


# --- why an event moved nothing -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What the database knows about an event that posted nothing.

    ``known``: the event is in the ledger's input log (``source_events``); one that is not
    never reached the ledger, so no hold or processing delay can explain it.
    ``dlq_reasons``: reasons of its DLQ records (oldest first). ``after_last_posted``: its
    input record comes after the last one of its partition whose entries are projected, so
    the ledger (or the projection of its entries) has not reached it yet. ``waiting_on``: a
    document it needs that is not in the database (``invoice:<id>``, ``payment:<id>``).
    """

    event_id: str
    business_date: dt.date | None
    dlq_reasons: tuple[str, ...] = ()
    dlq_message: str | None = None
    after_last_posted: bool = False
    waiting_on: str | None = None
    known: bool = True


def explanation_for(
    facts: EventFacts, clock: dt.date | None, hold_timeout_days: int
) -> Explanation | None:
    """Why ``facts``' event posted nothing, or None when nothing explains it (a break).

    In this order: a DLQ record; nothing for an event not in the input log; not reached
    yet by the ledger; presumably held, while
    its business date is no more than ``hold_timeout_days`` business days before the
    business ``clock`` (the worker expires older holds to the DLQ, ``ledger.book``). The
    hold itself is not in the database, hence "presumably"; without a clock nothing can
    have expired.
    """
    if facts.dlq_reasons:
        reason = facts.dlq_reasons[-1]
        message = f": {facts.dlq_message}" if facts.dlq_message else ""
        return Explanation(Cause.dead_lettered, reason, f"dead-lettered ({reason}{message})")
    if not facts.known:
        return None
    if facts.after_last_posted:
        return Explanation(
            Cause.in_flight,
            "not_processed_yet",
            "after the last input its partition posted: not processed or projected yet",
        )
    waiting = f", waiting on {facts.waiting_on}" if facts.waiting_on else ""
    if clock is None or facts.business_date is None:
        return Explanation(
            Cause.held, "presumed_held", f"presumably held (no business clock yet){waiting}"
        )
    age = business_days_between(facts.business_date, clock)
    if age > hold_timeout_days:
        return None
    return Explanation(
        Cause.held,
        "presumed_held",
        f"presumably held: {age} of {hold_timeout_days} business days at {clock}{waiting}",
    )


# --- batches and ERP acknowledgements --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchFacts:
    """A journal batch sent to the ERP: its window's last posting day and control total."""

    batch_id: str
    entity: str
    day: dt.date
    currency: str
    total_minor: int


@dataclass(frozen=True, slots=True)
class AckFacts:
    """One ERP answer (``imported`` or ``rejected``) at ``position`` = (partition, offset)."""

    batch_id: str
    status: str
    message: str | None
    position: tuple[int, int]

    @property
    def is_import(self) -> bool:
        """An import of the batch (not a re-acknowledgement of an earlier one)."""
        re_ack = (self.message or "").startswith("already imported")
        return self.status == "imported" and not re_ack

    def describe(self) -> str:
        """``rejected at [0]@12: <message>``."""
        message = f": {self.message}" if self.message else ""
        return f"{self.status} at [{self.position[0]}]@{self.position[1]}{message}"


def check_acks(
    batches: Iterable[BatchFacts],
    acks: Iterable[AckFacts],
    as_of: dt.date | None,
    max_age_days: int,
) -> list[Break]:
    """Breaks of batches without exactly one accepted import, in key order.

    Per batch, acks in log order: two imports or more → ``erp_ack_duplicated`` (a re-ack
    "already imported" is not an import); one import, or only re-acks → fine; else a
    rejection → ``erp_ack_rejected``; else no answer → ``erp_ack_missing``, explained
    (awaiting the ERP) until the batch's day is more than ``max_age_days`` business days
    before ``as_of``.
    """
    by_batch: dict[str, list[AckFacts]] = {}
    for ack in acks:
        by_batch.setdefault(ack.batch_id, []).append(ack)
    found = []
    for batch in batches:
        answers = sorted(by_batch.get(batch.batch_id, ()), key=lambda ack: ack.position)
        found.extend(_batch_break(batch, answers, as_of, max_age_days))
    return sorted(found, key=lambda item: (item.key, item.kind))


def _batch_break(
    batch: BatchFacts, answers: list[AckFacts], as_of: dt.date | None, max_age_days: int
) -> list[Break]:
    imports = sum(1 for ack in answers if ack.is_import)
    imported = any(ack.status == "imported" for ack in answers)
    key = ReconKey(batch.entity, batch.day, batch.currency, batch.batch_id)
    note = "; ".join(ack.describe() for ack in answers) or "no answer from the ERP"
    item = ItemDifference(
        key,
        batch.batch_id,
        batch.total_minor,
        imports * batch.total_minor,
        expected_count=1,
        actual_count=imports,
        note=note,
    )
    if imports > 1:
        return [_ack_break(BreakKind.erp_ack_duplicated, item, Status.open)]
    if imported:
        return []
    if answers:
        return [_ack_break(BreakKind.erp_ack_rejected, item, Status.open)]
    age = business_days_between(batch.day, as_of) if as_of is not None else 0
    if age <= max_age_days:
        waiting = Explanation(
            Cause.awaiting_erp,
            "awaiting_erp",
            f"awaiting the ERP: {age} of {max_age_days} business days at {as_of}",
        )
        return [_ack_break(BreakKind.erp_ack_missing, replace(item, explanation=waiting), None)]
    return [_ack_break(BreakKind.erp_ack_missing, item, Status.open)]


def _ack_break(kind: BreakKind, item: ItemDifference, status: Status | None) -> Break:
    explained = item.expected_minor - item.actual_minor if item.explanation else 0
    return Break(
        kind=kind,
        key=item.key,
        status=status or Status.explained,
        expected_minor=item.expected_minor,
        actual_minor=item.actual_minor,
        explained_minor=explained,
        expected_count=item.expected_count,
        actual_count=item.actual_count,
        items=(item,),
    )


# --- words --------------------------------------------------------------------------------


def format_minor(amount_minor: int, currency: str) -> str:
    """Minor units with the currency's decimals (``12345 USD`` → ``123.45``), no float."""
    try:
        places = exponent(currency)
    except UnknownCurrency:
        return f"{amount_minor} minor units"
    sign = "-" if amount_minor < 0 else ""
    units, cents = divmod(abs(amount_minor), 10**places)
    return f"{sign}{units}.{cents:0{places}d}" if places else f"{sign}{units}"


def describe(found: Break) -> str:
    """The break in words: key, totals, difference, then each item (up to ten)."""
    key, currency = found.key, found.key.currency
    text = (
        f"{found.kind} {key.entity} {key.day} {currency} {key.reference}:"
        f" expected {format_minor(found.expected_minor, currency)},"
        f" actual {format_minor(found.actual_minor, currency)}"
    )
    if found.expected_count is not None and found.expected_count != found.actual_count:
        text += f" ({found.expected_count} vs {found.actual_count} counted)"
    if found.explained_minor:
        text += (
            f"; explained {format_minor(found.explained_minor, currency)},"
            f" unexplained {format_minor(found.unexplained_minor, currency)}"
        )
    parts = [_describe_item(item) for item in found.items[:MAX_ITEMS_IN_DETAILS]]
    if len(found.items) > MAX_ITEMS_IN_DETAILS:
        parts.append(f"and {len(found.items) - MAX_ITEMS_IN_DETAILS} more")
    return text + (". " + "; ".join(parts) if parts else "")


def _describe_item(item: ItemDifference) -> str:
    currency = item.key.currency
    what = f"{item.item} ({item.event_type})" if item.event_type else item.item
    text = (
        f"{what} expected {format_minor(item.expected_minor, currency)}"
        f" actual {format_minor(item.actual_minor, currency)}"
    )
    if item.entry_ids:
        text += f" entries {', '.join(item.entry_ids[:3])}"
        text += f" +{len(item.entry_ids) - 3}" if len(item.entry_ids) > 3 else ""
    elif item.moved_nothing and not item.note:
        text += " no entry"
    if item.note:
        text += f" [{item.note}]"
    if item.explanation is not None:
        text += f": {item.explanation.detail}"
    return text
