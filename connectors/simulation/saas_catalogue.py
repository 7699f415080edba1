"""The simulated SaaS company's price list, taxes and business rates.

Plans are priced per seat and term (annual plans cost ten months of the monthly price);
the API add-on per 1,000 calls; onboarding and training are one-off services. Taxes are
sales tax by US state (none where SaaS is exempt) and VAT by EU member state (none under
reverse charge). The rates say how often each business case happens.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

from dataclasses import dataclass

CARD, TRANSFER = "card", "bank_transfer"


@dataclass(frozen=True, slots=True)
class Plan:
    """A plan of the price list: its product, term in months and list price per seat."""

    product_id: str
    name: str
    pattern: str
    months: int
    seat_price_minor: int


PLANS: dict[tuple[str, int], Plan] = {
    ("team", 1): Plan("TEAM-M", "Team plan, monthly", "ratable_daily", 1, 25_00),
    ("team", 12): Plan("TEAM-A", "Team plan, annual", "ratable_monthly", 12, 250_00),
    ("business", 1): Plan("BIZ-M", "Business plan, monthly", "ratable_daily", 1, 60_00),
    ("business", 12): Plan("BIZ-A", "Business plan, annual", "ratable_monthly", 12, 600_00),
}
API = "API"
# The add-on's price of 1,000 API calls, in minor units.
PRICE_PER_THOUSAND_CALLS = 40
ONBOARDING, TRAINING = "ONBOARD", "TRAINING"
SERVICE_PRICES = {
    (ONBOARDING, "team"): 400_00,
    (ONBOARDING, "business"): 2_500_00,
    (TRAINING, "team"): 900_00,
    (TRAINING, "business"): 900_00,
}
# (product id, name, family, pattern, SSP in minor units): what the reference data publishes.
CATALOGUE: tuple[tuple[str, str, str, str, int], ...] = (
    *(
        (p.product_id, p.name, "subscription", p.pattern, p.seat_price_minor)
        for p in PLANS.values()
    ),
    (API, "API calls add-on, per 1,000 calls", "usage", "usage", PRICE_PER_THOUSAND_CALLS),
    (ONBOARDING, "Onboarding package", "services", "point_in_time", 2_500_00),
    (TRAINING, "Training day", "services", "point_in_time", 900_00),
)

# Rates of the business, per term, invoice or payment: small enough to stay believable,
# large enough that 100 customers over 12 months show each case several times.
MONTHLY_CHURN_RATE = 0.03  # a monthly plan not renewed (half of them cancelled at once)
ANNUAL_NON_RENEWAL_RATE = 0.15
ANNUAL_CANCELLATION_RATE = 0.05  # mid-term, the rest credited
DUNNING_RATE = {CARD: 0.015, TRANSFER: 0.04}  # invoices never paid: the plan is cancelled
MONTHLY_UPGRADE_RATE = 0.08
RENEWAL_DOWNGRADE_RATE = 0.04
CARD_RETRY_RATE = 0.06
TRANSFER_OVERPAID_RATE, TRANSFER_PARTIAL_RATE, TRANSFER_LATE_RATE = 0.07, 0.05, 0.23
OUTAGE_CREDIT_RATE = 0.03
DISPUTE_RATE = 0.03
DISPUTE_FEE_MINOR = 15_00


@dataclass(frozen=True, slots=True)
class TaxRegime:
    """Sales tax or VAT of a jurisdiction, at a rate in thousandths of a percent."""

    country: str
    jurisdiction: str
    tax_code: str
    rate: int  # 8_875 = 8.875 %

    def tax_of(self, net_minor: int) -> int:
        """Tax on ``net_minor``, rounded half up."""
        return (net_minor * self.rate + 50_000) // 100_000


# (regime or None when no tax is charged, weight).
US_TAX: tuple[tuple[TaxRegime | None, int], ...] = (
    (TaxRegime("US", "US-NY", "SALES-NY", 8_875), 3),
    (TaxRegime("US", "US-TX", "SALES-TX", 6_250), 3),
    (TaxRegime("US", "US-WA", "SALES-WA", 10_250), 2),
    (TaxRegime("US", "US-PA", "SALES-PA", 6_000), 2),
    (None, 6),  # California, Florida ...: SaaS not taxed
)
EU_TAX: tuple[tuple[TaxRegime | None, int], ...] = (
    (TaxRegime("DE", "DE", "VAT-DE", 19_000), 4),
    (TaxRegime("FR", "FR", "VAT-FR", 20_000), 3),
    (TaxRegime("NL", "NL", "VAT-NL", 21_000), 2),
    (TaxRegime("IE", "IE", "VAT-IE", 23_000), 2),
    (None, 5),  # a business customer in another member state: reverse charge
)
COMPANY_NAMES = (
    ("Blue", "Northern", "Bright", "Silver", "Rapid", "Quiet", "Golden", "Open", "Clear", "Urban"),
    ("Harbor", "Pine", "Falcon", "Atlas", "Cedar", "Summit", "Orbit", "River", "Anchor", "Maple"),
    ("Labs", "Systems", "Analytics", "Logistics", "Health", "Studio", "Foods", "Robotics"),
)
