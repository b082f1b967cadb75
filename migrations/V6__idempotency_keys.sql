-- Why: clients retry create-session and append-messages with an
-- Idempotency-Key header. The first successful response is kept here for 24
-- hours and replayed; the primary key makes concurrent duplicates wait for
-- the first and then replay it instead of writing twice.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    app_id VARCHAR(100) NOT NULL,
    idempotency_key VARCHAR(255) NOT NULL,
    request_hash CHAR(64) NOT NULL,
    response_status SMALLINT,
    response_body TEXT,
    response_location TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (app_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS idx_idempotency_keys_created_at ON idempotency_keys(created_at);
