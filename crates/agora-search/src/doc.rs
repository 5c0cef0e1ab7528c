//! What the index holds: one [`Doc`] per thing a person looks for.

use serde::{Deserialize, Serialize};

use crate::Error;

/// Longest id, in bytes.
pub const MAX_ID: usize = 256;
/// Longest title, in bytes; longer titles are cut.
pub const MAX_TITLE: usize = 512;
/// Longest body, in bytes; longer bodies are cut (at a character boundary).
pub const MAX_BODY: usize = 64 * 1024;
/// Longest link, in bytes.
pub const MAX_URL: usize = 2_048;
/// Most exact keys per document.
pub const MAX_KEYS: usize = 16;
/// Most addresses per document.
pub const MAX_ADDRESSES: usize = 64;
/// Characters of a document's text that its vector is computed from: about 128 tokens, the
/// length MiniLM was trained on (attention's cost grows with the square of the length).
const EMBED_CHARS: usize = 600;

/// What an object is; also a search filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Account,
    Transaction,
    Provider,
    Model,
    Job,
    Subnet,
    Neuron,
    Audit,
    Dashboard,
    Article,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Account,
        Kind::Transaction,
        Kind::Provider,
        Kind::Model,
        Kind::Job,
        Kind::Subnet,
        Kind::Neuron,
        Kind::Audit,
        Kind::Dashboard,
        Kind::Article,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Account => "account",
            Kind::Transaction => "transaction",
            Kind::Provider => "provider",
            Kind::Model => "model",
            Kind::Job => "job",
            Kind::Subnet => "subnet",
            Kind::Neuron => "neuron",
            Kind::Audit => "audit",
            Kind::Dashboard => "dashboard",
            Kind::Article => "article",
        }
    }

    /// `"transaction"`, `"tx"`…; anything else is an unknown filter, naming the known ones.
    pub fn parse(s: &str) -> Result<Kind, Error> {
        let s = s.trim().to_ascii_lowercase();
        let alias = match s.as_str() {
            "tx" | "transactions" => "transaction",
            "accounts" => "account",
            "providers" => "provider",
            "models" => "model",
            "jobs" => "job",
            "subnets" => "subnet",
            "neurons" => "neuron",
            "audits" | "finding" | "findings" => "audit",
            "dashboards" => "dashboard",
            "articles" | "doc" | "docs" => "article",
            other => other,
        };
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == alias)
            .ok_or_else(|| {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                Error::UnknownFilter(format!("kind `{s}` (known: {})", known.join(", ")))
            })
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One searchable object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doc {
    /// Unique and stable: `"tx:<hash>"`, `"account:<address>"`, `"article:<source>/<path>"`…
    pub id: String,
    pub kind: Kind,
    pub title: String,
    pub body: String,
    /// When the object was made or last changed, in Unix milliseconds (block time for chain
    /// objects); 0 when unknown.
    #[serde(default)]
    pub time_ms: i64,
    /// Accounts it concerns (sender, receiver, provider, owner…), for the address filter.
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub subnet: Option<u16>,
    /// Identifiers that lead straight to it when typed in whole (hashes, addresses, ids).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Where a person reads it (a page of the web app, or the article's link).
    #[serde(default)]
    pub url: Option<String>,
    /// The text its vector is computed from, when not its title and body: an object whose
    /// numbers change at every block (an account's balance) keeps one vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
}

impl Doc {
    pub fn new(
        id: impl Into<String>,
        kind: Kind,
        title: impl Into<String>,
        body: impl Into<String>,
    ) -> Self {
        Doc {
            id: id.into(),
            kind,
            title: title.into(),
            body: body.into(),
            time_ms: 0,
            addresses: Vec::new(),
            subnet: None,
            keys: Vec::new(),
            url: None,
            about: None,
        }
    }

    /// Refuses what cannot be indexed (an empty or oversized id, too many keys or addresses)
    /// and cuts what may be cut (title, body); keys and addresses are normalized.
    pub fn checked(mut self) -> Result<Doc, Error> {
        let bad = |why: String| Error::BadDoc {
            id: self.id.chars().take(64).collect(),
            why,
        };
        if self.id.trim().is_empty() {
            return Err(bad("empty id".into()));
        }
        if self.id.len() > MAX_ID {
            return Err(bad(format!(
                "id of {} bytes (at most {MAX_ID})",
                self.id.len()
            )));
        }
        if self.id.chars().any(char::is_control) {
            return Err(bad("control characters in the id".into()));
        }
        if self.keys.len() > MAX_KEYS {
            return Err(bad(format!(
                "{} keys (at most {MAX_KEYS})",
                self.keys.len()
            )));
        }
        if self.addresses.len() > MAX_ADDRESSES {
            return Err(bad(format!(
                "{} addresses (at most {MAX_ADDRESSES})",
                self.addresses.len()
            )));
        }
        if let Some(url) = &self.url {
            let safe = url.starts_with("https://")
                || url.starts_with("http://")
                || (url.starts_with('/') && !url.starts_with("//") && !url.starts_with("/\\"));
            if !safe || url.len() > MAX_URL || url.chars().any(char::is_control) {
                return Err(bad(format!(
                    "url must be http(s):// or a path on the node, at most {MAX_URL} bytes"
                )));
            }
        }
        cut(&mut self.title, MAX_TITLE);
        cut(&mut self.body, MAX_BODY);
        // Text from the chain or a feed is anyone's: no terminal escapes, no bidirectional
        // overrides or invisible characters in what a person reads.
        if let Some(about) = &mut self.about {
            cut(about, MAX_BODY);
            *about = printable(about, true);
        }
        self.title = printable(&self.title, false);
        self.body = printable(&self.body, true);
        for k in self.keys.iter_mut().chain(self.addresses.iter_mut()) {
            *k = normalize_key(k);
            cut(k, MAX_ID);
        }
        self.keys.retain(|k| !k.is_empty());
        self.addresses.retain(|k| !k.is_empty());
        Ok(self)
    }

    /// The text its vector is computed from: the title, then the start of the body.
    pub fn embed_text(&self) -> String {
        if let Some(about) = &self.about {
            let mut text = about.clone();
            cut(&mut text, EMBED_CHARS);
            return text;
        }
        let mut text = String::with_capacity(self.title.len() + EMBED_CHARS + 1);
        text.push_str(&self.title);
        text.push('\n');
        let mut body = self.body.as_str();
        if body.len() > EMBED_CHARS {
            let mut end = EMBED_CHARS;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body = &body[..end];
        }
        text.push_str(body);
        text
    }
}

/// An identifier as compared: trimmed, lower case, without a `0x`.
pub fn normalize_key(k: &str) -> String {
    let k = k.trim().to_lowercase();
    match k.strip_prefix("0x") {
        Some(rest) if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit()) => {
            rest.to_string()
        }
        _ => k,
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
/// `s` without control characters (a line break and a tab kept in bodies, the rest as spaces)
/// and without invisible formatting characters (zero widths, bidirectional overrides, BOM).
pub fn printable(s: &str, lines: bool) -> String {
    let invisible = |c: char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}');
    if !s.chars().any(|c| c.is_control() || invisible(c)) {
        return s.to_string();
    }
    s.chars()
        .filter(|c| !invisible(*c))
        .map(|c| match c {
            '\n' | '\t' if lines => c,
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

pub(crate) fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_cuts_and_refuses() {
        let long = "é".repeat(MAX_BODY);
        let d = Doc::new("a", Kind::Article, "t", long).checked().unwrap();
        assert!(d.body.len() <= MAX_BODY && d.body.len() > MAX_BODY - 2);
        assert!(Doc::new(" ", Kind::Article, "t", "b").checked().is_err());
        assert!(
            Doc::new("x".repeat(MAX_ID + 1), Kind::Article, "t", "b")
                .checked()
                .is_err()
        );
        let mut link = Doc::new("l", Kind::Article, "t", "b");
        link.url = Some("javascript:alert(1)".into());
        assert!(link.clone().checked().is_err());
        let mut tricky = link.clone();
        tricky.url = None;
        tricky.title = "a\u{1b}]52;c;bad\u{7}\u{202E}b".into();
        tricky.body = "line\none\u{1b}[2J\ttab".into();
        let clean = tricky.checked().expect("a document");
        assert_eq!(clean.title, "a ]52;c;bad b");
        assert_eq!(clean.body, "line\none [2J\ttab");
        link.url = Some("//evil.example/a".into());
        assert!(
            link.clone().checked().is_err(),
            "a protocol-relative link leaves the node"
        );
        link.url = Some("https://example.org/a".into());
        assert!(link.checked().is_ok());
        let mut d = Doc::new("k", Kind::Transaction, "t", "b");
        d.keys = vec!["0xABCDEF".into(), " ".into()];
        assert_eq!(d.checked().unwrap().keys, vec!["abcdef".to_string()]);
    }

    #[test]
    fn kinds_parse_with_aliases_and_name_the_known_ones() {
        assert_eq!(Kind::parse("TX").unwrap(), Kind::Transaction);
        assert_eq!(Kind::parse("findings").unwrap(), Kind::Audit);
        let e = Kind::parse("banana").unwrap_err().to_string();
        assert!(e.contains("banana") && e.contains("provider"), "{e}");
    }
}
