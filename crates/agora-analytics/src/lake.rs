//! The history tables on disk: immutable Parquet segments by height range, and the rows of the
//! blocks since the last segment in memory (the tail), so a block's rows are queryable as soon
//! as it commits.
//!
//! Layout: `DIR/manifest.json` lists the segments; `DIR/<table>/<from>-<to>.parquet` holds one
//! table's rows of blocks `from..=to` (zero-padded heights, so names sort by height). A segment
//! is written to a temporary name, synced and renamed, then the manifest is replaced the same
//! way: a crash at any point leaves either the old manifest (the new files are deleted as
//! strays on the next open and rebuilt from the store) or the new one. The tail is never
//! written: on open it is rebuilt from the store, which keeps every committed block. The tables
//! are derived data; deleting `DIR` only costs a rebuild.

use crate::tables::{BlockData, HISTORY, Rows};
use crate::{Error, Result};
use arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A segment closes after this many blocks…
pub(crate) const SEGMENT_BLOCKS: u64 = 2048;
/// …or this many rows in all tables, whichever comes first.
pub(crate) const SEGMENT_ROWS: usize = 1 << 20;
/// Small batches of a table's tail are merged once there are this many.
const TAIL_BATCHES: usize = 64;
const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 3;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// Layout version: another one is rebuilt from the store.
    format: u32,
    /// The chain these tables are of: another chain's are rebuilt.
    chain_id: String,
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Segment {
    from: u64,
    to: u64,
    /// Tables with rows in this range (the others have none), and their row counts.
    tables: Vec<(String, u64)>,
    /// The hash of block `to`: tables of another history are found by it.
    hash: String,
}

impl Manifest {
    fn indexed_to(&self) -> Option<u64> {
        self.segments.last().map(|s| s.to)
    }
}

/// What a query sees of the history tables: the segment files and the tail, at one height.
#[derive(Clone, Debug, Default)]
pub(crate) struct View {
    /// Per table (in [`HISTORY`]'s order): its segment files, oldest first.
    pub(crate) files: Vec<Vec<PathBuf>>,
    /// Per table: the tail's batches.
    pub(crate) tail: Vec<Vec<RecordBatch>>,
    /// The last block in the tables (`None`: none yet).
    pub(crate) height: Option<u64>,
}

/// The history tables of one chain.
#[derive(Debug)]
pub(crate) struct Lake {
    dir: PathBuf,
    manifest: Manifest,
    rows: Rows,
    tail: Vec<Vec<RecordBatch>>,
    tail_from: Option<u64>,
    tail_rows: usize,
    height: Option<u64>,
    /// The hash of block `height`.
    hash: Option<String>,
    segment_blocks: u64,
}

fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> Error + use<> {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

fn segment_file(dir: &Path, table: &str, from: u64, to: u64) -> PathBuf {
    dir.join(table).join(format!("{from:012}-{to:012}.parquet"))
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one.
fn replace_file(path: &Path, write: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp, "creating"))?;
    write(&mut file)?;
    file.sync_all().map_err(io(&tmp, "syncing"))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io(path, "renaming into"))?;
    if let Some(parent) = path.parent()
        && let Ok(dir) = std::fs::File::open(parent)
    {
        // The rename itself must survive a crash; a filesystem that cannot sync a directory
        // still renamed the file.
        let _ = dir.sync_all();
    }
    Ok(())
}

/// How a segment's Parquet file is written (row groups of 128 Ki rows).
pub fn segment_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(128 * 1024))
        .build()
}

impl Lake {
    /// Opens the tables in `dir` (created if missing) for chain `chain_id`: the manifest's
    /// segments are kept, anything else in the folder is deleted. A manifest of another chain
    /// or layout, or one that cannot be read, starts the tables again from nothing.
    pub(crate) fn open(dir: &Path, chain_id: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(dir, "creating"))?;
        let path = dir.join(MANIFEST);
        let manifest = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(m) if m.format == FORMAT && m.chain_id == chain_id => m,
                Ok(_) => {
                    tracing::info!(dir = %dir.display(), "analytics tables of another chain or layout: rebuilding");
                    Manifest::default()
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "unreadable analytics manifest ({e}): rebuilding");
                    Manifest::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(e) => return Err(io(&path, "reading")(e)),
        };
        let mut manifest = Manifest {
            format: FORMAT,
            chain_id: chain_id.to_string(),
            ..manifest
        };
        // A segment whose file is gone (a crash before its folder was synced, a hand that
        // deleted it) ends the tables there: it and later ones are rebuilt from the store.
        if let Some(missing) = manifest.segments.iter().position(|seg| {
            seg.tables
                .iter()
                .any(|(table, _)| !segment_file(dir, table, seg.from, seg.to).exists())
        }) {
            tracing::warn!(dir = %dir.display(), "an analytics segment file is missing: rebuilding from there");
            manifest.segments.truncate(missing);
        }
        let lake = Self {
            dir: dir.to_path_buf(),
            height: manifest.indexed_to(),
            manifest,
            rows: Rows::default(),
            tail: vec![Vec::new(); HISTORY.len()],
            tail_from: None,
            tail_rows: 0,
            hash: None,
            segment_blocks: SEGMENT_BLOCKS,
        };
        lake.remove_strays()?;
        Ok(lake)
    }

    /// Deletes files in the tables' folders that the manifest does not list: segments written
    /// by a run that crashed before its manifest, temporary files.
    fn remove_strays(&self) -> Result<()> {
        let mut keep = BTreeSet::new();
        for s in &self.manifest.segments {
            for (table, _) in &s.tables {
                keep.insert(segment_file(&self.dir, table, s.from, s.to));
            }
        }
        for table in HISTORY {
            let folder = self.dir.join(table.name);
            let entries = match std::fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&folder, "listing")(e)),
            };
            for entry in entries {
                let path = entry.map_err(io(&folder, "listing"))?.path();
                if !keep.contains(&path) {
                    std::fs::remove_file(&path).map_err(io(&path, "removing a stray file"))?;
                }
            }
        }
        // The manifest's own temporary file.
        let _ = std::fs::remove_file(self.dir.join(MANIFEST).with_extension("tmp"));
        Ok(())
    }

    /// Closes segments after `blocks` blocks (tests use small ones).
    pub(crate) fn set_segment_blocks(&mut self, blocks: u64) {
        self.segment_blocks = blocks.max(1);
    }

    /// The last block in the tables.
    pub(crate) fn height(&self) -> Option<u64> {
        self.height
    }

    /// Adds a committed block: the next height, or it is refused (the caller catches up from
    /// the store instead).
    pub(crate) fn add(&mut self, block: &BlockData<'_>) -> Result<()> {
        let height = block.height;
        let next = self.height.map_or(0, |h| h + 1);
        if height != next {
            return Err(Error::OutOfOrder {
                expected: next,
                got: height,
            });
        }
        self.rows.add_block(block);
        for (t, batch) in self.rows.finish().into_iter().enumerate() {
            if batch.num_rows() == 0 {
                continue;
            }
            self.tail_rows += batch.num_rows();
            let tail = &mut self.tail[t];
            tail.push(batch);
            if tail.len() >= TAIL_BATCHES {
                let merged = arrow::compute::concat_batches(&HISTORY[t].schema(), tail.iter())
                    .map_err(|e| Error::Internal(format!("merging batches: {e}")))?;
                *tail = vec![merged];
            }
        }
        self.tail_from.get_or_insert(height);
        self.height = Some(height);
        self.hash = Some(block.hash.to_hex());
        let blocks = height + 1 - self.tail_from.unwrap_or(height);
        if blocks >= self.segment_blocks || self.tail_rows >= SEGMENT_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the tail as a segment and forgets it.
    pub(crate) fn flush(&mut self) -> Result<()> {
        let (Some(from), Some(to)) = (self.tail_from, self.height) else {
            return Ok(());
        };
        let mut tables = Vec::new();
        for (t, def) in HISTORY.iter().enumerate() {
            let batches = &self.tail[t];
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if rows == 0 {
                continue;
            }
            let folder = self.dir.join(def.name);
            if !folder.exists() {
                std::fs::create_dir_all(&folder).map_err(io(&folder, "creating"))?;
                if let Ok(parent) = std::fs::File::open(&self.dir) {
                    let _ = parent.sync_all();
                }
            }
            let path = segment_file(&self.dir, def.name, from, to);
            replace_file(&path, |file| {
                let mut writer =
                    ArrowWriter::try_new(file, def.schema(), Some(segment_properties()))
                        .map_err(|e| Error::Internal(format!("writing {}: {e}", path.display())))?;
                for batch in batches {
                    writer
                        .write(batch)
                        .map_err(|e| Error::Internal(format!("writing {}: {e}", path.display())))?;
                }
                writer
                    .close()
                    .map_err(|e| Error::Internal(format!("writing {}: {e}", path.display())))?;
                Ok(())
            })?;
            tables.push((def.name.to_string(), rows as u64));
        }
        let mut manifest = self.manifest.clone();
        manifest.segments.push(Segment {
            from,
            to,
            tables,
            hash: self.hash.clone().unwrap_or_default(),
        });
        let path = self.dir.join(MANIFEST);
        let bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Internal(format!("encoding the manifest: {e}")))?;
        replace_file(&path, |file| {
            file.write_all(&bytes).map_err(io(&path, "writing"))
        })?;
        self.manifest = manifest;
        self.tail = vec![Vec::new(); HISTORY.len()];
        self.tail_from = None;
        self.tail_rows = 0;
        Ok(())
    }

    /// What a query sees now.
    pub(crate) fn view(&self) -> View {
        let files = HISTORY
            .iter()
            .map(|def| {
                self.manifest
                    .segments
                    .iter()
                    .filter(|s| s.tables.iter().any(|(t, _)| t == def.name))
                    .map(|s| segment_file(&self.dir, def.name, s.from, s.to))
                    .collect()
            })
            .collect();
        View {
            files,
            tail: self.tail.clone(),
            height: self.height,
        }
    }

    /// The last segment's last block: its height and hash.
    pub(crate) fn last_segment(&self) -> Option<(u64, &str)> {
        self.manifest
            .segments
            .last()
            .map(|s| (s.to, s.hash.as_str()))
    }

    /// Forgets every row, on disk and in memory.
    pub(crate) fn reset(&mut self) -> Result<()> {
        let path = self.dir.join(MANIFEST);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, "removing")(e)),
        }
        self.manifest.segments.clear();
        self.remove_strays()?;
        self.rows = Rows::default();
        self.tail = vec![Vec::new(); HISTORY.len()];
        self.tail_from = None;
        self.tail_rows = 0;
        self.height = None;
        self.hash = None;
        Ok(())
    }

    /// Segments on disk.
    pub(crate) fn segments(&self) -> usize {
        self.manifest.segments.len()
    }
}
