-- Ratings of completed journey stages by the client's people: once per
-- person and stage, never edited.
CREATE TABLE journey_ratings (
    journey_id    UUID NOT NULL REFERENCES journeys (id),
    stage         TEXT NOT NULL,
    rated_by      TEXT NOT NULL,
    rated_by_name TEXT NOT NULL,
    score         BIGINT NOT NULL CHECK (score BETWEEN 1 AND 5),
    comment       TEXT,
    at            BIGINT NOT NULL,
    PRIMARY KEY (journey_id, stage, rated_by)
);
