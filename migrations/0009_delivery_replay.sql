-- Deliveries as an operator reads and replays them: what a replay ran again, the request
-- headers a provider's signature check needs (so that a refused delivery can be checked again
-- with today's secret), Atlas's client id on the delivery and its case, and the indexes the
-- listing and a delivery's page read.

ALTER TABLE voidrecon.deliveries
    ADD COLUMN replay_of bigint,
    ADD COLUMN headers   jsonb,
    ADD COLUMN cid       text;
COMMENT ON COLUMN voidrecon.deliveries.replay_of IS 'The delivery whose stored body and headers this one ran again through today''s code (POST /v1/deliveries/{id}/replay, voidrecon deliveries replay); NULL for a delivery received over HTTP. No foreign key: it keeps the id when the original is pruned (retention), so that a replay is always told apart from a webhook that arrived.';
COMMENT ON COLUMN voidrecon.deliveries.headers IS 'The request headers the provider''s signature check needs, and only those, as {"lower-case name": "value"} (Xsolla: authorization); {} when the provider checks none; NULL for deliveries stored before schema version 9.';
COMMENT ON COLUMN voidrecon.deliveries.cid IS 'The sender''s account as the body names it (Atlas cid, the client id); NULL when the body names none or could not be read.';

ALTER TABLE voidrecon.void_cases ADD COLUMN cid text;
COMMENT ON COLUMN voidrecon.void_cases.cid IS 'The Atlas account (cid) of the first webhook that named the case with one; later webhooks do not change it (each delivery keeps its own cid).';

-- The listing is newest first by keyset on id, optionally by provider, by outcome or both:
-- one index per combination, so that a rare combination (xsolla's rejected deliveries among
-- millions applied) is read in order without scanning past the others.
CREATE INDEX deliveries_provider_id_idx ON voidrecon.deliveries (provider, id);
COMMENT ON INDEX voidrecon.deliveries_provider_id_idx IS 'Serves GET /v1/deliveries?provider= newest first, by keyset on id.';
CREATE INDEX deliveries_outcome_id_idx ON voidrecon.deliveries (outcome, id);
COMMENT ON INDEX voidrecon.deliveries_outcome_id_idx IS 'Serves GET /v1/deliveries?outcome= newest first, by keyset on id (rare outcomes such as rejected or failed among many applied).';
CREATE INDEX deliveries_provider_outcome_id_idx ON voidrecon.deliveries (provider, outcome, id);
COMMENT ON INDEX voidrecon.deliveries_provider_outcome_id_idx IS 'Serves GET /v1/deliveries?provider=&outcome= newest first, by keyset on id.';
CREATE INDEX deliveries_replay_of_idx ON voidrecon.deliveries (replay_of) WHERE replay_of IS NOT NULL;
COMMENT ON INDEX voidrecon.deliveries_replay_of_idx IS 'The replays of a delivery, for its page.';

-- The silence check: the last Atlas webhook that arrived (not a replay) and was not refused.
CREATE INDEX deliveries_provider_received_idx ON voidrecon.deliveries (provider, received_at)
    WHERE outcome <> 'rejected' AND replay_of IS NULL;
COMMENT ON INDEX voidrecon.deliveries_provider_received_idx IS 'The last webhook of a provider that arrived over HTTP and was not refused (the silence check).';

-- A delivery's page shows what it produced: the case events and the cancellation that name it.
CREATE INDEX void_case_events_delivery_idx ON voidrecon.void_case_events (delivery_id) WHERE delivery_id IS NOT NULL;
COMMENT ON INDEX voidrecon.void_case_events_delivery_idx IS 'The case events a delivery produced, for GET /v1/deliveries/{id}.';
CREATE INDEX order_cancellations_delivery_idx ON voidrecon.order_cancellations (delivery_id) WHERE delivery_id IS NOT NULL;
COMMENT ON INDEX voidrecon.order_cancellations_delivery_idx IS 'The cancellation a delivery recorded, for GET /v1/deliveries/{id}.';

-- Bodies are any bytes; people read them as text when they are text.
CREATE FUNCTION voidrecon.utf8_or_null(body bytea) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    RETURN convert_from(body, 'UTF8');
EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION voidrecon.utf8_or_null(bytea) IS 'The bytes as text when they are valid UTF-8 without NUL, else NULL (then show them as base64).';
