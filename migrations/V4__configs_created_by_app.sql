-- Why: a config records the application that created it, so that only that
-- application (or the admin) may change or delete it, and list-configs can
-- show an application its own configs, newest first, page by page (index).
ALTER TABLE configs ADD COLUMN IF NOT EXISTS created_by_app_id VARCHAR(100);
CREATE INDEX IF NOT EXISTS idx_configs_app_created
    ON configs (created_by_app_id, created_at DESC, config_id);
