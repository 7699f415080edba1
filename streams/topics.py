"""Every Kafka topic of the system, in one table: name, partitioning, key, records, retention.

Customer-keyed topics (``copartitioned=True``) all have ``settings.partitions`` partitions:
the task that owns partition p owns every balance of the customers hashed to p, and every
output of an exactly-once agent goes to partition p of a topic with the same count
(Faust keeps one transactional producer per owned partition).

``ledger.inputs.v1`` is the ledger's own log of what it applies, in order: Kafka gives no
order across topics, so the worker's sequencer writes down the order it chose, and a
rebuild that reads this log makes the same decisions byte for byte.

Input topics keep everything (``retention.ms=-1``) so a rebuild from the topics gives the
same entries; reference topics are compacted, never deleted by time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
_COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: what it carries and how it is kept."""

    name: str
    key: str
    records: tuple[str, ...]
    copartitioned: bool
    config: Mapping[str, str] = field(default_factory=dict)
    # Partition count for topics that are not customer-keyed.
    fixed_partitions: int = 1
    description: str = ""

    def partitions(self, copartition_count: int) -> int:
        """Partition count of this topic when customer-keyed topics have ``copartition_count``."""
        return copartition_count if self.copartitioned else self.fixed_partitions


BILLING = TopicSpec(
    "billing.events.v1",
    key="customer_id",
    records=(
        "CustomerUpserted",
        "InvoiceIssued",
        "InvoiceVoided",
        "CreditNoteIssued",
        "CreditNoteVoided",
        "InvoiceWrittenOff",
    ),
    copartitioned=True,
    config=_KEEP_FOREVER,
    description="invoices, credit notes, write-offs from the billing system",
)
PAYMENTS = TopicSpec(
    "payments.events.v1",
    key="customer_id",
    records=("PaymentSettled", "PaymentFailed", "RefundIssued", "DisputeClosed", "PayoutPaid"),
    copartitioned=True,
    config=_KEEP_FOREVER,
    description="settlements, failures, refunds, disputes, payouts from processors",
)
CONTRACTS = TopicSpec(
    "contracts.events.v1",
    key="customer_id",
    records=("ContractBooked", "ContractAmended", "ContractCancelled"),
    copartitioned=True,
    config=_KEEP_FOREVER,
    description="contracts and performance obligations from the CRM / CPQ",
)
USAGE = TopicSpec(
    "usage.events.v1",
    key="customer_id",
    records=("UsageRecorded",),
    copartitioned=True,
    config=_KEEP_FOREVER,
    description="priced metered usage",
)
RAW_STRIPE = TopicSpec(
    "raw.stripe.v1",
    key="Stripe customer id (processor:stripe:<account> for objects without one)",
    # Not Avro: the webhook body exactly as Stripe signed it, so the translator can be
    # re-run on what Stripe sent (streams/stripe_webhook.py, streams/stripe_translator.py).
    records=("StripeEvent (raw JSON)",),
    copartitioned=True,
    config=_KEEP_FOREVER,
    description="verified Stripe webhook events, bytes as received",
)
RAW_SALESFORCE = TopicSpec(
    "raw.salesforce.v1",
    key="Salesforce record id",
    # Not Avro: the Salesforce event message as received (CDC or platform event JSON, with
    # the record attached by the bridge), so the translator can be re-run on it
    # (streams/crm_translator.py, docs/CRM.md).
    records=("SalesforceEvent (raw JSON)",),
    copartitioned=True,
    config=_KEEP_FOREVER,
    description="Salesforce change / platform events, bytes as received",
)
CONTROL = TopicSpec(
    "control.v1",
    key="none (sent once to every partition)",
    records=("ClockAdvanced", "PeriodClosed"),
    copartitioned=True,
    config=_KEEP_FOREVER,
    description="business clock and period close, one copy per partition",
)
LEDGER_INPUTS = TopicSpec(
    "ledger.inputs.v1",
    key="customer_id (none for control records)",
    records=(
        *BILLING.records,
        *PAYMENTS.records,
        *CONTRACTS.records,
        *USAGE.records,
        *CONTROL.records,
    ),
    copartitioned=True,
    config=_KEEP_FOREVER,
    description="every valid input of a partition, in the order the ledger applies it",
)
REF_ENTITIES = TopicSpec(
    "ref.entities.v1",
    key="entity",
    records=("EntityConfigured",),
    copartitioned=False,
    config=_COMPACTED,
    description="legal entities and functional currencies",
)
REF_FX_RATES = TopicSpec(
    "ref.fx-rates.v1",
    key="base/quote@date",
    records=("FxRate",),
    copartitioned=False,
    config=_COMPACTED,
    description="FX rates of record",
)
REF_PRODUCTS = TopicSpec(
    "ref.products.v1",
    key="product_id",
    records=("ProductMapping",),
    copartitioned=False,
    config=_COMPACTED,
    description="products: family, recognition pattern, SSP",
)
REF_GL_MAPPINGS = TopicSpec(
    "ref.gl-mappings.v1",
    key="entity/account/family@effective_from",
    records=("GlMapping",),
    copartitioned=False,
    config=_COMPACTED,
    description="logical account to ERP account code, per entity",
)
ENTRIES = TopicSpec(
    "ledger.entries.v1",
    key="customer_id (none for control records)",
    # Ticks and period closes follow the entries they caused: the batcher closes its
    # windows on them at the same place in every replay.
    records=("JournalEntryPosted", *CONTROL.records),
    copartitioned=True,
    config=_KEEP_FOREVER,
    description="balanced journal entries, deterministic entry ids; applied control records",
)
REVENUE_SCHEDULES = TopicSpec(
    "revenue.schedules.v1",
    key="customer_id/contract_id (on the customer's partition)",
    records=("RevenueScheduled",),
    copartitioned=True,
    config=_COMPACTED,
    description="each contract's whole revenue schedule by obligation and month, when it changes",
)
JOURNAL_BATCHES = TopicSpec(
    "erp.journal-batches.v1",
    key="entity",
    records=("JournalBatch",),
    copartitioned=True,
    config=_KEEP_FOREVER,
    description="balanced journal batches for the ERP, one sequence per entity and partition",
)
ERP_ACKS = TopicSpec(
    "erp.acks.v1",
    key="batch_id",
    records=("ErpAck",),
    copartitioned=False,
    config=_KEEP_FOREVER,
    description="ERP import acknowledgements",
)
DLQ = TopicSpec(
    "dlq.v1",
    key="original key",
    records=("DlqRecord",),
    copartitioned=True,
    config=_KEEP_FOREVER,
    description="records that could not be processed: reason + original bytes",
)
RECON_BREAKS = TopicSpec(
    "recon.breaks.v1",
    key="break_id",
    records=("ReconBreak",),
    copartitioned=False,
    config=_KEEP_FOREVER,
    description="reconciliation differences",
)

TOPICS: tuple[TopicSpec, ...] = (
    BILLING,
    PAYMENTS,
    CONTRACTS,
    USAGE,
    RAW_STRIPE,
    RAW_SALESFORCE,
    CONTROL,
    LEDGER_INPUTS,
    REF_ENTITIES,
    REF_FX_RATES,
    REF_PRODUCTS,
    REF_GL_MAPPINGS,
    ENTRIES,
    REVENUE_SCHEDULES,
    JOURNAL_BATCHES,
    ERP_ACKS,
    DLQ,
    RECON_BREAKS,
)
BY_NAME: Mapping[str, TopicSpec] = {spec.name: spec for spec in TOPICS}
REFERENCE_TOPICS: tuple[TopicSpec, ...] = (
    REF_ENTITIES,
    REF_FX_RATES,
    REF_PRODUCTS,
    REF_GL_MAPPINGS,
)


def with_prefix(prefix: str, specs: Iterable[TopicSpec] = TOPICS) -> dict[str, str]:
    """Map each canonical topic name to ``prefix + name`` (tests isolate themselves this way)."""
    return {spec.name: f"{prefix}{spec.name}" for spec in specs}
