"""Beancount, an independent engine, agrees with our books: bean-check and bean-query vs tb.

A simulated company (invoices in two currencies, payments with fees and realized FX,
credit notes, refunds, write-offs, contracts recognised over months) is replayed by the
pure engine and put in a fresh database; for each entity ``revledger export beancount``
writes the ledger, ``bean-check`` finds nothing wrong, and ``bean-query``'s balances
equal ``revledger tb``'s: per account in the functional currency, and per account and
currency in transaction amounts (a realized-FX line has no transaction amount, so that
account is compared in functional amounts only).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.postgres.beancount import beancount_account
from connectors.simulation.company import generate_company
from revenue.replay import replay_all

import pg_data

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv[:3]}: {done.stdout}{done.stderr}"
    return done


def _bean_balances(ledger: Path) -> tuple[dict, dict]:
    """(account, currency) -> units, and account -> functional weight, from bean-query."""
    query = (
        "SELECT account, currency, sum(number) AS units, sum(number(weight)) AS weight"
        " GROUP BY account, currency ORDER BY account, currency"
    )
    out = _run(str(BIN / "bean-query"), "-f", "csv", "-m", str(ledger), query).stdout
    units: dict[tuple[str, str], Decimal] = {}
    weights: dict[str, Decimal] = defaultdict(Decimal)
    for row in out.splitlines()[1:]:
        account, currency, amount, weight = (cell.strip() for cell in row.split(","))
        units[account, currency] = Decimal(amount)
        weights[account] += Decimal(weight)
    return units, dict(weights)


def _tb(conninfo: str, entity: str) -> list[dict]:
    done = _run(
        sys.executable, "-m", "streams.cli", "tb", "--entity", entity,
        "--format", "json", "--database-url", conninfo,
    )  # fmt: skip
    return json.loads(done.stdout)["rows"]


def test_bean_check_passes_and_bean_query_balances_equal_revledger_tb(devstack, tmp_path):
    company = generate_company(
        seed=41, customers=40, events=1_500, duplicate_rate=0.0, out_of_order_rate=0.05
    )
    replayed = replay_all(company.reference, company.events)
    with pg_data.fresh_database(devstack.database_url) as conninfo:
        with pg_data.connect(conninfo) as conn:
            pg_data.insert_entries(conn, replayed.entries)
        entities = sorted({e.entity for e in replayed.entries})
        compared = 0
        for entity in entities:
            ledger = tmp_path / f"{entity}.beancount"
            _run(
                sys.executable, "-m", "streams.cli", "export", "beancount", "--entity", entity,
                "--out", str(ledger), "--database-url", conninfo,
            )  # fmt: skip
            _run(sys.executable, "-m", "beancount.scripts.check", str(ledger))
            units, weights = _bean_balances(ledger)
            rows = _tb(conninfo, entity)
            functional: dict[str, Decimal] = defaultdict(Decimal)
            for row in rows:
                name = beancount_account(row["account"])
                net = Decimal(row["debit"]) - Decimal(row["credit"])
                functional[name] += Decimal(row["functional_debit"]) - Decimal(
                    row["functional_credit"]
                )
                if row["account"] != "realized_fx":
                    assert units.get((name, row["currency"]), Decimal(0)) == net, (entity, row)
                    compared += 1
            assert {a: w for a, w in weights.items() if w} == {
                a: f for a, f in functional.items() if f
            }, entity
        rules = {e.rule for e in replayed.entries}
        print(
            f"\n{len(replayed.entries)} entries ({len(rules)} rules), {len(entities)} entities:"
            f" {compared} account/currency balances equal"
        )
    assert {"US1", "EU1"} <= set(entities)
