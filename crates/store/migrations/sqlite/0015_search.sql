-- Full-text search: one row per searchable thing (an artifact with the text
-- of its latest version, a comment, a file's extracted text), kept in the
-- transaction of the write that changes it, and an FTS5 index over its title
-- and body. The FTS5 table keeps no copy of the text (external content on
-- search_docs, kept in step by the triggers below), so snippet() and bm25()
-- read it from search_docs.
--
-- Who may see a row is decided when searching, by joining the artifact (a
-- share or a transition changes nothing here).
CREATE TABLE search_docs (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('artifact', 'comment', 'file')),
    ref_id        BLOB NOT NULL,
    client_id     BLOB NOT NULL,
    engagement_id BLOB,
    -- The artifact itself, the one a comment is on, or the one a file is
    -- attached to.
    artifact_id   BLOB,
    artifact_type TEXT,
    internal      INTEGER NOT NULL DEFAULT 0,
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (kind, ref_id)
) STRICT;
CREATE INDEX search_docs_by_artifact ON search_docs (artifact_id);
CREATE INDEX search_docs_by_client ON search_docs (client_id);

CREATE VIRTUAL TABLE search_fts USING fts5 (
    title,
    body,
    content = 'search_docs',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER search_docs_inserted AFTER INSERT ON search_docs BEGIN
    INSERT INTO search_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
END;
CREATE TRIGGER search_docs_deleted AFTER DELETE ON search_docs BEGIN
    INSERT INTO search_fts (search_fts, rowid, title, body)
    VALUES ('delete', old.id, old.title, old.body);
END;
CREATE TRIGGER search_docs_updated AFTER UPDATE OF title, body ON search_docs BEGIN
    INSERT INTO search_fts (search_fts, rowid, title, body)
    VALUES ('delete', old.id, old.title, old.body);
    INSERT INTO search_fts (rowid, title, body) VALUES (new.id, new.title, new.body);
END;

-- What was written before: every artifact (its title and the string and
-- number values of its latest version, as waymark_domain::content::
-- searchable_text takes them, capped at 200,000 characters) and every comment.
-- U+E000 and U+E001 mark matches in snippets, so they are never indexed.
INSERT INTO search_docs
    (kind, ref_id, client_id, engagement_id, artifact_id, artifact_type, internal, title, body, updated_at)
SELECT 'artifact', a.id, a.client_id, a.engagement_id, a.id, a.type, 0,
       replace(replace(a.title, char(57344), ''), char(57345), ''),
       substr(replace(replace(COALESCE(
           (SELECT group_concat(trim(t.value), ' ') FROM json_tree(v.content) t
            WHERE t.type IN ('text', 'integer', 'real') AND trim(t.value) <> ''),
           ''), char(57344), ''), char(57345), ''), 1, 200000),
       COALESCE(CAST(unixepoch(a.updated_at, 'subsec') * 1000000 AS INTEGER), 0)
FROM artifacts a
JOIN artifact_versions v ON v.artifact_id = a.id AND v.version = a.version;

INSERT INTO search_docs
    (kind, ref_id, client_id, engagement_id, artifact_id, artifact_type, internal, title, body, updated_at)
SELECT 'comment', c.id, c.client_id, a.engagement_id, c.artifact_id, a.type, c.internal, '',
       substr(replace(replace(c.body, char(57344), ''), char(57345), ''), 1, 200000),
       COALESCE(CAST(unixepoch(c.created_at, 'subsec') * 1000000 AS INTEGER), 0)
FROM comments c
JOIN artifacts a ON a.id = c.artifact_id;
