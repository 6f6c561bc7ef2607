-- Incidents that concern every case at once: Atlas failing for all polls (the circuit), and
-- Atlas webhooks gone silent. One open incident per kind across every voidrecon process, so
-- that exactly one process raises the alert that opens it and one the alert that resolves it.
-- And the poll rate, one token bucket for every process together.

CREATE TABLE voidrecon.incidents (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('atlas_failing', 'webhooks_silent')),
    cause         text NOT NULL,
    detail        text,
    opened_at     timestamptz NOT NULL DEFAULT now(),
    closed_at     timestamptz,
    probes        integer NOT NULL DEFAULT 0,
    next_probe_at timestamptz,
    alert_id      bigint REFERENCES voidrecon.alerts (id),
    resolve_alert_id bigint REFERENCES voidrecon.alerts (id)
);
CREATE UNIQUE INDEX incidents_open_idx ON voidrecon.incidents (kind) WHERE closed_at IS NULL;
COMMENT ON TABLE voidrecon.incidents IS 'Incidents that concern every case at once, one row each: atlas_failing (the poll circuit is open) and webhooks_silent. At most one open per kind (incidents_open_idx): the process that inserts it raises the alert, the one that closes it the resolve alert.';
COMMENT ON COLUMN voidrecon.incidents.id IS 'Incident id.';
COMMENT ON COLUMN voidrecon.incidents.kind IS 'atlas_failing: Atlas answers every poll with a failure that is not the case''s own (credentials, system error, server error, rate limit, unreachable), polling is paused and probed; webhooks_silent: no Atlas webhook for VOIDRECON_ATLAS_SILENCE_MS while cases are open, or polls found status changes that no webhook reported.';
COMMENT ON COLUMN voidrecon.incidents.cause IS 'atlas_failing: credentials (Atlas status 900/902), request_refused (status 901), rate_limited (HTTP 429, status 905), system_error (status 9999/-1), server_error (HTTP 5xx), unreachable (transport failures); webhooks_silent: no_webhook or unreported_changes.';
COMMENT ON COLUMN voidrecon.incidents.detail IS 'The failure that opened it, as the poller saw it (an error line without secrets), or what the silence check found.';
COMMENT ON COLUMN voidrecon.incidents.opened_at IS 'When the incident was opened.';
COMMENT ON COLUMN voidrecon.incidents.closed_at IS 'When it was closed (a good answer from Atlas, an Atlas webhook); NULL while open.';
COMMENT ON COLUMN voidrecon.incidents.probes IS 'atlas_failing: polls let through while the circuit was open, to see whether Atlas answers again.';
COMMENT ON COLUMN voidrecon.incidents.next_probe_at IS 'atlas_failing: when the next probe may be leased; the interval doubles from VOIDRECON_POLL_RETRY_MS up to VOIDRECON_ATLAS_PROBE_MAX_MS.';
COMMENT ON COLUMN voidrecon.incidents.alert_id IS 'The alert raised when the incident opened.';
COMMENT ON COLUMN voidrecon.incidents.resolve_alert_id IS 'The alert (resolved: true) raised when it closed.';

-- One row: the token bucket of VOIDRECON_POLL_MAX_RPS, taken by the statement that leases due
-- cases, under a row lock, so that every process together keeps to the rate.
CREATE TABLE voidrecon.poll_budget (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    tokens      double precision NOT NULL DEFAULT 0,
    refilled_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO voidrecon.poll_budget DEFAULT VALUES;
COMMENT ON TABLE voidrecon.poll_budget IS 'The poll rate shared by every voidrecon process: one row, a token bucket refilled at VOIDRECON_POLL_MAX_RPS per second up to one second''s worth; each poll leased takes a token.';
COMMENT ON COLUMN voidrecon.poll_budget.id IS 'Always true: the table has one row.';
COMMENT ON COLUMN voidrecon.poll_budget.tokens IS 'Polls that may start now, as of refilled_at.';
COMMENT ON COLUMN voidrecon.poll_budget.refilled_at IS 'When tokens was last brought up to date.';

ALTER TABLE voidrecon.void_cases ADD COLUMN last_poll_for_good boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN voidrecon.void_cases.last_poll_for_good IS 'The last failed poll was one no retry changes (Atlas status 801 or 824, an answer without the case): the case was flagged poll_failing at once and is polled at the longest interval. Meaningful while poll_failures > 0.';

-- The silence check: poll-found changes since the last Atlas webhook (whose index migration
-- 0009 makes, once deliveries tell replays apart).
CREATE INDEX void_case_events_poll_changes_idx ON voidrecon.void_case_events (at)
    WHERE source = 'poll' AND outcome IN ('applied', 'conflict');
CREATE INDEX void_cases_open_created_idx ON voidrecon.void_cases (created_at) WHERE is_open;

-- NOT VALID, then VALIDATE: the old rows are checked without blocking writes meanwhile.
ALTER TABLE voidrecon.alerts DROP CONSTRAINT alerts_kind_check;
ALTER TABLE voidrecon.alerts ADD CONSTRAINT alerts_kind_check
    CHECK (kind IN ('void_rejected', 'void_conflict', 'void_stuck', 'void_poll_failing',
                    'order_cancelled', 'atlas_failing', 'webhooks_silent')) NOT VALID;
ALTER TABLE voidrecon.alerts VALIDATE CONSTRAINT alerts_kind_check;
COMMENT ON COLUMN voidrecon.alerts.kind IS 'void_rejected, void_conflict, void_stuck, void_poll_failing, order_cancelled; atlas_failing and webhooks_silent (incidents: one alert when opened, one with "resolved": true in its payload when closed).';
COMMENT ON INDEX voidrecon.incidents_open_idx IS 'At most one open incident per kind: the insert that loses the race inserts nothing and raises no alert.';
COMMENT ON INDEX voidrecon.void_case_events_poll_changes_idx IS 'Status changes that polls found, by time (the silence check counts those since the last Atlas webhook).';
COMMENT ON INDEX voidrecon.void_cases_open_created_idx IS 'The oldest open case (the silence check).';
