-- Why: rate limits hold across every instance of the service (Flex
-- Consumption runs many). Each instance counts requests locally and, every
-- RATE_LIMIT_SYNC_MS, adds its counts here and reads everyone else's
-- (src/limits/rate/sync.rs): no request waits for this table.
--
-- One row per (caller's bucket, one-minute window, instance): an instance
-- only ever updates its own rows, so instances never wait on each other's
-- row locks, and the number of instances serving a bucket is a count.
CREATE TABLE IF NOT EXISTS rate_limit_counts (
    -- The SHA-256 of the application's key ('dev' for keyless development
    -- calls): the key is what a request shows before any statement runs.
    api_key_hash VARCHAR(64) NOT NULL,
    -- 'app', 'user:<uuid>' or 'writes:<uuid>'.
    bucket VARCHAR(64) NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    instance_id UUID NOT NULL,
    requests BIGINT NOT NULL CHECK (requests >= 0),
    -- What this instance may still admit before its next sync (its lease):
    -- the others count it as taken, so leases never add up to more than
    -- what is left.
    leased BIGINT NOT NULL DEFAULT 0 CHECK (leased >= 0),
    -- When this instance last synced: a lease lapses two sync intervals
    -- later (its holder stops using it before).
    synced_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_hash, bucket, window_start, instance_id)
);
-- Old windows are swept by age.
CREATE INDEX IF NOT EXISTS idx_rate_limit_counts_window ON rate_limit_counts (window_start);
