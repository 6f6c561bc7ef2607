-- Retention: old deliveries (raw bodies, personal data in some providers') and the history rows
-- that changed nothing can be pruned. A pruned delivery leaves the rows that point at it in
-- place with delivery_id NULL; the indexes let a batch find what points at each delivery it
-- removes without reading the whole table, and find the prunable history rows oldest first.

-- Each foreign key is dropped and added again with ON DELETE SET NULL: NOT VALID, then VALIDATE,
-- as 0005 does for a check. A migration is one transaction, so both tables stay closed to
-- writes until it commits: the validation and the index builds below each read the events
-- table once (README, Retention, says how long that takes).
ALTER TABLE voidrecon.void_case_events DROP CONSTRAINT void_case_events_delivery_id_fkey;
ALTER TABLE voidrecon.void_case_events ADD CONSTRAINT void_case_events_delivery_id_fkey
    FOREIGN KEY (delivery_id) REFERENCES voidrecon.deliveries (id) ON DELETE SET NULL NOT VALID;
ALTER TABLE voidrecon.void_case_events VALIDATE CONSTRAINT void_case_events_delivery_id_fkey;
COMMENT ON COLUMN voidrecon.void_case_events.delivery_id IS 'The webhook delivery that carried the report, when it came by webhook; NULL also once that delivery was pruned (VOIDRECON_DELIVERY_RETENTION_MS).';

ALTER TABLE voidrecon.order_cancellations DROP CONSTRAINT order_cancellations_delivery_id_fkey;
ALTER TABLE voidrecon.order_cancellations ADD CONSTRAINT order_cancellations_delivery_id_fkey
    FOREIGN KEY (delivery_id) REFERENCES voidrecon.deliveries (id) ON DELETE SET NULL NOT VALID;
ALTER TABLE voidrecon.order_cancellations VALIDATE CONSTRAINT order_cancellations_delivery_id_fkey;
COMMENT ON COLUMN voidrecon.order_cancellations.delivery_id IS 'The delivery that first reported the cancellation; NULL once that delivery was pruned (VOIDRECON_DELIVERY_RETENTION_MS). Never pruned while the cancellation waits for a person.';

-- Deleting a delivery looks up (and sets NULL in) the rows that reference it: the indexes of
-- migration 0009 on their delivery_id spare each deleted delivery a read of the whole events
-- and cancellations tables.
COMMENT ON INDEX voidrecon.void_case_events_delivery_idx IS 'The history rows of a delivery: shown with it, and set to NULL when it is pruned.';
COMMENT ON INDEX voidrecon.order_cancellations_delivery_idx IS 'The cancellation a delivery reported: shown with it, and set to NULL when it is pruned.';

-- Only the history rows that changed nothing are ever pruned (VOIDRECON_EVENT_RETENTION_MS):
-- this index holds just those, oldest first, so that a batch never reads the status changes
-- that are kept for as long as their case.
CREATE INDEX void_case_events_no_change_idx ON voidrecon.void_case_events (at, id)
    WHERE from_status = to_status AND outcome IN ('duplicate', 'stale')
      AND NOT voidrecon.event_in_feed(in_feed, from_status, to_status);
COMMENT ON INDEX voidrecon.void_case_events_no_change_idx IS 'History rows that changed nothing (duplicate or stale reports, not in the change feed: a confirming poll that reconciled its case is), the only ones event retention prunes, oldest first.';

COMMENT ON TABLE voidrecon.deliveries IS 'Every webhook received and acknowledged or rejected, kept for audit for VOIDRECON_DELIVERY_RETENTION_MS (90 days by default), and for as long as a follow-up it caused waits for a person.';
COMMENT ON TABLE voidrecon.void_case_events IS 'History of every void case: one row per report (webhook, poll or registration), whatever its outcome. Status changes and conflicts are kept as long as the case; reports that changed nothing (duplicate, stale) are pruned after VOIDRECON_EVENT_RETENTION_MS when it is set.';
