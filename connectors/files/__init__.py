"""Import files for sources without a connector: billing, payments and CRM contracts.

Pure parsers (text in, canonical events and per-row errors out; no I/O, no clock):

* :mod:`connectors.files.rows` reads CSV or JSON Lines text into numbered rows;
* :mod:`connectors.files.amounts` turns decimal text in major units into minor units;
* :mod:`connectors.files.canonical` assembles billing and payment events from rows;
* :mod:`connectors.files.contracts` reads the generic CRM contract JSON.

``streams/importing.py`` (``revledger import``) reads the file and produces the events.
docs/IMPORT.md and docs/CRM.md document the layouts.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""
