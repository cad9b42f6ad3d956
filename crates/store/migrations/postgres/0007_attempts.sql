-- Attempts as rows: one opens (outcome 'running') when a task is claimed, or
-- when a person finishes a human task nobody claimed, and closes with its
-- outcome, error and end. `tasks.attempt_seq` numbers them for good (the
-- `attempts` budget starts again when a person retries a failed task).

ALTER TABLE tasks ADD COLUMN attempt_seq BIGINT NOT NULL DEFAULT 0;
UPDATE tasks SET attempt_seq = GREATEST(
    attempts,
    COALESCE((SELECT max(a.attempt) FROM task_attempts a WHERE a.task_id = tasks.id), 0)
);

ALTER TABLE task_attempts ALTER COLUMN ended_at DROP NOT NULL;
-- The attempts running now, claimed before attempts were rows.
INSERT INTO task_attempts (task_id, attempt, started_at, ended_at, outcome, error, worker)
SELECT id, attempt_seq, started_at, NULL, 'running', NULL, claimed_by FROM tasks
WHERE status = 'running' AND attempt_seq > 0
ON CONFLICT (task_id, attempt) DO NOTHING;
ALTER TABLE task_attempts ADD CONSTRAINT task_attempts_outcome_check
    CHECK (outcome IN ('running', 'completed', 'failed', 'expired', 'cancelled'));
