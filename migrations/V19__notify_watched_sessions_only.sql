-- Why: a transaction that notifies takes a database-wide lock before it
-- commits and keeps it until its commit is complete (PostgreSQL keeps
-- notifications in commit order so), so notifying commits cannot share a
-- WAL flush: with durable commits, every append notifying made all
-- appends, of every session, one flush at a time (docs/benchmarks.md).
-- Only sessions that someone follows need notifications.
--
-- Each feed (a session with subscribers on an instance, src/events/hub.rs)
-- has a row in watched_sessions, and raises its session's watched_until to
-- the row's expiry. The session triggers of V18 fire only WHEN
-- watched_until is in the future: a write to a session nobody follows
-- calls no function at all.
--
-- A feed registers by updating the session's row (watched_until) in the
-- statement that reads its last seq. Every write that notifies locks that
-- row first and keeps the lock to its commit: appends and session updates
-- update it, deletes delete it, participant changes lock it FOR NO KEY
-- UPDATE (src/db/caller.rs). So a write either held the lock first, and
-- the registration waits for its commit (its seq is counted, its change
-- read after), or waited for the registration to commit, and then works
-- on the row version the registration wrote (READ COMMITTED rechecks the
-- newest version of a row it waited for): the trigger's WHEN sees
-- watched_until, and the participants' trigger reads it with a fresh
-- snapshot after taking the lock. Nothing falls between a feed's first
-- read and its notifications. Registrations made again after they lapsed
-- write the row the same way (src/db/events.rs, rewatch).
--
-- watched_until is only ever raised: a feed that ends deletes its row and
-- leaves the session notifying until the time it had registered for
-- (lowering it safely would need the other feeds' rows under the same
-- lock). Rows expire unless their instance renews them, and are swept
-- once expired. No foreign key: registrations are bookkeeping.
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS watched_until TIMESTAMPTZ;

CREATE TABLE IF NOT EXISTS watched_sessions (
    feed_id UUID PRIMARY KEY,
    session_id UUID NOT NULL,
    instance_id UUID NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_watched_sessions_instance_id ON watched_sessions (instance_id);
CREATE INDEX IF NOT EXISTS idx_watched_sessions_expires_at ON watched_sessions (expires_at);

DROP TRIGGER IF EXISTS sessions_notify_change ON sessions;
CREATE TRIGGER sessions_notify_change
    AFTER UPDATE OF message_count, status, metadata ON sessions
    FOR EACH ROW
    WHEN (NEW.watched_until > now()
          AND (OLD.message_count IS DISTINCT FROM NEW.message_count
               OR OLD.status IS DISTINCT FROM NEW.status
               OR OLD.metadata IS DISTINCT FROM NEW.metadata))
    EXECUTE FUNCTION notify_session_events();

DROP TRIGGER IF EXISTS sessions_notify_delete ON sessions;
CREATE TRIGGER sessions_notify_delete
    AFTER DELETE ON sessions
    FOR EACH ROW WHEN (OLD.watched_until > now())
    EXECUTE FUNCTION notify_session_events();

-- Participant changes lock the session's row first; this query runs after
-- (an AFTER trigger) with a fresh snapshot (PL/pgSQL, VOLATILE, READ
-- COMMITTED, which the service never changes). A participant deleted with
-- its session finds no row: the session's own notification covers it.
CREATE OR REPLACE FUNCTION notify_participant_events()
RETURNS TRIGGER AS $$
DECLARE
    session UUID := CASE WHEN TG_OP = 'DELETE' THEN OLD.session_id ELSE NEW.session_id END;
BEGIN
    IF EXISTS (SELECT 1 FROM sessions WHERE session_id = session AND watched_until > now()) THEN
        PERFORM pg_notify('amplifier_events', json_build_object('k', 'p', 's', session)::text);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql VOLATILE;
