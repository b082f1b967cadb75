-- Why: the admin lists a user's audit events (as actor or as subject)
-- newest first, a page at a time. With `event_id` as the last key, each
-- of the two lookups reads its range in order from the page's cursor and
-- stops after a page, instead of sorting every event of the user. These
-- serve erasure's lookups by user as well, so they replace V20's
-- single-column indexes.
CREATE INDEX IF NOT EXISTS idx_audit_events_actor_user_event
    ON audit_events (actor_user_id, event_id) WHERE actor_user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_audit_events_subject_user_event
    ON audit_events (subject_user_id, event_id) WHERE subject_user_id IS NOT NULL;
DROP INDEX IF EXISTS idx_audit_events_actor_user;
DROP INDEX IF EXISTS idx_audit_events_subject_user;
