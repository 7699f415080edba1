"""Allocating a transaction price over performance obligations by relative SSP.

ASC 606-10-32-29 / IFRS 15.74: the transaction price is allocated in proportion to the
standalone selling prices (SSP). A discount is allocated the same way unless it relates
to some obligations only (ASC 606-10-32-37 / IFRS 15.82): then the other obligations get
their SSP and the named ones share what is left, again by relative SSP (ASC 606-10-55-259,
Example 34 Case A). Splits use :func:`ledger.money.allocate` (largest remainder), so the
parts always sum to the price exactly.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from ledger.money import allocate
from ledger.results import EntryStatus


@dataclass(frozen=True, slots=True)
class AllocationRefused:
    """The price cannot be allocated: ``status`` and a message naming the figures."""

    status: EntryStatus
    message: str


def allocate_by_ssp(
    price_minor: int, ssp_by_obligation: Mapping[str, int], discounted: Collection[str] = ()
) -> dict[str, int] | AllocationRefused:
    """Split ``price_minor`` over the obligations of ``ssp_by_obligation`` (in its order).

    Args:
        price_minor: transaction price to allocate (>= 0).
        ssp_by_obligation: obligation id -> standalone selling price (>= 0).
        discounted: obligations a discount relates to; empty: all of them.

    Returns:
        obligation id -> allocated amount, or why it cannot be done: ``ssp_all_zero`` (a
        price with nothing to weigh it by) or ``discount_exceeds_price`` (the undiscounted
        obligations' SSP alone exceed the price).
    """
    ids = list(ssp_by_obligation)
    if not ids:
        return {}
    if not discounted:
        return _relative(price_minor, ids, ssp_by_obligation)
    full = [oid for oid in ids if oid not in discounted]
    full_price = sum(ssp_by_obligation[oid] for oid in full)
    if full_price > price_minor:
        return AllocationRefused(
            EntryStatus.discount_exceeds_price,
            f"obligations without the discount have SSP {full_price} above the price {price_minor}",
        )
    shared = _relative(
        price_minor - full_price, [oid for oid in ids if oid in discounted], ssp_by_obligation
    )
    if isinstance(shared, AllocationRefused):
        return shared
    return {oid: shared[oid] if oid in shared else ssp_by_obligation[oid] for oid in ids}


def _relative(
    price_minor: int, ids: list[str], ssp_by_obligation: Mapping[str, int]
) -> dict[str, int] | AllocationRefused:
    weights = [ssp_by_obligation[oid] for oid in ids]
    if sum(weights) == 0:
        if price_minor == 0:
            return dict.fromkeys(ids, 0)
        return AllocationRefused(
            EntryStatus.ssp_all_zero,
            f"price {price_minor} cannot be allocated: every obligation has SSP 0"
            f" ({', '.join(ids)})",
        )
    return dict(zip(ids, allocate(price_minor, weights), strict=True))
