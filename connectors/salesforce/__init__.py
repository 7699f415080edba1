"""Salesforce connector: CDC / platform events of the CRM and CPQ -> canonical contract events.

Pure translation (no I/O): :func:`translate` with a :class:`SalesforceConfig`. The
translator worker (``streams/crm_translator.py``) and ``revledger import contracts``
(``streams/importing.py``) do the Kafka and file work around it. docs/CRM.md has the
mapping table.
"""

from connectors.salesforce.config import (
    ProductTreatment,
    SalesforceConfig,
    SalesforceConfigError,
    config_from_environ,
    config_from_mapping,
    load_config,
)
from connectors.salesforce.translate import (
    HANDLERS,
    Malformed,
    Skipped,
    Translated,
    Translation,
    routing_key,
    translate,
)

__all__ = [
    "HANDLERS",
    "Malformed",
    "ProductTreatment",
    "SalesforceConfig",
    "SalesforceConfigError",
    "Skipped",
    "Translated",
    "Translation",
    "config_from_environ",
    "config_from_mapping",
    "load_config",
    "routing_key",
    "translate",
]
