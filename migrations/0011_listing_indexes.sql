-- The /v1/cases listings for state=rejected and state=followup page through the cases in key
-- order. Without these, each page walked the primary key and filtered away every case in
-- between: at a million open cases, a page of rejected cases read 100,000 rows. Both indexes
-- hold only the few cases a person has to look at. Building them reads void_cases once, while
-- writes to it wait (about a second per million cases).
CREATE INDEX void_cases_rejected_key_idx ON voidrecon.void_cases (order_no, void_code)
    WHERE status = 4;
COMMENT ON INDEX voidrecon.void_cases_rejected_key_idx IS 'Rejected cases in key order: GET /v1/cases?state=rejected.';
CREATE INDEX void_cases_followup_key_idx ON voidrecon.void_cases (order_no, void_code)
    WHERE needs_followup;
COMMENT ON INDEX voidrecon.void_cases_followup_key_idx IS 'Cases waiting for a person in key order: GET /v1/cases?state=followup.';
