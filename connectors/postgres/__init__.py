"""PostgreSQL: the accountants' projection of the ledger (schema ``revledger``).

``migrations/NNNN_name.sql`` hold the DDL, checks, the deferred zero-sum trigger and the
roles; :mod:`connectors.postgres.migrate` applies them in order, once each. Nothing here
holds business rules: the database re-checks what the pure core already guarantees.

Must not import: faust, aiokafka, confluent_kafka, anything under ``streams``.
"""
