-- Why: erasing a user (DELETE /api/users/{user_id}) replaces every message
-- they appended with a tombstone, wherever it is kept (sessions they left,
-- and the rows forks share after their session was deleted), and their
-- export (GET /api/users/{user_id}/export) lists those messages. Neither
-- can find them by session: only by author. Without an index both read
-- every message of every session. Tombstones no longer name their author,
-- so the index holds only messages that still do; erasure takes them a
-- batch at a time in this order, and the export pages through it by
-- (session_id, seq).
CREATE INDEX IF NOT EXISTS idx_session_messages_author
    ON session_messages (appended_by_user_id, session_id, seq)
    WHERE appended_by_user_id IS NOT NULL;

-- A user's participations in session order: erasure's batches and the
-- export's keyset pages (stable while sessions move in the activity order
-- of idx_session_participants_user_activity). It serves every lookup the
-- index on user_id alone did.
CREATE INDEX IF NOT EXISTS idx_session_participants_user_session
    ON session_participants (user_id, session_id);
DROP INDEX IF EXISTS idx_session_participants_user_id;

-- Idempotency records and stream tickets of one user (erasure); neither
-- table had an index that starts with the user.
CREATE INDEX IF NOT EXISTS idx_idempotency_keys_user ON idempotency_keys (user_id)
    WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_event_tickets_user ON event_tickets (user_id);
