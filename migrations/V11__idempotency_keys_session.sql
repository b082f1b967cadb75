-- Why: a replay answered with the first response even when the session it
-- was about had been deleted since: 201 with the Location of a deleted
-- session, or an append "done" to a transcript that no longer exists.
-- Each record now names that session (created, forked or appended to), so
-- a replay can see it is gone and say so (410). No foreign key: the record
-- must outlive the session to tell, and a cascade would free the key to
-- create a second session.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS session_id UUID;
