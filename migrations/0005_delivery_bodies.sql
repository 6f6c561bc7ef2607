-- Deliveries keep the length and SHA-256 of the whole body received, so that a refused request
-- from a sender nothing authenticated can be kept as a bounded prefix and still be identified;
-- and a delivery whose effects the database refused for good is kept as 'failed'.

ALTER TABLE voidrecon.deliveries
    ADD COLUMN body_length bigint,
    ADD COLUMN body_sha256 bytea;
COMMENT ON COLUMN voidrecon.deliveries.body IS 'The raw request body, byte for byte (convert_from(body, ''UTF8'') for text). For a rejected delivery whose sender was not authenticated, only its first 4096 bytes: body_length tells the whole.';
COMMENT ON COLUMN voidrecon.deliveries.body_length IS 'Length in bytes of the whole body received; NULL for deliveries stored before schema version 5.';
COMMENT ON COLUMN voidrecon.deliveries.body_sha256 IS 'SHA-256 of the whole body received, also when only a prefix is kept; NULL for deliveries stored before schema version 5.';

-- NOT VALID, then VALIDATE: the old rows are checked without blocking writes meanwhile.
ALTER TABLE voidrecon.deliveries DROP CONSTRAINT deliveries_outcome_check;
ALTER TABLE voidrecon.deliveries ADD CONSTRAINT deliveries_outcome_check
    CHECK (outcome IN ('applied', 'duplicate', 'stale', 'conflict', 'ignored', 'rejected', 'failed')) NOT VALID;
ALTER TABLE voidrecon.deliveries VALIDATE CONSTRAINT deliveries_outcome_check;
COMMENT ON COLUMN voidrecon.deliveries.outcome IS 'applied: changed state; duplicate: already known; stale: older than what is known; conflict: contradicts a closed status; ignored: a type voidrecon does not act on; rejected: malformed or refused, answered 4xx; failed: the database refused its effects (reason says why), answered 500 so that the sender may send it again.';
