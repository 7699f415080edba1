-- 0005 roles: who may do what in schema revledger.
--
-- revledger_writer  the projection: USAGE on the schema; SELECT, INSERT, UPDATE, DELETE on
--                   its tables; no DDL (no CREATE on the schema, owns nothing), no TRUNCATE;
--                   reads schema_migrations but cannot change it.
-- revledger_reader  accountants' tools: USAGE on the schema and SELECT on VIEWS ONLY, never
--                   a table. Views run with their owner's rights (do not set
--                   security_invoker on them), so a reader sees what a view shows and no
--                   more.
--
-- EVERY VIEW MUST BE GRANTED TO revledger_reader in the migration that creates it:
--     GRANT SELECT ON revledger.<view> TO revledger_reader;
-- There is no ALTER DEFAULT PRIVILEGES for the reader on purpose: default privileges on
-- TABLES cover tables and views alike, and would give it the tables.
-- (tests/integration/test_pg_schema.py checks both: every view granted, no table.)
--
-- Both are NOLOGIN group roles: grant them to the login roles of services and people
-- (GRANT revledger_writer TO projection_service). Roles belong to the whole cluster, so
-- they are created only when missing; two databases migrated at once may race to create
-- them, hence the exception handlers.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'revledger_writer') THEN
        CREATE ROLE revledger_writer NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created meanwhile by a migration of another database
END;
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'revledger_reader') THEN
        CREATE ROLE revledger_reader NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created meanwhile by a migration of another database
END;
$$;

GRANT USAGE ON SCHEMA revledger TO revledger_writer, revledger_reader;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA revledger TO revledger_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA revledger TO revledger_writer;
REVOKE INSERT, UPDATE, DELETE ON revledger.schema_migrations FROM revledger_writer;

-- Tables (and views) that later migrations create get the writer's grants by themselves.
-- Default privileges belong to the role that runs this migration: later migrations must
-- be run by the same role (the migrator), or grant the writer explicitly.
ALTER DEFAULT PRIVILEGES IN SCHEMA revledger
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO revledger_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA revledger
    GRANT USAGE, SELECT ON SEQUENCES TO revledger_writer;

-- Views of the migrations before this one.
GRANT SELECT ON revledger.erp_batch_status TO revledger_reader;
