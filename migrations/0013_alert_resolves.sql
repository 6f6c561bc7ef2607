-- Resolve alerts: the alert that ends another one (a person acknowledged its follow-up or its
-- cancellation, the case reconciled, an incident closed) names it, so that a receiver closes
-- what it opened (a PagerDuty incident shares one dedup_key between the two). The unique index
-- keeps it to one resolve per alert, whatever ends it first.

ALTER TABLE voidrecon.alerts ADD COLUMN resolves_alert_id bigint REFERENCES voidrecon.alerts (id);
CREATE UNIQUE INDEX alerts_resolves_idx ON voidrecon.alerts (resolves_alert_id)
    WHERE resolves_alert_id IS NOT NULL;
COMMENT ON COLUMN voidrecon.alerts.resolves_alert_id IS 'On a resolve alert ("resolved": true in its payload, same kind): the alert it resolves; NULL on the alert that raises. The two share one identity for receivers (the PagerDuty dedup_key is built from the raising alert''s id).';
COMMENT ON INDEX voidrecon.alerts_resolves_idx IS 'At most one resolve alert per alert: an acknowledgement after a reconciliation (or the other way round) resolves nothing again.';
COMMENT ON COLUMN voidrecon.alerts.payload IS 'What the alert says: status, message, reason and times, as JSON; "resolved": true on the alert that resolves another (resolves_alert_id), with resolved_by (acknowledged, reconciled, or the incident''s closing).';

ALTER TABLE voidrecon.order_cancellations ADD COLUMN alert_id bigint REFERENCES voidrecon.alerts (id);
COMMENT ON COLUMN voidrecon.order_cancellations.alert_id IS 'The order_cancelled alert raised with the cancellation (NULL when that provider''s alerts are off); its acknowledgement resolves it.';

-- The links that existed before, under other names: each cancellation's alert (its first one
-- for that provider and order, found in one pass over the alerts), and each closed incident's
-- resolve alert.
UPDATE voidrecon.order_cancellations AS o
   SET alert_id = a.id
  FROM (SELECT DISTINCT ON (order_no, payload ->> 'provider')
               id, order_no, payload ->> 'provider' AS provider
          FROM voidrecon.alerts
         WHERE kind = 'order_cancelled'
         ORDER BY order_no, payload ->> 'provider', id) AS a
 WHERE a.order_no = o.order_ref AND a.provider = o.provider;
UPDATE voidrecon.alerts AS a
   SET resolves_alert_id = i.alert_id
  FROM voidrecon.incidents AS i
 WHERE a.id = i.resolve_alert_id AND i.alert_id IS NOT NULL;

-- Listeners tell a resolve from a raise without reading the row.
CREATE OR REPLACE FUNCTION voidrecon.alerts_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('voidrecon_alerts', json_build_object(
        'id', NEW.id, 'kind', NEW.kind,
        'order_no', left(NEW.order_no, 200), 'void_code', left(NEW.void_code, 200),
        'resolves_alert_id', NEW.resolves_alert_id)::text);
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION voidrecon.alerts_notify() IS 'Announces each new alert on the voidrecon_alerts channel with a small JSON payload (id, kind, order_no, void_code, and resolves_alert_id: null for an alert that raises, the resolved alert''s id for a resolve).';
