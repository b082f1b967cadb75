-- Why: an Idempotency-Key was shared by every user of an application
-- (PRIMARY KEY (app_id, idempotency_key)): user B sending a key made user
-- A's request with the same key a 422 for 24 hours, and told B that A had
-- used it. A key now belongs to its caller: (application, user) for a
-- user's request; (application) alone, user_id NULL, for a request the
-- application makes without a user. NULLS NOT DISTINCT keeps one record
-- per key for those too. The key comes before the user so that a lookup
-- by (application, key) finds a caller's record among the few with that key.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS user_id UUID;
ALTER TABLE idempotency_keys DROP CONSTRAINT IF EXISTS idempotency_keys_pkey;

-- Existing records were all made by users (create-session, fork-session,
-- append-messages), but the user is known only inside request_hash. A
-- record about a session that still exists goes to each participant of
-- that session, the sender among them: the hash includes the user, so
-- only the sender's retry replays it, and for the others the key stays
-- used (422), as it was, until the record expires (24 hours). Records
-- about deleted sessions (a retry would get 410) or older than V11 (no
-- session) cannot be attributed and are dropped: a retry of such a
-- request runs again.
INSERT INTO idempotency_keys (app_id, idempotency_key, user_id, request_hash, response_status,
                              response_body, response_location, created_at, session_id)
SELECT k.app_id, k.idempotency_key, p.user_id, k.request_hash, k.response_status,
       k.response_body, k.response_location, k.created_at, k.session_id
FROM idempotency_keys k
JOIN session_participants p ON p.session_id = k.session_id
WHERE k.user_id IS NULL;
DELETE FROM idempotency_keys WHERE user_id IS NULL;

ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_caller_key
    UNIQUE NULLS NOT DISTINCT (app_id, idempotency_key, user_id);
