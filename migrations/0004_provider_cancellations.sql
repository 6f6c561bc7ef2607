-- Cancellations from every provider: what each one says beyond the order reference, and
-- whether its sender was authenticated by a signature voidrecon checked.

ALTER TABLE voidrecon.order_cancellations
    ADD COLUMN details  jsonb,
    ADD COLUMN verified boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN voidrecon.order_cancellations.details IS 'What else the provider said, as given: Xsolla order id, status, amount, currency, invoice id, user external id, webhook version; XendBridge order id, status, InitiatedBy and the unchecked CheckSum.';
COMMENT ON COLUMN voidrecon.order_cancellations.verified IS 'True when the provider''s signature over the request was checked (Xsolla); false when the provider signs nothing voidrecon can check (Atlas, XendBridge: the path token and source allowlist are the only guards).';
COMMENT ON COLUMN voidrecon.order_cancellations.order_ref IS 'The provider''s order reference: Atlas orderNo, Xsolla order.id, XendBridge OrderReference.';
COMMENT ON COLUMN voidrecon.order_cancellations.order_status IS 'The provider''s order status as given: Atlas orderStatus (-3 cancelled), Xsolla order.status, XendBridge OrderStatus (2 Cancelled).';
