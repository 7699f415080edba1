-- 0011 console timeline: indexes for the console's paged customer timeline and for its
-- login throttle (streams/console/timeline.py, streams/console/store.py, docs/CONSOLE.md).
--
-- No table or view is added and no grant changes: the timeline reads the views of 0009
-- (revledger_reader), the throttle counts rows of revledger.console_audit, which the
-- console already reads and appends to (revledger_console).

-- A customer's dead letters whose event never reached the input log are found by the
-- record's key (the customer id the source keyed it with). A hash index: a key has no
-- length limit, and a B-tree refuses entries over a third of a page, which would refuse the
-- dead letter itself.
CREATE INDEX dlq_records_original_key_idx ON revledger.dlq_records USING hash (original_key);

-- Login attempts are audit rows (action 'login': outcome done, failed or refused). Before
-- each attempt the console counts the recent failures of the username and of the client
-- address: these two indexes keep that count to the few rows of the window.
CREATE INDEX console_audit_login_username_idx ON revledger.console_audit (username, at)
    WHERE action = 'login';
CREATE INDEX console_audit_login_address_idx ON revledger.console_audit (remote_addr, at)
    WHERE action = 'login';
