-- voidrecon schema, first version: deliveries, void cases and their history, order
-- cancellations, the alert outbox, and the views order systems read.

CREATE SCHEMA IF NOT EXISTS voidrecon;
COMMENT ON SCHEMA voidrecon IS 'voidrecon: airline void cases kept true against Atlas, and order cancellations from providers.';

CREATE TABLE voidrecon.deliveries (
    id          bigserial PRIMARY KEY,
    provider    text NOT NULL,
    event_type  text,
    received_at timestamptz NOT NULL DEFAULT now(),
    remote_addr text,
    body        bytea NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('applied', 'duplicate', 'stale', 'conflict', 'ignored', 'rejected')),
    reason      text
);
CREATE INDEX deliveries_received_at_idx ON voidrecon.deliveries (received_at);
COMMENT ON TABLE voidrecon.deliveries IS 'Every webhook received and acknowledged or rejected, kept for audit.';
COMMENT ON COLUMN voidrecon.deliveries.id IS 'Delivery id, increasing in order of receipt.';
COMMENT ON COLUMN voidrecon.deliveries.provider IS 'Sender: atlas, xsolla or xendbridge.';
COMMENT ON COLUMN voidrecon.deliveries.event_type IS 'The provider''s event type (order.void, order.cancelled, ...); NULL when it could not be read.';
COMMENT ON COLUMN voidrecon.deliveries.received_at IS 'When the delivery was received.';
COMMENT ON COLUMN voidrecon.deliveries.remote_addr IS 'Network address the delivery came from.';
COMMENT ON COLUMN voidrecon.deliveries.body IS 'The raw request body as received (convert_from(body, ''UTF8'') for text).';
COMMENT ON COLUMN voidrecon.deliveries.outcome IS 'applied: changed state; duplicate: already known; stale: older than what is known; conflict: contradicts a closed status; ignored: a type voidrecon does not act on; rejected: malformed, answered 4xx.';
COMMENT ON COLUMN voidrecon.deliveries.reason IS 'Why a delivery was rejected (names the offending field), or other detail of the outcome.';

CREATE TABLE voidrecon.void_cases (
    order_no          text NOT NULL,
    void_code         text NOT NULL,
    status            smallint NOT NULL CHECK (status BETWEEN 0 AND 6),
    is_open           boolean GENERATED ALWAYS AS (status IN (0, 1, 3)) STORED,
    confirmed         boolean NOT NULL DEFAULT false,
    reconciled_at     timestamptz,
    message           text,
    needs_followup    boolean NOT NULL DEFAULT false,
    followup_reason   text CHECK (followup_reason IN ('rejected', 'conflict', 'stuck', 'poll_failing')),
    followup_acked_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    last_seen_at      timestamptz NOT NULL DEFAULT now(),
    next_poll_at      timestamptz,
    version           bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (order_no, void_code)
);
CREATE INDEX void_cases_next_poll_at_idx ON voidrecon.void_cases (next_poll_at) WHERE next_poll_at IS NOT NULL;
CREATE INDEX void_cases_followup_idx ON voidrecon.void_cases (updated_at) WHERE needs_followup;
COMMENT ON TABLE voidrecon.void_cases IS 'One row per Atlas void case, keyed by (order_no, void_code), holding its current status.';
COMMENT ON COLUMN voidrecon.void_cases.order_no IS 'Atlas original order number (orderNo).';
COMMENT ON COLUMN voidrecon.void_cases.void_code IS 'Atlas void case number returned by void.do (voidCode).';
COMMENT ON COLUMN voidrecon.void_cases.status IS 'Atlas voidStatus: 0 ATLAS_PROCESSING, 1 AIRLINE_PROCESSING, 3 AIRLINE_VOIDING (open); 2 VOIDED, 5 COMPLETED, 4 REJECTED, 6 WITHDREW (closed).';
COMMENT ON COLUMN voidrecon.void_cases.is_open IS 'True while the status is open (0, 1 or 3).';
COMMENT ON COLUMN voidrecon.void_cases.confirmed IS 'True when the current status was seen by a poll of queryVoidOrders.do, false when only a webhook reported it.';
COMMENT ON COLUMN voidrecon.void_cases.reconciled_at IS 'When a poll confirmed a closed status; the case is then final and no longer polled. NULL otherwise.';
COMMENT ON COLUMN voidrecon.void_cases.message IS 'The last human-readable message Atlas sent with an applied status.';
COMMENT ON COLUMN voidrecon.void_cases.needs_followup IS 'True while the case waits for a person (see followup_reason); cleared by an acknowledgement.';
COMMENT ON COLUMN voidrecon.void_cases.followup_reason IS 'Why a person is needed: rejected, conflict, stuck or poll_failing.';
COMMENT ON COLUMN voidrecon.void_cases.followup_acked_at IS 'When a person last acknowledged the follow-up.';
COMMENT ON COLUMN voidrecon.void_cases.created_at IS 'When voidrecon first heard of the case.';
COMMENT ON COLUMN voidrecon.void_cases.updated_at IS 'When the status, confirmation or follow-up last changed.';
COMMENT ON COLUMN voidrecon.void_cases.last_seen_at IS 'When the last report about the case arrived, whatever its outcome.';
COMMENT ON COLUMN voidrecon.void_cases.next_poll_at IS 'When the poller will next ask Atlas about the case; NULL when it never will (reconciled).';
COMMENT ON COLUMN voidrecon.void_cases.version IS 'Increases by one whenever status, confirmation or follow-up change; writers compare it to detect a concurrent change.';

CREATE TABLE voidrecon.void_case_events (
    id              bigserial PRIMARY KEY,
    order_no        text NOT NULL,
    void_code       text NOT NULL,
    source          text NOT NULL CHECK (source IN ('webhook', 'poll', 'api')),
    reported_status smallint NOT NULL CHECK (reported_status BETWEEN 0 AND 6),
    from_status     smallint,
    to_status       smallint NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('applied', 'duplicate', 'stale', 'conflict')),
    delivery_id     bigint REFERENCES voidrecon.deliveries (id),
    message         text,
    at              timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (order_no, void_code) REFERENCES voidrecon.void_cases (order_no, void_code)
);
CREATE INDEX void_case_events_case_idx ON voidrecon.void_case_events (order_no, void_code, id);
COMMENT ON TABLE voidrecon.void_case_events IS 'History of every void case: one row per report (webhook, poll or registration), whatever its outcome.';
COMMENT ON COLUMN voidrecon.void_case_events.id IS 'Event id, increasing in the order reports were applied.';
COMMENT ON COLUMN voidrecon.void_case_events.order_no IS 'The case''s Atlas order number.';
COMMENT ON COLUMN voidrecon.void_case_events.void_code IS 'The case''s Atlas void code.';
COMMENT ON COLUMN voidrecon.void_case_events.source IS 'Who reported: webhook (a hint), poll (queryVoidOrders.do, the truth) or api (the order system).';
COMMENT ON COLUMN voidrecon.void_case_events.reported_status IS 'The voidStatus the report carried.';
COMMENT ON COLUMN voidrecon.void_case_events.from_status IS 'The case''s status before the report; NULL when the report created the case.';
COMMENT ON COLUMN voidrecon.void_case_events.to_status IS 'The case''s status after the report.';
COMMENT ON COLUMN voidrecon.void_case_events.outcome IS 'applied, duplicate, stale (older news, ignored) or conflict (contradicts a closed status; flagged for follow-up).';
COMMENT ON COLUMN voidrecon.void_case_events.delivery_id IS 'The webhook delivery that carried the report, when it came by webhook.';
COMMENT ON COLUMN voidrecon.void_case_events.message IS 'The message the report carried.';
COMMENT ON COLUMN voidrecon.void_case_events.at IS 'When the report was recorded.';

CREATE TABLE voidrecon.order_cancellations (
    id                bigserial PRIMARY KEY,
    provider          text NOT NULL,
    order_ref         text NOT NULL,
    error_code        text,
    error_message     text,
    order_status      text,
    received_at       timestamptz NOT NULL DEFAULT now(),
    delivery_id       bigint REFERENCES voidrecon.deliveries (id),
    needs_followup    boolean NOT NULL DEFAULT true,
    followup_acked_at timestamptz,
    UNIQUE (provider, order_ref)
);
COMMENT ON TABLE voidrecon.order_cancellations IS 'Orders a provider reported cancelled; one row per (provider, order), repeats are recorded as duplicate deliveries.';
COMMENT ON COLUMN voidrecon.order_cancellations.id IS 'Cancellation id.';
COMMENT ON COLUMN voidrecon.order_cancellations.provider IS 'Provider that cancelled the order: atlas, xsolla or xendbridge.';
COMMENT ON COLUMN voidrecon.order_cancellations.order_ref IS 'The provider''s order reference (Atlas orderNo).';
COMMENT ON COLUMN voidrecon.order_cancellations.error_code IS 'The provider''s reason code (Atlas ticket error code such as 604), when given.';
COMMENT ON COLUMN voidrecon.order_cancellations.error_message IS 'The provider''s reason text, when given.';
COMMENT ON COLUMN voidrecon.order_cancellations.order_status IS 'The provider''s order status as given (Atlas orderStatus, -3 meaning cancelled), when given.';
COMMENT ON COLUMN voidrecon.order_cancellations.received_at IS 'When the cancellation was first received.';
COMMENT ON COLUMN voidrecon.order_cancellations.delivery_id IS 'The delivery that first reported the cancellation.';
COMMENT ON COLUMN voidrecon.order_cancellations.needs_followup IS 'True while a person should look at the cancellation; cleared by an acknowledgement.';
COMMENT ON COLUMN voidrecon.order_cancellations.followup_acked_at IS 'When a person acknowledged the cancellation.';

CREATE TABLE voidrecon.alerts (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('void_rejected', 'void_conflict', 'void_stuck', 'void_poll_failing', 'order_cancelled')),
    order_no     text,
    void_code    text,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX alerts_undelivered_idx ON voidrecon.alerts (id) WHERE delivered_at IS NULL;
COMMENT ON TABLE voidrecon.alerts IS 'Outbox of alerts for people, written in the same transaction as their cause; each insert also sends NOTIFY voidrecon_alerts.';
COMMENT ON COLUMN voidrecon.alerts.id IS 'Alert id; also the idempotency key of its delivery.';
COMMENT ON COLUMN voidrecon.alerts.kind IS 'void_rejected, void_conflict, void_stuck, void_poll_failing or order_cancelled.';
COMMENT ON COLUMN voidrecon.alerts.order_no IS 'The order concerned (Atlas orderNo or the provider''s order reference).';
COMMENT ON COLUMN voidrecon.alerts.void_code IS 'The void case concerned, for void alerts.';
COMMENT ON COLUMN voidrecon.alerts.payload IS 'What the alert says: status, message, reason and times, as JSON.';
COMMENT ON COLUMN voidrecon.alerts.created_at IS 'When the alert was raised.';
COMMENT ON COLUMN voidrecon.alerts.delivered_at IS 'When the alert receiver accepted it; NULL until then.';

-- The payload stays far below NOTIFY's 8000-byte limit: ids, never the row.
CREATE FUNCTION voidrecon.alerts_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('voidrecon_alerts', json_build_object(
        'id', NEW.id, 'kind', NEW.kind,
        'order_no', left(NEW.order_no, 200), 'void_code', left(NEW.void_code, 200))::text);
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION voidrecon.alerts_notify() IS 'Announces each new alert on the voidrecon_alerts channel with a small JSON payload (id, kind, order_no, void_code).';
CREATE TRIGGER alerts_notify AFTER INSERT ON voidrecon.alerts
    FOR EACH ROW EXECUTE FUNCTION voidrecon.alerts_notify();

CREATE VIEW voidrecon.open_void_cases AS
    SELECT order_no, void_code, status, confirmed, message, needs_followup, followup_reason,
           created_at, updated_at, last_seen_at, next_poll_at
      FROM voidrecon.void_cases
     WHERE is_open;
COMMENT ON VIEW voidrecon.open_void_cases IS 'Void cases whose status is still open (0, 1 or 3).';

CREATE VIEW voidrecon.followups AS
    SELECT 'void_case'::text AS subject, order_no, void_code, followup_reason AS reason,
           status, message, updated_at AS since
      FROM voidrecon.void_cases
     WHERE needs_followup
    UNION ALL
    SELECT 'order_cancellation', order_ref, NULL, 'cancelled_by_' || provider,
           NULL, coalesce(error_code || ': ', '') || coalesce(error_message, ''), received_at
      FROM voidrecon.order_cancellations
     WHERE needs_followup;
COMMENT ON VIEW voidrecon.followups IS 'Everything waiting for a person: flagged void cases and unacknowledged order cancellations.';
