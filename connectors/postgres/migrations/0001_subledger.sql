-- 0001 subledger: the events the ledger applied, the journal entries it posted, periods.
--
-- Money is BIGINT minor units beside a CHAR(3) ISO 4217 code (STYLE 2.3); amounts are
-- non-negative and `side` says which way they go. The checks here pair those of
-- ledger.entries.JournalEntry and streams.messages.JournalEntryPosted (STYLE 2.4, item 3):
-- a line refuses a negative amount, a line with nothing on it, a malformed currency or
-- period, and the deferred trigger refuses at COMMIT an entry that does not balance.
--
-- Every migration runs in its own transaction (connectors/postgres/migrate.py).

CREATE SCHEMA IF NOT EXISTS revledger;

-- What the ledger applied, so that a line traces back to the content of the event's bytes.
-- Control records (clock ticks, period closes) belong to no customer or entity.
CREATE TABLE revledger.source_events (
    event_id        TEXT PRIMARY KEY,
    event_type      TEXT NOT NULL,
    customer_id     TEXT,
    entity          TEXT,
    topic           TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL CONSTRAINT source_events_partition_not_negative
                        CHECK (kafka_partition >= 0),
    kafka_offset    BIGINT NOT NULL CONSTRAINT source_events_offset_not_negative
                        CHECK (kafka_offset >= 0),
    occurred_at     TIMESTAMPTZ NOT NULL,
    -- issue_date, settled_date, booking_date ... of the payload; NULL for events without one.
    business_date   DATE,
    payload         JSONB NOT NULL CONSTRAINT source_events_payload_is_object
                        CHECK (jsonb_typeof(payload) = 'object')
);
CREATE INDEX source_events_customer_idx ON revledger.source_events (customer_id, occurred_at);
CREATE INDEX source_events_offset_idx
    ON revledger.source_events (topic, kafka_partition, kafka_offset);

-- One row per JournalEntryPosted record. source_event_id has no foreign key on purpose:
-- recognition entries are sourced from a tick as `<clock event id>/<customer id>`
-- (docs/ARCHITECTURE.md, "Recognition entries are sourced from the tick").
CREATE TABLE revledger.journal_entries (
    entry_id            TEXT PRIMARY KEY,
    entity              TEXT NOT NULL,
    customer_id         TEXT NOT NULL,
    source_event_id     TEXT NOT NULL,
    source_event_type   TEXT NOT NULL,
    rule                TEXT NOT NULL,
    sequence            INTEGER NOT NULL CONSTRAINT journal_entries_sequence_not_negative
                            CHECK (sequence >= 0),
    posting_date        DATE NOT NULL,
    original_date       DATE NOT NULL,
    period              CHAR(7) NOT NULL CONSTRAINT journal_entries_period_format
                            CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    functional_currency CHAR(3) NOT NULL CONSTRAINT journal_entries_functional_currency_code
                            CHECK (functional_currency ~ '^[A-Z]{3}$'),
    description         TEXT NOT NULL,
    -- Where the entry record sits in ledger.entries.v1 (lineage). Indexed, not UNIQUE: a
    -- topic rebuilt under the same name renumbers its offsets, and upserting the entries
    -- by entry_id one by one would collide with rows not yet moved.
    topic               TEXT NOT NULL,
    kafka_partition     INTEGER NOT NULL CONSTRAINT journal_entries_partition_not_negative
                            CHECK (kafka_partition >= 0),
    kafka_offset        BIGINT NOT NULL CONSTRAINT journal_entries_offset_not_negative
                            CHECK (kafka_offset >= 0)
);
CREATE INDEX journal_entries_record_idx
    ON revledger.journal_entries (topic, kafka_partition, kafka_offset);
CREATE INDEX journal_entries_entity_date_idx
    ON revledger.journal_entries (entity, posting_date);
CREATE INDEX journal_entries_entity_period_idx ON revledger.journal_entries (entity, period);
CREATE INDEX journal_entries_customer_idx
    ON revledger.journal_entries (customer_id, posting_date);
CREATE INDEX journal_entries_source_event_idx ON revledger.journal_entries (source_event_id);

-- A line of an entry (its entry row first: the foreign key is checked at once). A
-- realized-FX line has amount_minor 0 and only a functional amount
-- (ledger/drafts.py): so the checks are "both >= 0, not both 0", as in
-- ledger.entries.JournalLine, rather than amount_minor > 0.
CREATE TABLE revledger.journal_lines (
    entry_id                TEXT NOT NULL
                                REFERENCES revledger.journal_entries (entry_id),
    line_no                 INTEGER NOT NULL CONSTRAINT journal_lines_line_no_positive
                                CHECK (line_no >= 1),
    account                 TEXT NOT NULL CONSTRAINT journal_lines_account_not_empty
                                CHECK (account <> ''),
    side                    TEXT NOT NULL CONSTRAINT journal_lines_side
                                CHECK (side IN ('debit', 'credit')),
    amount_minor            BIGINT NOT NULL CONSTRAINT journal_lines_amount_not_negative
                                CHECK (amount_minor >= 0),
    currency                CHAR(3) NOT NULL CONSTRAINT journal_lines_currency_code
                                CHECK (currency ~ '^[A-Z]{3}$'),
    functional_amount_minor BIGINT NOT NULL
                                CONSTRAINT journal_lines_functional_amount_not_negative
                                CHECK (functional_amount_minor >= 0),
    dimensions              JSONB NOT NULL DEFAULT '{}'
                                CONSTRAINT journal_lines_dimensions_are_strings
                                CHECK (jsonb_typeof(dimensions) = 'object'
                                       AND NOT jsonb_path_exists(
                                           dimensions, '$.* ? (@.type() != "string")')),
    CONSTRAINT journal_lines_amount_must_be_positive
        CHECK (amount_minor > 0 OR functional_amount_minor > 0),
    PRIMARY KEY (entry_id, line_no)
);
-- Balances of an account: lines by account, joined to journal_entries (entity, posting_date).
CREATE INDEX journal_lines_account_idx ON revledger.journal_lines (account, entry_id);
CREATE INDEX journal_lines_invoice_idx ON revledger.journal_lines ((dimensions ->> 'invoice_id'))
    WHERE dimensions ? 'invoice_id';
CREATE INDEX journal_lines_contract_idx
    ON revledger.journal_lines ((dimensions ->> 'contract_id'))
    WHERE dimensions ? 'contract_id';

-- The zero-sum check (hordak migration 0006, STYLE 2.8 item 7): at COMMIT, every entry
-- touched in the transaction must have at least 2 lines, debits equal to credits in each
-- transaction currency, and functional debits equal to functional credits. An entry row
-- that no longer exists (deleted with its lines in the same transaction) is not checked.
-- SQLSTATE 23514 (check_violation) with constraint name journal_entry_balanced, so a
-- caller classifies it by code (STYLE 2.5), never by text.
CREATE FUNCTION revledger.journal_entry_balanced() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ids TEXT[];
    id TEXT;
    line_count BIGINT;
    unbalanced RECORD;
    functional_debits NUMERIC;
    functional_credits NUMERIC;
BEGIN
    IF TG_OP = 'INSERT' THEN
        ids := ARRAY[NEW.entry_id];
    ELSIF TG_OP = 'DELETE' THEN
        ids := ARRAY[OLD.entry_id];
    ELSE
        ids := ARRAY[NEW.entry_id, OLD.entry_id];
    END IF;
    FOREACH id IN ARRAY ids LOOP
        CONTINUE WHEN NOT EXISTS (
            SELECT 1 FROM revledger.journal_entries AS e WHERE e.entry_id = id);
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
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER journal_lines_balanced
    AFTER INSERT OR UPDATE OR DELETE ON revledger.journal_lines
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION revledger.journal_entry_balanced();

-- An entry inserted without lines fires no trigger on journal_lines: check entries too.
CREATE CONSTRAINT TRIGGER journal_entries_balanced
    AFTER INSERT OR UPDATE ON revledger.journal_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION revledger.journal_entry_balanced();

-- Accounting periods per entity, as the control records open and close them.
CREATE TABLE revledger.periods (
    entity    TEXT NOT NULL,
    period    CHAR(7) NOT NULL CONSTRAINT periods_period_format
                  CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    status    TEXT NOT NULL CONSTRAINT periods_status CHECK (status IN ('open', 'closed')),
    closed_on DATE,
    CONSTRAINT periods_closed_on_iff_closed CHECK ((status = 'closed') = (closed_on IS NOT NULL)),
    PRIMARY KEY (entity, period)
);
