-- Why: list-user-sessions pages through one user's participations ordered by
-- (last_active_at DESC NULLS LAST, session_id). The index is on the same
-- order, written with COALESCE so that never-active rows (NULL) sort last
-- and the keyset cursor of the next page is a range start PostgreSQL can
-- seek to: each page reads `limit` rows, whatever its depth, with no sort.
CREATE INDEX IF NOT EXISTS idx_session_participants_user_activity
    ON session_participants (user_id, (COALESCE(last_active_at, '-infinity'::timestamptz)) DESC, session_id);
