-- Why: an append's words were one tsvector document, capped at 900 KiB
-- (a tsvector holds at most 1 MiB): words past the cap went unindexed, so
-- `q` missed them and `-word` did not exclude them. And a fork cutting
-- through an append re-indexed the messages it kept with PostgreSQL's
-- parser, whose output can exceed a tsvector (a 500). Now an append gets
-- as many documents as its words need (part 0, 1, ...), and each word
-- keeps, as its position, the first message of the append holding it, so
-- the words of an append's first messages are a subset of its documents:
-- taken without reading or parsing the messages again, never larger than
-- the document they come from.
ALTER TABLE session_search ADD COLUMN IF NOT EXISTS part INTEGER NOT NULL DEFAULT 0
    CHECK (part >= 0);
-- A document is named by the messages it covers and its part.
ALTER TABLE session_search DROP CONSTRAINT IF EXISTS session_search_pkey;
ALTER TABLE session_search ADD PRIMARY KEY (session_id, first_seq, last_seq, part);

-- Documents of several messages made so far have no positions. Each word
-- gets its first message, found by splitting string values into runs of
-- letters and digits as the service does; a word found in none (PostgreSQL's
-- parser made some documents, with compound forms) gets the first message,
-- so that no fork loses it. Documents are split where words and positions
-- would exceed 900 KiB. This reads each such document's messages once.
CREATE TEMPORARY TABLE first_use AS
SELECT d.session_id, d.first_seq, t.word, min(m.seq - d.first_seq + 1) AS position
FROM session_search d
JOIN session_messages m
  ON m.session_id = d.session_id AND m.seq BETWEEN d.first_seq AND d.last_seq
CROSS JOIN LATERAL jsonb_path_query(m.message, 'strict $.**') AS v (value)
CROSS JOIN LATERAL regexp_split_to_table(lower(v.value #>> '{}'), '[^[:alnum:]]+') AS t (word)
WHERE d.last_seq > d.first_seq AND jsonb_typeof(v.value) = 'string' AND t.word <> ''
GROUP BY d.session_id, d.first_seq, t.word;
CREATE TEMPORARY TABLE positioned AS
SELECT d.session_id, d.first_seq, d.last_seq, u.lexeme,
       COALESCE(f.position, 1) AS position,
       -- The word, its header, and its position (as the service counts).
       ((sum(octet_length(u.lexeme) + 9) OVER (
             PARTITION BY d.session_id, d.first_seq, d.last_seq ORDER BY u.lexeme) - 1)
        / (900 * 1024))::int AS part
FROM session_search d
CROSS JOIN LATERAL unnest(d.words) AS u
LEFT JOIN first_use f
  ON f.session_id = d.session_id AND f.first_seq = d.first_seq AND f.word = u.lexeme
WHERE d.last_seq > d.first_seq;
DELETE FROM session_search WHERE last_seq > first_seq;
INSERT INTO session_search (session_id, first_seq, last_seq, part, words)
SELECT session_id, first_seq, last_seq, part,
       string_agg('''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || ''':' || position,
                  ' ')::tsvector
FROM positioned
GROUP BY session_id, first_seq, last_seq, part;
DROP TABLE first_use, positioned;
