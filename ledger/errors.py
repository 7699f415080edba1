"""Exceptions of the ledger domain: raised only for bugs and undecodable state.

Bad input is NOT an exception here: posting rules return an :class:`ledger.results.EntryStatus`
(see :mod:`ledger.results`). An exception means the caller must stop (crash, alert, keep the
offset). The tree::

    LedgerError                     base of everything raised by ``ledger``
    ├── InvariantViolation          a ledger invariant is broken: a bug, never bad input
    ├── UnknownCurrency             a currency code absent from the currency table
    │                               (also a ValueError)
    └── StateDecodeError            persisted state cannot be decoded (also a ValueError)

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every exception raised by the ledger domain."""


class InvariantViolation(LedgerError):
    """Raised when a ledger invariant does not hold (unbalanced entry, negative amount ...).

    Always a bug: input that could break an invariant is rejected earlier with a status.
    """


class UnknownCurrency(LedgerError, ValueError):
    """Raised by :func:`ledger.money.exponent` for a code missing from the currency table."""


class StateDecodeError(LedgerError, ValueError):
    """Raised by :func:`ledger.codec.state_from_json` for malformed or float-bearing state."""
