-- Why: delete-session moves a session to the trash (sessions.trashed_at,
-- V20), an UPDATE where it used to be a DELETE. Its streams must still end
-- with `deleted` (src/events/), which the notification of a DELETE told
-- them (V18, V19). So moving a session into the trash notifies as a
-- delete does ({"k":"d"}): the feed reads the session's state, which is
-- none for a trashed session, and ends its streams. Taking it out again
-- (restore) notifies a change of the session ({"k":"s"}); nobody can be
-- following a trashed session, so that is for completeness only.
--
-- Like every session notification, only while someone follows the
-- session (watched_until, V19); the trash's UPDATE locks the row, so a
-- feed registering concurrently is ordered before or after it (V19).

CREATE OR REPLACE FUNCTION notify_session_events()
RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('amplifier_events',
            json_build_object('k', 'd', 's', OLD.session_id)::text);
        RETURN NULL;
    END IF;
    IF NEW.trashed_at IS NOT NULL AND OLD.trashed_at IS NULL THEN
        PERFORM pg_notify('amplifier_events',
            json_build_object('k', 'd', 's', NEW.session_id)::text);
        RETURN NULL;
    END IF;
    IF NEW.message_count > OLD.message_count THEN
        PERFORM pg_notify('amplifier_events',
            json_build_object('k', 'm', 's', NEW.session_id, 'q', NEW.message_count)::text);
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status OR NEW.metadata IS DISTINCT FROM OLD.metadata
       OR NEW.trashed_at IS DISTINCT FROM OLD.trashed_at THEN
        PERFORM pg_notify('amplifier_events',
            json_build_object('k', 's', 's', NEW.session_id)::text);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS sessions_notify_change ON sessions;
CREATE TRIGGER sessions_notify_change
    AFTER UPDATE OF message_count, status, metadata, trashed_at ON sessions
    FOR EACH ROW
    WHEN (NEW.watched_until > now()
          AND (OLD.message_count IS DISTINCT FROM NEW.message_count
               OR OLD.status IS DISTINCT FROM NEW.status
               OR OLD.metadata IS DISTINCT FROM NEW.metadata
               OR OLD.trashed_at IS DISTINCT FROM NEW.trashed_at))
    EXECUTE FUNCTION notify_session_events();
