-- 0004 operations: dead-letter records and the projection's consumer offsets.

-- One row per record of dlq.v1 (streams.messages.DlqRecord), with the original key and
-- value bytes that `revledger dlq redrive` re-produces.
CREATE TABLE revledger.dlq_records (
    kafka_partition  INTEGER NOT NULL CONSTRAINT dlq_records_partition_not_negative
                         CHECK (kafka_partition >= 0),
    kafka_offset     BIGINT NOT NULL CONSTRAINT dlq_records_offset_not_negative
                         CHECK (kafka_offset >= 0),
    reason           TEXT NOT NULL,
    error_class      TEXT NOT NULL,
    message          TEXT NOT NULL,
    source_topic     TEXT NOT NULL,
    source_partition INTEGER NOT NULL CONSTRAINT dlq_records_source_partition_not_negative
                         CHECK (source_partition >= 0),
    source_offset    BIGINT NOT NULL CONSTRAINT dlq_records_source_offset_not_negative
                         CHECK (source_offset >= 0),
    event_id         TEXT,
    failed_at        TIMESTAMPTZ NOT NULL,
    service_version  TEXT NOT NULL,
    original_key     BYTEA,
    original_value   BYTEA,
    PRIMARY KEY (kafka_partition, kafka_offset)
);
CREATE INDEX dlq_records_reason_idx ON revledger.dlq_records (reason, failed_at);
CREATE INDEX dlq_records_event_idx ON revledger.dlq_records (event_id)
    WHERE event_id IS NOT NULL;

-- The exactly-once sink: the next offset to read per (consumer, topic, partition), written
-- in the same transaction as the rows it read, so a restart resumes exactly after them.
CREATE TABLE revledger.projection_offsets (
    consumer        TEXT NOT NULL,
    topic           TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL CONSTRAINT projection_offsets_partition_not_negative
                        CHECK (kafka_partition >= 0),
    next_offset     BIGINT NOT NULL CONSTRAINT projection_offsets_offset_not_negative
                        CHECK (next_offset >= 0),
    PRIMARY KEY (consumer, topic, kafka_partition)
);
