-- Full-text search: one row per searchable thing (an artifact with the text
-- of its latest version, a comment, a file's extracted text), kept in the
-- transaction of the write that changes it, with a stored tsvector (title
-- weighted A, body B; the 'simple' configuration: no stemming, any language)
-- and a GIN index over it.
--
-- Who may see a row is decided when searching, by joining the artifact (a
-- share or a transition changes nothing here).
CREATE TABLE search_docs (
    kind          TEXT NOT NULL CHECK (kind IN ('artifact', 'comment', 'file')),
    ref_id        UUID NOT NULL,
    client_id     UUID NOT NULL,
    engagement_id UUID,
    -- The artifact itself, the one a comment is on, or the one a file is
    -- attached to.
    artifact_id   UUID,
    artifact_type TEXT,
    internal      BOOLEAN NOT NULL DEFAULT FALSE,
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    search        TSVECTOR GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', title), 'A') ||
        setweight(to_tsvector('simple', body), 'B')
    ) STORED,
    PRIMARY KEY (kind, ref_id)
);
CREATE INDEX search_docs_search ON search_docs USING GIN (search);
CREATE INDEX search_docs_by_artifact ON search_docs (artifact_id);
CREATE INDEX search_docs_by_client ON search_docs (client_id);

-- What was written before: every artifact (its title and the string and
-- number values of its latest version, as waymark_domain::content::
-- searchable_text takes them, capped at 200,000 characters) and every comment.
-- U+E000 and U+E001 mark matches in snippets, so they are never indexed.
INSERT INTO search_docs
    (kind, ref_id, client_id, engagement_id, artifact_id, artifact_type, internal, title, body, updated_at)
SELECT 'artifact', a.id, a.client_id, a.engagement_id, a.id, a.type, FALSE,
       translate(a.title, chr(57344) || chr(57345), ''),
       left(translate(COALESCE(
           (SELECT string_agg(btrim(e #>> '{}'), ' ')
            FROM jsonb_path_query(v.content, 'strict $.**') AS e
            WHERE jsonb_typeof(e) IN ('string', 'number') AND btrim(e #>> '{}') <> ''),
           ''), chr(57344) || chr(57345), ''), 200000),
       (extract(epoch FROM a.updated_at) * 1000000)::BIGINT
FROM artifacts a
JOIN artifact_versions v ON v.artifact_id = a.id AND v.version = a.version;

INSERT INTO search_docs
    (kind, ref_id, client_id, engagement_id, artifact_id, artifact_type, internal, title, body, updated_at)
SELECT 'comment', c.id, c.client_id, a.engagement_id, c.artifact_id, a.type, c.internal, '',
       left(translate(c.body, chr(57344) || chr(57345), ''), 200000),
       (extract(epoch FROM c.created_at) * 1000000)::BIGINT
FROM comments c
JOIN artifacts a ON a.id = c.artifact_id;
