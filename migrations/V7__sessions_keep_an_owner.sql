-- Why: a session must always keep at least one owner. Checking in the
-- application cannot see a concurrent demotion of the other owner; this
-- trigger locks the session row first, so changes to one session's owners
-- are serialized, then counts the owners with a fresh snapshot.
-- SQLSTATE AM001 tells the service to answer 409.
CREATE OR REPLACE FUNCTION ensure_session_keeps_an_owner()
RETURNS TRIGGER AS $$
BEGIN
    -- The session itself being deleted (cascade): nothing to keep.
    PERFORM 1 FROM sessions WHERE session_id = OLD.session_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM session_participants
        WHERE session_id = OLD.session_id AND role = 'owner'
    ) THEN
        RAISE EXCEPTION 'session % would have no owner', OLD.session_id
            USING ERRCODE = 'AM001';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS session_participants_keep_owner_on_update ON session_participants;
CREATE TRIGGER session_participants_keep_owner_on_update
    AFTER UPDATE OF role ON session_participants
    FOR EACH ROW WHEN (OLD.role = 'owner' AND NEW.role <> 'owner')
    EXECUTE FUNCTION ensure_session_keeps_an_owner();

DROP TRIGGER IF EXISTS session_participants_keep_owner_on_delete ON session_participants;
CREATE TRIGGER session_participants_keep_owner_on_delete
    AFTER DELETE ON session_participants
    FOR EACH ROW WHEN (OLD.role = 'owner')
    EXECUTE FUNCTION ensure_session_keeps_an_owner();
