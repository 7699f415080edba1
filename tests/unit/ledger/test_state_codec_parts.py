"""The state codecs put their JSON together from parts: same bytes as dumps of the whole."""

from __future__ import annotations

import json
from dataclasses import replace

from connectors.simulation.saas import simulate_company
from ledger.codec import dumps, state_from_json, state_to_json
from revenue.codec import book_from_json, book_to_json
from revenue.replay import replay_all


def test_state_and_book_bytes_are_dumps_of_the_whole_when_put_together_from_parts():
    simulation = simulate_company(customers=25, months=4, seed=3)
    books = replay_all(simulation.reference, simulation.records).books.values()
    assert any(b.ledger.invoices and b.ledger.payments and b.revenue.contracts for b in books)
    for customer_books in books:
        for encoded, decode in (
            (state_to_json(customer_books.ledger), state_from_json),
            (book_to_json(customer_books.revenue), book_from_json),
        ):
            assert encoded == dumps(json.loads(encoded))
            again = decode(encoded)
            assert again == (
                customer_books.ledger if decode is state_from_json else customer_books.revenue
            )
            assert (state_to_json if decode is state_from_json else book_to_json)(again) == encoded


def test_a_changed_invoice_is_encoded_afresh_when_the_old_one_was_encoded_before():
    simulation = simulate_company(customers=5, months=2, seed=3)
    ledger = next(
        b.ledger
        for b in replay_all(simulation.reference, simulation.records).books.values()
        if b.ledger.invoices
    )
    before = state_to_json(ledger)  # every invoice now carries its encoded JSON
    item = next(iter(ledger.invoices.values()))
    assert item.encoded_json is not None
    changed = ledger.with_invoice(replace(item, voided=not item.voided))
    after = json.loads(state_to_json(changed))
    voided = {i["invoice_id"]: i["voided"] for i in after["invoices"]}
    assert voided[item.invoice_id] is (not item.voided)
    assert state_to_json(ledger) == before
