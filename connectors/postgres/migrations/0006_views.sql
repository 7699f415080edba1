-- 0006 views: what the accountants' reports read (connectors/postgres/queries.py, the
-- `revledger tb | activity | aging | rollforward | waterfall | statement | trace | periods`
-- commands, and any BI tool logged in as revledger_reader).
--
-- Views, not functions, and no parameters: the reader may read views only, and a view runs
-- with its owner's rights (never set security_invoker on them, 0005_roles.sql). An as-of
-- date, period, entity or customer is a WHERE clause on a view column, bound by the caller.
-- Money stays integer minor units beside its CHAR(3) currency; amounts that move in two
-- directions are split into debit/credit columns or signed with the sign stated below.
-- Every view is granted to revledger_reader at the end of this file.

-- One row per journal line, with the dates a trial balance is taken at. Sum it with
-- `posting_date <= as_of` per (entity, account, currency): transaction amounts per
-- currency, functional amounts per entity (every entry balances in both).
CREATE VIEW revledger.trial_balance_lines AS
SELECT e.entity,
       l.account,
       l.currency,
       e.functional_currency,
       e.posting_date,
       e.period,
       e.entry_id,
       l.line_no,
       CASE WHEN l.side = 'debit' THEN l.amount_minor ELSE 0 END AS debit_minor,
       CASE WHEN l.side = 'credit' THEN l.amount_minor ELSE 0 END AS credit_minor,
       CASE WHEN l.side = 'debit' THEN l.functional_amount_minor ELSE 0 END
           AS functional_debit_minor,
       CASE WHEN l.side = 'credit' THEN l.functional_amount_minor ELSE 0 END
           AS functional_credit_minor
  FROM revledger.journal_entries AS e
  JOIN revledger.journal_lines AS l ON l.entry_id = e.entry_id;

-- One row per journal line with what an accountant needs to read it: the entry, its rule
-- and description, the customer and the source event. Running order within an account:
-- posting_date, kafka_partition, kafka_offset, line_no (a customer's entries all sit in
-- one partition, in the order the ledger posted them), then entry_id.
CREATE VIEW revledger.account_activity AS
SELECT e.entity,
       l.account,
       l.currency,
       e.functional_currency,
       e.posting_date,
       e.original_date,
       e.period,
       e.entry_id,
       l.line_no,
       e.rule,
       e.description,
       e.customer_id,
       e.source_event_id,
       e.source_event_type,
       l.side,
       CASE WHEN l.side = 'debit' THEN l.amount_minor ELSE 0 END AS debit_minor,
       CASE WHEN l.side = 'credit' THEN l.amount_minor ELSE 0 END AS credit_minor,
       CASE WHEN l.side = 'debit' THEN l.functional_amount_minor ELSE 0 END
           AS functional_debit_minor,
       CASE WHEN l.side = 'credit' THEN l.functional_amount_minor ELSE 0 END
           AS functional_credit_minor,
       l.dimensions,
       e.kafka_partition,
       e.kafka_offset
  FROM revledger.journal_entries AS e
  JOIN revledger.journal_lines AS l ON l.entry_id = e.entry_id;

-- Accounts receivable movements by invoice (dimensions->>'invoice_id': every AR line the
-- ledger posts carries it), with the invoice's dates when the invoice row is there.
-- amount_minor is signed: + raises what is due (invoice, refund reopening it), - lowers it
-- (payment, credit note, write-off, void). Amount due as of D = sum over posting_date <= D;
-- an invoice not yet in revledger.invoices is aged from its first AR posting.
CREATE VIEW revledger.ar_open_items AS
SELECT l.dimensions ->> 'invoice_id' AS invoice_id,
       e.entity,
       e.customer_id,
       l.currency,
       e.functional_currency,
       i.issue_date,
       i.due_date,
       i.status AS invoice_status,
       i.total_minor AS invoice_total_minor,
       e.posting_date,
       e.entry_id,
       l.line_no,
       e.rule,
       CASE WHEN l.side = 'debit' THEN l.amount_minor ELSE -l.amount_minor END AS amount_minor,
       CASE WHEN l.side = 'debit' THEN l.functional_amount_minor
            ELSE -l.functional_amount_minor END AS functional_amount_minor
  FROM revledger.journal_lines AS l
  JOIN revledger.journal_entries AS e ON e.entry_id = l.entry_id
  LEFT JOIN revledger.invoices AS i ON i.invoice_id = l.dimensions ->> 'invoice_id'
 WHERE l.account = 'accounts_receivable';

-- Deferred revenue per entity, transaction currency and accounting period, by what moved
-- it. Amounts are signed so that
--     closing = opening + billings_minor - recognised_minor + adjustments_minor
-- where opening is the sum of net_change_minor of the earlier periods. Every rule is
-- classified by name (ledger/rules_*.py, revenue/recognition.py), net per rule:
--   billings     invoice_issued (credits - debits: billing ahead of revenue);
--   recognised   revenue_recognition, revenue_catch_up, usage_recorded (debits - credits:
--                usage is recognised as it is consumed, ASC 606-10-32-40; a reversal of
--                recognised revenue is a negative recognition);
--   adjustments  invoice_voided, credit_note, write_off, revenue_reclass (deferred <->
--                unbilled), payment_settled, refund, dispute_lost, dispute_fee, payout
--                (credits - debits), and any rule not named here, which is ALSO shown in
--                unclassified_minor so that a new rule is seen without breaking the sum.
-- functional_* are the same in the entity's functional currency.
CREATE VIEW revledger.deferred_revenue_movements AS
WITH moves AS (
    SELECT e.entity,
           l.currency,
           e.functional_currency,
           e.period,
           CASE
               WHEN e.rule IN ('invoice_issued') THEN 'billing'
               WHEN e.rule IN ('revenue_recognition', 'revenue_catch_up', 'usage_recorded')
                   THEN 'recognition'
               WHEN e.rule IN ('invoice_voided', 'credit_note', 'write_off', 'revenue_reclass',
                               'payment_settled', 'refund', 'dispute_lost', 'dispute_fee',
                               'payout') THEN 'adjustment'
               ELSE 'unclassified'
           END AS movement,
           CASE WHEN l.side = 'credit' THEN l.amount_minor ELSE -l.amount_minor END
               AS credit_minor,
           CASE WHEN l.side = 'credit' THEN l.functional_amount_minor
                ELSE -l.functional_amount_minor END AS functional_credit_minor
      FROM revledger.journal_lines AS l
      JOIN revledger.journal_entries AS e ON e.entry_id = l.entry_id
     WHERE l.account = 'deferred_revenue'
)
SELECT entity,
       currency,
       functional_currency,
       period,
       coalesce(sum(credit_minor) FILTER (WHERE movement = 'billing'), 0)::bigint
           AS billings_minor,
       coalesce(-sum(credit_minor) FILTER (WHERE movement = 'recognition'), 0)::bigint
           AS recognised_minor,
       coalesce(sum(credit_minor) FILTER (WHERE movement IN ('adjustment', 'unclassified')),
                0)::bigint AS adjustments_minor,
       coalesce(sum(credit_minor) FILTER (WHERE movement = 'unclassified'), 0)::bigint
           AS unclassified_minor,
       sum(credit_minor)::bigint AS net_change_minor,
       coalesce(sum(functional_credit_minor) FILTER (WHERE movement = 'billing'), 0)::bigint
           AS functional_billings_minor,
       coalesce(-sum(functional_credit_minor) FILTER (WHERE movement = 'recognition'),
                0)::bigint AS functional_recognised_minor,
       coalesce(sum(functional_credit_minor)
                    FILTER (WHERE movement IN ('adjustment', 'unclassified')), 0)::bigint
           AS functional_adjustments_minor,
       sum(functional_credit_minor)::bigint AS functional_net_change_minor,
       count(*) AS line_count
  FROM moves
 GROUP BY entity, currency, functional_currency, period;

-- Revenue waterfall, two kinds of rows per entity, customer, contract and currency:
--   recognised  revenue booked, by posting day and period: net credits to the revenue
--               account (contra revenue is not in it); posting_date set;
--   scheduled   the contract's published schedule (revenue.schedules.v1) by period, the
--               whole schedule: a report takes the periods after its as-of period;
--               posting_date NULL.
CREATE VIEW revledger.revenue_waterfall AS
SELECT 'recognised'::text AS kind,
       e.entity,
       e.customer_id,
       l.dimensions ->> 'contract_id' AS contract_id,
       l.currency,
       e.functional_currency,
       e.period,
       e.posting_date,
       sum(CASE WHEN l.side = 'credit' THEN l.amount_minor ELSE -l.amount_minor END)::bigint
           AS amount_minor,
       sum(CASE WHEN l.side = 'credit' THEN l.functional_amount_minor
                ELSE -l.functional_amount_minor END)::bigint AS functional_amount_minor
  FROM revledger.journal_lines AS l
  JOIN revledger.journal_entries AS e ON e.entry_id = l.entry_id
 WHERE l.account = 'revenue'
 GROUP BY e.entity, e.customer_id, l.dimensions ->> 'contract_id', l.currency,
          e.functional_currency, e.period, e.posting_date
UNION ALL
SELECT 'scheduled'::text AS kind,
       c.entity,
       c.customer_id,
       s.contract_id,
       s.currency,
       NULL::char(3) AS functional_currency,
       s.period,
       NULL::date AS posting_date,
       sum(s.amount_minor)::bigint AS amount_minor,
       NULL::bigint AS functional_amount_minor
  FROM revledger.revenue_schedule AS s
  JOIN revledger.contracts AS c ON c.contract_id = s.contract_id
 GROUP BY c.entity, c.customer_id, s.contract_id, s.currency, s.period;

-- A customer's balance with us: its accounts receivable (what it owes) and customer
-- credit (what we owe it: overpayments, credits beyond the amount due) lines, one row per
-- line, named by the document that moved them. debit_minor raises the balance the
-- customer owes, credit_minor lowers it; a running balance per currency is a sum in
-- running order (posting_date, kafka_partition, kafka_offset, line_no).
CREATE VIEW revledger.customer_statement AS
SELECT e.customer_id,
       e.entity,
       l.currency,
       e.posting_date,
       e.entry_id,
       l.line_no,
       e.rule,
       CASE e.rule
           WHEN 'invoice_issued' THEN 'invoice'
           WHEN 'invoice_voided' THEN 'void'
           WHEN 'payment_settled' THEN 'payment'
           WHEN 'credit_note' THEN 'credit note'
           WHEN 'refund' THEN 'refund'
           WHEN 'write_off' THEN 'write-off'
           ELSE e.rule
       END AS document_type,
       coalesce(l.dimensions ->> 'credit_note_id', l.dimensions ->> 'refund_id',
                l.dimensions ->> 'payment_id', l.dimensions ->> 'invoice_id', e.entry_id)
           AS document_id,
       l.dimensions ->> 'invoice_id' AS invoice_id,
       l.account,
       e.description,
       CASE WHEN l.side = 'debit' THEN l.amount_minor ELSE 0 END AS debit_minor,
       CASE WHEN l.side = 'credit' THEN l.amount_minor ELSE 0 END AS credit_minor,
       e.kafka_partition,
       e.kafka_offset
  FROM revledger.journal_lines AS l
  JOIN revledger.journal_entries AS e ON e.entry_id = l.entry_id
 WHERE l.account IN ('accounts_receivable', 'customer_credit');

-- Lineage, one row per journal line: its entry, the ERP batch that carried it and the
-- batch line it was summarised into, and the source event. A batch line is matched by
-- account, currency and its kept dimensions (the entry line's dimensions contain the
-- batch line's; the most specific batch line wins). Batch columns are NULL for an entry
-- not batched yet. origin_event_* is the source event row: the entry's source_event_id,
-- or for a recognition entry (`<clock event id>/<customer id>`) the clock tick.
-- `revledger trace REF` selects by batch_id, entry_id, source_event_id or origin_event_id.
CREATE VIEW revledger.batch_lineage AS
SELECT be.batch_id,
       b.period AS batch_period,
       b.sequence AS batch_sequence,
       b.source_partition AS batch_source_partition,
       bl.line_no AS batch_line_no,
       bl.gl_code,
       e.entity,
       e.entry_id,
       l.line_no,
       l.account,
       l.currency,
       l.side,
       l.amount_minor,
       l.functional_amount_minor,
       e.functional_currency,
       e.posting_date,
       e.period,
       e.rule,
       e.customer_id,
       e.source_event_id,
       e.source_event_type,
       e.topic AS entry_topic,
       e.kafka_partition AS entry_partition,
       e.kafka_offset AS entry_offset,
       se.event_id AS origin_event_id,
       se.event_type AS origin_event_type,
       se.topic AS origin_topic,
       se.kafka_partition AS origin_partition,
       se.kafka_offset AS origin_offset,
       se.occurred_at AS origin_occurred_at,
       se.business_date AS origin_business_date
  FROM revledger.journal_entries AS e
  JOIN revledger.journal_lines AS l ON l.entry_id = e.entry_id
  LEFT JOIN revledger.journal_batch_entries AS be ON be.entry_id = e.entry_id
  LEFT JOIN revledger.journal_batches AS b ON b.batch_id = be.batch_id
  LEFT JOIN LATERAL (
      SELECT x.line_no, x.gl_code
        FROM revledger.journal_batch_lines AS x
       WHERE x.batch_id = be.batch_id
         AND x.account = l.account
         AND x.currency = l.currency
         AND l.dimensions @> x.dimensions
       ORDER BY (SELECT count(*) FROM jsonb_object_keys(x.dimensions)) DESC, x.line_no
       LIMIT 1
  ) AS bl ON true
  LEFT JOIN LATERAL (
      SELECT s.event_id, s.event_type, s.topic, s.kafka_partition, s.kafka_offset,
             s.occurred_at, s.business_date
        FROM revledger.source_events AS s
       WHERE s.event_id = e.source_event_id
          OR (right(e.source_event_id, length(e.customer_id) + 1) = '/' || e.customer_id
              AND s.event_id = left(e.source_event_id,
                                    length(e.source_event_id) - length(e.customer_id) - 1))
       ORDER BY (s.event_id = e.source_event_id) DESC
       LIMIT 1
  ) AS se ON true;

-- Dead letters by reason.
CREATE VIEW revledger.dlq_summary AS
SELECT reason,
       count(*) AS record_count,
       count(DISTINCT event_id) AS event_count,
       min(failed_at) AS first_failed_at,
       max(failed_at) AS last_failed_at
  FROM revledger.dlq_records
 GROUP BY reason;

-- Accounting periods per entity: those the control records opened or closed (the periods
-- table) and those entries were posted in (open unless the table says closed), with the
-- entries posted in each.
CREATE VIEW revledger.period_status AS
WITH seen AS (
    SELECT entity,
           period,
           count(*) AS entry_count,
           min(posting_date) AS first_posting_date,
           max(posting_date) AS last_posting_date
      FROM revledger.journal_entries
     GROUP BY entity, period
)
SELECT coalesce(p.entity, s.entity) AS entity,
       coalesce(p.period, s.period) AS period,
       coalesce(p.status, 'open') AS status,
       p.closed_on,
       coalesce(s.entry_count, 0) AS entry_count,
       s.first_posting_date,
       s.last_posting_date,
       p.entity IS NOT NULL AS recorded
  FROM revledger.periods AS p
  FULL JOIN seen AS s ON s.entity = p.entity AND s.period = p.period;

-- The reader sees views only (0005_roles.sql); the writer (the projection) has no use
-- for writing through a view: keep it at SELECT, as the default privileges gave it more.
GRANT SELECT ON revledger.trial_balance_lines, revledger.account_activity,
                revledger.ar_open_items, revledger.deferred_revenue_movements,
                revledger.revenue_waterfall, revledger.customer_statement,
                revledger.batch_lineage, revledger.dlq_summary, revledger.period_status
   TO revledger_reader;
REVOKE INSERT, UPDATE, DELETE ON revledger.trial_balance_lines, revledger.account_activity,
                revledger.ar_open_items, revledger.deferred_revenue_movements,
                revledger.revenue_waterfall, revledger.customer_statement,
                revledger.batch_lineage, revledger.dlq_summary, revledger.period_status
   FROM revledger_writer;
