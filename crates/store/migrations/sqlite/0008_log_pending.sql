-- SQLite has one writer: a write numbers, chains and inserts its own audit
-- records and events in its transaction; nothing is queued. As on
-- PostgreSQL, the heads are now the last rows of audit_log and events, and
-- log_head keeps the genesis hash (its other columns are no longer kept up
-- to date).
SELECT 1;
