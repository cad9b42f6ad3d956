-- A paused journey holds its units: their ready tasks wait as 'held' (not
-- claimed) until it resumes; tasks that become ready meanwhile are held too.
ALTER TABLE work_units ADD COLUMN held INTEGER NOT NULL DEFAULT 0;

-- Status columns accept only the values the domain knows. SQLite cannot add
-- a CHECK constraint to an existing table (these tables are referenced by
-- others, so they cannot be made anew either): triggers refuse the rest.
CREATE TRIGGER artifacts_status_check_insert BEFORE INSERT ON artifacts
WHEN NEW.status NOT IN ('draft', 'in_review', 'approved', 'implemented', 'active', 'paused', 'stale', 'completed', 'cancelled', 'archived')
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: artifacts.status'); END;
CREATE TRIGGER artifacts_status_check_update BEFORE UPDATE OF status ON artifacts
WHEN NEW.status NOT IN ('draft', 'in_review', 'approved', 'implemented', 'active', 'paused', 'stale', 'completed', 'cancelled', 'archived')
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: artifacts.status'); END;
CREATE TRIGGER work_units_status_check_insert BEFORE INSERT ON work_units
WHEN NEW.status NOT IN ('pending', 'running', 'completed', 'failed', 'cancelled')
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: work_units.status'); END;
CREATE TRIGGER work_units_status_check_update BEFORE UPDATE OF status ON work_units
WHEN NEW.status NOT IN ('pending', 'running', 'completed', 'failed', 'cancelled')
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: work_units.status'); END;
CREATE TRIGGER tasks_status_check_insert BEFORE INSERT ON tasks
WHEN NEW.status NOT IN ('pending', 'ready', 'held', 'running', 'completed', 'failed', 'blocked', 'cancelled', 'skipped')
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: tasks.status'); END;
CREATE TRIGGER tasks_status_check_update BEFORE UPDATE OF status ON tasks
WHEN NEW.status NOT IN ('pending', 'ready', 'held', 'running', 'completed', 'failed', 'blocked', 'cancelled', 'skipped')
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: tasks.status'); END;
CREATE TRIGGER incidents_resolution_check_insert BEFORE INSERT ON incidents
WHEN NEW.resolution IS NOT NULL AND NEW.resolution NOT IN ('retry', 'skip', 'cancel')
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: incidents.resolution'); END;
CREATE TRIGGER incidents_resolution_check_update BEFORE UPDATE OF resolution ON incidents
WHEN NEW.resolution IS NOT NULL AND NEW.resolution NOT IN ('retry', 'skip', 'cancel')
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: incidents.resolution'); END;
CREATE TRIGGER webhook_deliveries_status_check_insert BEFORE INSERT ON webhook_deliveries
WHEN NEW.status NOT IN ('pending', 'delivered', 'failed')
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: webhook_deliveries.status'); END;
CREATE TRIGGER webhook_deliveries_status_check_update BEFORE UPDATE OF status ON webhook_deliveries
WHEN NEW.status NOT IN ('pending', 'delivered', 'failed')
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: webhook_deliveries.status'); END;
CREATE TRIGGER mail_outbox_status_check_insert BEFORE INSERT ON mail_outbox
WHEN NEW.status NOT IN ('pending', 'sent', 'failed', 'unsent')
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: mail_outbox.status'); END;
CREATE TRIGGER mail_outbox_status_check_update BEFORE UPDATE OF status ON mail_outbox
WHEN NEW.status NOT IN ('pending', 'sent', 'failed', 'unsent')
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: mail_outbox.status'); END;
