-- Why: one application must not be able to destroy or change another
-- application's data.
--
-- 1. Deleting a config cascades to its sessions (sessions.config_id ... ON
--    DELETE CASCADE, the plan's schema), and a session's content is its
--    config's YAML. So a config that sessions of other applications use may
--    be neither deleted nor given other yaml_content. The check is a BEFORE
--    trigger: it runs after the config row is locked, and counts with a
--    fresh snapshot, so a session created concurrently (which holds a key
--    share lock on the config row until it commits) is seen.
--    SQLSTATE AM002 tells the service to answer 409; DETAIL is the count.
CREATE OR REPLACE FUNCTION protect_shared_configs()
RETURNS TRIGGER AS $$
DECLARE
    foreign_sessions bigint;
BEGIN
    SELECT count(*) INTO foreign_sessions FROM sessions
    WHERE config_id = OLD.config_id
      AND created_by_app_id IS DISTINCT FROM OLD.created_by_app_id;
    IF foreign_sessions > 0 THEN
        RAISE EXCEPTION 'config % is used by sessions of other applications', OLD.config_id
            USING ERRCODE = 'AM002', DETAIL = foreign_sessions::text;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS configs_protect_shared_on_delete ON configs;
CREATE TRIGGER configs_protect_shared_on_delete
    BEFORE DELETE ON configs
    FOR EACH ROW EXECUTE FUNCTION protect_shared_configs();

DROP TRIGGER IF EXISTS configs_protect_shared_on_update ON configs;
CREATE TRIGGER configs_protect_shared_on_update
    BEFORE UPDATE OF yaml_content ON configs
    FOR EACH ROW WHEN (OLD.yaml_content IS DISTINCT FROM NEW.yaml_content)
    EXECUTE FUNCTION protect_shared_configs();

-- 2. An application id is never reused: deleting an application keeps its
--    row as a tombstone (deleted_at set, key unusable), so registering the
--    id again conflicts instead of inheriting the old application's
--    configs and idempotency records.
ALTER TABLE applications ADD COLUMN IF NOT EXISTS deleted_at TIMESTAMPTZ;
