-- 0002 revenue: invoices, payments, contracts, performance obligations and their schedules.
--
-- Columns take the names of the event fields they come from (ledger/events.py,
-- revenue/events.py, revenue/state.py): issue_date, settled_date, booking_date,
-- total_price_minor, ssp_minor ... so that the projection maps a field to a column by name.
-- These tables describe documents; the money that moved is in journal_lines.

CREATE TABLE revledger.invoices (
    invoice_id      TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL,
    entity          TEXT NOT NULL,
    currency        CHAR(3) NOT NULL CONSTRAINT invoices_currency_code
                        CHECK (currency ~ '^[A-Z]{3}$'),
    issue_date      DATE NOT NULL,
    due_date        DATE NOT NULL,
    -- Lines plus tax, as InvoiceIssued.total_minor.
    total_minor     BIGINT NOT NULL CONSTRAINT invoices_total_positive CHECK (total_minor > 0),
    tax_minor       BIGINT NOT NULL DEFAULT 0 CONSTRAINT invoices_tax_not_negative
                        CHECK (tax_minor >= 0 AND tax_minor <= total_minor),
    -- open: something is still due; paid / credited / written_off: what brought the amount
    -- due to zero last; voided: InvoiceVoided (as if never issued).
    status          TEXT NOT NULL CONSTRAINT invoices_status
                        CHECK (status IN ('open', 'paid', 'credited', 'written_off', 'voided')),
    -- The InvoiceIssued event (revledger.source_events.event_id).
    source_event_id TEXT NOT NULL,
    CONSTRAINT invoices_due_after_issue CHECK (due_date >= issue_date)
);
CREATE INDEX invoices_customer_idx ON revledger.invoices (customer_id, issue_date);
CREATE INDEX invoices_entity_status_idx ON revledger.invoices (entity, status, due_date);

CREATE TABLE revledger.payments (
    payment_id      TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL,
    entity          TEXT NOT NULL,
    currency        CHAR(3) NOT NULL CONSTRAINT payments_currency_code
                        CHECK (currency ~ '^[A-Z]{3}$'),
    amount_minor    BIGINT NOT NULL CONSTRAINT payments_amount_positive
                        CHECK (amount_minor > 0),
    fee_minor       BIGINT NOT NULL DEFAULT 0 CONSTRAINT payments_fee_within_amount
                        CHECK (fee_minor >= 0 AND fee_minor <= amount_minor),
    settled_date    DATE NOT NULL,
    processor       TEXT NOT NULL,
    method          TEXT,
    -- The PaymentSettled event (revledger.source_events.event_id).
    source_event_id TEXT NOT NULL
);
CREATE INDEX payments_customer_idx ON revledger.payments (customer_id, settled_date);

-- A contract as booked and modified. Implied contracts (`implied:<invoice id>`) are those
-- the engine creates for invoice lines without one.
CREATE TABLE revledger.contracts (
    contract_id       TEXT PRIMARY KEY,
    customer_id       TEXT NOT NULL,
    entity            TEXT NOT NULL,
    currency          CHAR(3) NOT NULL CONSTRAINT contracts_currency_code
                          CHECK (currency ~ '^[A-Z]{3}$'),
    -- The transaction price now (after modifications), usage excluded.
    total_price_minor BIGINT NOT NULL CONSTRAINT contracts_total_price_not_negative
                          CHECK (total_price_minor >= 0),
    booking_date      DATE NOT NULL,
    -- Earliest start and latest end of its obligations; NULL end: open-ended usage.
    service_start     DATE NOT NULL,
    service_end       DATE,
    status            TEXT NOT NULL CONSTRAINT contracts_status
                          CHECK (status IN ('active', 'cancelled')),
    cancelled_on      DATE,
    implied           BOOLEAN NOT NULL DEFAULT false,
    -- The ContractBooked event, or the InvoiceIssued event of an implied contract.
    source_event_id   TEXT NOT NULL,
    CONSTRAINT contracts_service_ordered CHECK (service_end >= service_start),
    CONSTRAINT contracts_cancelled_on_iff_cancelled
        CHECK ((status = 'cancelled') = (cancelled_on IS NOT NULL))
);
CREATE INDEX contracts_customer_idx ON revledger.contracts (customer_id, booking_date);
CREATE INDEX contracts_entity_idx ON revledger.contracts (entity, status);

CREATE TABLE revledger.performance_obligations (
    contract_id     TEXT NOT NULL REFERENCES revledger.contracts (contract_id),
    obligation_id   TEXT NOT NULL,
    product_id      TEXT NOT NULL,
    family          TEXT NOT NULL CONSTRAINT performance_obligations_family
                        CHECK (family IN ('subscription', 'usage', 'services')),
    pattern         TEXT NOT NULL CONSTRAINT performance_obligations_pattern
                        CHECK (pattern IN ('ratable_daily', 'ratable_monthly',
                                           'point_in_time', 'usage')),
    -- revenue.schedule.Method; NULL for usage (recognised as consumed, not on a schedule).
    method          TEXT CONSTRAINT performance_obligations_method
                        CHECK (method IN ('daily', 'monthly_even', 'monthly_prorated',
                                          'point_in_time')),
    quantity        INTEGER NOT NULL CONSTRAINT performance_obligations_quantity_not_negative
                        CHECK (quantity >= 0),
    ssp_minor       BIGINT NOT NULL CONSTRAINT performance_obligations_ssp_not_negative
                        CHECK (ssp_minor >= 0),
    -- Transaction price allocated to it now (revenue/allocation.py).
    allocated_minor BIGINT NOT NULL
                        CONSTRAINT performance_obligations_allocated_not_negative
                        CHECK (allocated_minor >= 0),
    service_start   DATE NOT NULL,
    service_end     DATE,
    CONSTRAINT performance_obligations_service_ordered CHECK (service_end >= service_start),
    CONSTRAINT performance_obligations_method_iff_scheduled
        CHECK ((pattern = 'usage') = (method IS NULL)),
    PRIMARY KEY (contract_id, obligation_id)
);

-- What the schedule earns per accounting period (revenue/schedule.py): the sum of the
-- obligation's segments in that month. Signed: a credit for the remaining service is a
-- negative segment and may outweigh a month's share.
CREATE TABLE revledger.revenue_schedule (
    contract_id   TEXT NOT NULL,
    obligation_id TEXT NOT NULL,
    period        CHAR(7) NOT NULL CONSTRAINT revenue_schedule_period_format
                      CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    amount_minor  BIGINT NOT NULL,
    currency      CHAR(3) NOT NULL CONSTRAINT revenue_schedule_currency_code
                      CHECK (currency ~ '^[A-Z]{3}$'),
    PRIMARY KEY (contract_id, obligation_id, period),
    FOREIGN KEY (contract_id, obligation_id)
        REFERENCES revledger.performance_obligations (contract_id, obligation_id)
        ON DELETE CASCADE
);
CREATE INDEX revenue_schedule_period_idx ON revledger.revenue_schedule (period);
