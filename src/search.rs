//! Words for full-text search of sessions: what a session's messages and
//! metadata are indexed by, and what a query asks for. Pure, unit-tested.
//!
//! Words are taken here, not by PostgreSQL's text search parser: that
//! parser costs about 120 ns per character, which made indexing cost
//! several times what storing the messages does (docs/benchmarks.md). The
//! words of one append (or of the metadata) become one stripped `tsvector`
//! (each distinct word once), stored beside the messages and indexed with
//! GIN; queries are answered by PostgreSQL with `@@` over that index.

use std::collections::BTreeSet;

use serde_json::Value;

/// Longer runs of letters and digits (hashes, base64) are not words.
const MAX_WORD_BYTES: usize = 64;
/// A `tsvector` holds at most 1 MB; a document stops taking words before.
const MAX_DOCUMENT_BYTES: usize = 900 * 1024;
/// Words a query may name.
pub const MAX_QUERY_WORDS: usize = 16;

/// The distinct words of every string value in `value` (keys, numbers and
/// booleans are not searched): maximal runs of letters and digits,
/// lowercased.
pub fn words(value: &Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) => split(text, &mut found),
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => pending.extend(map.values()),
            _ => {}
        }
    }
    found
}

fn split(text: &str, into: &mut BTreeSet<String>) {
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() || word.len() > MAX_WORD_BYTES {
            continue;
        }
        if word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            if !into.contains(word) {
                into.insert(word.to_owned());
            }
        } else {
            into.insert(word.to_lowercase());
        }
    }
}

/// `words` as a `tsvector` literal without positions, within the size a
/// `tsvector` may have (words beyond it, rare, are not indexed).
pub fn document(words: &BTreeSet<String>) -> String {
    let mut literal = String::new();
    let mut size = 0;
    for word in words {
        // Each entry costs the word and a 4-byte header in the tsvector.
        size += word.len() + 4;
        if size > MAX_DOCUMENT_BYTES {
            tracing::warn!(
                words = words.len(),
                "a document has too many words to index them all"
            );
            break;
        }
        if !literal.is_empty() {
            literal.push(' ');
        }
        // Letters and digits only: no quote or backslash to escape.
        literal.push('\'');
        literal.push_str(word);
        literal.push('\'');
    }
    literal
}

/// A text query: every `required` word must appear in the session, no
/// `excluded` one may.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub required: Vec<String>,
    pub excluded: Vec<String>,
}

impl Query {
    /// `q` as a user types it: words, and `-word` to exclude one; anything
    /// else separates words as in documents (so quotes group nothing).
    pub fn parse(q: &str) -> Result<Self, String> {
        let mut query = Query::default();
        for term in q.split_whitespace() {
            let (exclude, term) = match term.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, term),
            };
            let mut found = BTreeSet::new();
            split(term, &mut found);
            let list = if exclude {
                &mut query.excluded
            } else {
                &mut query.required
            };
            for word in found {
                if !list.contains(&word) {
                    list.push(word);
                }
            }
        }
        query.required.sort();
        query.excluded.sort();
        if query.required.is_empty() {
            return Err("q must hold at least one word to find".to_owned());
        }
        if query.required.len() + query.excluded.len() > MAX_QUERY_WORDS {
            return Err(format!("q may hold at most {MAX_QUERY_WORDS} words"));
        }
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn words_are_runs_of_letters_and_digits_in_string_values() {
        let found = words(&json!({
            "role": "user",
            "content": "Zanzibar's budget: 42 EUR, see foo-bar@example.com — Übergröße!",
            "tool_calls": [{"name": "search", "args": {"n": 7, "flag": true}}],
        }));
        let expected: BTreeSet<String> = [
            "user",
            "zanzibar",
            "s",
            "budget",
            "42",
            "eur",
            "see",
            "foo",
            "bar",
            "example",
            "com",
            "übergröße",
            "search",
        ]
        .map(String::from)
        .into();
        assert_eq!(found, expected, "keys, numbers and booleans are not words");
    }

    #[test]
    fn overlong_runs_are_not_words_and_documents_are_literals() {
        let hash = "a".repeat(MAX_WORD_BYTES + 1);
        let found = words(&json!({"text": format!("{hash} ok")}));
        assert_eq!(document(&found), "'ok'");
    }

    #[test]
    fn queries_require_words_and_exclude_dashed_ones() {
        let q = Query::parse("Budget \"zanzibar plan\" -draft -old-stuff").unwrap();
        assert_eq!(q.required, ["budget", "plan", "zanzibar"]);
        assert_eq!(q.excluded, ["draft", "old", "stuff"]);
        assert!(Query::parse(" -only-excluded ").is_err());
        assert!(Query::parse("!!! ???").is_err());
        let many = (0..=MAX_QUERY_WORDS)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(Query::parse(&many).is_err());
    }
}
