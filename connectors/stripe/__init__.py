"""Stripe connector: webhook events -> canonical billing, payment and contract events.

Pure translation (no I/O): :func:`translate` with a :class:`StripeConfig`. The webhook
ingress (``streams/stripe_webhook.py``) and the translator worker
(``streams/stripe_translator.py``) do the HTTP and Kafka work around it. docs/STRIPE.md
has the mapping table.
"""

from connectors.stripe.config import (
    ProductTreatment,
    StripeConfig,
    StripeConfigError,
    config_from_environ,
    config_from_mapping,
    load_config,
)
from connectors.stripe.translate import (
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
    "Skipped",
    "StripeConfig",
    "StripeConfigError",
    "Translated",
    "Translation",
    "config_from_environ",
    "config_from_mapping",
    "load_config",
    "routing_key",
    "translate",
]
