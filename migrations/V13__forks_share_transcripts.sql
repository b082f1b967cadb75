-- Why: fork-session copied the whole transcript, messages and search
-- documents, in one statement: a 2-byte request forking a 200 MB session
-- wrote 200 MB in 9.3 s, and ten at once made other applications'
-- requests 503s. A fork now shares its source's messages instead of
-- copying them, so its cost does not depend on the transcript
-- (docs/benchmarks.md; README, design notes).

-- Messages and documents belong to the session that appended them (their
-- origin) and are read through a session's lineage: a row per origin,
-- whose messages from_seq..through_seq are the session's messages of
-- those numbers (a session's own row runs to 2147483647; a fork's other
-- rows are its source's, cut at forked_from_seq). Lineage rows are never
-- changed, so readers need no lock.
CREATE TABLE IF NOT EXISTS session_lineage (
    session_id UUID NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    origin_id UUID NOT NULL,
    from_seq INTEGER NOT NULL CHECK (from_seq >= 1),
    through_seq INTEGER NOT NULL CHECK (through_seq >= from_seq),
    PRIMARY KEY (session_id, origin_id)
);
-- How far sessions still read an origin's rows (the sweep).
CREATE INDEX IF NOT EXISTS idx_session_lineage_origin
    ON session_lineage (origin_id, through_seq);
-- Existing sessions, forks included, own all their rows (forks made so
-- far hold copies).
INSERT INTO session_lineage (session_id, origin_id, from_seq, through_seq)
SELECT session_id, session_id, 1, 2147483647 FROM sessions
ON CONFLICT DO NOTHING;

-- Rows outlive their session while a fork reads them: deleting a session
-- queues the origins its lineage reads, and a background sweep deletes the
-- rows no session reads any more, a batch per statement (messages::sweep).
ALTER TABLE session_messages DROP CONSTRAINT IF EXISTS session_messages_session_id_fkey;
ALTER TABLE session_search DROP CONSTRAINT IF EXISTS session_search_session_id_fkey;
CREATE TABLE IF NOT EXISTS transcripts_to_sweep (
    id BIGSERIAL PRIMARY KEY,
    origin_id UUID NOT NULL
);
-- BEFORE DELETE: the lineage rows still exist (they cascade), and it
-- fires for sessions deleted with their config too.
CREATE OR REPLACE FUNCTION queue_transcript_sweep()
RETURNS TRIGGER AS $$
BEGIN
    INSERT INTO transcripts_to_sweep (origin_id)
    SELECT origin_id FROM session_lineage WHERE session_id = OLD.session_id;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS sessions_queue_transcript_sweep ON sessions;
CREATE TRIGGER sessions_queue_transcript_sweep
    BEFORE DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION queue_transcript_sweep();

-- A fork's transcript_bytes is its source's size through the cut: each
-- message records the transcript's size through itself (one lookup
-- instead of summing the messages before the cut). This reads every
-- message once.
ALTER TABLE session_messages ADD COLUMN IF NOT EXISTS transcript_bytes BIGINT;
UPDATE session_messages m
SET transcript_bytes = r.running
FROM (SELECT session_id, seq,
             sum(octet_length(message::text)) OVER (PARTITION BY session_id ORDER BY seq) AS running
      FROM session_messages) r
WHERE m.session_id = r.session_id AND m.seq = r.seq AND m.transcript_bytes IS NULL;
ALTER TABLE session_messages ALTER COLUMN transcript_bytes SET NOT NULL;
