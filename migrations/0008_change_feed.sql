-- The change feed: every change of a case's status, and the moment a case becomes reconciled,
-- is announced with NOTIFY voidrecon_cases in its own transaction, and the case history can be
-- read in order with a cursor (voidrecon.case_feed) such that a reader that was away catches
-- up exactly: nothing skipped, nothing twice.
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
    ADD COLUMN reconciled boolean;
ALTER TABLE voidrecon.void_case_events ALTER COLUMN tx SET DEFAULT pg_current_xact_id();
COMMENT ON COLUMN voidrecon.void_case_events.tx IS 'The transaction that wrote the event (pg_current_xact_id()); 0 for events written before schema version 8. The change feed orders by (tx, id).';
COMMENT ON COLUMN voidrecon.void_case_events.reconciled IS 'Whether the case was reconciled (a closed status confirmed by a poll) after this report; NULL for events written before schema version 8.';

-- The feed reads "after (tx, id), below the horizon, in (tx, id) order, the first N".
CREATE INDEX void_case_events_feed_idx ON voidrecon.void_case_events (tx, id);

CREATE FUNCTION voidrecon.case_feed(after bigint, max_events integer)
    RETURNS SETOF voidrecon.void_case_events
    LANGUAGE sql STABLE
    AS $$
    SELECT e.*
      FROM voidrecon.void_case_events e
     WHERE (e.tx, e.id) > (coalesce((SELECT c.tx FROM voidrecon.void_case_events c
                                      WHERE c.id = after), '0'), after)
       AND e.tx < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY e.tx, e.id
     LIMIT max_events
    $$;
COMMENT ON FUNCTION voidrecon.case_feed(bigint, integer) IS 'The case history after event "after" (0: from the start), at most max_events, in feed order: only events whose transaction is older than every running one, ordered by (tx, id). Pass back the id of the last event processed; then nothing is skipped or repeated, whatever order transactions commit in.';

-- A report that changes nothing (a duplicate, a stale or conflicting hint) is not news; the
-- status changing is, and so is the poll that confirms a closing a webhook reported: the status
-- stays, but that is when "the void finished" for an order system.
CREATE FUNCTION voidrecon.void_case_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was_reconciled boolean;
BEGIN
    IF NEW.from_status IS NOT DISTINCT FROM NEW.to_status THEN
        IF NOT coalesce(NEW.reconciled, false) THEN
            RETURN NULL;
        END IF;
        SELECT e.reconciled INTO was_reconciled
          FROM voidrecon.void_case_events e
         WHERE e.order_no = NEW.order_no AND e.void_code = NEW.void_code AND e.id < NEW.id
         ORDER BY e.id DESC
         LIMIT 1;
        IF coalesce(was_reconciled, false) THEN
            RETURN NULL;
        END IF;
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
