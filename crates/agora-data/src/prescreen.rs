//! The AI pre-screen a drawn screener runs before any vote (DESIGN.md §8): the checks that need
//! no model (size, JSON, the bounty's schema, obvious spam), then near-duplicates against the
//! bounty's earlier items by MiniLM cosine similarity, with the bounty's threshold.
//!
//! Spam rules are general and each has its own examples in the tests:
//! - *no text*: an item whose string fields hold fewer than [`MIN_LETTERS`] letters or digits;
//! - *repeated characters*: at least 20 characters of text drawn from at most 5 distinct ones;
//! - *repeated words*: at least 12 words and fewer than a quarter of them distinct;
//! - *links only*: at least 3 links and links make more than half of the words;
//! - *symbols*: at least 20 characters and more than 60 % neither letters, digits nor spaces.

use agora_types::{BountySpec, RejectReason};
use serde_json::Value;

/// Fewest letters or digits an item's text has before it is more than noise.
pub const MIN_LETTERS: usize = 3;

/// Why an item fails the pre-screen, as its verdict says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The reason's code on chain.
    pub reason: RejectReason,
    /// For a duplicate: the earlier item.
    pub duplicate_of: Option<u32>,
    /// A short explanation (kept under the chain's bound).
    pub detail: String,
}

impl Rejection {
    fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        let mut detail: String = detail.into();
        if detail.len() > agora_types::MAX_SCREEN_DETAIL_BYTES {
            let mut cut = agora_types::MAX_SCREEN_DETAIL_BYTES;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        Rejection {
            reason,
            duplicate_of: None,
            detail,
        }
    }

    /// The verdict to post.
    pub fn verdict(&self) -> agora_types::ScreenVerdict {
        agora_types::ScreenVerdict::Reject {
            reason: self.reason,
            duplicate_of: self.duplicate_of,
            detail: self.detail.clone(),
        }
    }
}

/// A bounty's pre-screen: its schema compiled, its size bound and duplicate threshold.
pub struct Prescreen {
    schema: jsonschema::Validator,
    max_bytes: usize,
    /// Cosine similarity from which an item is a near-duplicate.
    pub threshold: f32,
}

impl std::fmt::Debug for Prescreen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prescreen")
            .field("max_bytes", &self.max_bytes)
            .field("threshold", &self.threshold)
            .finish()
    }
}

impl Prescreen {
    /// The pre-screen of a bounty. A schema that does not compile (a bad JSON Schema, a
    /// reference to another document) is an error: no item can be judged against it.
    pub fn new(spec: &BountySpec) -> Result<Self, String> {
        let schema: Value = serde_json::from_str(&spec.schema)
            .map_err(|e| format!("the bounty's schema is not JSON: {e}"))?;
        let schema = jsonschema::validator_for(&schema)
            .map_err(|e| format!("the bounty's schema is not a usable JSON Schema: {e}"))?;
        Ok(Prescreen {
            schema,
            max_bytes: spec.max_item_bytes as usize,
            threshold: f32::from(spec.duplicate_bps) / 10_000.0,
        })
    }

    /// The checks that need no model. Returns the item's text (its string fields, in order),
    /// which the near-duplicate check embeds.
    pub fn check(&self, bytes: &[u8]) -> Result<String, Rejection> {
        if bytes.is_empty() || bytes.len() > self.max_bytes {
            return Err(Rejection::new(
                RejectReason::TooLarge,
                format!(
                    "{} bytes; the bounty takes 1 to {}",
                    bytes.len(),
                    self.max_bytes
                ),
            ));
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| Rejection::new(RejectReason::Schema, format!("not JSON: {e}")))?;
        if let Some(e) = self.schema.iter_errors(&value).next() {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "the item".into() } else { at };
            return Err(Rejection::new(RejectReason::Schema, format!("{at}: {e}")));
        }
        let text = item_text(&value);
        if let Some(why) = spam(&text) {
            return Err(Rejection::new(RejectReason::Spam, why));
        }
        Ok(text)
    }
}

/// An item's text: its string values, depth first, joined by newlines.
pub fn item_text(value: &Value) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut parts = Vec::new();
    walk(value, &mut parts);
    parts.join("\n")
}

/// Why `text` is obvious spam, if it is (see the module's rules).
pub fn spam(text: &str) -> Option<String> {
    let letters = text.chars().filter(|c| c.is_alphanumeric()).count();
    if letters < MIN_LETTERS {
        return Some(format!(
            "no text: {letters} letters or digits in its string fields"
        ));
    }
    let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    if chars.len() >= 20 {
        let mut distinct = chars.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() <= 5 {
            return Some(format!(
                "repeated characters: {} distinct in {}",
                distinct.len(),
                chars.len()
            ));
        }
        let symbols = chars.iter().filter(|c| !c.is_alphanumeric()).count();
        if symbols * 10 > chars.len() * 6 {
            return Some(format!(
                "symbols, not text: {symbols} of {} characters",
                chars.len()
            ));
        }
    }
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    if words.len() >= 12 {
        let mut distinct = words.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() * 4 < words.len() {
            return Some(format!(
                "repeated words: {} distinct in {}",
                distinct.len(),
                words.len()
            ));
        }
    }
    let links = text
        .split_whitespace()
        .filter(|w| w.starts_with("http://") || w.starts_with("https://") || w.starts_with("www."))
        .count();
    let all_words = text.split_whitespace().count();
    if links >= 3 && links * 2 > all_words {
        return Some(format!("links only: {links} links in {all_words} words"));
    }
    None
}

/// Cosine similarity from which an item that is also lexically near (see [`LEXICAL_NEAR`]) is a
/// duplicate whatever the bounty's threshold: an edited copy (typos, a changed case, a filler
/// phrase) moves MiniLM's vector more than its meaning, since misspelt words split into other
/// word pieces.
pub const EDITED_COSINE: f32 = 0.7;

/// Jaccard similarity of character trigrams from which two texts are lexically near.
pub const LEXICAL_NEAR: f32 = 0.7;

/// Candidates, by cosine similarity, checked for the edited-copy rule.
const CANDIDATES: usize = 8;

/// An earlier item: its index, its unit vector, its text's character trigrams (hashed, sorted,
/// distinct).
#[derive(Debug, Clone)]
struct Earlier {
    index: u32,
    vector: Vec<f32>,
    trigrams: Vec<u32>,
}

/// The vectors and trigrams of a bounty's earlier items, to find near-duplicates. An item is a
/// near-duplicate of an earlier one when their MiniLM vectors are at least the bounty's
/// threshold alike (a paraphrase), or when they are at least [`EDITED_COSINE`] alike and share
/// at least [`LEXICAL_NEAR`] of their character trigrams (an edited copy). Vectors are unit
/// length (MiniLM's are), so cosine similarity is a dot product.
#[derive(Debug, Default, Clone)]
pub struct DuplicateIndex {
    items: Vec<Earlier>,
}

/// The hashed character trigrams of `text`, lower-cased with runs of spaces and punctuation made
/// one space: sorted and distinct.
pub fn trigrams(text: &str) -> Vec<u32> {
    let mut norm = String::with_capacity(text.len() + 2);
    norm.push(' ');
    for c in text.chars() {
        if c.is_alphanumeric() {
            norm.extend(c.to_lowercase());
        } else if !norm.ends_with(' ') {
            norm.push(' ');
        }
    }
    if !norm.ends_with(' ') {
        norm.push(' ');
    }
    let chars: Vec<char> = norm.chars().collect();
    let mut out: Vec<u32> = chars
        .windows(3)
        .map(|w| {
            let mut buf = [0u8; 12];
            let mut n = 0;
            for c in w {
                n += c.encode_utf8(&mut buf[n..]).len();
            }
            let h = blake3::hash(&buf[..n]);
            u32::from_le_bytes(h.as_bytes()[..4].try_into().expect("4 bytes"))
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Jaccard similarity of two sorted, distinct sets.
pub fn jaccard(a: &[u32], b: &[u32]) -> f32 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    both as f32 / (a.len() + b.len() - both) as f32
}

impl DuplicateIndex {
    /// An empty index.
    pub fn new() -> Self {
        DuplicateIndex::default()
    }

    /// Items in it.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds no item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds item `index`: its vector and its text.
    pub fn add(&mut self, index: u32, vector: Vec<f32>, text: &str) {
        self.items.push(Earlier {
            index,
            vector,
            trigrams: trigrams(text),
        });
    }

    /// The earlier items (below `before`) most alike by cosine similarity, best first (the
    /// earlier item first on a tie), with their similarity.
    fn candidates(&self, vector: &[f32], before: u32) -> Vec<(&Earlier, f32)> {
        let mut all: Vec<(&Earlier, f32)> = self
            .items
            .iter()
            .filter(|e| e.index < before)
            .map(|e| (e, dot(&e.vector, vector)))
            .collect();
        let by = |a: &(&Earlier, f32), b: &(&Earlier, f32)| {
            b.1.total_cmp(&a.1).then(a.0.index.cmp(&b.0.index))
        };
        if all.len() > CANDIDATES {
            all.select_nth_unstable_by(CANDIDATES - 1, by);
            all.truncate(CANDIDATES);
        }
        all.sort_by(by);
        all
    }

    /// The most similar earlier item (below `before`) and its cosine similarity.
    pub fn nearest(&self, vector: &[f32], before: u32) -> Option<(u32, f32)> {
        self.candidates(vector, before)
            .first()
            .map(|(e, s)| (e.index, *s))
    }

    /// The rejection of item `index` (text `text`, vector `vector`) if it is a near-duplicate
    /// of an earlier item (see [`DuplicateIndex`]): the most similar such item.
    pub fn duplicate(
        &self,
        vector: &[f32],
        text: &str,
        index: u32,
        threshold: f32,
    ) -> Option<Rejection> {
        let mine = trigrams(text);
        self.candidates(vector, index)
            .into_iter()
            .find_map(|(e, cos)| {
                if cos >= threshold {
                    return Some((e.index, cos, None));
                }
                if cos < EDITED_COSINE {
                    return None;
                }
                let lex = jaccard(&mine, &e.trigrams);
                (lex >= LEXICAL_NEAR).then_some((e.index, cos, Some(lex)))
            })
            .map(|(of, cos, lex)| Rejection {
                reason: RejectReason::Duplicate,
                duplicate_of: Some(of),
                detail: match lex {
                    None => format!(
                        "cosine similarity {cos:.3} with item {of} (the bounty's threshold {threshold:.3})"
                    ),
                    Some(l) => format!(
                        "an edited copy of item {of}: cosine similarity {cos:.3}, {:.0} % of its character trigrams",
                        l * 100.0
                    ),
                },
            })
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
