-- A paused journey holds its units: their ready tasks wait as 'held' (not
-- claimed) until it resumes; tasks that become ready meanwhile are held too.
ALTER TABLE work_units ADD COLUMN held BOOLEAN NOT NULL DEFAULT false;

-- Status columns accept only the values the domain knows.
ALTER TABLE artifacts ADD CONSTRAINT artifacts_status_check CHECK (status IN (
    'draft', 'in_review', 'approved', 'implemented', 'active', 'paused', 'stale',
    'completed', 'cancelled', 'archived'));
ALTER TABLE work_units ADD CONSTRAINT work_units_status_check CHECK (status IN (
    'pending', 'running', 'completed', 'failed', 'cancelled'));
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check CHECK (status IN (
    'pending', 'ready', 'held', 'running', 'completed', 'failed', 'blocked', 'cancelled',
    'skipped'));
ALTER TABLE incidents ADD CONSTRAINT incidents_resolution_check CHECK (resolution IN (
    'retry', 'skip', 'cancel'));
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_status_check CHECK (status IN (
    'pending', 'delivered', 'failed'));
ALTER TABLE mail_outbox ADD CONSTRAINT mail_outbox_status_check CHECK (status IN (
    'pending', 'sent', 'failed', 'unsent'));
