-- The store writes a batch of void reports with one statement whose input is a JSON array.
-- Read straight from jsonb_to_recordset, that input counts as 100 rows to the planner, and
-- against a table of a few thousand cases whose statistics lag behind (a new database, a burst
-- of new cases) it chose to read every case and hash the input instead of looking each case up
-- by its key: several milliseconds per statement. These functions say a batch is small
-- (ROWS 8), which keeps the key lookups; STRICT keeps the planner from inlining them, which
-- would lose that figure.
CREATE FUNCTION voidrecon.batch_keys(keys jsonb)
    RETURNS TABLE (order_no text, void_code text)
    LANGUAGE sql STABLE STRICT ROWS 8
AS $$ SELECT k ->> 0, k ->> 1 FROM jsonb_array_elements(keys) AS k $$;
COMMENT ON FUNCTION voidrecon.batch_keys(jsonb) IS 'The cases of a batch of writes, from a JSON array of [order_no, void_code].';

CREATE FUNCTION voidrecon.void_reports(reports jsonb)
    RETURNS TABLE (ord int, order_no text, void_code text, provider text, event_type text,
                   remote_addr text, body text, outcome text, reason text, source text,
                   reported smallint, from_status smallint, to_status smallint,
                   confirmed boolean, message text, followup text, alert_kind text,
                   poll_mode text, poll_delay_ms bigint, seen_version bigint, changed boolean,
                   reconciled boolean, status_name text, lease_token bigint,
                   cancel_reason text, void_method text, confirmation_date text,
                   refund_date text, details text, has_details boolean, headers text,
                   replay_of bigint, cid text, in_feed boolean)
    LANGUAGE sql STABLE STRICT ROWS 8
AS $$
SELECT * FROM jsonb_to_recordset(reports) AS r(
    ord int, order_no text, void_code text, provider text, event_type text, remote_addr text,
    body text, outcome text, reason text, source text, reported smallint,
    from_status smallint, to_status smallint, confirmed boolean, message text, followup text,
    alert_kind text, poll_mode text, poll_delay_ms bigint, seen_version bigint,
    changed boolean, reconciled boolean, status_name text, lease_token bigint,
    cancel_reason text, void_method text, confirmation_date text, refund_date text,
    details text, has_details boolean, headers text, replay_of bigint, cid text,
    in_feed boolean)
$$;
COMMENT ON FUNCTION voidrecon.void_reports(jsonb) IS 'The void reports of a batch as the store decided them, from a JSON array of objects with these fields (strings or null; body in base64): what sql_voids_write in src/store/voids.c writes.';
