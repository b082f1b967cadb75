-- Why: participants follow a session live (GET .../events, long-poll on
-- list-messages) on whichever instance they reach. Each instance LISTENs
-- on one channel; the statement that writes notifies it, in the same
-- transaction (delivered at commit, never for a rollback), so a write is
-- still one round trip. Payloads are small JSON, ids and numbers only:
-- NOTIFY payloads are limited to 8,000 bytes and messages can be 1 MiB;
-- the listeners read what changed.
--
--   {"k":"m","s":<session>,"q":<last seq>}  messages appended (up to seq q)
--   {"k":"s","s":<session>}                 status or metadata changed
--   {"k":"d","s":<session>}                 session deleted
--   {"k":"p","s":<session>}                 participant added, role changed, removed
--   {"k":"a","a":<app_id>}                  key rotated, application deactivated or deleted
--
-- The appends' notification comes from the sessions row they update (its
-- message_count), not from the inserted messages: a statement trigger on
-- session_messages would copy every appended message into its transition
-- table. PostgreSQL folds identical notifications of one transaction into
-- one (a cascade deleting a session's participants notifies once).

CREATE OR REPLACE FUNCTION notify_session_events()
RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('amplifier_events',
            json_build_object('k', 'd', 's', OLD.session_id)::text);
        RETURN NULL;
    END IF;
    IF NEW.message_count > OLD.message_count THEN
        PERFORM pg_notify('amplifier_events',
            json_build_object('k', 'm', 's', NEW.session_id, 'q', NEW.message_count)::text);
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status OR NEW.metadata IS DISTINCT FROM OLD.metadata THEN
        PERFORM pg_notify('amplifier_events',
            json_build_object('k', 's', 's', NEW.session_id)::text);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS sessions_notify_change ON sessions;
CREATE TRIGGER sessions_notify_change
    AFTER UPDATE OF message_count, status, metadata ON sessions
    FOR EACH ROW
    WHEN (OLD.message_count IS DISTINCT FROM NEW.message_count
          OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.metadata IS DISTINCT FROM NEW.metadata)
    EXECUTE FUNCTION notify_session_events();

DROP TRIGGER IF EXISTS sessions_notify_delete ON sessions;
CREATE TRIGGER sessions_notify_delete
    AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION notify_session_events();

CREATE OR REPLACE FUNCTION notify_participant_events()
RETURNS TRIGGER AS $$
BEGIN
    PERFORM pg_notify('amplifier_events', json_build_object(
        'k', 'p', 's', CASE WHEN TG_OP = 'DELETE' THEN OLD.session_id ELSE NEW.session_id END
    )::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS session_participants_notify_change ON session_participants;
CREATE TRIGGER session_participants_notify_change
    AFTER INSERT OR DELETE ON session_participants
    FOR EACH ROW EXECUTE FUNCTION notify_participant_events();

DROP TRIGGER IF EXISTS session_participants_notify_role ON session_participants;
CREATE TRIGGER session_participants_notify_role
    AFTER UPDATE OF role ON session_participants
    FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role)
    EXECUTE FUNCTION notify_participant_events();

CREATE OR REPLACE FUNCTION notify_application_events()
RETURNS TRIGGER AS $$
BEGIN
    PERFORM pg_notify('amplifier_events', json_build_object(
        'k', 'a', 'a', CASE WHEN TG_OP = 'DELETE' THEN OLD.app_id ELSE NEW.app_id END
    )::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Deleting an application is an UPDATE (a tombstone, migration V9) that
-- replaces its key; a row deleted by hand notifies too.
DROP TRIGGER IF EXISTS applications_notify_key ON applications;
CREATE TRIGGER applications_notify_key
    AFTER UPDATE OF api_key_hash, is_active ON applications
    FOR EACH ROW
    WHEN (OLD.api_key_hash IS DISTINCT FROM NEW.api_key_hash
          OR (OLD.is_active AND NOT NEW.is_active))
    EXECUTE FUNCTION notify_application_events();

DROP TRIGGER IF EXISTS applications_notify_delete ON applications;
CREATE TRIGGER applications_notify_delete
    AFTER DELETE ON applications
    FOR EACH ROW EXECUTE FUNCTION notify_application_events();

-- Stream tickets: a browser's EventSource cannot send X-API-Key or
-- Authorization, so an authenticated call gets a ticket, single-use and
-- short-lived, bound to the application's key, the user and the session,
-- and passes it in the URL. Stored as SHA-256 only; consumed by
-- DELETE ... RETURNING, so one use on any instance.
CREATE TABLE IF NOT EXISTS event_tickets (
    ticket_hash VARCHAR(64) PRIMARY KEY,
    -- The key the ticket was issued to (NULL: a keyless development call):
    -- a rotated or deactivated key makes its tickets useless.
    api_key_hash VARCHAR(255),
    user_id UUID NOT NULL,
    session_id UUID NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_event_tickets_expires_at ON event_tickets (expires_at);
CREATE INDEX IF NOT EXISTS idx_event_tickets_session_id ON event_tickets (session_id);
