-- Why: every application request is authenticated by looking up the SHA-256
-- hash of its X-API-Key. Without an index that lookup scans the table, and
-- without uniqueness one key could authenticate as two applications.
CREATE UNIQUE INDEX IF NOT EXISTS idx_applications_api_key_hash ON applications(api_key_hash);
