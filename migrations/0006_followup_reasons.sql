-- Follow-up reasons as a set: a case can wait for a person for several reasons at once, each
-- raised (and alerted) once and acknowledged on its own. void_cases.needs_followup and
-- followup_reason stay, derived from the set, for readers of schema version 5.

CREATE FUNCTION voidrecon.followup_rank(reason text) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT
    RETURN array_position(ARRAY['rejected', 'conflict', 'poll_failing', 'stuck'], reason);
COMMENT ON FUNCTION voidrecon.followup_rank(text) IS 'Urgency of a follow-up reason, 1 most urgent: rejected, conflict, poll_failing, stuck.';

CREATE FUNCTION voidrecon.followup_top(pending boolean, current text, raised text) RETURNS text
    LANGUAGE sql IMMUTABLE
    RETURN CASE WHEN pending AND current IS NOT NULL
                     AND voidrecon.followup_rank(current) < voidrecon.followup_rank(raised)
                THEN current ELSE raised END;
COMMENT ON FUNCTION voidrecon.followup_top(boolean, text, text) IS 'The followup_reason of a case after raising reason raised: the more urgent of it and the current one (when one is pending).';

CREATE TABLE voidrecon.case_followups (
    order_no    text NOT NULL,
    void_code   text NOT NULL,
    reason      text NOT NULL CHECK (reason IN ('rejected', 'conflict', 'stuck', 'poll_failing')),
    raised_at   timestamptz NOT NULL DEFAULT now(),
    alert_id    bigint REFERENCES voidrecon.alerts (id),
    delivery_id bigint REFERENCES voidrecon.deliveries (id) ON DELETE SET NULL,
    PRIMARY KEY (order_no, void_code, reason),
    FOREIGN KEY (order_no, void_code) REFERENCES voidrecon.void_cases (order_no, void_code)
);
CREATE INDEX case_followups_raised_at_idx ON voidrecon.case_followups (raised_at);
CREATE INDEX case_followups_delivery_idx ON voidrecon.case_followups (delivery_id)
    WHERE delivery_id IS NOT NULL;
COMMENT ON INDEX voidrecon.case_followups_raised_at_idx IS 'Open follow-ups oldest first.';
COMMENT ON INDEX voidrecon.case_followups_delivery_idx IS 'The follow-ups a delivery raised: set to NULL when it is pruned.';
COMMENT ON TABLE voidrecon.case_followups IS 'Why each void case waits for a person: one row per open (unacknowledged) reason. An acknowledgement deletes the row and records itself in acknowledgements; the same reason raised again later is a new row and a new alert.';
COMMENT ON COLUMN voidrecon.case_followups.order_no IS 'The case''s Atlas order number.';
COMMENT ON COLUMN voidrecon.case_followups.void_code IS 'The case''s Atlas void code.';
COMMENT ON COLUMN voidrecon.case_followups.reason IS 'rejected (Atlas rejected the void), conflict (two closed statuses disagree), stuck (open longer than VOIDRECON_STUCK_AFTER_MS) or poll_failing (polls keep failing, or Atlas says the order cannot be voided or is not its own).';
COMMENT ON COLUMN voidrecon.case_followups.raised_at IS 'When the reason was raised.';
COMMENT ON COLUMN voidrecon.case_followups.alert_id IS 'The alert raised with it.';
COMMENT ON COLUMN voidrecon.case_followups.delivery_id IS 'The webhook delivery that raised it, when one did.';

-- The reasons pending today, as they were recorded.
INSERT INTO voidrecon.case_followups (order_no, void_code, reason, raised_at)
SELECT order_no, void_code, followup_reason, updated_at
  FROM voidrecon.void_cases
 WHERE needs_followup AND followup_reason IS NOT NULL;

COMMENT ON COLUMN voidrecon.void_cases.needs_followup IS 'True while the case has any open follow-up reason (voidrecon.case_followups); cleared when the last one is acknowledged.';
COMMENT ON COLUMN voidrecon.void_cases.followup_reason IS 'The most urgent open follow-up reason (rejected, conflict, poll_failing, stuck); once all are acknowledged, the last most urgent one. The whole set is in voidrecon.case_followups.';
COMMENT ON COLUMN voidrecon.void_cases.followup_acked_at IS 'When a person last acknowledged a follow-up reason of the case.';
COMMENT ON COLUMN voidrecon.acknowledgements.reason IS 'The follow-up reason acknowledged (rejected, conflict, stuck, poll_failing; cancelled for order cancellations): one row per reason.';

-- One row per open reason; the columns of version 5 first, then new ones.
CREATE OR REPLACE VIEW voidrecon.followups AS
    SELECT 'void_case'::text AS subject, f.order_no, f.void_code, f.reason, c.status, c.message,
           f.raised_at AS since, NULL::text AS provider, NULL::bigint AS cancellation_id,
           f.alert_id
      FROM voidrecon.case_followups f
      JOIN voidrecon.void_cases c USING (order_no, void_code)
    UNION ALL
    SELECT 'order_cancellation', order_ref, NULL, 'cancelled_by_' || provider,
           NULL, coalesce(error_code || ': ', '') || coalesce(error_message, ''), received_at,
           provider, id, NULL
      FROM voidrecon.order_cancellations
     WHERE needs_followup;
COMMENT ON VIEW voidrecon.followups IS 'Everything waiting for a person, one row per open reason: each open follow-up reason of a void case, and each unacknowledged order cancellation (acknowledge it by cancellation_id).';

CREATE INDEX order_cancellations_followup_idx ON voidrecon.order_cancellations (id)
    WHERE needs_followup;
