-- Deliveries keep the length and SHA-256 of the whole body received, so that a refused request
-- from a sender nothing authenticated can be kept as a bounded prefix and still be identified.

ALTER TABLE voidrecon.deliveries
    ADD COLUMN body_length bigint,
    ADD COLUMN body_sha256 bytea;
COMMENT ON COLUMN voidrecon.deliveries.body IS 'The raw request body, byte for byte (convert_from(body, ''UTF8'') for text). For a rejected delivery whose sender was not authenticated, only its first 4096 bytes: body_length tells the whole.';
COMMENT ON COLUMN voidrecon.deliveries.body_length IS 'Length in bytes of the whole body received; NULL for deliveries stored before schema version 5.';
COMMENT ON COLUMN voidrecon.deliveries.body_sha256 IS 'SHA-256 of the whole body received, also when only a prefix is kept; NULL for deliveries stored before schema version 5.';
