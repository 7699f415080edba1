-- 0003 ERP: journal batches (erp.journal-batches.v1), their lineage, and the ERP's answers
-- (erp.acks.v1). Mirrors streams.messages.JournalBatch / BatchLine / ErpAck.

CREATE TABLE revledger.journal_batches (
    batch_id            TEXT PRIMARY KEY,
    entity              TEXT NOT NULL,
    source_partition    INTEGER NOT NULL CONSTRAINT journal_batches_partition_not_negative
                            CHECK (source_partition >= 0),
    -- Gap-free per (entity, source_partition), from 0.
    sequence            BIGINT NOT NULL CONSTRAINT journal_batches_sequence_not_negative
                            CHECK (sequence >= 0),
    period              CHAR(7) NOT NULL CONSTRAINT journal_batches_period_format
                            CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    window_start        TIMESTAMPTZ NOT NULL,
    window_end          TIMESTAMPTZ NOT NULL,
    functional_currency CHAR(3) NOT NULL CONSTRAINT journal_batches_functional_currency_code
                            CHECK (functional_currency ~ '^[A-Z]{3}$'),
    entry_count         BIGINT NOT NULL CONSTRAINT journal_batches_entry_count_positive
                            CHECK (entry_count >= 1),
    line_count          BIGINT NOT NULL CONSTRAINT journal_batches_line_count_positive
                            CHECK (line_count >= 1),
    -- streams.messages.digest_entry_ids: SHA-256 hex of the entry ids joined by "\n".
    entry_ids_digest    CHAR(64) NOT NULL CONSTRAINT journal_batches_digest_hex
                            CHECK (entry_ids_digest ~ '^[0-9a-f]{64}$'),
    -- Offsets in ledger.entries.v1 (partition source_partition) of its first and last entry.
    first_source_offset BIGINT NOT NULL CONSTRAINT journal_batches_first_offset_not_negative
                            CHECK (first_source_offset >= 0),
    last_source_offset  BIGINT NOT NULL,
    CONSTRAINT journal_batches_offsets_ordered CHECK (last_source_offset >= first_source_offset),
    CONSTRAINT journal_batches_window_ordered CHECK (window_end >= window_start),
    CONSTRAINT journal_batches_sequence_unique UNIQUE (entity, source_partition, sequence)
);
CREATE INDEX journal_batches_entity_period_idx ON revledger.journal_batches (entity, period);

CREATE TABLE revledger.journal_batch_lines (
    batch_id                TEXT NOT NULL REFERENCES revledger.journal_batches (batch_id),
    line_no                 INTEGER NOT NULL CONSTRAINT journal_batch_lines_line_no_positive
                                CHECK (line_no >= 1),
    gl_code                 TEXT NOT NULL,
    account                 TEXT NOT NULL,
    currency                CHAR(3) NOT NULL CONSTRAINT journal_batch_lines_currency_code
                                CHECK (currency ~ '^[A-Z]{3}$'),
    debit_minor             BIGINT NOT NULL CONSTRAINT journal_batch_lines_debit_not_negative
                                CHECK (debit_minor >= 0),
    credit_minor            BIGINT NOT NULL CONSTRAINT journal_batch_lines_credit_not_negative
                                CHECK (credit_minor >= 0),
    functional_debit_minor  BIGINT NOT NULL
                                CONSTRAINT journal_batch_lines_functional_debit_not_negative
                                CHECK (functional_debit_minor >= 0),
    functional_credit_minor BIGINT NOT NULL
                                CONSTRAINT journal_batch_lines_functional_credit_not_negative
                                CHECK (functional_credit_minor >= 0),
    dimensions              JSONB NOT NULL DEFAULT '{}'
                                CONSTRAINT journal_batch_lines_dimensions_are_strings
                                CHECK (jsonb_typeof(dimensions) = 'object'
                                       AND NOT jsonb_path_exists(
                                           dimensions, '$.* ? (@.type() != "string")')),
    PRIMARY KEY (batch_id, line_no)
);
CREATE INDEX journal_batch_lines_gl_code_idx ON revledger.journal_batch_lines (gl_code);

-- Which entries a batch summarises. No foreign key to journal_entries: batches and entries
-- come from different topics and may reach the database in either order.
CREATE TABLE revledger.journal_batch_entries (
    batch_id TEXT NOT NULL REFERENCES revledger.journal_batches (batch_id),
    entry_id TEXT NOT NULL,
    PRIMARY KEY (batch_id, entry_id)
);
CREATE INDEX journal_batch_entries_entry_idx ON revledger.journal_batch_entries (entry_id);

-- The same pair check as for entries (ledger.batching refuses such a batch before it is
-- sent): at COMMIT a batch has line_count lines, debits equal credits per currency and
-- functional debits equal functional credits. SQLSTATE 23514, constraint
-- journal_batch_balanced.
CREATE FUNCTION revledger.journal_batch_balanced() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ids TEXT[];
    id TEXT;
    stated_lines BIGINT;
    found_lines BIGINT;
    unbalanced RECORD;
    functional_debits NUMERIC;
    functional_credits NUMERIC;
BEGIN
    IF TG_OP = 'INSERT' THEN
        ids := ARRAY[NEW.batch_id];
    ELSIF TG_OP = 'DELETE' THEN
        ids := ARRAY[OLD.batch_id];
    ELSE
        ids := ARRAY[NEW.batch_id, OLD.batch_id];
    END IF;
    FOREACH id IN ARRAY ids LOOP
        SELECT b.line_count INTO stated_lines
          FROM revledger.journal_batches AS b WHERE b.batch_id = id;
        CONTINUE WHEN NOT FOUND;
        SELECT count(*),
               coalesce(sum(l.functional_debit_minor), 0),
               coalesce(sum(l.functional_credit_minor), 0)
          INTO found_lines, functional_debits, functional_credits
          FROM revledger.journal_batch_lines AS l
         WHERE l.batch_id = id;
        IF found_lines <> stated_lines THEN
            RAISE EXCEPTION 'journal batch % has % line(s), its line_count says %',
                            id, found_lines, stated_lines
                USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_batch_balanced',
                      TABLE = 'journal_batch_lines', SCHEMA = 'revledger';
        END IF;
        SELECT l.currency, sum(l.debit_minor) AS debits, sum(l.credit_minor) AS credits
          INTO unbalanced
          FROM revledger.journal_batch_lines AS l
         WHERE l.batch_id = id
         GROUP BY l.currency
        HAVING sum(l.debit_minor) <> sum(l.credit_minor)
         ORDER BY l.currency
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'journal batch % does not balance in %: debits %, credits %',
                            id, unbalanced.currency, unbalanced.debits, unbalanced.credits
                USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_batch_balanced',
                      TABLE = 'journal_batch_lines', SCHEMA = 'revledger';
        END IF;
        IF functional_debits <> functional_credits THEN
            RAISE EXCEPTION
                'journal batch % does not balance in functional amounts: debits %, credits %',
                id, functional_debits, functional_credits
                USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_batch_balanced',
                      TABLE = 'journal_batch_lines', SCHEMA = 'revledger';
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER journal_batch_lines_balanced
    AFTER INSERT OR UPDATE OR DELETE ON revledger.journal_batch_lines
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION revledger.journal_batch_balanced();

CREATE CONSTRAINT TRIGGER journal_batches_balanced
    AFTER INSERT OR UPDATE ON revledger.journal_batches
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION revledger.journal_batch_balanced();

-- Every ack read from erp.acks.v1: a history, one row per record. No foreign key to
-- journal_batches: an ack may be projected before its batch.
CREATE TABLE revledger.erp_acks (
    kafka_partition INTEGER NOT NULL CONSTRAINT erp_acks_partition_not_negative
                        CHECK (kafka_partition >= 0),
    kafka_offset    BIGINT NOT NULL CONSTRAINT erp_acks_offset_not_negative
                        CHECK (kafka_offset >= 0),
    batch_id        TEXT NOT NULL,
    entity          TEXT NOT NULL,
    sequence        BIGINT NOT NULL CONSTRAINT erp_acks_sequence_not_negative
                        CHECK (sequence >= 0),
    status          TEXT NOT NULL CONSTRAINT erp_acks_status
                        CHECK (status IN ('imported', 'rejected')),
    erp_document_id TEXT,
    message         TEXT,
    acknowledged_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kafka_partition, kafka_offset)
);
CREATE INDEX erp_acks_batch_idx
    ON revledger.erp_acks (batch_id, kafka_partition, kafka_offset DESC);

-- The latest ack of each batch, in log order: acks are keyed by batch_id, so all acks of a
-- batch sit in one partition of erp.acks.v1 and the higher offset is the later answer
-- (acknowledged_at is the importer's wall clock, not an order). ack_count: all its acks.
-- Not security_invoker: the reader role reads the view, never erp_acks itself.
CREATE VIEW revledger.erp_batch_status AS
SELECT DISTINCT ON (a.batch_id)
       a.batch_id,
       a.entity,
       a.sequence,
       a.status,
       a.erp_document_id,
       a.message,
       a.acknowledged_at,
       count(*) OVER (PARTITION BY a.batch_id) AS ack_count,
       a.kafka_partition,
       a.kafka_offset
  FROM revledger.erp_acks AS a
 ORDER BY a.batch_id, a.kafka_offset DESC, a.kafka_partition DESC;
