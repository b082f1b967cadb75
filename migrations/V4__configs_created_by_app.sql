-- Why: a config records the application that created it, so that only that
-- application (or the admin) may change or delete it later.
ALTER TABLE configs ADD COLUMN IF NOT EXISTS created_by_app_id VARCHAR(100);
