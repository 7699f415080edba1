-- 0007 projection: what the projection (streams/projection.py) keeps beside the tables it
-- fills: the records it could not project, and the latest schedule of each contract.

-- A record read by the projection that it could not turn into rows: bytes that do not
-- decode (reason = streams.serde.DecodeReason), a record type that does not belong on its
-- topic (wrong_topic), or one it cannot project whole (product_mapping_missing,
-- allocation_refused). Kept with its original key and value bytes; the
-- projection counts it and goes on. Keyed by where it was read: a replay adds nothing.
CREATE TABLE revledger.projection_rejects (
    topic           TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL CONSTRAINT projection_rejects_partition_not_negative
                        CHECK (kafka_partition >= 0),
    kafka_offset    BIGINT NOT NULL CONSTRAINT projection_rejects_offset_not_negative
                        CHECK (kafka_offset >= 0),
    reason          TEXT NOT NULL CONSTRAINT projection_rejects_reason_not_empty
                        CHECK (reason <> ''),
    message         TEXT NOT NULL,
    original_key    BYTEA,
    original_value  BYTEA,
    rejected_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);
CREATE INDEX projection_rejects_reason_idx ON revledger.projection_rejects (reason, rejected_at);

-- The RevenueScheduled record of the highest offset per contract (revenue.schedules.v1 is
-- keyed by customer/contract, so a contract's schedules share one partition). `applied`:
-- revledger.revenue_schedule holds its lines. A schedule read before its contract's booking
-- (or an obligation it names) waits here unapplied until they are projected. A replayed
-- older schedule (lower offset) changes nothing.
CREATE TABLE revledger.projection_schedules (
    contract_id     TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL,
    entity          TEXT NOT NULL,
    currency        CHAR(3) NOT NULL CONSTRAINT projection_schedules_currency_code
                        CHECK (currency ~ '^[A-Z]{3}$'),
    source_event_id TEXT NOT NULL,
    cancelled_on    DATE,
    -- [{"obligation_id": ..., "period": "YYYY-MM", "amount_minor": n}, ...]
    lines           JSONB NOT NULL CONSTRAINT projection_schedules_lines_are_array
                        CHECK (jsonb_typeof(lines) = 'array'),
    topic           TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL CONSTRAINT projection_schedules_partition_not_negative
                        CHECK (kafka_partition >= 0),
    kafka_offset    BIGINT NOT NULL CONSTRAINT projection_schedules_offset_not_negative
                        CHECK (kafka_offset >= 0),
    applied         BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX projection_schedules_waiting_idx ON revledger.projection_schedules (contract_id)
    WHERE NOT applied;

-- The projection folds an explicit contract from all its events each time a batch brings
-- one (connectors/postgres/projection.py, contract_rows): find them by contract id.
CREATE INDEX source_events_contract_idx
    ON revledger.source_events ((payload ->> 'contract_id'), kafka_partition, kafka_offset)
    WHERE event_type IN ('contract.booked', 'contract.amended', 'contract.cancelled');

-- Tables only (no view): the reader gets nothing here. The writer's default privileges
-- (0005) cover these when the same role migrates; granted explicitly in case it does not.
GRANT SELECT, INSERT, UPDATE, DELETE
    ON revledger.projection_rejects, revledger.projection_schedules TO revledger_writer;
