-- The audit log and the events without a global lock in the writers: a write
-- queues its entries here (one row per transaction) and commits; a sealer
-- numbers and chains the committed rows in order, under the log_head row lock,
-- and moves them into audit_log and events. The heads are the last rows of
-- audit_log and events; log_head keeps the genesis hash and is the sealers'
-- lock (its other columns are no longer kept up to date).
CREATE TABLE log_pending (
    id    BIGSERIAL PRIMARY KEY,
    batch JSONB NOT NULL
);
