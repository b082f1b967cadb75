-- Why: a transaction that notifies takes a database-wide lock before it
-- commits and keeps it until its commit is complete (PostgreSQL keeps
-- notifications in commit order so), so notifying commits cannot share a
-- WAL flush: with durable commits, every append notifying made all
-- appends, of every session, one flush at a time (docs/benchmarks.md).
-- Only sessions that someone follows need notifications: each feed (a
-- session with subscribers on an instance, src/events/hub.rs) registers
-- here, and the triggers of V18 notify only for registered sessions.
--
-- A feed registers in a statement that locks the session's row FOR SHARE
-- and reads its last seq. Every write that notifies locks that row first,
-- in a way FOR SHARE conflicts with, and keeps the lock to its commit:
-- appends and session updates update it, deletes delete it, participant
-- changes lock it FOR NO KEY UPDATE (src/db/caller.rs). Its trigger runs
-- after that lock is taken (an AFTER trigger, at the end of the statement)
-- and looks for registrations with a fresh snapshot (session_is_watched is
-- a VOLATILE PL/pgSQL function: in READ COMMITTED, which the service never
-- changes, each of its queries sees what committed before it started). So a write either
-- held the lock first, and the registration waits for its commit (its seq
-- is counted, its change read after), or waited for the registration to
-- commit, and then finds it and notifies. Nothing falls between a feed's
-- first read and its notifications. Registrations made again after they
-- lapsed lock the same way (src/db/events.rs, rewatch).
--
-- Rows expire unless their instance renews them (a crashed instance's rows
-- stop costing notifications), and are swept once expired. No foreign key:
-- a session's deletion must still find its row, to notify.
CREATE TABLE IF NOT EXISTS watched_sessions (
    feed_id UUID PRIMARY KEY,
    session_id UUID NOT NULL,
    instance_id UUID NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_watched_sessions_session_id ON watched_sessions (session_id);
CREATE INDEX IF NOT EXISTS idx_watched_sessions_instance_id ON watched_sessions (instance_id);
CREATE INDEX IF NOT EXISTS idx_watched_sessions_expires_at ON watched_sessions (expires_at);

-- PL/pgSQL rather than SQL: its query's plan is kept for the session (a
-- SQL function's is made again at every call, every append's trigger);
-- VOLATILE, so the query takes a fresh snapshot.
CREATE OR REPLACE FUNCTION session_is_watched(session UUID)
RETURNS boolean AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM watched_sessions
                   WHERE session_id = session AND expires_at > now());
END;
$$ LANGUAGE plpgsql VOLATILE;

CREATE OR REPLACE FUNCTION notify_session_events()
RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF session_is_watched(OLD.session_id) THEN
            PERFORM pg_notify('amplifier_events',
                json_build_object('k', 'd', 's', OLD.session_id)::text);
        END IF;
        RETURN NULL;
    END IF;
    IF NOT session_is_watched(NEW.session_id) THEN
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

CREATE OR REPLACE FUNCTION notify_participant_events()
RETURNS TRIGGER AS $$
DECLARE
    session UUID := CASE WHEN TG_OP = 'DELETE' THEN OLD.session_id ELSE NEW.session_id END;
BEGIN
    IF session_is_watched(session) THEN
        PERFORM pg_notify('amplifier_events', json_build_object('k', 'p', 's', session)::text);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
