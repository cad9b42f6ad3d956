-- Milestones and handoffs, journeys' input, exit attempts, the implementation
-- bridge.
--
-- A task may carry an output contract (the fields its output must have, as a
-- JSON array) and name the dependency whose output becomes its input
-- (`handoff_from`); `hands_off` marks the tasks some other task takes its
-- input from, so completing other tasks costs nothing more.

ALTER TABLE tasks ADD COLUMN contract TEXT;
ALTER TABLE tasks ADD COLUMN handoff_from TEXT;
ALTER TABLE tasks ADD COLUMN hands_off INTEGER NOT NULL DEFAULT 0;

-- What a journey was started with: the first milestone's input.
ALTER TABLE journeys ADD COLUMN input TEXT;
CREATE UNIQUE INDEX journeys_by_source ON journeys (source_artifact_id)
    WHERE source_artifact_id IS NOT NULL;

-- The journey a unit of work belongs to: metrics a task's output reports are
-- recorded on it.
CREATE INDEX journey_units_by_unit ON journey_units (unit_id);

-- Every evaluation of a stage's exit criteria by a promote or complete, passed
-- or refused: the first-pass rate of the analytics.
CREATE TABLE journey_attempts (
    journey_id  BLOB NOT NULL REFERENCES journeys (id),
    seq         INTEGER NOT NULL,
    stage       INTEGER NOT NULL,
    passed      INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (journey_id, seq)
) STRICT;
