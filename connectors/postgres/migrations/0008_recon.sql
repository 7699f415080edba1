-- 0008 reconciliation: the runs of `revledger recon` and the breaks each found
-- (ledger/reconciliation.py decides, connectors/postgres/recon.py gathers and writes).
--
-- A run compares, per entity and business day (and currency): billing vs accounts
-- receivable, payments vs cash clearing, journal batches vs ERP acks, and the projection vs
-- ledger.entries.v1. It writes one recon_runs row and one recon_breaks row per key whose two
-- sides differ, in one transaction. A break is `open` (someone must look) or `explained`
-- (the whole difference has a known cause: dead-lettered, presumably held, not processed
-- yet, awaiting the ERP). Money is BIGINT minor units beside a CHAR(3) code.

-- One run: what it covered (entity and day, NULL = all) and the business clock it judged
-- ages by (hold and ack timeouts).
CREATE TABLE revledger.recon_runs (
    run_id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at        TIMESTAMPTZ NOT NULL,
    finished_at       TIMESTAMPTZ NOT NULL,
    entity            TEXT,
    business_date     DATE,
    -- The latest clock tick (else the latest business date) the run judged ages by.
    clock_date        DATE,
    checks            TEXT[] NOT NULL CONSTRAINT recon_runs_checks_known
                          CHECK (checks <@ ARRAY['billing', 'payments', 'acks', 'projection']
                                 AND cardinality(checks) >= 1),
    open_breaks       INTEGER NOT NULL CONSTRAINT recon_runs_open_not_negative
                          CHECK (open_breaks >= 0),
    explained_breaks  INTEGER NOT NULL CONSTRAINT recon_runs_explained_not_negative
                          CHECK (explained_breaks >= 0),
    CONSTRAINT recon_runs_finished_after_start CHECK (finished_at >= started_at)
);

-- One key of one run whose two sides differ. Natural key: (run_id, break_id); break_id is
-- deterministic (ledger.reconciliation.break_id: kind, entity, day, currency, reference),
-- so the same difference has the same id in every run and on recon.breaks.v1.
-- items: every item behind the difference, as JSON objects with item, event_type,
-- customer_id, event_ids, entry_ids, expected_minor, actual_minor, counts, note and the
-- explanation (cause, reason, detail) when there is one.
CREATE TABLE revledger.recon_breaks (
    run_id           BIGINT NOT NULL REFERENCES revledger.recon_runs (run_id),
    break_id         TEXT NOT NULL CONSTRAINT recon_breaks_break_id_not_empty
                         CHECK (break_id <> '' AND length(break_id) <= 200),
    check_name       TEXT NOT NULL CONSTRAINT recon_breaks_check_known
                         CHECK (check_name IN ('billing', 'payments', 'acks', 'projection')),
    kind             TEXT NOT NULL CONSTRAINT recon_breaks_kind_not_empty CHECK (kind <> ''),
    status           TEXT NOT NULL CONSTRAINT recon_breaks_status
                         CHECK (status IN ('open', 'explained')),
    entity           TEXT NOT NULL,
    business_date    DATE NOT NULL,
    currency         CHAR(3) NOT NULL CONSTRAINT recon_breaks_currency_code
                         CHECK (currency ~ '^[A-Z]{3}$'),
    -- Document type (billing, payments), batch id (acks) or account (projection).
    reference        TEXT NOT NULL,
    customer_id      TEXT,
    expected_minor   BIGINT NOT NULL,
    actual_minor     BIGINT NOT NULL,
    explained_minor  BIGINT NOT NULL DEFAULT 0,
    expected_count   BIGINT,
    actual_count     BIGINT,
    event_ids        TEXT[] NOT NULL DEFAULT '{}',
    entry_ids        TEXT[] NOT NULL DEFAULT '{}',
    details          TEXT NOT NULL,
    items            JSONB NOT NULL DEFAULT '[]' CONSTRAINT recon_breaks_items_are_array
                         CHECK (jsonb_typeof(items) = 'array'),
    CONSTRAINT recon_breaks_open_is_unexplained
        CHECK (status = 'explained' OR expected_minor - actual_minor <> explained_minor
               OR expected_count IS DISTINCT FROM actual_count),
    PRIMARY KEY (run_id, break_id)
);
CREATE INDEX recon_breaks_entity_day_idx ON revledger.recon_breaks (entity, business_date);
CREATE INDEX recon_breaks_break_idx ON revledger.recon_breaks (break_id, run_id DESC);

-- The breaks open now: each break's row in the latest run that covered it (same check, its
-- entity or all, its day or all), when that row is open. A later run that covered the key
-- and found it agreeing (or explained) closes it; a run over another entity or day does not.
CREATE VIEW revledger.recon_breaks_open AS
SELECT b.break_id,
       b.kind,
       b.check_name,
       b.entity,
       b.business_date,
       b.currency,
       b.reference,
       b.customer_id,
       b.expected_minor,
       b.actual_minor,
       b.explained_minor,
       b.expected_count,
       b.actual_count,
       b.event_ids,
       b.entry_ids,
       b.details,
       b.items,
       b.run_id,
       r.finished_at AS detected_at,
       (SELECT min(f.finished_at)
          FROM revledger.recon_breaks AS e
          JOIN revledger.recon_runs AS f ON f.run_id = e.run_id
         WHERE e.break_id = b.break_id AND e.status = 'open') AS first_detected_at
  FROM revledger.recon_breaks AS b
  JOIN revledger.recon_runs AS r ON r.run_id = b.run_id
 WHERE b.status = 'open'
   AND NOT EXISTS (
       SELECT 1
         FROM revledger.recon_runs AS later
        WHERE later.run_id > b.run_id
          AND b.check_name = ANY (later.checks)
          AND (later.entity IS NULL OR later.entity = b.entity)
          AND (later.business_date IS NULL OR later.business_date = b.business_date));

-- The writer (`revledger recon` runs as a login role in revledger_writer) records runs and
-- breaks; granted explicitly in case the migrating role's default privileges (0005) do not
-- apply. The reader reads the view only; the writer keeps SELECT only on it.
GRANT SELECT, INSERT, UPDATE, DELETE ON revledger.recon_runs, revledger.recon_breaks
   TO revledger_writer;
GRANT USAGE, SELECT ON SEQUENCE revledger.recon_runs_run_id_seq TO revledger_writer;
GRANT SELECT ON revledger.recon_breaks_open TO revledger_reader;
REVOKE INSERT, UPDATE, DELETE ON revledger.recon_breaks_open FROM revledger_writer;
