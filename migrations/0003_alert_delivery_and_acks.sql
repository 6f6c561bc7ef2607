-- Delivering the alert outbox over HTTP, and acknowledging follow-ups.

ALTER TABLE voidrecon.alerts
    ADD COLUMN attempts        integer NOT NULL DEFAULT 0,
    ADD COLUMN last_attempt_at timestamptz,
    ADD COLUMN last_error      text,
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN lease_token     bigint,
    ADD COLUMN lease_until     timestamptz;
COMMENT ON COLUMN voidrecon.alerts.attempts IS 'Delivery attempts so far (POSTs to VOIDRECON_ALERT_URL).';
COMMENT ON COLUMN voidrecon.alerts.last_attempt_at IS 'When the last delivery attempt started.';
COMMENT ON COLUMN voidrecon.alerts.last_error IS 'Why the last attempt failed (HTTP status or transport error); NULL once delivered.';
COMMENT ON COLUMN voidrecon.alerts.next_attempt_at IS 'When the next delivery attempt is due; it backs off exponentially after each failure.';
COMMENT ON COLUMN voidrecon.alerts.lease_token IS 'Fencing token of the delivery attempt in flight; only it may mark the alert delivered.';
COMMENT ON COLUMN voidrecon.alerts.lease_until IS 'Until when a voidrecon process holds the alert for one attempt.';

DROP INDEX voidrecon.alerts_undelivered_idx;
CREATE INDEX alerts_due_idx ON voidrecon.alerts (next_attempt_at, id) WHERE delivered_at IS NULL;
CREATE SEQUENCE voidrecon.alert_lease_seq;
COMMENT ON SEQUENCE voidrecon.alert_lease_seq IS 'Fencing tokens of alert delivery leases.';

ALTER TABLE voidrecon.void_cases
    ADD COLUMN followup_acked_by text,
    ADD COLUMN followup_ack_note text;
COMMENT ON COLUMN voidrecon.void_cases.followup_acked_by IS 'Who last acknowledged the follow-up.';
COMMENT ON COLUMN voidrecon.void_cases.followup_ack_note IS 'What they noted when they acknowledged it.';

ALTER TABLE voidrecon.order_cancellations
    ADD COLUMN followup_acked_by text,
    ADD COLUMN followup_ack_note text;
COMMENT ON COLUMN voidrecon.order_cancellations.followup_acked_by IS 'Who acknowledged the cancellation.';
COMMENT ON COLUMN voidrecon.order_cancellations.followup_ack_note IS 'What they noted when they acknowledged it.';

CREATE TABLE voidrecon.acknowledgements (
    id        bigserial PRIMARY KEY,
    subject   text NOT NULL CHECK (subject IN ('void_case', 'order_cancellation')),
    order_no  text NOT NULL,
    void_code text,
    provider  text,
    reason    text,
    acked_by  text NOT NULL,
    note      text,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX acknowledgements_subject_idx ON voidrecon.acknowledgements (order_no, void_code, id);
COMMENT ON TABLE voidrecon.acknowledgements IS 'Every acknowledgement of a follow-up, by whom and why: the audit of people''s decisions.';
COMMENT ON COLUMN voidrecon.acknowledgements.id IS 'Acknowledgement id.';
COMMENT ON COLUMN voidrecon.acknowledgements.subject IS 'void_case or order_cancellation.';
COMMENT ON COLUMN voidrecon.acknowledgements.order_no IS 'The order (Atlas orderNo or the provider''s order reference).';
COMMENT ON COLUMN voidrecon.acknowledgements.void_code IS 'The void case, for void cases.';
COMMENT ON COLUMN voidrecon.acknowledgements.provider IS 'The provider, for order cancellations.';
COMMENT ON COLUMN voidrecon.acknowledgements.reason IS 'The follow-up reason that was acknowledged (rejected, conflict, stuck, poll_failing, cancelled).';
COMMENT ON COLUMN voidrecon.acknowledgements.acked_by IS 'Who acknowledged it, as they gave their name.';
COMMENT ON COLUMN voidrecon.acknowledgements.note IS 'Their note.';
COMMENT ON COLUMN voidrecon.acknowledgements.at IS 'When.';

-- Counting open cases for /metrics without reading the whole table.
CREATE INDEX void_cases_open_idx ON voidrecon.void_cases (order_no, void_code) WHERE is_open;

CREATE FUNCTION voidrecon.void_status_name(status integer) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    RETURN (ARRAY['ATLAS_PROCESSING', 'AIRLINE_PROCESSING', 'VOIDED', 'AIRLINE_VOIDING',
                  'REJECTED', 'COMPLETED', 'WITHDREW'])[status + 1];
COMMENT ON FUNCTION voidrecon.void_status_name(integer) IS 'The documented name of an Atlas voidStatus (0 ATLAS_PROCESSING ... 6 WITHDREW); NULL outside 0..6.';
