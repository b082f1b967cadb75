-- Why: data has a life cycle (issue 18). Two facts every later step
-- (trash, retention, erasure, the audit trail) relies on live here, so the
-- steps can land one at a time.

-- 1. Trash. A deleted session is kept, invisible to everyone but its
--    owners (who can list and restore it), until TRASH_RETENTION_DAYS
--    after trashed_at; then the purge deletes it. NULL: not in the trash.
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS trashed_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS idx_sessions_trashed_at ON sessions (trashed_at)
    WHERE trashed_at IS NOT NULL;

-- 2. The audit trail: one row per security-relevant action, written by the
--    statement that does the action (the same round trip). Who acted
--    (actor_kind: admin, application, user, or the system's own purge),
--    what (action, e.g. 'session.trashed'), on what (target_kind,
--    target_id), the application the target belongs to, the session and
--    the user it concerns where there is one (owners read their session's
--    trail; erasure finds a user's rows), the request's Functions
--    invocation id, and details that are not personal data (counts, the
--    new role, the policy that changed).
CREATE TABLE IF NOT EXISTS audit_events (
    event_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    actor_kind VARCHAR(16) NOT NULL,
    actor_app_id VARCHAR(100),
    actor_user_id UUID,
    action VARCHAR(64) NOT NULL,
    target_kind VARCHAR(32) NOT NULL,
    target_id VARCHAR(255) NOT NULL,
    app_id VARCHAR(100),
    session_id UUID,
    subject_user_id UUID,
    invocation_id VARCHAR(64),
    details JSONB NOT NULL DEFAULT '{}'::jsonb,

    CONSTRAINT audit_events_actor_kind_check
        CHECK (actor_kind IN ('admin', 'application', 'user', 'system'))
);

-- The admin's listing pages by event_id (newest first) with filters; the
-- owners' trail by session; erasure and retention by user and by age.
CREATE INDEX IF NOT EXISTS idx_audit_events_occurred_at ON audit_events (occurred_at);
CREATE INDEX IF NOT EXISTS idx_audit_events_session ON audit_events (session_id, event_id)
    WHERE session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_audit_events_app ON audit_events (app_id, event_id)
    WHERE app_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_audit_events_action ON audit_events (action, event_id);
CREATE INDEX IF NOT EXISTS idx_audit_events_actor_user ON audit_events (actor_user_id)
    WHERE actor_user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_audit_events_subject_user ON audit_events (subject_user_id)
    WHERE subject_user_id IS NOT NULL;

-- Append-only: nothing changes or removes a row, except the two jobs whose
-- purpose that is, each saying so for its own transaction only
-- (set_config('amplifier.audit_maintenance', 'on', true)): the retention
-- purge deletes rows older than AUDIT_RETENTION_DAYS, and a user's erasure
-- removes their id from the rows that name them. A bug elsewhere that
-- tries either fails loudly.
CREATE OR REPLACE FUNCTION audit_events_append_only()
RETURNS TRIGGER AS $$
BEGIN
    IF coalesce(current_setting('amplifier.audit_maintenance', true), '') <> 'on' THEN
        RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events;
CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
