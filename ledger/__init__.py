"""revledger's pure ledger domain: money, accounts, entries, posting rules, replay.

Everything here is pure (no I/O, clock, environment, Kafka or database): functions take
events, state and reference data, and return new state and balanced journal entries.
``__all__`` pins the public API; other packages import from ``ledger`` (or from the
module named in a docstring), never from private names.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from ledger.accounts import (
    Account,
    AccountType,
    ProductFamily,
    Side,
    account_type,
    balance_of,
    normal_side,
    resolve_gl_code,
)
from ledger.book import (
    ExpiredHold,
    Outcome,
    OutcomeKind,
    RejectedHold,
    Release,
    apply,
    expire_holds,
    is_waiting,
    retry_holds,
)
from ledger.calendar import business_days_between, first_day, next_period, period_of
from ledger.codec import (
    entry_from_dict,
    entry_to_dict,
    event_from_json,
    state_from_json,
    state_to_json,
)
from ledger.entries import JournalEntry, JournalLine, make_entry_id
from ledger.errors import InvariantViolation, LedgerError, StateDecodeError, UnknownCurrency
from ledger.money import (
    MAX_MINOR,
    Amount,
    allocate,
    amount_overflows,
    convert,
    exponent,
    is_known_currency,
)
from ledger.reference import EntityInfo, ReferenceData
from ledger.replay import ReplayResult, replay, replay_all
from ledger.results import EntryStatus, Rejection
from ledger.state import (
    Balance,
    CustomerLedger,
    HeldEvent,
    InvoiceItem,
    InvoiceLineItem,
    PaymentItem,
    digest_of,
)

__all__ = [
    "MAX_MINOR",
    "Account",
    "AccountType",
    "Amount",
    "Balance",
    "CustomerLedger",
    "EntityInfo",
    "EntryStatus",
    "ExpiredHold",
    "HeldEvent",
    "InvariantViolation",
    "InvoiceItem",
    "InvoiceLineItem",
    "JournalEntry",
    "JournalLine",
    "LedgerError",
    "Outcome",
    "OutcomeKind",
    "PaymentItem",
    "ProductFamily",
    "ReferenceData",
    "RejectedHold",
    "Rejection",
    "Release",
    "ReplayResult",
    "Side",
    "StateDecodeError",
    "UnknownCurrency",
    "account_type",
    "allocate",
    "amount_overflows",
    "apply",
    "balance_of",
    "business_days_between",
    "convert",
    "digest_of",
    "entry_from_dict",
    "entry_to_dict",
    "event_from_json",
    "expire_holds",
    "exponent",
    "first_day",
    "is_known_currency",
    "is_waiting",
    "make_entry_id",
    "next_period",
    "normal_side",
    "period_of",
    "replay",
    "replay_all",
    "resolve_gl_code",
    "retry_holds",
    "state_from_json",
    "state_to_json",
]
