-- The size of a session's transcript (its messages' JSON text) through
-- message `seq`, read through its lineage from the running size each
-- message records (V13); 0 before the first message. Pages of messages
-- (list-messages, export) end at a byte budget past it: one definition
-- instead of the same subquery in each statement. Callers wrap it in a
-- scalar subquery so that it runs once per statement, not once per row.
CREATE OR REPLACE FUNCTION transcript_bytes_through(session UUID, through INTEGER)
RETURNS BIGINT LANGUAGE sql STABLE AS $$
    SELECT COALESCE(max(m.transcript_bytes), 0)
    FROM session_lineage l
    JOIN session_messages m ON m.session_id = l.origin_id AND m.seq = through
    WHERE l.session_id = session AND through BETWEEN l.from_seq AND l.through_seq
$$;
