-- The change feed: every change of a case's status, and the moment a case becomes reconciled,
-- is announced with NOTIFY voidrecon_cases in its own transaction, and these events can be
-- read in order with a cursor (voidrecon.case_feed) such that a reader that was away catches
-- up exactly: nothing skipped, nothing twice. Reports that changed nothing (a duplicate, a
-- stale or contradicting hint, most polls) stay in the history but are not in the feed, so
-- pruning them (retention) never takes an event a reader may hold as its cursor.
--
-- Event ids come from a sequence when the row is inserted, but transactions commit in another
-- order: reading "id > last" can pass over an id whose transaction commits later. So each event
-- keeps the id of the transaction that wrote it, and the feed lists only events whose
-- transaction is older than every transaction still running (these are final: committed or
-- gone), ordered by (transaction, id). Anything that becomes visible later belongs to a
-- transaction at least as new as that horizon, so it sorts after everything already listed.

-- A constant default is kept in the catalogue: adding the column rewrites nothing, and the rows
-- written before read '0' (committed long ago). Only then does the default become the writing
-- transaction's id, which applies to rows inserted from now on.
ALTER TABLE voidrecon.void_case_events
    ADD COLUMN tx xid8 NOT NULL DEFAULT '0',
    ADD COLUMN reconciled boolean,
    ADD COLUMN in_feed boolean;
ALTER TABLE voidrecon.void_case_events ALTER COLUMN tx SET DEFAULT pg_current_xact_id();
COMMENT ON COLUMN voidrecon.void_case_events.tx IS 'The transaction that wrote the event (pg_current_xact_id()); 0 for events written before schema version 8. The change feed orders by (tx, id).';
COMMENT ON COLUMN voidrecon.void_case_events.reconciled IS 'Whether the case was reconciled (a closed status confirmed by a poll) after this report; NULL for events written before schema version 8.';
COMMENT ON COLUMN voidrecon.void_case_events.in_feed IS 'True when the report created the case, changed its status or made it reconciled: the change feed holds it and NOTIFY voidrecon_cases announced it. NULL for events written before schema version 8, which count as in the feed when their status changed (voidrecon.event_in_feed).';

CREATE FUNCTION voidrecon.event_in_feed(in_feed boolean, from_status smallint, to_status smallint)
    RETURNS boolean LANGUAGE sql IMMUTABLE
    RETURN coalesce(in_feed, from_status IS DISTINCT FROM to_status);
COMMENT ON FUNCTION voidrecon.event_in_feed(boolean, smallint, smallint) IS 'Whether a void_case_events row is in the change feed: its in_feed flag, or for rows written before schema version 8 whether its status changed.';

-- The feed reads "after (tx, id), below the horizon, in (tx, id) order, the first N", of the
-- events in the feed only.
CREATE INDEX void_case_events_feed_idx ON voidrecon.void_case_events (tx, id)
    WHERE voidrecon.event_in_feed(in_feed, from_status, to_status);

CREATE FUNCTION voidrecon.case_feed(after bigint, max_events integer)
    RETURNS SETOF voidrecon.void_case_events
    LANGUAGE sql STABLE
    AS $$
    SELECT e.*
      FROM voidrecon.void_case_events e
     WHERE (e.tx, e.id) > (coalesce((SELECT c.tx FROM voidrecon.void_case_events c
                                      WHERE c.id = after), '0'), after)
       AND e.tx < pg_snapshot_xmin(pg_current_snapshot())
       AND voidrecon.event_in_feed(e.in_feed, e.from_status, e.to_status)
     ORDER BY e.tx, e.id
     LIMIT max_events
    $$;
COMMENT ON FUNCTION voidrecon.case_feed(bigint, integer) IS 'The changes of every case after event "after" (0: from the start), at most max_events, in feed order: events that created a case, changed its status or made it reconciled, whose transaction is older than every running one, ordered by (tx, id). Pass back the id of the last event processed; then nothing is skipped or repeated, whatever order transactions commit in.';

-- Each event of the feed is announced; whether a report is news (a new case, another status,
-- the poll that confirms a closing a webhook reported) is decided by its writer, which knows
-- the case before and after.
CREATE FUNCTION voidrecon.void_case_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT voidrecon.event_in_feed(NEW.in_feed, NEW.from_status, NEW.to_status) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('voidrecon_cases', json_build_object(
        'event_id', NEW.id,
        'order_no', left(NEW.order_no, 200), 'void_code', left(NEW.void_code, 200),
        'status', NEW.to_status, 'reconciled', coalesce(NEW.reconciled, false))::text);
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION voidrecon.void_case_events_notify() IS 'Announces on the voidrecon_cases channel each event that changed a case''s status or made it reconciled, with a small JSON payload (event_id, order_no, void_code, status, reconciled); delivered at commit, a hint to read the feed.';
CREATE TRIGGER void_case_events_notify AFTER INSERT ON voidrecon.void_case_events
    FOR EACH ROW EXECUTE FUNCTION voidrecon.void_case_events_notify();
