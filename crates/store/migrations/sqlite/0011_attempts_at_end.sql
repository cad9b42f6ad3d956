-- An attempt's row is written when the attempt ends (completed, failed,
-- expired or cancelled); while it runs, its task row (status 'running', the
-- claimer, the start, `attempt_seq`) is its record, and the attempts listing
-- shows it from there. Claims write one row instead of two.
DELETE FROM task_attempts WHERE outcome = 'running';
