-- 0009 console: the finance operations console (streams/console, docs/CONSOLE.md).
--
-- 1. Views the console's pages read (a customer's timeline, stuck work, integration health).
--    Like every view they are granted to revledger_reader (0005_roles.sql): what a BI tool
--    logged in as the reader may see, the console sees, and no more.
-- 2. The console's own tables: its users (scrypt password hashes), their sessions (only the
--    SHA-256 of the cookie's random token), and the audit of every action an operator
--    attempted (who, when, what, outcome), refused ones included.
-- 3. The role revledger_console: a member of revledger_reader (reads the views only), and
--    writes the console tables only, the audit append-only.

-- Every source event received (ledger.inputs.v1) with what became of it: entries posted
-- from it, its dead letters (reasons in failure order, the latest message), and, for an
-- event that names a document the database does not have, that document (`invoice:<id>`,
-- `payment:<id>`): what a held event presumably waits for. The same rules as
-- connectors/postgres/recon.py (event facts), per event instead of per break.
CREATE VIEW revledger.event_outcomes AS
SELECT s.event_id,
       s.event_type,
       s.customer_id,
       s.entity,
       s.topic,
       s.kafka_partition,
       s.kafka_offset,
       s.occurred_at,
       s.business_date,
       s.payload ->> 'source_system' AS source_system,
       s.payload,
       (SELECT count(*) FROM revledger.journal_entries AS e
         WHERE e.source_event_id = s.event_id) AS entry_count,
       coalesce((SELECT array_agg(d.reason ORDER BY d.failed_at, d.kafka_partition,
                                  d.kafka_offset)
                   FROM revledger.dlq_records AS d WHERE d.event_id = s.event_id), '{}')
           AS dlq_reasons,
       (SELECT d.message FROM revledger.dlq_records AS d WHERE d.event_id = s.event_id
         ORDER BY d.failed_at DESC, d.kafka_partition DESC, d.kafka_offset DESC LIMIT 1)
           AS dlq_message,
       CASE
           WHEN s.event_type IN ('invoice.voided', 'credit_note.issued', 'invoice.written_off')
                AND NOT EXISTS (SELECT 1 FROM revledger.invoices AS i
                                 WHERE i.invoice_id = s.payload ->> 'invoice_id')
               THEN 'invoice:' || (s.payload ->> 'invoice_id')
           WHEN s.event_type = 'credit_note.voided'
                AND NOT EXISTS (SELECT 1 FROM revledger.source_events AS c
                                 WHERE c.event_type = 'credit_note.issued'
                                   AND c.payload ->> 'credit_note_id'
                                       = s.payload ->> 'credit_note_id')
               THEN 'credit_note:' || (s.payload ->> 'credit_note_id')
           WHEN s.event_type IN ('refund.issued', 'dispute.closed')
                AND NOT EXISTS (SELECT 1 FROM revledger.payments AS x
                                 WHERE x.payment_id = s.payload ->> 'payment_id')
               THEN 'payment:' || (s.payload ->> 'payment_id')
           WHEN s.event_type = 'payment.settled'
               THEN (SELECT 'invoice:' || (a ->> 'invoice_id')
                       FROM jsonb_array_elements(s.payload -> 'applications') AS a
                      WHERE NOT EXISTS (SELECT 1 FROM revledger.invoices AS i
                                         WHERE i.invoice_id = a ->> 'invoice_id')
                      ORDER BY 1 LIMIT 1)
       END AS waiting_on
  FROM revledger.source_events AS s;

-- Per input partition, the offset of the last source event the ledger posted entries for
-- (and the projection wrote): the ledger applies a partition in order, so an event after
-- it has not been processed (or projected) yet rather than held.
CREATE VIEW revledger.input_positions AS
SELECT s.topic,
       s.kafka_partition,
       max(s.kafka_offset) AS last_posted_offset
  FROM revledger.source_events AS s
 WHERE EXISTS (SELECT 1 FROM revledger.journal_entries AS e
                WHERE e.source_event_id = s.event_id)
 GROUP BY s.topic, s.kafka_partition;

-- Every dead letter with its original key and value bytes, so the console can decode the
-- original (its customer, amount and materiality band) as `revledger dlq show` does.
CREATE VIEW revledger.dead_letters AS
SELECT d.kafka_partition,
       d.kafka_offset,
       d.reason,
       d.error_class,
       d.message,
       d.source_topic,
       d.source_partition,
       d.source_offset,
       d.event_id,
       d.failed_at,
       d.service_version,
       d.original_key,
       d.original_value,
       (SELECT count(*) FROM revledger.journal_entries AS e
         WHERE e.source_event_id = d.event_id) AS entries_since
  FROM revledger.dlq_records AS d;

-- One row per journal entry with the ERP batch that carried it and the ERP's latest answer
-- on that batch (NULL columns: not batched yet, or no answer yet).
CREATE VIEW revledger.entry_batches AS
SELECT e.entry_id,
       e.entity,
       e.customer_id,
       e.source_event_id,
       e.source_event_type,
       e.rule,
       e.posting_date,
       e.period,
       e.description,
       e.kafka_partition,
       e.kafka_offset,
       be.batch_id,
       ack.status AS erp_status,
       ack.erp_document_id,
       ack.message AS erp_message,
       ack.acknowledged_at
  FROM revledger.journal_entries AS e
  LEFT JOIN revledger.journal_batch_entries AS be ON be.entry_id = e.entry_id
  LEFT JOIN LATERAL (
      SELECT a.status, a.erp_document_id, a.message, a.acknowledged_at
        FROM revledger.erp_acks AS a
       WHERE a.batch_id = be.batch_id
       ORDER BY a.kafka_offset DESC, a.kafka_partition DESC
       LIMIT 1
  ) AS ack ON true;

-- Contracts and each obligation's published schedule by period.
CREATE VIEW revledger.contract_schedules AS
SELECT c.contract_id,
       c.customer_id,
       c.entity,
       c.currency,
       c.total_price_minor,
       c.booking_date,
       c.service_start,
       c.service_end,
       c.status,
       c.cancelled_on,
       o.obligation_id,
       o.product_id,
       o.pattern,
       o.allocated_minor,
       s.period,
       s.amount_minor AS scheduled_minor
  FROM revledger.contracts AS c
  LEFT JOIN revledger.performance_obligations AS o ON o.contract_id = c.contract_id
  LEFT JOIN revledger.revenue_schedule AS s
         ON s.contract_id = o.contract_id AND s.obligation_id = o.obligation_id;

-- Per source system (the events' `source_system`): events received, the latest event's
-- time, and how many occurred in the last hour and day (event time, not arrival: the
-- database keeps no arrival time).
CREATE VIEW revledger.source_system_activity AS
SELECT coalesce(s.payload ->> 'source_system', '(none)') AS source_system,
       count(*) AS event_count,
       max(s.occurred_at) AS last_occurred_at,
       (array_agg(s.event_id ORDER BY s.occurred_at DESC, s.event_id DESC))[1] AS last_event_id,
       count(*) FILTER (WHERE s.occurred_at > now() - interval '1 hour') AS events_last_hour,
       count(*) FILTER (WHERE s.occurred_at > now() - interval '1 day') AS events_last_day
  FROM revledger.source_events AS s
 WHERE s.customer_id IS NOT NULL
 GROUP BY 1;

-- The console's users. password_hash: `scrypt$<n>$<r>$<p>$<salt b64>$<key b64>` with a
-- random salt per user (streams/console/auth.py); the parameters travel with the hash so
-- they can be raised later without invalidating old ones.
CREATE TABLE revledger.console_users (
    username      TEXT PRIMARY KEY CONSTRAINT console_users_username_format
                      CHECK (username ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    role          TEXT NOT NULL CONSTRAINT console_users_role
                      CHECK (role IN ('viewer', 'operator')),
    password_hash TEXT NOT NULL CONSTRAINT console_users_password_hash_scrypt
                      CHECK (password_hash LIKE 'scrypt$%'),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    disabled      BOOLEAN NOT NULL DEFAULT false
);

-- A login session: only the SHA-256 of the cookie's random token is stored, so a copy of
-- this table does not log anyone in. Expired rows are deleted at the next login.
CREATE TABLE revledger.console_sessions (
    token_sha256 BYTEA PRIMARY KEY CONSTRAINT console_sessions_token_sha256_length
                     CHECK (length(token_sha256) = 32),
    username     TEXT NOT NULL REFERENCES revledger.console_users (username) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    CONSTRAINT console_sessions_expire_after_creation CHECK (expires_at > created_at)
);
CREATE INDEX console_sessions_username_idx ON revledger.console_sessions (username);

-- Every action attempted through the console, by whom and with what outcome: `done`,
-- `refused` (a viewer, a missing confirmation) or `failed` (the action raised). No foreign
-- key to console_users: the audit outlives the user.
CREATE TABLE revledger.console_audit (
    audit_id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    username    TEXT NOT NULL,
    role        TEXT NOT NULL,
    action      TEXT NOT NULL CONSTRAINT console_audit_action_not_empty CHECK (action <> ''),
    target      JSONB NOT NULL DEFAULT '{}' CONSTRAINT console_audit_target_is_object
                    CHECK (jsonb_typeof(target) = 'object'),
    outcome     TEXT NOT NULL CONSTRAINT console_audit_outcome
                    CHECK (outcome IN ('done', 'refused', 'failed')),
    detail      TEXT NOT NULL DEFAULT '',
    remote_addr TEXT
);
CREATE INDEX console_audit_at_idx ON revledger.console_audit (at);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'revledger_console') THEN
        CREATE ROLE revledger_console NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created meanwhile by a migration of another database
END;
$$;

-- The console reads what the reader reads (the views), through membership.
GRANT revledger_reader TO revledger_console;
GRANT USAGE ON SCHEMA revledger TO revledger_console;
GRANT SELECT, INSERT, UPDATE ON revledger.console_users TO revledger_console;
GRANT SELECT, INSERT, DELETE ON revledger.console_sessions TO revledger_console;
-- The audit is append-only for the console.
GRANT SELECT, INSERT ON revledger.console_audit TO revledger_console;
GRANT USAGE ON SEQUENCE revledger.console_audit_audit_id_seq TO revledger_console;

-- The projection (revledger_writer) has no business with logins or the audit: take back
-- what the default privileges of 0005 gave it on these tables.
REVOKE ALL ON revledger.console_users, revledger.console_sessions, revledger.console_audit
    FROM revledger_writer;
REVOKE ALL ON SEQUENCE revledger.console_audit_audit_id_seq FROM revledger_writer;

GRANT SELECT ON revledger.event_outcomes, revledger.input_positions, revledger.dead_letters,
                revledger.entry_batches, revledger.contract_schedules,
                revledger.source_system_activity
   TO revledger_reader;
REVOKE INSERT, UPDATE, DELETE ON revledger.event_outcomes, revledger.input_positions,
                revledger.dead_letters, revledger.entry_batches, revledger.contract_schedules,
                revledger.source_system_activity
   FROM revledger_writer;
