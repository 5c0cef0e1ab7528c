//! The index: documents and vectors in redb (the record), a tantivy index for full text and an
//! HNSW graph for vectors, both derived from the record.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hnsw_rs::prelude::{Distance, Hnsw};
use parking_lot::{Mutex, RwLock};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, Occur, Query as TantivyQuery, QueryParser, RangeQuery, TermQuery,
};
use tantivy::schema::{
    Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
    Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::Error;
use crate::doc::{Doc, Kind, normalize_key};
use crate::embed::Embed;

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 1_000;
/// Most hits one search returns.
pub const MAX_LIMIT: usize = 100;
/// Candidates each ranking contributes to the fusion.
const CANDIDATES: usize = 100;
/// Reciprocal-rank fusion's constant (Cormack et al.): a hit at rank r scores 1/(K + r).
const RRF_K: f64 = 60.0;
/// Below this many matching documents a filtered vector search compares them all (exact).
const EXACT_BELOW: usize = 20_000;
/// Texts embedded per call while indexing.
const EMBED_BATCH: usize = 256;
/// HNSW: links per node and the breadth of the search while building and querying.
const HNSW_M: usize = 16;
const HNSW_EF_BUILD: usize = 200;
const HNSW_EF_SEARCH: usize = 128;
const HNSW_LAYERS: usize = 16;
/// Characters around the matched words in a snippet.
const SNIPPET_CHARS: usize = 220;

const DOCS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("docs");
/// Per document: the 32-byte hash of the text it was computed from, then the vector (f32, LE).
const VECTORS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("vectors");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
/// Marks the index's users keep with the documents ([`SearchIndex::apply`]).
const MARKS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("marks");
/// Counts writes; the full-text index carries the count it was committed at, and is rebuilt
/// from the record when the two differ (a crash between them).
const GENERATION: &str = "generation";
const MODEL: &str = "model";

/// A document being written: its text's hash and its vector (once known).
type Pending = (Doc, [u8; 32], Option<Vec<f32>>);

/// How the results are ranked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// BM25 and vectors fused by reciprocal rank.
    #[default]
    Hybrid,
    Bm25,
    Vector,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, Error> {
        match s {
            "hybrid" => Ok(Mode::Hybrid),
            "bm25" | "text" => Ok(Mode::Bm25),
            "vector" | "vectors" => Ok(Mode::Vector),
            other => Err(Error::UnknownFilter(format!(
                "mode `{other}` (known: hybrid, bm25, vector)"
            ))),
        }
    }
}

/// Restrictions a hit must meet; all of them at once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    /// Any of these kinds (none: every kind).
    #[serde(default)]
    pub kinds: Vec<Kind>,
    /// Made or changed at or after, in Unix milliseconds.
    #[serde(default)]
    pub since_ms: Option<i64>,
    /// Made or changed at or before.
    #[serde(default)]
    pub until_ms: Option<i64>,
    /// Concerning this account.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub subnet: Option<u16>,
}

impl Filters {
    fn is_empty(&self) -> bool {
        self.kinds.is_empty()
            && self.since_ms.is_none()
            && self.until_ms.is_none()
            && self.address.is_none()
            && self.subnet.is_none()
    }

    fn admits(&self, slot: &Slot) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&slot.kind))
            && self.since_ms.is_none_or(|t| slot.time_ms >= t)
            && self.until_ms.is_none_or(|t| slot.time_ms <= t)
            && self.subnet.is_none_or(|s| slot.subnet == Some(s))
            && self
                .address
                .as_ref()
                .is_none_or(|a| slot.addresses.iter().any(|x| x == a))
    }
}

/// A search.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    pub text: String,
    #[serde(default)]
    pub filters: Filters,
    #[serde(default = "default_limit")]
    pub limit: usize,
    #[serde(default)]
    pub mode: Mode,
}

fn default_limit() -> usize {
    10
}

impl Query {
    pub fn new(text: impl Into<String>) -> Self {
        Query {
            text: text.into(),
            filters: Filters::default(),
            limit: default_limit(),
            mode: Mode::Hybrid,
        }
    }

    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    pub fn filters(mut self, filters: Filters) -> Self {
        self.filters = filters;
        self
    }
}

/// One result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub id: String,
    pub kind: Kind,
    pub title: String,
    /// A passage of the body, HTML-escaped, the query's words in `<b>`.
    pub snippet: String,
    pub url: Option<String>,
    pub time_ms: i64,
    /// The fused score (higher is better).
    pub score: f64,
    /// Its rank by words (1-based), when the words found it.
    pub bm25_rank: Option<usize>,
    /// Its rank by meaning, when the vectors found it.
    pub vector_rank: Option<usize>,
    /// The query was this object's identifier.
    pub exact: bool,
}

/// What the index holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub docs: u64,
    pub vectors: u64,
    /// Slots of replaced or removed documents still in the graph (compacted past a bound).
    pub dead_slots: u64,
    pub model: String,
    /// Bytes on disk (record and full-text index).
    pub disk_bytes: u64,
}

#[derive(Debug)]
struct Fields {
    id: Field,
    kind: Field,
    title: Field,
    body: Field,
    time: Field,
    address: Field,
    subnet: Field,
    key: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("en_stem")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        kind: b.add_text_field("kind", STRING),
        title: b.add_text_field("title", text.clone()),
        body: b.add_text_field("body", text),
        time: b.add_i64_field("time", INDEXED),
        address: b.add_text_field("address", STRING),
        subnet: b.add_u64_field("subnet", INDEXED),
        key: b.add_text_field("key", STRING),
    };
    (b.build(), fields)
}

/// Cosine distance of unit vectors, never below 0 (rounding can make a dot product exceed 1).
#[derive(Debug, Default, Clone, Copy)]
struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// Dot product in eight lanes (the compiler vectorizes it).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// What a filtered vector search needs of a document, kept beside the graph.
#[derive(Debug, Clone)]
struct Slot {
    id: Arc<str>,
    kind: Kind,
    time_ms: i64,
    subnet: Option<u16>,
    addresses: Box<[String]>,
    live: bool,
    /// The graph point of its vector.
    point: usize,
}

impl Slot {
    fn of(doc: &Doc) -> Slot {
        Slot {
            id: Arc::from(doc.id.as_str()),
            kind: doc.kind,
            time_ms: doc.time_ms,
            subnet: doc.subnet,
            addresses: doc.addresses.clone().into_boxed_slice(),
            live: true,
            point: usize::MAX,
        }
    }
}

/// One point of the graph: a text's vector, shared by every document of that text (every
/// transfer has its gist's). Identical points would crowd each other's links in the graph and
/// cut the rest off.
#[derive(Clone, Default)]
struct Point {
    /// The live slots whose vector it is.
    slots: BTreeSet<usize>,
    /// Its vector, for exact comparisons.
    data: Box<[f32]>,
}

struct Vectors {
    graph: Hnsw<'static, f32, UnitCosine>,
    /// By the graph's data id.
    points: Vec<Point>,
    /// Each text's point, by the text's hash (kept while its slots come and go).
    by_text: BTreeMap<[u8; 32], usize>,
    slots: Vec<Slot>,
    /// Each live document's slot.
    by_id: BTreeMap<Arc<str>, usize>,
    /// The live slots about each account: a feed or an address filter reads these, not every
    /// slot.
    by_address: BTreeMap<String, BTreeSet<usize>>,
    /// The live slots of each subnet.
    by_subnet: BTreeMap<u16, BTreeSet<usize>>,
}

impl std::fmt::Debug for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Point({} documents)", self.slots.len())
    }
}

impl std::fmt::Debug for Vectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vectors")
            .field("points", &self.points.len())
            .field("slots", &self.slots.len())
            .field("live", &self.by_id.len())
            .finish()
    }
}

impl Vectors {
    fn new(capacity: usize) -> Vectors {
        Vectors {
            graph: Hnsw::new(
                HNSW_M,
                capacity.max(10_000),
                HNSW_LAYERS,
                HNSW_EF_BUILD,
                UnitCosine,
            ),
            points: Vec::new(),
            by_text: BTreeMap::new(),
            slots: Vec::new(),
            by_id: BTreeMap::new(),
            by_address: BTreeMap::new(),
            by_subnet: BTreeMap::new(),
        }
    }

    fn remove(&mut self, id: &str) {
        let Some(i) = self.by_id.remove(id) else {
            return;
        };
        let slot = &mut self.slots[i];
        slot.live = false;
        if let Some(p) = self.points.get_mut(slot.point) {
            p.slots.remove(&i);
        }
        for a in slot.addresses.iter() {
            if let Some(set) = self.by_address.get_mut(a) {
                set.remove(&i);
                if set.is_empty() {
                    self.by_address.remove(a);
                }
            }
        }
        if let Some(n) = slot.subnet
            && let Some(set) = self.by_subnet.get_mut(&n)
        {
            set.remove(&i);
            if set.is_empty() {
                self.by_subnet.remove(&n);
            }
        }
    }

    /// The live slots `filters` may admit: those about its account, or of its subnet, or all
    /// (each still to be checked with [`Filters::admits`]).
    fn candidates<'a>(&'a self, filters: &Filters) -> Box<dyn Iterator<Item = usize> + 'a> {
        if let Some(a) = &filters.address {
            Box::new(self.by_address.get(a).into_iter().flatten().copied())
        } else if let Some(n) = filters.subnet {
            Box::new(self.by_subnet.get(&n).into_iter().flatten().copied())
        } else {
            Box::new(self.by_id.values().copied())
        }
    }

    /// Adds documents with their texts' hashes and vectors (replacing earlier ones); a text
    /// new to the graph becomes a point, the insertions in parallel.
    fn add(&mut self, items: Vec<(Slot, [u8; 32], Vec<f32>)>) {
        let mut fresh: Vec<(Vec<f32>, usize)> = Vec::new();
        for (mut slot, hash, v) in items {
            let id = slot.id.clone();
            self.remove(&id);
            let i = self.slots.len();
            let p = match self.by_text.get(&hash) {
                Some(&p) => p,
                None => {
                    let p = self.points.len();
                    self.points.push(Point {
                        slots: BTreeSet::new(),
                        data: v.clone().into_boxed_slice(),
                    });
                    self.by_text.insert(hash, p);
                    fresh.push((v, p));
                    p
                }
            };
            self.points[p].slots.insert(i);
            slot.point = p;
            self.by_id.insert(id, i);
            for a in slot.addresses.iter() {
                self.by_address.entry(a.clone()).or_default().insert(i);
            }
            if let Some(n) = slot.subnet {
                self.by_subnet.entry(n).or_default().insert(i);
            }
            self.slots.push(slot);
        }
        let data: Vec<(&Vec<f32>, usize)> = fresh.iter().map(|(v, p)| (v, *p)).collect();
        if !data.is_empty() {
            self.graph.parallel_insert(&data);
        }
    }

    /// The `matching` documents (live, admitted by the filters), compared with `v` one by one:
    /// at most `k`, nearest first; documents of one text, by id.
    fn exact(&self, v: &[f32], matching: &[usize], k: usize) -> Vec<(String, f32)> {
        let mut by_point: BTreeMap<usize, Vec<&Slot>> = BTreeMap::new();
        for &s in matching {
            let slot = &self.slots[s];
            by_point.entry(slot.point).or_default().push(slot);
        }
        let mut scored: Vec<(f32, Vec<&Slot>)> = by_point
            .into_iter()
            .filter_map(|(p, mut slots)| {
                let pt = self.points.get(p)?;
                slots.sort_by(|a, b| a.id.cmp(&b.id));
                Some((dot(v, &pt.data), slots))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1[0].id.cmp(&b.1[0].id)));
        scored
            .into_iter()
            .flat_map(|(sim, slots)| slots.into_iter().map(move |s| (s.id.to_string(), sim)))
            .take(k)
            .collect()
    }

    /// The documents of the graph's answer that `wanted` admits (all live ones if none), at
    /// most `k`, nearest first; documents of one text, newest first.
    fn expand(
        &self,
        found: Vec<hnsw_rs::prelude::Neighbour>,
        wanted: Option<&[bool]>,
        k: usize,
    ) -> Vec<(String, f32)> {
        let mut out = Vec::new();
        for n in found {
            let Some(pt) = self.points.get(n.d_id) else {
                continue;
            };
            for &s in pt.slots.iter().rev() {
                if out.len() == k {
                    return out;
                }
                if wanted.is_none_or(|w| w.get(s).copied().unwrap_or(false)) {
                    out.push((self.slots[s].id.to_string(), 1.0 - n.distance));
                }
            }
        }
        out
    }

    /// Slots of documents removed or replaced since the graph was built.
    fn dead(&self) -> usize {
        self.slots.len() - self.by_id.len()
    }
}

struct Text {
    index: Index,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    f: Fields,
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Text").field("fields", &self.f).finish()
    }
}

/// One write of [`SearchIndex::apply`].
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Documents added or replaced.
    pub upsert: Vec<Doc>,
    /// Ids of documents removed.
    pub remove: Vec<String>,
    /// Marks set, `(key, value)`.
    pub marks: Vec<(String, Vec<u8>)>,
}

/// The search index of one node.
#[derive(Debug)]
pub struct SearchIndex {
    dir: PathBuf,
    db: redb::Database,
    text: Text,
    vectors: RwLock<Vectors>,
    embed: Arc<dyn Embed>,
    /// One writer at a time (the record, then the derived indexes, in that order).
    write: Mutex<()>,
    /// The vectors of texts embedded lately: repeated queries, and documents that share their
    /// text's meaning (every transfer's gist), cost no model pass (nor a paid job).
    cache: Mutex<VectorCache>,
}

/// Vectors embedded lately, by blake3 of their text; the least recently used goes first.
#[derive(Default)]
struct VectorCache {
    by_text: BTreeMap<[u8; 32], (u64, Arc<[f32]>)>,
    by_use: BTreeMap<u64, [u8; 32]>,
    tick: u64,
}

impl std::fmt::Debug for VectorCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VectorCache({} vectors)", self.by_text.len())
    }
}

/// Vectors the cache keeps (about 6 MiB at 384 dimensions).
const CACHED_VECTORS: usize = 4_096;

impl VectorCache {
    fn get(&mut self, key: &[u8; 32]) -> Option<Arc<[f32]>> {
        self.tick += 1;
        let tick = self.tick;
        let (used, v) = self.by_text.get_mut(key)?;
        self.by_use.remove(used);
        *used = tick;
        self.by_use.insert(tick, *key);
        Some(v.clone())
    }

    fn put(&mut self, key: [u8; 32], v: &[f32]) {
        self.tick += 1;
        if let Some((used, _)) = self.by_text.insert(key, (self.tick, Arc::from(v))) {
            self.by_use.remove(&used);
        }
        self.by_use.insert(self.tick, key);
        while self.by_text.len() > CACHED_VECTORS {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.by_text.remove(&oldest);
        }
    }
}

fn vector_bytes(hash: &[u8; 32], v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 4 * v.len());
    out.extend_from_slice(hash);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn parse_vector(bytes: &[u8], dim: usize) -> Option<([u8; 32], Vec<f32>)> {
    if bytes.len() != 32 + 4 * dim {
        return None;
    }
    let hash: [u8; 32] = bytes[..32].try_into().ok()?;
    let v = bytes[32..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some((hash, v))
}

fn text_hash(doc: &Doc) -> [u8; 32] {
    *blake3::hash(doc.embed_text().as_bytes()).as_bytes()
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

impl SearchIndex {
    /// Opens (or creates) the index in `dir`. The full-text index is rebuilt from the record
    /// when it is missing, unreadable or behind; vectors made by another model are made again.
    pub fn open(dir: &Path, embed: Arc<dyn Embed>) -> Result<SearchIndex, Error> {
        std::fs::create_dir_all(dir)?;
        let db = redb::Database::create(dir.join("record.redb"))?;
        let generation;
        {
            let tx = db.begin_write()?;
            tx.open_table(DOCS)?;
            tx.open_table(VECTORS)?;
            tx.open_table(MARKS)?;
            let meta = tx.open_table(META)?;
            generation = read_generation(&meta)?;
            drop(meta);
            tx.commit()?;
        }
        let text = open_text(&dir.join("text"), generation)?;
        let index = SearchIndex {
            dir: dir.to_path_buf(),
            db,
            text: text.0,
            vectors: RwLock::new(Vectors::new(0)),
            embed,
            write: Mutex::new(()),
            cache: Mutex::new(VectorCache::default()),
        };
        if text.1 {
            tracing::info!("search: rebuilding the full-text index from the record");
            index.rebuild_text(generation)?;
        }
        index.load_vectors()?;
        Ok(index)
    }

    /// Number of documents.
    pub fn len(&self) -> Result<u64, Error> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(DOCS)?.len()?)
    }

    pub fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len()? == 0)
    }

    pub fn stats(&self) -> Result<Stats, Error> {
        let v = self.vectors.read();
        Ok(Stats {
            docs: self.len()?,
            vectors: v.by_id.len() as u64,
            dead_slots: v.dead() as u64,
            model: self.embed.model(),
            disk_bytes: dir_size(&self.dir),
        })
    }

    /// The document with this id.
    pub fn get(&self, id: &str) -> Result<Option<Doc>, Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(DOCS)?;
        match t.get(id)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Adds or replaces documents (by id; the last of a repeated id wins). Unchanged documents
    /// cost nothing; a changed text is embedded again. Returns how many changed.
    pub fn upsert(&self, docs: Vec<Doc>) -> Result<usize, Error> {
        self.apply(Batch {
            upsert: docs,
            ..Batch::default()
        })
    }

    /// Removes documents by id; returns how many were there.
    pub fn remove(&self, ids: &[&str]) -> Result<usize, Error> {
        self.apply(Batch {
            remove: ids.iter().map(|s| s.to_string()).collect(),
            ..Batch::default()
        })
    }

    /// Whether the index holds document `id`.
    pub fn contains(&self, id: &str) -> Result<bool, Error> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(DOCS)?.get(id)?.is_some())
    }

    /// Ids of documents starting with `prefix`, in order (at most `limit`).
    pub fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>, Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(DOCS)?;
        let mut out = Vec::new();
        for entry in t.range(prefix..)? {
            let (k, _) = entry?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    /// A mark written by [`SearchIndex::apply`] (a follower's position, a setting).
    pub fn mark(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(MARKS)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// The marks whose keys start with `prefix`, in key order (at most `limit`).
    pub fn marks(&self, prefix: &str, limit: usize) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(MARKS)?;
        let mut out = Vec::new();
        for entry in t.range(prefix..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Writes a batch in one transaction of the record: documents added or replaced (by id;
    /// the last of a repeated id wins), documents removed (after the additions), and marks, so
    /// that a follower's position moves with the documents it wrote or not at all. Unchanged
    /// documents cost nothing; a changed text is embedded again (before anything is written).
    /// Returns how many documents changed.
    pub fn apply(&self, batch: Batch) -> Result<usize, Error> {
        let mut by_id: BTreeMap<String, Doc> = BTreeMap::new();
        for d in batch.upsert {
            let d = d.checked()?;
            by_id.insert(d.id.clone(), d);
        }
        let removing: BTreeSet<String> = batch.remove.into_iter().collect();
        for id in &removing {
            by_id.remove(id);
        }
        // The model's passes come before the write lock: other writers (a preferences update,
        // a published report) do not wait behind a batch's embeddings.
        let ready = self.vectors_needed(&by_id)?;
        let _w = self.write.lock();
        // What changed, and which texts need a vector.
        let model_dim = self.embed.dim();
        let mut changed: Vec<Pending> = Vec::new();
        let mut removed = Vec::new();
        {
            let tx = self.db.begin_read()?;
            let docs_t = tx.open_table(DOCS)?;
            let vec_t = tx.open_table(VECTORS)?;
            for (id, doc) in by_id {
                let json = serde_json::to_vec(&doc)?;
                if docs_t
                    .get(id.as_str())?
                    .is_some_and(|old| old.value() == json)
                {
                    continue;
                }
                let hash = text_hash(&doc);
                let kept = vec_t
                    .get(id.as_str())?
                    .and_then(|old| parse_vector(old.value(), model_dim))
                    .filter(|(h, _)| *h == hash)
                    .map(|(_, v)| v);
                changed.push((doc, hash, kept));
            }
            for id in removing {
                if docs_t.get(id.as_str())?.is_some() {
                    removed.push(id);
                }
            }
        }
        if changed.is_empty() && removed.is_empty() && batch.marks.is_empty() {
            return Ok(0);
        }
        for (_, hash, v) in changed.iter_mut() {
            if v.is_none() {
                *v = ready.get(hash).cloned();
            }
        }
        // A text changed since (another writer came first) is embedded here.
        self.embed_missing(&mut changed)?;
        let derived = !changed.is_empty() || !removed.is_empty();
        // The record first…
        let mut generation = 0;
        {
            let tx = self.db.begin_write()?;
            {
                let mut docs_t = tx.open_table(DOCS)?;
                let mut vec_t = tx.open_table(VECTORS)?;
                for (doc, hash, v) in &changed {
                    let v = v.as_deref().unwrap_or_default();
                    docs_t.insert(doc.id.as_str(), serde_json::to_vec(doc)?.as_slice())?;
                    vec_t.insert(doc.id.as_str(), vector_bytes(hash, v).as_slice())?;
                }
                for id in &removed {
                    docs_t.remove(id.as_str())?;
                    vec_t.remove(id.as_str())?;
                }
                let mut marks = tx.open_table(MARKS)?;
                for (k, v) in &batch.marks {
                    marks.insert(k.as_str(), v.as_slice())?;
                }
                if derived {
                    let mut meta = tx.open_table(META)?;
                    generation = read_generation(&meta)? + 1;
                    meta.insert(GENERATION, generation.to_le_bytes().as_slice())?;
                    meta.insert(MODEL, self.embed.model().as_bytes())?;
                }
            }
            tx.commit()?;
        }
        if !derived {
            return Ok(0);
        }
        // …then what is derived from it. The record has moved on: if this fails, the derived
        // indexes are made again from it, so they never stay behind while reporting a match.
        let n = changed.len() + removed.len();
        if let Err(e) = self.derive(changed, &removed, generation) {
            tracing::error!("search: updating the derived indexes failed ({e}); rebuilding them");
            self.rebuild_text(generation)?;
            self.load_vectors()?;
        }
        Ok(n)
    }

    /// The full-text index and the graph after a write of the record.
    fn derive(
        &self,
        changed: Vec<Pending>,
        removed: &[String],
        generation: u64,
    ) -> Result<(), Error> {
        {
            let mut writer = self.text.writer.lock();
            for (doc, _, _) in &changed {
                writer.delete_term(Term::from_field_text(self.text.f.id, &doc.id));
                writer.add_document(self.text_doc(doc))?;
            }
            for id in removed {
                writer.delete_term(Term::from_field_text(self.text.f.id, id));
            }
            commit_text(&mut writer, generation)?;
        }
        self.text.reader.reload()?;
        let items = changed
            .into_iter()
            .map(|(doc, hash, v)| (Slot::of(&doc), hash, v.unwrap_or_default()))
            .collect();
        let mut vectors = self.vectors.write();
        for id in removed {
            vectors.remove(id);
        }
        vectors.add(items);
        let compact = vectors.dead() > vectors.by_id.len().max(1_000);
        drop(vectors);
        if compact {
            self.load_vectors()?;
        }
        Ok(())
    }

    /// The vectors of the documents whose stored vector is not of their text, by text hash,
    /// computed without the write lock.
    fn vectors_needed(
        &self,
        docs: &BTreeMap<String, Doc>,
    ) -> Result<BTreeMap<[u8; 32], Vec<f32>>, Error> {
        let model_dim = self.embed.dim();
        let mut texts = BTreeMap::new();
        {
            let tx = self.db.begin_read()?;
            let vec_t = tx.open_table(VECTORS)?;
            for (id, doc) in docs {
                let hash = text_hash(doc);
                let kept = vec_t
                    .get(id.as_str())?
                    .and_then(|old| parse_vector(old.value(), model_dim))
                    .is_some_and(|(h, _)| h == hash);
                if !kept && !texts.contains_key(&hash) {
                    texts.insert(hash, doc.embed_text());
                }
            }
        }
        self.embed_texts(texts)
    }

    /// Gives each changed document without a vector its vector.
    fn embed_missing(&self, changed: &mut [Pending]) -> Result<(), Error> {
        let texts = changed
            .iter()
            .filter(|p| p.2.is_none())
            .map(|(d, h, _)| (*h, d.embed_text()))
            .collect();
        let vectors = self.embed_texts(texts)?;
        for (_, h, v) in changed.iter_mut() {
            if v.is_none() {
                *v = vectors.get(h).cloned();
            }
        }
        Ok(())
    }

    /// The vectors of texts, by their hash: from the cache, or embedded (each text once).
    fn embed_texts(
        &self,
        texts: BTreeMap<[u8; 32], String>,
    ) -> Result<BTreeMap<[u8; 32], Vec<f32>>, Error> {
        let mut out = BTreeMap::new();
        let mut todo = Vec::new();
        {
            let mut cache = self.cache.lock();
            for (hash, text) in texts {
                match cache.get(&hash) {
                    Some(v) => {
                        out.insert(hash, v.to_vec());
                    }
                    None => todo.push((hash, text)),
                }
            }
        }
        for chunk in todo.chunks(EMBED_BATCH) {
            let refs: Vec<&str> = chunk.iter().map(|(_, t)| t.as_str()).collect();
            let vectors = self.embed.embed(&refs)?;
            if vectors.len() != chunk.len() {
                return Err(Error::Embed(format!(
                    "{} vectors for {} texts",
                    vectors.len(),
                    chunk.len()
                )));
            }
            let mut cache = self.cache.lock();
            for ((hash, _), v) in chunk.iter().zip(vectors) {
                self.check_vector(&v)?;
                cache.put(*hash, &v);
                out.insert(*hash, v);
            }
        }
        Ok(out)
    }

    fn text_doc(&self, doc: &Doc) -> TantivyDocument {
        let f = &self.text.f;
        let mut d = TantivyDocument::default();
        d.add_text(f.id, &doc.id);
        d.add_text(f.kind, doc.kind.as_str());
        d.add_text(f.title, &doc.title);
        d.add_text(f.body, &doc.body);
        d.add_i64(f.time, doc.time_ms);
        for a in &doc.addresses {
            d.add_text(f.address, a);
        }
        if let Some(s) = doc.subnet {
            d.add_u64(f.subnet, u64::from(s));
        }
        for k in &doc.keys {
            d.add_text(f.key, k);
        }
        d.add_text(f.key, normalize_key(&doc.id));
        d
    }

    /// Indexes every document of the record again.
    fn rebuild_text(&self, generation: u64) -> Result<(), Error> {
        let mut writer = self.text.writer.lock();
        writer.delete_all_documents()?;
        let tx = self.db.begin_read()?;
        let docs_t = tx.open_table(DOCS)?;
        for entry in docs_t.iter()? {
            let (_, bytes) = entry?;
            let doc: Doc = serde_json::from_slice(bytes.value())?;
            writer.add_document(self.text_doc(&doc))?;
        }
        commit_text(&mut writer, generation)?;
        drop(writer);
        self.text.reader.reload()?;
        Ok(())
    }

    /// Builds the vector graph from the record; vectors of another model are made again first.
    fn load_vectors(&self) -> Result<(), Error> {
        let dim = self.embed.dim();
        let model = self.embed.model();
        let stale_model = {
            let tx = self.db.begin_read()?;
            let meta = tx.open_table(META)?;
            meta.get(MODEL)?
                .is_some_and(|m| m.value() != model.as_bytes())
        };
        if stale_model {
            tracing::info!("search: the embedding model changed; computing every vector again");
            self.reembed_all()?;
        }
        let tx = self.db.begin_read()?;
        let docs_t = tx.open_table(DOCS)?;
        let vec_t = tx.open_table(VECTORS)?;
        let mut items = Vec::with_capacity(docs_t.len()? as usize);
        for entry in docs_t.iter()? {
            let (id, bytes) = entry?;
            let doc: Doc = serde_json::from_slice(bytes.value())?;
            let v = vec_t
                .get(id.value())?
                .and_then(|b| parse_vector(b.value(), dim))
                .ok_or_else(|| {
                    Error::Store(format!("no vector of the right size for {:?}", doc.id))
                })?;
            items.push((Slot::of(&doc), v.0, v.1));
        }
        // Oldest first, as documents arrive: of documents sharing a text, the newest come first.
        items.sort_by(|a, b| (a.0.time_ms, &a.0.id).cmp(&(b.0.time_ms, &b.0.id)));
        let mut fresh = Vectors::new(items.len());
        fresh.add(items);
        *self.vectors.write() = fresh;
        Ok(())
    }

    fn reembed_all(&self) -> Result<(), Error> {
        let docs: Vec<Doc> = {
            let tx = self.db.begin_read()?;
            let docs_t = tx.open_table(DOCS)?;
            docs_t
                .iter()?
                .map(|e| -> Result<Doc, Error> { Ok(serde_json::from_slice(e?.1.value())?) })
                .collect::<Result<_, _>>()?
        };
        for chunk in docs.chunks(EMBED_BATCH) {
            let mut changed: Vec<_> = chunk
                .iter()
                .map(|d| (d.clone(), text_hash(d), None))
                .collect();
            self.embed_missing(&mut changed)?;
            let tx = self.db.begin_write()?;
            {
                let mut vec_t = tx.open_table(VECTORS)?;
                for (doc, hash, v) in &changed {
                    let v = v.as_deref().unwrap_or_default();
                    vec_t.insert(doc.id.as_str(), vector_bytes(hash, v).as_slice())?;
                }
            }
            tx.commit()?;
        }
        let tx = self.db.begin_write()?;
        tx.open_table(META)?
            .insert(MODEL, self.embed.model().as_bytes())?;
        tx.commit()?;
        Ok(())
    }

    /// Runs a search.
    pub fn search(&self, q: &Query) -> Result<Vec<Hit>, Error> {
        let text = q.text.trim();
        if text.is_empty() {
            return Err(Error::EmptyQuery);
        }
        let chars = text.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(Error::QueryTooLong {
                chars,
                max: MAX_QUERY_CHARS,
            });
        }
        let limit = q.limit.clamp(1, MAX_LIMIT);
        let mut filters = q.filters.clone();
        filters.address = filters.address.as_deref().map(normalize_key);
        let searcher = self.text.reader.searcher();
        let parser = {
            let mut p =
                QueryParser::for_index(&self.text.index, vec![self.text.f.title, self.text.f.body]);
            p.set_field_boost(self.text.f.title, 2.0);
            p
        };
        let (words, _) = parser.parse_query_lenient(&plain_words(text));

        // An identifier typed in whole goes straight to its object.
        // Only what looks like one (a digit or a `kind:` prefix): a plain word always searches.
        if !text.contains(char::is_whitespace)
            && text.contains(|c: char| c.is_ascii_digit() || c == ':')
        {
            let key = normalize_key(text);
            let exact = TermQuery::new(
                Term::from_field_text(self.text.f.key, &key),
                IndexRecordOption::Basic,
            );
            let found = searcher.search(&exact, &TopDocs::with_limit(limit).order_by_score())?;
            if !found.is_empty() {
                let ids = self.ids_of(&searcher, found.iter().map(|(_, a)| *a))?;
                let ranked: Vec<(String, f64, Option<usize>, Option<usize>)> =
                    ids.into_iter().map(|id| (id, 1.0, None, None)).collect();
                return self.hits(&searcher, &*words, ranked, true);
            }
        }

        let by_words = if q.mode == Mode::Vector {
            Vec::new()
        } else {
            let mut clauses: Vec<(Occur, Box<dyn TantivyQuery>)> =
                vec![(Occur::Must, words.box_clone())];
            clauses.extend(self.filter_clauses(&filters));
            let query = BooleanQuery::new(clauses);
            let found =
                searcher.search(&query, &TopDocs::with_limit(CANDIDATES).order_by_score())?;
            self.ids_of(&searcher, found.iter().map(|(_, a)| *a))?
        };
        let by_meaning = if q.mode == Mode::Bm25 {
            Vec::new()
        } else {
            self.vector_search(text, &filters, CANDIDATES)?
        };

        // Reciprocal-rank fusion.
        let mut fused: BTreeMap<String, (f64, Option<usize>, Option<usize>)> = BTreeMap::new();
        for (rank, id) in by_words.into_iter().enumerate() {
            let e = fused.entry(id).or_insert((0.0, None, None));
            e.0 += 1.0 / (RRF_K + (rank + 1) as f64);
            e.1 = Some(rank + 1);
        }
        for (rank, id) in by_meaning.into_iter().enumerate() {
            let e = fused.entry(id).or_insert((0.0, None, None));
            e.0 += 1.0 / (RRF_K + (rank + 1) as f64);
            e.2 = Some(rank + 1);
        }
        let mut ranked: Vec<(String, f64, Option<usize>, Option<usize>)> = fused
            .into_iter()
            .map(|(id, (s, w, m))| (id, s, w, m))
            .collect();
        // Ties (same fused score) go to the better single rank, then the id: stable results.
        ranked.sort_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then_with(|| best(a).cmp(&best(b)))
                .then_with(|| a.0.cmp(&b.0))
        });
        ranked.truncate(limit);
        self.hits(&searcher, &*words, ranked, false)
    }

    fn filter_clauses(&self, filters: &Filters) -> Vec<(Occur, Box<dyn TantivyQuery>)> {
        let f = &self.text.f;
        let mut out: Vec<(Occur, Box<dyn TantivyQuery>)> = Vec::new();
        if !filters.kinds.is_empty() {
            let kinds: Vec<(Occur, Box<dyn TantivyQuery>)> = filters
                .kinds
                .iter()
                .map(|k| {
                    let q: Box<dyn TantivyQuery> = Box::new(TermQuery::new(
                        Term::from_field_text(f.kind, k.as_str()),
                        IndexRecordOption::Basic,
                    ));
                    (Occur::Should, q)
                })
                .collect();
            out.push((Occur::Must, Box::new(BooleanQuery::new(kinds))));
        }
        if filters.since_ms.is_some() || filters.until_ms.is_some() {
            let lower = filters.since_ms.map_or(Bound::Unbounded, |t| {
                Bound::Included(Term::from_field_i64(f.time, t))
            });
            let upper = filters.until_ms.map_or(Bound::Unbounded, |t| {
                Bound::Included(Term::from_field_i64(f.time, t))
            });
            out.push((Occur::Must, Box::new(RangeQuery::new(lower, upper))));
        }
        if let Some(a) = &filters.address {
            out.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.address, a),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if let Some(s) = filters.subnet {
            out.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(f.subnet, u64::from(s)),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        out
    }

    /// Ids of the nearest documents by meaning that pass the filters, nearest first.
    fn vector_search(&self, text: &str, filters: &Filters, k: usize) -> Result<Vec<String>, Error> {
        let v = self.embed_query(text)?;
        Ok(self
            .nearest(&v, filters, k)?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// The model's vector of `text` (unit length), from the cache when it was embedded lately.
    pub fn embed_query(&self, text: &str) -> Result<Vec<f32>, Error> {
        let key = *blake3::hash(text.as_bytes()).as_bytes();
        if let Some(v) = self.cache.lock().get(&key) {
            return Ok(v.to_vec());
        }
        let v = self
            .embed
            .embed(&[text])?
            .pop()
            .ok_or_else(|| Error::Embed("no vector for the query".into()))?;
        self.check_vector(&v)?;
        self.cache.lock().put(key, &v);
        Ok(v)
    }

    /// Forgets the vectors kept from recent embeddings (a benchmark times the model's pass).
    pub fn clear_cache(&self) {
        *self.cache.lock() = VectorCache::default();
    }

    fn check_vector(&self, v: &[f32]) -> Result<(), Error> {
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::Embed(
                "the model returned a vector with a NaN or infinite number".into(),
            ));
        }
        if v.len() != self.embed.dim() {
            return Err(Error::Embed(format!(
                "a vector of {} numbers (expected {})",
                v.len(),
                self.embed.dim()
            )));
        }
        Ok(())
    }

    /// The stored vector of a document.
    pub fn vector(&self, id: &str) -> Result<Option<Vec<f32>>, Error> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(VECTORS)?;
        Ok(t.get(id)?
            .and_then(|b| parse_vector(b.value(), self.embed.dim()))
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty()))
    }

    /// The newest documents that pass `filters` (by their time, then id), at most `limit`.
    pub fn recent(&self, filters: &Filters, limit: usize) -> Result<Vec<Doc>, Error> {
        let mut filters = filters.clone();
        filters.address = filters.address.as_deref().map(normalize_key);
        let mut found: Vec<(i64, Arc<str>)> = {
            let vectors = self.vectors.read();
            vectors
                .candidates(&filters)
                .map(|i| &vectors.slots[i])
                .filter(|s| filters.admits(s))
                .map(|s| (s.time_ms, s.id.clone()))
                .collect()
        };
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        found.truncate(limit);
        let tx = self.db.begin_read()?;
        let docs_t = tx.open_table(DOCS)?;
        let mut out = Vec::with_capacity(found.len());
        for (_, id) in found {
            if let Some(bytes) = docs_t.get(&*id)? {
                out.push(serde_json::from_slice(bytes.value())?);
            }
        }
        Ok(out)
    }

    /// The documents nearest `v` (a unit vector) that pass `filters`, with their cosine
    /// similarity, best first.
    pub fn nearest(
        &self,
        v: &[f32],
        filters: &Filters,
        k: usize,
    ) -> Result<Vec<(String, f32)>, Error> {
        let mut filters = filters.clone();
        filters.address = filters.address.as_deref().map(normalize_key);
        let filters = &filters;
        let vectors = self.vectors.read();
        if filters.is_empty() {
            let found = vectors.graph.search_filter(
                v,
                k,
                HNSW_EF_SEARCH.max(k),
                Some(&|p: &usize| {
                    vectors
                        .points
                        .get(*p)
                        .is_some_and(|pt| !pt.slots.is_empty())
                }),
            );
            return Ok(vectors.expand(found, None, k));
        }
        let matching: Vec<usize> = vectors
            .candidates(filters)
            .filter(|&i| filters.admits(&vectors.slots[i]))
            .collect();
        if matching.len() > EXACT_BELOW {
            // The points and slots the filters admit, marked once: the graph's filter is then
            // a lookup, and a text shared by many documents is not scanned again.
            let mut points = vec![false; vectors.points.len()];
            let mut slots = vec![false; vectors.slots.len()];
            for &s in &matching {
                slots[s] = true;
                points[vectors.slots[s].point] = true;
            }
            let found = vectors.graph.search_filter(
                v,
                k,
                (HNSW_EF_SEARCH * 2).max(k),
                Some(&|p: &usize| points.get(*p).copied().unwrap_or(false)),
            );
            return Ok(vectors.expand(found, Some(&slots), k));
        }
        // Few enough to compare them all: exact.
        Ok(vectors.exact(v, &matching, k))
    }

    fn ids_of(
        &self,
        searcher: &tantivy::Searcher,
        addresses: impl Iterator<Item = tantivy::DocAddress>,
    ) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        for a in addresses {
            let d: TantivyDocument = searcher.doc(a)?;
            if let Some(id) = d.get_first(self.text.f.id).and_then(|v| v.as_str()) {
                out.push(id.to_string());
            }
        }
        Ok(out)
    }

    fn hits(
        &self,
        searcher: &tantivy::Searcher,
        words: &dyn TantivyQuery,
        ranked: Vec<(String, f64, Option<usize>, Option<usize>)>,
        exact: bool,
    ) -> Result<Vec<Hit>, Error> {
        let mut snippets = SnippetGenerator::create(searcher, words, self.text.f.body).ok();
        if let Some(g) = snippets.as_mut() {
            g.set_max_num_chars(SNIPPET_CHARS);
        }
        let tx = self.db.begin_read()?;
        let docs_t = tx.open_table(DOCS)?;
        let mut out = Vec::with_capacity(ranked.len());
        for (id, score, bm25_rank, vector_rank) in ranked {
            let Some(bytes) = docs_t.get(id.as_str())? else {
                continue; // removed meanwhile
            };
            let doc: Doc = serde_json::from_slice(bytes.value())?;
            let snippet = snippets
                .as_ref()
                .map(|g| g.snippet(&doc.body))
                .filter(|s| !s.is_empty() && !s.highlighted().is_empty())
                .map(|s| s.to_html())
                .unwrap_or_else(|| {
                    let mut start = doc.body.clone();
                    crate::doc::cut(&mut start, SNIPPET_CHARS);
                    html_escape(&start)
                });
            out.push(Hit {
                id: doc.id,
                kind: doc.kind,
                title: doc.title,
                snippet,
                url: doc.url,
                time_ms: doc.time_ms,
                score,
                bm25_rank,
                vector_rank,
                exact,
            });
        }
        Ok(out)
    }
}

/// A search box's text as words for the query parser: its operators and field syntax are
/// spaces (a user's `ERC-20` or `a:b` is words, not syntax); balanced double quotes stay phrases.
fn plain_words(text: &str) -> String {
    let keep_quotes = text.matches('"').count().is_multiple_of(2);
    let spaced: String = text
        .chars()
        .map(|c| match c {
            '"' if keep_quotes => '"',
            '+' | '-' | '&' | '|' | '!' | '(' | ')' | '{' | '}' | '[' | ']' | '^' | '"' | '~'
            | '*' | '?' | ':' | '\\' | '/' | '<' | '>' | '=' | '\'' => ' ',
            c => c,
        })
        .collect();
    spaced
        .split_whitespace()
        .map(|w| match w {
            "AND" | "OR" | "NOT" | "IN" => w.to_lowercase(),
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn best(r: &(String, f64, Option<usize>, Option<usize>)) -> usize {
    r.2.unwrap_or(usize::MAX).min(r.3.unwrap_or(usize::MAX))
}

fn read_generation(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64, Error> {
    Ok(meta
        .get(GENERATION)?
        .and_then(|g| <[u8; 8]>::try_from(g.value()).ok())
        .map_or(0, u64::from_le_bytes))
}

fn commit_text(writer: &mut IndexWriter, generation: u64) -> Result<(), Error> {
    let mut prepared = writer.prepare_commit()?;
    prepared.set_payload(&generation.to_string());
    prepared.commit()?;
    Ok(())
}

/// Opens the full-text index at `path`, or makes an empty one; the flag says it must be filled
/// from the record (new, unreadable, another schema, or committed at another generation).
fn open_text(path: &Path, generation: u64) -> Result<(Text, bool), Error> {
    let (schema, f) = schema();
    let existing = Index::open_in_dir(path)
        .ok()
        .filter(|i| i.schema() == schema);
    let (index, rebuild) = match existing {
        Some(index) => {
            let current = index
                .load_metas()
                .ok()
                .and_then(|m| m.payload)
                .and_then(|p| p.parse::<u64>().ok());
            let behind = current != Some(generation);
            (index, behind)
        }
        None => {
            if path.exists() {
                tracing::warn!(
                    "search: the full-text index at {} is unreadable; rebuilding it",
                    path.display()
                );
                std::fs::remove_dir_all(path)?;
            }
            std::fs::create_dir_all(path)?;
            (Index::create_in_dir(path, schema)?, generation > 0)
        }
    };
    let writer = index.writer_with_num_threads(1, 50_000_000)?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()?;
    Ok((
        Text {
            index,
            writer: Mutex::new(writer),
            reader,
            f,
        },
        rebuild,
    ))
}
