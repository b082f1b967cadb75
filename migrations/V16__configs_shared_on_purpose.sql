-- Why: any application could read any config and start sessions from it,
-- and a session of another application pins a config (V9: no delete, no
-- new yaml_content, not even by the admin). So application A could make
-- application B's config permanent by creating one session with its id.
--
-- 1. A config is private to the application that created it unless it is
--    shared: other applications can neither read it nor start sessions
--    (or forks) from it. Configs made before keep today's behaviour
--    (shared); new ones are private unless created or updated as shared.
ALTER TABLE configs ADD COLUMN IF NOT EXISTS shared BOOLEAN NOT NULL DEFAULT true;
ALTER TABLE configs ALTER COLUMN shared SET DEFAULT false;

-- 2. The pin can always be removed: a retired config takes no new
--    sessions, is no longer listed, and is deleted with its last session
--    (at once when it has none). Retiring cannot be undone.
ALTER TABLE configs ADD COLUMN IF NOT EXISTS retired BOOLEAN NOT NULL DEFAULT false;

-- The config is locked first, then its sessions are looked for with a
-- fresh snapshot: of two transactions deleting its last two sessions at
-- once, the second to get the lock sees neither and deletes the config.
-- Sessions are created with the config locked FOR SHARE, so a retire
-- waits for a session being created from it, and then sees it.
CREATE OR REPLACE FUNCTION delete_retired_config_if_unused()
RETURNS TRIGGER AS $$
BEGIN
    -- OLD is a session (deleted) or the config (retired): both have config_id.
    PERFORM 1 FROM configs WHERE config_id = OLD.config_id AND retired FOR NO KEY UPDATE;
    IF FOUND AND NOT EXISTS (SELECT 1 FROM sessions WHERE config_id = OLD.config_id) THEN
        DELETE FROM configs WHERE config_id = OLD.config_id;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS configs_delete_when_retired_unused ON configs;
CREATE TRIGGER configs_delete_when_retired_unused
    AFTER UPDATE OF retired ON configs
    FOR EACH ROW WHEN (NEW.retired AND NOT OLD.retired)
    EXECUTE FUNCTION delete_retired_config_if_unused();

DROP TRIGGER IF EXISTS sessions_delete_retired_config ON sessions;
CREATE TRIGGER sessions_delete_retired_config
    AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION delete_retired_config_if_unused();

-- 3. An application still reads a private config its sessions use (it
--    was shared when they were created): found by this index, which also
--    serves everything the one on config_id alone did.
CREATE INDEX IF NOT EXISTS idx_sessions_config_app ON sessions (config_id, created_by_app_id);
DROP INDEX IF EXISTS idx_sessions_config_id;
