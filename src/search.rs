//! Words for full-text search of sessions: what a session's messages and
//! metadata are indexed by, and what a query asks for. Pure, unit-tested.
//!
//! Words are taken here, not by PostgreSQL's text search parser: that
//! parser costs about 120 ns per character, which made indexing cost
//! several times what storing the messages does (docs/benchmarks.md). The
//! words of one append become stripped-down `tsvector`s (each distinct word
//! once, with one position: the first message of the append holding it),
//! stored beside the messages and indexed with GIN; queries are answered by
//! PostgreSQL with `@@` over that index. An append with more words than one
//! `tsvector` may hold gets several documents, so no word goes unindexed.
//! The positions let a fork that cuts through an append keep only the
//! words of the messages it shares, without reading them again.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Longer runs of letters and digits (hashes, base64) are not words.
const MAX_WORD_BYTES: usize = 64;
/// A `tsvector` holds at most 1 MiB of words and positions (PostgreSQL
/// refuses more); a document stops taking words well before.
pub const MAX_DOCUMENT_BYTES: usize = 900 * 1024;
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

/// The distinct words of `messages` (as [`words`] takes them), each with
/// the position (1-based) of the first message holding it.
pub fn message_words(messages: &[Value]) -> BTreeMap<String, u16> {
    let mut first = BTreeMap::new();
    for (i, message) in messages.iter().enumerate() {
        // Positions of a tsvector go up to 16,383; appends hold at most 100.
        let position = u16::try_from(i + 1).unwrap_or(u16::MAX).min(16_383);
        for word in words(message) {
            first.entry(word).or_insert(position);
        }
    }
    first
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

/// `words` as one `tsvector` literal without positions, for metadata: at
/// most 64 KiB of JSON, whose words always fit one document (those beyond
/// would not be indexed, and a warning logged).
pub fn document(words: &BTreeSet<String>) -> String {
    let mut literal = String::new();
    let mut size = 0;
    for word in words {
        // Each entry costs the word and a 4-byte header in the tsvector.
        size += word.len() + 4;
        if size > MAX_DOCUMENT_BYTES {
            tracing::warn!(
                words = words.len(),
                "a metadata document has too many words to index them all"
            );
            break;
        }
        push_word(&mut literal, word);
    }
    literal
}

/// The words of an append (`message_words`) as `tsvector` literals, each
/// word with its first message's position, split into as many documents
/// of at most `max_bytes` as it takes: every word is indexed.
pub fn documents(words: &BTreeMap<String, u16>, max_bytes: usize) -> Vec<String> {
    let mut documents = Vec::new();
    let mut literal = String::new();
    let mut size = 0;
    for (word, position) in words {
        // The word, its 4-byte header, and its position: up to 1 byte of
        // alignment, a 2-byte count and the 2-byte position.
        let cost = word.len() + 9;
        if size + cost > max_bytes && !literal.is_empty() {
            documents.push(std::mem::take(&mut literal));
            size = 0;
        }
        size += cost;
        push_word(&mut literal, word);
        literal.push(':');
        literal.push_str(&position.to_string());
    }
    if !literal.is_empty() {
        documents.push(literal);
    }
    documents
}

fn push_word(literal: &mut String, word: &str) {
    if !literal.is_empty() {
        literal.push(' ');
    }
    // Letters and digits only: no quote or backslash to escape.
    literal.push('\'');
    literal.push_str(word);
    literal.push('\'');
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
    fn each_word_keeps_the_first_message_holding_it() {
        let found = message_words(&[json!({"t": "Alpha beta"}), json!({"t": "beta gamma"})]);
        let expected: BTreeMap<String, u16> = [("alpha", 1), ("beta", 1), ("gamma", 2)]
            .map(|(w, p)| (w.to_owned(), p))
            .into();
        assert_eq!(found, expected);
        assert_eq!(
            documents(&found, MAX_DOCUMENT_BYTES),
            ["'alpha':1 'beta':1 'gamma':2"]
        );
    }

    #[test]
    fn words_beyond_one_document_go_to_the_next_one() {
        let words: BTreeMap<String, u16> = (0..1000).map(|i| (format!("w{i:04}"), 7)).collect();
        let cap = 1000;
        let docs = documents(&words, cap);
        assert!(docs.len() > 1, "{} documents", docs.len());
        let mut indexed = Vec::new();
        for doc in &docs {
            let entries: Vec<&str> = doc.split(' ').collect();
            let size: usize = entries.iter().map(|e| e.len() - ":7".len() - 2 + 9).sum();
            assert!(size <= cap, "a document of {size} bytes");
            indexed.extend(
                entries
                    .iter()
                    .map(|e| e.trim_end_matches(":7").trim_matches('\'')),
            );
        }
        let all: Vec<&str> = words.keys().map(String::as_str).collect();
        assert_eq!(indexed, all, "every word once, none dropped");
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
