-- Who did it, for people to read, beside the actor's id: a person's name and
-- email, an agent's id, a token's name. Rows written before have none.
ALTER TABLE audit_log ADD COLUMN actor_name TEXT;
ALTER TABLE artifact_history ADD COLUMN actor_name TEXT;
