"""What applying an event can end in: statuses in check-precedence order.

Like TigerBeetle's ``CreateTransferStatus``: the enum order IS the order the checks run,
duplicate checks first (``exists`` is a success: same id, same payload). A status that
``is_transient()`` means "waiting for something that has not arrived yet": the event is
held (in the customer state) instead of rejected, and times out to the DLQ.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

from enum import StrEnum


class EntryStatus(StrEnum):
    """Outcome code of one event, in the order the checks run."""

    ok = "ok"
    # Idempotency: same event id seen before.
    exists = "exists"
    exists_with_different_payload = "exists_with_different_payload"
    # Reference checks.
    unknown_entity = "unknown_entity"
    unknown_currency = "unknown_currency"
    # Identity of business objects (an id re-used by a different event).
    invoice_exists = "invoice_exists"
    payment_exists = "payment_exists"
    contract_exists = "contract_exists"
    obligation_exists = "obligation_exists"
    # Waiting on a customer event that has not arrived (transient: held).
    invoice_missing = "invoice_missing"
    payment_missing = "payment_missing"
    contract_missing = "contract_missing"
    credit_note_missing = "credit_note_missing"
    # Consistency with what the event refers to.
    entity_mismatch = "entity_mismatch"
    currency_mismatch = "currency_mismatch"
    invoice_voided = "invoice_voided"
    invoice_has_applications = "invoice_has_applications"
    invoice_already_settled = "invoice_already_settled"
    unknown_invoice_line = "unknown_invoice_line"
    credit_exceeds_invoice = "credit_exceeds_invoice"
    # A credit note void that cannot be posted faithfully (a person corrects it).
    credit_note_split_unknown = "credit_note_split_unknown"
    credit_note_credit_used = "credit_note_credit_used"
    credit_note_after_write_off = "credit_note_after_write_off"
    credit_note_schedule_changed = "credit_note_schedule_changed"
    write_off_exceeds_amount_due = "write_off_exceeds_amount_due"
    refund_exceeds_payment = "refund_exceeds_payment"
    dispute_exceeds_payment = "dispute_exceeds_payment"
    # Revenue: contracts, obligations and their allocation.
    contract_cancelled = "contract_cancelled"
    unknown_obligation = "unknown_obligation"
    not_a_usage_obligation = "not_a_usage_obligation"
    ssp_all_zero = "ssp_all_zero"
    discount_exceeds_price = "discount_exceeds_price"
    modification_below_recognized = "modification_below_recognized"
    # The business clock only moves forward.
    clock_backwards = "clock_backwards"
    # Waiting on reference data (transient: held).
    unknown_product = "unknown_product"
    fx_rate_missing = "fx_rate_missing"
    # Limits of the wire and database types (signed 64-bit).
    amount_overflows = "amount_overflows"
    # A held event that nothing released before its timeout.
    orphan_event = "orphan_event"

    def is_success(self) -> bool:
        """``ok`` and ``exists``: the offset may be committed, nothing to report."""
        return self in (EntryStatus.ok, EntryStatus.exists)

    def is_transient(self) -> bool:
        """True when the event waits (held) for another event or for reference data."""
        return self in _TRANSIENT


_TRANSIENT = frozenset(
    {
        EntryStatus.invoice_missing,
        EntryStatus.payment_missing,
        EntryStatus.contract_missing,
        EntryStatus.credit_note_missing,
        EntryStatus.unknown_product,
        EntryStatus.fx_rate_missing,
    }
)

# Alias named after the brief: a rejection is an EntryStatus that is not a success.
Rejection = EntryStatus
