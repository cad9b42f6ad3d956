-- PostgreSQL's 0017 makes appended events notify listening processes;
-- SQLite has one writing process, which wakes its event streams itself
-- (`sql/writer.rs`). Kept so both databases number their schema alike.
SELECT 1;
