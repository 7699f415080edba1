"""``revledger import contracts|billing|payments FILE``: a file of source records -> topics.

For sources without a connector (docs/IMPORT.md, docs/CRM.md):

* ``billing FILE.csv|.jsonl`` - invoices, credit notes, voids, write-offs, customers;
* ``payments FILE.csv|.jsonl`` - settlements, failures, refunds, disputes, payouts;
* ``contracts FILE.jsonl`` - Salesforce event messages (as on ``raw.salesforce.v1``)
  and/or generic CRM contract records, one JSON object per line.

The pure parsers (:mod:`connectors.files`, :mod:`connectors.salesforce`) turn the file
into canonical events and a list of refused rows; the events are produced with
:class:`streams.producer.RecordProducer` (idempotent producer, murmur2, keyed by
customer). Event ids come from the file's own ids, so importing the same file again
produces the same events and the ledger, which deduplicates by event id, posts nothing
new. Good rows are imported even when others are refused.

Each refused row is printed and written to ``FILE.errors.csv`` (``line,column,reason``;
the file is rewritten on every run, with only its header when nothing was refused).

Exit codes: 0 every row imported; 3 some rows refused (the others imported); 2 the file
could not be read at all (missing, not UTF-8, no CSV header, unknown suffix) or the
configuration is unusable; 1 the broker did not take the events.

Must not import faust.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from connectors.files.canonical import BILLING_KINDS, PAYMENT_KINDS, CellError, parse_rows
from connectors.files.contracts import generic_contract_event, is_generic_contract
from connectors.files.rows import FileUnreadable, RowError, format_of, read_jsonl, read_rows
from connectors.salesforce import (
    Malformed,
    SalesforceConfig,
    SalesforceConfigError,
    Skipped,
    config_from_environ,
    load_config,
    translate,
)
from ledger.events import Event

EXIT_OK = 0
EXIT_KAFKA = 1
EXIT_UNREADABLE = 2
EXIT_ROWS_REFUSED = 3

KINDS = ("contracts", "billing", "payments")

ConfigLoader = Callable[[], SalesforceConfig]


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """What a file gives: events to produce, refused rows, rows skipped on purpose."""

    rows: int
    events: tuple[Event, ...]
    errors: tuple[RowError, ...]
    skipped: int = 0


def read_text(path: Path) -> str:
    """The file's text.

    Raises:
        FileUnreadable: missing, unreadable, or not UTF-8.
    """
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FileUnreadable(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise FileUnreadable(f"{path}: {exc.strerror or exc}") from exc


def parse_contracts(text: str, salesforce_config: ConfigLoader) -> ParsedFile:
    """Contract events of a JSON Lines file of Salesforce messages and generic records.

    ``salesforce_config`` is called once, at the first Salesforce line (a file of
    generic records needs no Salesforce configuration); when it raises, each Salesforce
    line is refused with the reason.
    """
    rows, errors = read_jsonl(text)
    events: list[Event] = []
    skipped = 0
    config: SalesforceConfig | SalesforceConfigError | None = None
    for row in rows:
        if is_generic_contract(row.values):
            try:
                events.append(generic_contract_event(row.values, row.line))
            except CellError as exc:
                errors.append(RowError(exc.line, exc.column, exc.reason))
            continue
        if config is None:
            try:
                config = salesforce_config()
            except SalesforceConfigError as exc:
                config = exc
        if isinstance(config, SalesforceConfigError):
            errors.append(RowError(row.line, "", f"salesforce_config: {config}"))
            continue
        outcome = translate(row.values, config)
        if isinstance(outcome, Malformed):
            errors.append(RowError(row.line, "", f"{outcome.reason}: {outcome.message}"))
        elif isinstance(outcome, Skipped):
            skipped += 1
        else:
            events.extend(outcome.events)
    ordered = tuple(sorted(errors, key=lambda e: (e.line, e.column)))
    return ParsedFile(len(rows) + _unparsed(errors), tuple(events), ordered, skipped)


def _unparsed(errors: Iterable[RowError]) -> int:
    """Lines that were not even rows (not JSON) still count as rows of the file."""
    return sum(1 for e in errors if e.reason.startswith(("not JSON", "not a JSON object")))


def parse_file(kind: str, path: Path, salesforce_config: ConfigLoader) -> ParsedFile:
    """The events and refused rows of ``path`` read as ``kind``.

    Raises:
        FileUnreadable: the file cannot be read as rows at all.
    """
    file_format = format_of(path.name)
    text = read_text(path)
    if kind == "contracts":
        if file_format != "jsonl":
            raise FileUnreadable(f"{path}: contracts are imported from JSON Lines (.jsonl)")
        return parse_contracts(text, salesforce_config)
    rows, errors = read_rows(text, file_format)
    parsed = parse_rows(rows, BILLING_KINDS if kind == "billing" else PAYMENT_KINDS)
    all_errors = tuple(sorted((*errors, *parsed.errors), key=lambda e: (e.line, e.column)))
    return ParsedFile(len(rows) + len(errors), parsed.events, all_errors)


def error_report_path(path: Path) -> Path:
    """Where the refused rows of ``path`` are written: ``<path>.errors.csv``."""
    return path.with_name(path.name + ".errors.csv")


def write_error_report(path: Path, errors: Iterable[RowError]) -> Path:
    """Write ``line,column,reason`` rows next to the imported file; returns its path."""
    report = error_report_path(path)
    with report.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", "column", "reason"])
        for error in errors:
            writer.writerow([error.line, error.column, error.reason])
    return report


def send_events(settings, events: Iterable[Event]) -> int:
    """Produce ``events`` to their topics and wait for the broker; returns how many."""
    from streams.producer import RecordProducer

    return RecordProducer(settings).send_all(events)


def run_import(
    kind: str,
    path: Path,
    send: Callable[[Iterable[Event]], int],
    salesforce_config: ConfigLoader = config_from_environ,
    out: TextIO = sys.stdout,
) -> int:
    """Import ``path`` as ``kind`` with ``send``; prints the report; returns the exit code."""
    try:
        parsed = parse_file(kind, path, salesforce_config)
    except FileUnreadable as exc:
        print(f"import {kind}: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    report = write_error_report(path, parsed.errors)
    for error in parsed.errors:
        column = f" column {error.column}" if error.column else ""
        print(f"{path.name}: line {error.line}{column}: {error.reason}", file=out)
    try:
        sent = send(parsed.events) if parsed.events else 0
    except Exception as exc:  # the broker's failure, whatever its class: nothing confirmed
        print(f"import {kind}: events not confirmed by the broker: {exc}", file=sys.stderr)
        return EXIT_KAFKA
    refused = len({error.line for error in parsed.errors})
    skipped = f", {parsed.skipped} skipped (no contract effect)" if parsed.skipped else ""
    print(
        f"import {kind}: {path.name}: {parsed.rows} rows, {sent} events sent{skipped},"
        f" {refused} rows refused ({report.name})",
        file=out,
    )
    return EXIT_ROWS_REFUSED if parsed.errors else EXIT_OK


# --- command line ----------------------------------------------------------------------------


def add_import_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``revledger import contracts|billing|payments FILE`` to the CLI."""
    parser = subparsers.add_parser(
        "import",
        help="import a file of contracts (Salesforce / generic JSON), billing or payments",
    )
    parser.add_argument("kind", choices=KINDS, help="what the file holds")
    parser.add_argument("file", type=Path, help="FILE.csv or FILE.jsonl (contracts: .jsonl)")
    parser.add_argument(
        "--salesforce-config",
        default=None,
        metavar="FILE",
        help="Salesforce mapping for contract files (default: REVLEDGER_SALESFORCE_CONFIG or"
        " REVLEDGER_SALESFORCE_ENTITIES)",
    )


def main_import(args: argparse.Namespace) -> int:
    """Entry point of ``revledger import``."""
    from streams.devstack_env import settings_from_devstack
    from streams.settings import SettingsError

    try:
        settings = settings_from_devstack()
    except SettingsError as exc:
        print(f"import: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE

    def salesforce_config() -> SalesforceConfig:
        if args.salesforce_config:
            return load_config(Path(args.salesforce_config))
        return config_from_environ()

    return run_import(
        args.kind, args.file, lambda events: send_events(settings, events), salesforce_config
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m streams.importing KIND FILE`` without the ``revledger`` CLI."""
    parser = argparse.ArgumentParser(prog="python -m streams.importing")
    commands = parser.add_subparsers(dest="command")
    add_import_commands(commands)
    args = parser.parse_args(["import", *(sys.argv[1:] if argv is None else argv)])
    return main_import(args)


if __name__ == "__main__":
    sys.exit(main())
