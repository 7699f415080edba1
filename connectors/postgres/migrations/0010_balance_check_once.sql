-- 0010 balance check once: the deferred zero-sum check of journal entries (0001) runs once
-- per entry a transaction touched, set-based, instead of once per row written.
--
-- 0001 fired a deferred row trigger for every journal line and every entry: an entry of 3
-- lines written with its lines was checked 4 times at COMMIT, 3 queries each. That was the
-- largest part of the projection's commits (issue 7). Now:
--
-- 1. statement-level triggers on journal_lines (insert, update, delete) and journal_entries
--    (insert, update) queue the ids of the entries their statement touched in
--    revledger.journal_entries_to_check, once per id (ON CONFLICT DO NOTHING);
-- 2. a deferred constraint trigger on that table (journal_entries_to_check_balanced), at
--    COMMIT or SET CONSTRAINTS ALL IMMEDIATE, checks every id the transaction queued with
--    one query, and removes them; the events of the other queued rows find theirs removed
--    and return. An entry touched again after its check (after SET CONSTRAINTS ALL
--    IMMEDIATE) is queued again and checked again.
--
-- What is checked, and how a refusal reads, are those of 0001: SQLSTATE 23514, constraint
-- journal_entry_balanced, the same messages; an entry deleted with its lines is not checked.
-- The trigger names journal_lines_balanced and journal_entries_balanced are kept (now the
-- statement-level triggers on insert), as is the function revledger.journal_entry_balanced().

-- Entries written by a transaction and not yet checked. Always empty outside a
-- transaction (rows are removed by the check before COMMIT ends), so UNLOGGED: nothing in
-- it is worth a WAL record. queued_by: the transaction that queued the row, so a check
-- takes its own transaction's rows only. Only the trigger functions below (SECURITY
-- DEFINER, owned by the migrating role) touch it: a writer that could delete its queued
-- rows could commit an unbalanced entry.
CREATE UNLOGGED TABLE revledger.journal_entries_to_check (
    entry_id  TEXT PRIMARY KEY,
    queued_by XID8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX journal_entries_to_check_queued_by_idx
    ON revledger.journal_entries_to_check (queued_by);

-- One entry, as 0001 checked it: raises check_violation naming what is wrong. Called for
-- the first entry the set-based check found wrong, so the message says exactly why.
CREATE FUNCTION revledger.refuse_unbalanced_journal_entry(id TEXT) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    line_count BIGINT;
    unbalanced RECORD;
    functional_debits NUMERIC;
    functional_credits NUMERIC;
BEGIN
    SELECT count(*),
           coalesce(sum(l.functional_amount_minor) FILTER (WHERE l.side = 'debit'), 0),
           coalesce(sum(l.functional_amount_minor) FILTER (WHERE l.side = 'credit'), 0)
      INTO line_count, functional_debits, functional_credits
      FROM revledger.journal_lines AS l
     WHERE l.entry_id = id;
    IF line_count < 2 THEN
        RAISE EXCEPTION 'journal entry % has % line(s); an entry needs at least 2',
                        id, line_count
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_balanced',
                  TABLE = 'journal_lines', SCHEMA = 'revledger';
    END IF;
    SELECT l.currency,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.side = 'debit'), 0) AS debits,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.side = 'credit'), 0) AS credits
      INTO unbalanced
      FROM revledger.journal_lines AS l
     WHERE l.entry_id = id
     GROUP BY l.currency
    HAVING coalesce(sum(l.amount_minor) FILTER (WHERE l.side = 'debit'), 0)
        <> coalesce(sum(l.amount_minor) FILTER (WHERE l.side = 'credit'), 0)
     ORDER BY l.currency
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % does not balance in %: debits %, credits %',
                        id, unbalanced.currency, unbalanced.debits, unbalanced.credits
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_balanced',
                  TABLE = 'journal_lines', SCHEMA = 'revledger';
    END IF;
    IF functional_debits <> functional_credits THEN
        RAISE EXCEPTION
            'journal entry % does not balance in functional amounts: debits %, credits %',
            id, functional_debits, functional_credits
            USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_entry_balanced',
                  TABLE = 'journal_lines', SCHEMA = 'revledger';
    END IF;
END;
$$;

-- Statement level: queue the ids of the entries the statement touched (transition tables
-- `changed` = rows after, `removed` = rows before, as each trigger below names them).
CREATE FUNCTION revledger.queue_journal_entry_checks() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO revledger.journal_entries_to_check (entry_id)
        SELECT DISTINCT c.entry_id FROM changed AS c
        ON CONFLICT (entry_id) DO NOTHING;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO revledger.journal_entries_to_check (entry_id)
        SELECT c.entry_id FROM changed AS c UNION SELECT r.entry_id FROM removed AS r
        ON CONFLICT (entry_id) DO NOTHING;
    ELSE
        INSERT INTO revledger.journal_entries_to_check (entry_id)
        SELECT DISTINCT r.entry_id FROM removed AS r
        ON CONFLICT (entry_id) DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$;

-- Deferred, per queued row: the first event of a transaction checks (and removes) every id
-- the transaction queued; later events find their row gone and return at once.
CREATE OR REPLACE FUNCTION revledger.journal_entry_balanced() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    refused TEXT;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM revledger.journal_entries_to_check AS q
         WHERE q.entry_id = NEW.entry_id AND q.queued_by = pg_current_xact_id()) THEN
        RETURN NULL;  -- checked with an earlier row of this transaction
    END IF;
    WITH queued AS (
        DELETE FROM revledger.journal_entries_to_check AS q
         WHERE q.queued_by = pg_current_xact_id()
        RETURNING q.entry_id
    ), per_currency AS (
        SELECT e.entry_id,
               count(l.entry_id) AS lines,
               coalesce(sum(l.amount_minor) FILTER (WHERE l.side = 'debit'), 0) AS debits,
               coalesce(sum(l.amount_minor) FILTER (WHERE l.side = 'credit'), 0) AS credits,
               coalesce(sum(l.functional_amount_minor) FILTER (WHERE l.side = 'debit'), 0)
                   AS functional_debits,
               coalesce(sum(l.functional_amount_minor) FILTER (WHERE l.side = 'credit'), 0)
                   AS functional_credits
          FROM queued AS q
          -- An entry no longer there (deleted with its lines) is not checked.
          JOIN revledger.journal_entries AS e ON e.entry_id = q.entry_id
          LEFT JOIN revledger.journal_lines AS l ON l.entry_id = e.entry_id
         GROUP BY e.entry_id, l.currency
    )
    SELECT p.entry_id INTO refused
      FROM per_currency AS p
     GROUP BY p.entry_id
    HAVING sum(p.lines) < 2
        OR bool_or(p.debits <> p.credits)
        OR sum(p.functional_debits) <> sum(p.functional_credits)
     ORDER BY p.entry_id
     LIMIT 1;
    IF refused IS NOT NULL THEN
        PERFORM revledger.refuse_unbalanced_journal_entry(refused);
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER journal_lines_balanced ON revledger.journal_lines;
DROP TRIGGER journal_entries_balanced ON revledger.journal_entries;

CREATE TRIGGER journal_lines_balanced
    AFTER INSERT ON revledger.journal_lines
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION revledger.queue_journal_entry_checks();
CREATE TRIGGER journal_lines_balanced_on_update
    AFTER UPDATE ON revledger.journal_lines
    REFERENCING OLD TABLE AS removed NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION revledger.queue_journal_entry_checks();
CREATE TRIGGER journal_lines_balanced_on_delete
    AFTER DELETE ON revledger.journal_lines
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION revledger.queue_journal_entry_checks();
-- An entry inserted without lines queues nothing on journal_lines: entries queue too.
CREATE TRIGGER journal_entries_balanced
    AFTER INSERT ON revledger.journal_entries
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION revledger.queue_journal_entry_checks();
CREATE TRIGGER journal_entries_balanced_on_update
    AFTER UPDATE ON revledger.journal_entries
    REFERENCING OLD TABLE AS removed NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION revledger.queue_journal_entry_checks();

CREATE CONSTRAINT TRIGGER journal_entries_to_check_balanced
    AFTER INSERT ON revledger.journal_entries_to_check
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION revledger.journal_entry_balanced();

-- The writer's default privileges (0005) would give it DML on the queue: taken back, the
-- trigger functions write it with their owner's rights. The reader gets nothing here.
REVOKE ALL ON revledger.journal_entries_to_check FROM revledger_writer, revledger_reader;
