-- Polling Atlas: leases that keep two processes from polling one case at once, the schedule's
-- state, what queryVoidOrders.do last said, and flags for stuck cases.

ALTER TABLE voidrecon.void_cases
    ADD COLUMN polls                      integer NOT NULL DEFAULT 0,
    ADD COLUMN poll_failures              integer NOT NULL DEFAULT 0,
    ADD COLUMN last_polled_at             timestamptz,
    ADD COLUMN last_poll_error            text,
    ADD COLUMN lease_token                bigint,
    ADD COLUMN lease_until                timestamptz,
    ADD COLUMN stuck_flagged_at           timestamptz,
    ADD COLUMN cancel_reason              text,
    ADD COLUMN void_method                text,
    ADD COLUMN expected_confirmation_date date,
    ADD COLUMN expected_refund_date       date,
    ADD COLUMN atlas_void_order           jsonb;
COMMENT ON COLUMN voidrecon.void_cases.polls IS 'Answers of queryVoidOrders.do applied to the case; the interval between polls of an open case grows with it.';
COMMENT ON COLUMN voidrecon.void_cases.poll_failures IS 'Polls that failed in a row (transport, HTTP or Atlas status errors, answers without the case); 0 after a good answer.';
COMMENT ON COLUMN voidrecon.void_cases.last_polled_at IS 'When the last poll, good or failed, came back.';
COMMENT ON COLUMN voidrecon.void_cases.last_poll_error IS 'Why the last poll failed; NULL after a good answer.';
COMMENT ON COLUMN voidrecon.void_cases.lease_token IS 'Fencing token of the poll in flight; only the answer carrying it may be applied.';
COMMENT ON COLUMN voidrecon.void_cases.lease_until IS 'Until when a voidrecon process holds the case for a poll; after it, another may take it.';
COMMENT ON COLUMN voidrecon.void_cases.stuck_flagged_at IS 'When the case was flagged stuck (still open VOIDRECON_STUCK_AFTER_MS after it appeared); it is flagged once.';
COMMENT ON COLUMN voidrecon.void_cases.cancel_reason IS 'Atlas cancelReason from the last poll: why the void was rejected or cancelled.';
COMMENT ON COLUMN voidrecon.void_cases.void_method IS 'Atlas voidMethod from the last poll: CashBackToOriginalPayment or Voucher.';
COMMENT ON COLUMN voidrecon.void_cases.expected_confirmation_date IS 'Atlas expectedConfirmationDate from the last poll.';
COMMENT ON COLUMN voidrecon.void_cases.expected_refund_date IS 'Atlas expectedRefundDate from the last poll.';
COMMENT ON COLUMN voidrecon.void_cases.atlas_void_order IS 'The voidOrders item of the last good poll as Atlas sent it (amounts, tickets, fees).';

CREATE SEQUENCE voidrecon.poll_lease_seq;
COMMENT ON SEQUENCE voidrecon.poll_lease_seq IS 'Fencing tokens of poll leases.';

-- The poller asks for due cases ordered by next_poll_at (void_cases_next_poll_at_idx); the
-- stuck sweep asks for open cases not yet flagged, oldest first.
CREATE INDEX void_cases_stuck_idx ON voidrecon.void_cases (created_at)
    WHERE is_open AND stuck_flagged_at IS NULL;

CREATE OR REPLACE VIEW voidrecon.open_void_cases AS
    SELECT order_no, void_code, status, confirmed, message, needs_followup, followup_reason,
           created_at, updated_at, last_seen_at, next_poll_at, polls, poll_failures,
           last_polled_at, last_poll_error
      FROM voidrecon.void_cases
     WHERE is_open;
COMMENT ON VIEW voidrecon.open_void_cases IS 'Void cases whose status is still open (0, 1 or 3), with their polling state.';
