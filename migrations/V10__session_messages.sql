-- Why: the transcript was one JSONB array in sessions.transcript that every
-- append rewrote whole. Measured with the release binary (100 messages of
-- ~1 KiB per append): 7.8 ms per append at 100 messages, 103 ms at 10,000,
-- 376 ms at 40,000, with WAL per append growing from 16 KiB to 744 KiB -
-- linear per append, quadratic over a session's life - and get-session
-- returned the whole transcript (38 MB at 40,000 messages). One row per
-- message makes an append cost the same at any length, gives messages
-- stable numbers (seq), and lets clients read, export, fork and search a
-- transcript a page at a time.

-- The search index pairs a session with its words (GIN over a uuid needs
-- btree_gin; allowed on Azure through azure.extensions).
CREATE EXTENSION IF NOT EXISTS btree_gin;

CREATE TABLE IF NOT EXISTS session_messages (
    session_id UUID NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    -- 1, 2, 3... per session, without gaps, in commit order.
    seq INTEGER NOT NULL CHECK (seq >= 1),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    -- The caller's JSON object, unchanged.
    message JSONB NOT NULL CHECK (jsonb_typeof(message) = 'object'),
    -- Who appended it (unknown for messages moved from the old column).
    appended_by_user_id UUID,
    appended_by_app_id VARCHAR(100),
    PRIMARY KEY (session_id, seq)
);

-- transcript_bytes: the transcript's size, bounded per session by the
-- service's settings, kept in the same statement as message_count.
-- parent_session_id/forked_from_seq: where a forked session came from.
ALTER TABLE sessions
    ADD COLUMN IF NOT EXISTS transcript_bytes BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS parent_session_id UUID
        REFERENCES sessions(session_id) ON DELETE SET NULL,
    ADD COLUMN IF NOT EXISTS forked_from_seq INTEGER;

-- Existing transcripts move over in order. Their messages' own times were
-- never recorded: they get the session's last content change.
INSERT INTO session_messages (session_id, seq, created_at, message)
SELECT s.session_id, e.seq, s.updated_at, e.message
FROM sessions s,
     jsonb_array_elements(s.transcript) WITH ORDINALITY AS e(message, seq);

-- Column V5's trigger listed; the trigger fires on content changes still.
DROP TRIGGER IF EXISTS update_sessions_updated_at ON sessions;
UPDATE sessions s
SET message_count = jsonb_array_length(s.transcript),
    transcript_bytes = (SELECT COALESCE(sum(octet_length(e::text)), 0)
                        FROM jsonb_array_elements(s.transcript) AS e);
ALTER TABLE sessions DROP COLUMN transcript;
CREATE TRIGGER update_sessions_updated_at
    BEFORE UPDATE OF config_id, owner_user_id, status, message_count, metadata
    ON sessions
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

-- Full-text search: the words of a session's string values, one stripped
-- tsvector (each distinct word once) per append of messages (first_seq ..
-- last_seq) and one for the metadata (first_seq 0). The service takes the
-- words: PostgreSQL's parser, per message in an expression index, made
-- appends about 3x slower (measured); deduplicated per append and taken
-- by the service, indexing costs a fraction of that (docs/benchmarks.md).
CREATE TABLE IF NOT EXISTS session_search (
    session_id UUID NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    first_seq INTEGER NOT NULL CHECK (first_seq >= 0),
    last_seq INTEGER NOT NULL CHECK (last_seq >= first_seq),
    words TSVECTOR NOT NULL,
    PRIMARY KEY (session_id, first_seq)
);
CREATE INDEX IF NOT EXISTS idx_session_search ON session_search USING gin (session_id, words);
-- Moved messages and existing metadata are indexed here with PostgreSQL's
-- own parser (letters and digits as the service takes them, but for
-- compound forms such as e-mail addresses), 100 messages per document.
INSERT INTO session_search (session_id, first_seq, last_seq, words)
SELECT session_id, 0, 0, strip(jsonb_to_tsvector('simple', COALESCE(metadata, '{}'), '["string"]'))
FROM sessions;
INSERT INTO session_search (session_id, first_seq, last_seq, words)
SELECT session_id, min(seq), max(seq),
       strip(jsonb_to_tsvector('simple', jsonb_agg(message), '["string"]'))
FROM session_messages
GROUP BY session_id, (seq - 1) / 100;
-- Forks of a session (ON DELETE SET NULL finds them by this).
CREATE INDEX IF NOT EXISTS idx_sessions_parent ON sessions(parent_session_id)
    WHERE parent_session_id IS NOT NULL;
