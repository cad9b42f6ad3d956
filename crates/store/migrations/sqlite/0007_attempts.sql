-- Attempts as rows: one opens (outcome 'running') when a task is claimed, or
-- when a person finishes a human task nobody claimed, and closes with its
-- outcome, error and end. `tasks.attempt_seq` numbers them for good (the
-- `attempts` budget starts again when a person retries a failed task).

ALTER TABLE tasks ADD COLUMN attempt_seq INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET attempt_seq = max(
    attempts,
    COALESCE((SELECT max(a.attempt) FROM task_attempts a WHERE a.task_id = tasks.id), 0)
);

-- `ended_at` may now be NULL (a running attempt): the table is made anew.
CREATE TABLE task_attempts_new (
    task_id    BLOB NOT NULL,
    attempt    INTEGER NOT NULL,
    started_at INTEGER,
    ended_at   INTEGER,
    outcome    TEXT NOT NULL
        CHECK (outcome IN ('running', 'completed', 'failed', 'expired', 'cancelled')),
    error      TEXT,
    worker     TEXT,
    PRIMARY KEY (task_id, attempt)
) STRICT;
INSERT INTO task_attempts_new (task_id, attempt, started_at, ended_at, outcome, error, worker)
SELECT task_id, attempt, started_at, ended_at, outcome, error, worker FROM task_attempts;
DROP TABLE task_attempts;
ALTER TABLE task_attempts_new RENAME TO task_attempts;

-- The attempts running now, claimed before attempts were rows.
INSERT OR IGNORE INTO task_attempts (task_id, attempt, started_at, ended_at, outcome, error, worker)
SELECT id, attempt_seq, started_at, NULL, 'running', NULL, claimed_by FROM tasks
WHERE status = 'running' AND attempt_seq > 0;
