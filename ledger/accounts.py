"""The logical chart of accounts (DESIGN §5) and its mapping to each entity's ERP codes.

Accounts here are logical: ``revenue`` is one account with a ``product_family`` dimension
(subscription, usage, services); each entity maps (account, family) to its own GL code
with effective dates, resolved by :func:`resolve_gl_code` when batches are built.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from enum import StrEnum

from ledger.events import GlMapping


class Side(StrEnum):
    """Side of a journal line."""

    debit = "debit"
    credit = "credit"

    def opposite(self) -> Side:
        """The other side (used to reverse an entry)."""
        return Side.credit if self is Side.debit else Side.debit


class AccountType(StrEnum):
    """Balance-sheet or income-statement class of an account."""

    asset = "asset"
    liability = "liability"
    income = "income"
    expense = "expense"


class Account(StrEnum):
    """Logical accounts of the subledger, in chart order."""

    accounts_receivable = "accounts_receivable"
    unbilled_receivable = "unbilled_receivable"
    cash_clearing = "cash_clearing"
    bank = "bank"
    deferred_revenue = "deferred_revenue"
    tax_payable = "tax_payable"
    customer_credit = "customer_credit"
    revenue = "revenue"
    contra_revenue = "contra_revenue"
    processor_fees = "processor_fees"
    bad_debt = "bad_debt"
    chargeback_loss = "chargeback_loss"
    # One account for gains and losses: a debit balance is a net loss.
    realized_fx = "realized_fx"


class ProductFamily(StrEnum):
    """Revenue dimension: which product family a revenue line belongs to."""

    subscription = "subscription"
    usage = "usage"
    services = "services"


_TYPES: dict[Account, AccountType] = {
    Account.accounts_receivable: AccountType.asset,
    Account.unbilled_receivable: AccountType.asset,
    Account.cash_clearing: AccountType.asset,
    Account.bank: AccountType.asset,
    Account.deferred_revenue: AccountType.liability,
    Account.tax_payable: AccountType.liability,
    Account.customer_credit: AccountType.liability,
    Account.revenue: AccountType.income,
    Account.contra_revenue: AccountType.expense,
    Account.processor_fees: AccountType.expense,
    Account.bad_debt: AccountType.expense,
    Account.chargeback_loss: AccountType.expense,
    Account.realized_fx: AccountType.income,
}

# Accounts whose lines carry the product_family dimension.
FAMILY_ACCOUNTS = frozenset({Account.revenue, Account.contra_revenue, Account.deferred_revenue})


def account_type(account: Account) -> AccountType:
    """Asset, liability, income or expense."""
    return _TYPES[account]


def normal_side(account: Account) -> Side:
    """The side on which ``account`` increases: debit for assets and expenses."""
    if _TYPES[account] in (AccountType.asset, AccountType.expense):
        return Side.debit
    return Side.credit


def balance_of(account: Account, debits_minor: int, credits_minor: int) -> int:
    """Signed balance on the account's normal side (positive = normal)."""
    if normal_side(account) is Side.debit:
        return debits_minor - credits_minor
    return credits_minor - debits_minor


def resolve_gl_code(
    mappings: Iterable[GlMapping],
    entity: str,
    account: Account | str,
    family: ProductFamily | str | None,
    on_date: dt.date,
) -> str | None:
    """The ERP account code of ``(entity, account, family)`` on ``on_date``, or None.

    A mapping applies when ``effective_from <= on_date`` and (no ``effective_to`` or
    ``on_date <= effective_to``: both ends inclusive). A mapping for the exact family
    beats a family-less one; among equals the latest ``effective_from`` wins, then the
    later record in ``mappings`` (a re-sent mapping supersedes the earlier one).
    """
    best: tuple[int, dt.date, int] | None = None
    best_code: str | None = None
    for position, mapping in enumerate(mappings):
        if mapping.entity != entity or mapping.account != str(account):
            continue
        if mapping.family is not None and mapping.family != (
            None if family is None else str(family)
        ):
            continue
        if mapping.effective_from > on_date:
            continue
        if mapping.effective_to is not None and on_date > mapping.effective_to:
            continue
        rank = (0 if mapping.family is None else 1, mapping.effective_from, position)
        if best is None or rank > best:
            best, best_code = rank, mapping.gl_code
    return best_code
