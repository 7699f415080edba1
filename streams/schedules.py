"""Revenue schedules on the wire: a contract's :func:`schedule_by_period` as ``RevenueScheduled``.

The ledger agent publishes one record per contract whose schedule changed
(:func:`revenue.recognition.changed_schedules`) to the customer's partition of
``revenue.schedules.v1``, keyed ``<customer id>/<contract id>`` so compaction keeps the
latest schedule of each contract. The projection turns it into the rows of the revenue
waterfall (scheduled revenue of future months).
"""

from __future__ import annotations

from revenue.state import Contract
from streams.messages import RevenueScheduled, ScheduledRevenue


def schedule_record(
    customer_id: str,
    contract: Contract,
    rows: tuple[tuple[str, str, int], ...],
    source_event_id: str,
) -> RevenueScheduled:
    """The wire record of ``contract``'s schedule ``rows`` (obligation id, period, amount)."""
    return RevenueScheduled(
        customer_id=customer_id,
        contract_id=contract.contract_id,
        entity=contract.entity,
        currency=contract.currency,
        source_event_id=source_event_id,
        cancelled_on=contract.cancelled_on,
        lines=tuple(
            ScheduledRevenue(obligation_id=obligation_id, period=period, amount_minor=amount)
            for obligation_id, period, amount in rows
        ),
        total_minor=sum(amount for *_, amount in rows),
    )


def schedule_key(customer_id: str, contract_id: str) -> bytes:
    """Kafka key of a contract's schedule: compaction keeps the latest per contract."""
    return f"{customer_id}/{contract_id}".encode()
