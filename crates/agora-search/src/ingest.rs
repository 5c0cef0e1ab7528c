//! Content from outside the chain: RSS, Atom and JSON feeds fetched over HTTP (`feed-rs`), and
//! folders of Markdown or text. Each source is bounded: the bytes read, the time a fetch may take,
//! the items kept, the files read; a source that breaks a bound is an error naming it, and the
//! index is untouched.

use crate::{Doc, Error, Kind, SearchIndex};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Most bytes of a feed read.
pub const MAX_FEED_BYTES: u64 = 4 << 20;
/// Most items of one feed kept (the first ones: feeds put the newest first).
pub const MAX_ITEMS: usize = 500;
/// How long a fetch may take, in all.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Most files of a folder read.
pub const MAX_FILES: usize = 5_000;
/// Largest file of a folder read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

fn ingest_err(source: &str, why: impl std::fmt::Display) -> Error {
    Error::Ingest(format!("{source}: {why}"))
}

/// A source's name for ids: lowercase letters, digits, dots and dashes.
pub fn source_name(s: &str) -> String {
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split(['/', '?', '#']).next().unwrap_or(s);
    let name: String = host
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() { "feed".into() } else { name }
}

/// Text of an HTML fragment: tags out, common entities decoded, whitespace folded.
pub fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The documents of a feed's bytes (RSS 0.x/1.0/2.0, Atom or JSON Feed; the encoding its XML
/// declares), `source` naming it in their ids.
pub fn feed_docs(source: &str, bytes: &[u8]) -> Result<Vec<Doc>, Error> {
    let feed = feed_rs::parser::parse(bytes)
        .map_err(|e| ingest_err(source, format!("not a feed: {e}")))?;
    let name = source_name(source);
    let mut docs = Vec::new();
    for entry in feed.entries.into_iter().take(MAX_ITEMS) {
        let title = entry
            .title
            .map(|t| html_text(&t.content))
            .filter(|t| !t.is_empty());
        let body = entry
            .content
            .and_then(|c| c.body)
            .or(entry.summary.map(|s| s.content))
            .map(|b| html_text(&b))
            .unwrap_or_default();
        let Some(title) =
            title.or_else(|| (!body.is_empty()).then(|| body.chars().take(80).collect()))
        else {
            continue; // nothing to show or find
        };
        let key = if entry.id.is_empty() {
            format!("{title}\n{body}")
        } else {
            entry.id.clone()
        };
        let hash = blake3::hash(key.as_bytes()).to_hex();
        let url = entry
            .links
            .iter()
            .map(|l| l.href.trim())
            .find(|h| h.starts_with("https://") || h.starts_with("http://"))
            .filter(|h| h.len() <= crate::doc::MAX_URL)
            .map(str::to_string);
        let time = entry
            .published
            .or(entry.updated)
            .map_or(0, |t| t.timestamp_millis().max(0));
        docs.push(Doc {
            time_ms: time,
            url,
            ..Doc::new(
                format!("article:{name}/{}", &hash[..16]),
                Kind::Article,
                title,
                body,
            )
        });
    }
    Ok(docs)
}

/// Fetches a feed over HTTP(S) (at most [`MAX_FEED_BYTES`], within `timeout`) and makes its
/// documents.
pub fn fetch_feed(url: &str, timeout: Duration) -> Result<Vec<Doc>, Error> {
    Ok(fetch_feed_if_changed(url, timeout, &mut Validators::default())?.unwrap_or_default())
}

/// What a server said identifies the version of a feed it sent (`ETag`, `Last-Modified`): the
/// next fetch asks for the feed only if it changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Longest validator kept (a server's header, sent back as is).
const MAX_VALIDATOR: usize = 256;

/// [`fetch_feed`], conditional on `seen`: `None` when the server says the feed has not changed
/// since (HTTP 304); `seen` is updated from the answer.
pub fn fetch_feed_if_changed(
    url: &str,
    timeout: Duration,
    seen: &mut Validators,
) -> Result<Option<Vec<Doc>>, Error> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ingest_err(url, "a feed's address is http:// or https://"));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent
        .get(url)
        .header("Accept", "application/rss+xml, application/atom+xml, application/feed+json, application/xml, application/json;q=0.9, */*;q=0.5");
    if let Some(etag) = &seen.etag {
        request = request.header("If-None-Match", etag);
    }
    if let Some(date) = &seen.last_modified {
        request = request.header("If-Modified-Since", date);
    }
    let mut answer = request.call().map_err(|e| ingest_err(url, e))?;
    let status = answer.status().as_u16();
    if status == 304 {
        return Ok(None);
    }
    if status != 200 {
        return Err(ingest_err(url, format!("the server answered {status}")));
    }
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= MAX_VALIDATOR)
            .map(str::to_string)
    };
    let fresh = Validators {
        etag: header("etag"),
        last_modified: header("last-modified"),
    };
    let mut bytes = Vec::new();
    answer
        .body_mut()
        .as_reader()
        .take(MAX_FEED_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ingest_err(url, e))?;
    if bytes.len() as u64 > MAX_FEED_BYTES {
        return Err(ingest_err(
            url,
            format!("larger than {} MiB", MAX_FEED_BYTES >> 20),
        ));
    }
    let docs = feed_docs(url, &bytes)?;
    // Kept only once the feed is read: a broken answer is asked for in full next time.
    *seen = fresh;
    Ok(Some(docs))
}

/// The Markdown and text files under `dir` (`.md`, `.markdown`, `.txt`), one document each
/// (`article:<source>/<path>`); files over [`MAX_FILE_BYTES`] or not UTF-8 are left out.
pub fn folder_docs(dir: &Path, source: &str) -> Result<Vec<Doc>, Error> {
    if !dir.is_dir() {
        return Err(ingest_err(&dir.display().to_string(), "not a folder"));
    }
    let name = source_name(source);
    let mut docs = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)?.flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let text_file = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "md" | "markdown" | "txt"));
            if !meta.is_file() || !text_file {
                continue;
            }
            seen += 1;
            if seen > MAX_FILES {
                return Err(ingest_err(
                    &dir.display().to_string(),
                    format!("more than {MAX_FILES} files"),
                ));
            }
            if meta.len() > MAX_FILE_BYTES {
                tracing::warn!("search: leaving out {} (over 1 MiB)", path.display());
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                tracing::warn!("search: leaving out {} (not UTF-8)", path.display());
                continue;
            };
            let rel = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            let title = text
                .lines()
                .map(|l| l.trim_start_matches('#').trim())
                .find(|l| !l.is_empty())
                .unwrap_or(rel.as_str())
                .to_string();
            let time = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            docs.push(Doc {
                time_ms: time,
                ..Doc::new(format!("article:{name}/{rel}"), Kind::Article, title, text)
            });
        }
    }
    Ok(docs)
}

/// Where outside content comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An RSS, Atom or JSON feed's URL.
    Feed(String),
    /// A folder of Markdown or text files.
    Folder(std::path::PathBuf),
}

impl Source {
    /// The name a folder's documents carry in their ids: its own name and a short hash of its
    /// whole path (two folders called `docs` are two sources).
    pub fn folder_name(dir: &Path) -> String {
        let leaf = dir
            .file_name()
            .map_or_else(|| "folder".into(), |n| n.to_string_lossy().to_string());
        let whole = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let hash = blake3::hash(whole.to_string_lossy().as_bytes()).to_hex();
        // Short enough that `source_name` keeps it whole, hash included.
        let leaf: String = source_name(&leaf).chars().take(48).collect();
        format!("{leaf}-{}", &hash[..8])
    }

    /// The source's documents, now.
    pub fn docs(&self) -> Result<Vec<Doc>, Error> {
        match self {
            Source::Feed(url) => fetch_feed(url, FETCH_TIMEOUT),
            Source::Folder(dir) => folder_docs(dir, &Self::folder_name(dir)),
        }
    }

    /// Reads the source into `index`: a feed's items (if it changed since `seen`) are added
    /// or updated, and stay when they leave the feed (a feed lists only its latest items); a
    /// folder's files are added or updated, and those it no longer holds removed. Returns how
    /// many documents changed.
    pub fn read_into(&self, index: &SearchIndex, seen: &mut Validators) -> Result<usize, Error> {
        match self {
            Source::Feed(url) => match fetch_feed_if_changed(url, FETCH_TIMEOUT, seen)? {
                Some(docs) => index.upsert(docs),
                None => Ok(0),
            },
            Source::Folder(dir) => {
                let docs = self.docs()?;
                let prefix = format!("article:{}/", source_name(&Self::folder_name(dir)));
                let now: std::collections::BTreeSet<&str> =
                    docs.iter().map(|d| d.id.as_str()).collect();
                let gone: Vec<String> = index
                    .ids_with_prefix(&prefix, 4 * MAX_FILES)?
                    .into_iter()
                    .filter(|id| !now.contains(id.as_str()))
                    .collect();
                index.apply(crate::Batch {
                    upsert: docs,
                    remove: gone,
                    marks: Vec::new(),
                })
            }
        }
    }
}

type Stop = Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>;

/// Reads its sources into an index now and every `every`, on a thread of its own, until
/// dropped. A source that fails is reported and tried again next time; the others go on.
#[derive(Debug)]
pub struct Ingester {
    stop: Stop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ingester {
    pub fn start(
        index: Arc<SearchIndex>,
        sources: Vec<Source>,
        every: Duration,
    ) -> Result<Ingester, Error> {
        let stop: Stop = Arc::new((parking_lot::Mutex::new(false), parking_lot::Condvar::new()));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("search-ingest".into())
            .spawn(move || {
                let mut seen = vec![Validators::default(); sources.len()];
                loop {
                    for (source, seen) in sources.iter().zip(&mut seen) {
                        if *stopped.0.lock() {
                            return;
                        }
                        match source.read_into(&index, seen) {
                            Ok(n) => {
                                tracing::info!("search: {source:?}: {n} documents new or changed")
                            }
                            Err(e) => tracing::warn!("search: {e}"),
                        }
                    }
                    let mut done = stopped.0.lock();
                    if !*done {
                        stopped.1.wait_for(&mut done, every);
                    }
                    if *done {
                        return;
                    }
                }
            })?;
        Ok(Ingester {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ingester {
    fn drop(&mut self) {
        // Not joined: a fetch under way ends within its time limit, and then the thread.
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        drop(self.thread.take());
    }
}
