-- Why: get-session records every read in last_accessed_at/_by_app_id. With
-- the original trigger each read also moved updated_at, so updated_at no
-- longer told clients when the session itself changed. Fire the trigger only
-- when a content column is part of the UPDATE.
DROP TRIGGER IF EXISTS update_sessions_updated_at ON sessions;
CREATE TRIGGER update_sessions_updated_at
    BEFORE UPDATE OF config_id, owner_user_id, status, message_count, transcript, metadata
    ON sessions
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
