-- Why: list-user-sessions reads one user's participations ordered by
-- (last_active_at DESC NULLS LAST, session_id). With this index PostgreSQL
-- walks the user's rows already in page order and stops after `limit` rows,
-- instead of sorting the user's whole set on every call.
CREATE INDEX IF NOT EXISTS idx_session_participants_user_activity
    ON session_participants (user_id, last_active_at DESC NULLS LAST, session_id);
