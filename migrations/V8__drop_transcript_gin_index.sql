-- Why: nothing queries inside transcripts, and this GIN index made every
-- append-messages a non-HOT update that also rewrote the index entries.
-- Measured with scripts/bench.sh (docs/benchmarks.md): without it 91% of
-- session updates are HOT and appends run about 14% faster.
DROP INDEX IF EXISTS idx_sessions_transcript;
