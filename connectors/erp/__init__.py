"""ERP import file layouts for closed journal batches (NetSuite CSV, Oracle FBDI, JSON).

Pure formatting of :class:`ledger.batching.Batch`: no Kafka, no I/O, no clock. See
``connectors/erp/formats.py`` and ``docs/erp-formats.md``.
"""
