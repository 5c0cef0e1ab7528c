//! The output folder: `DIR/manifest.json` lists the partitions ingested, and
//! `DIR/<table>/<from>-<to>.parquet` holds one table's rows of blocks `from..=to` (zero-padded,
//! so names sort by height; a table without rows in a partition has no file). A partition's
//! files are written to temporary names, synced and renamed, then the manifest is replaced
//! the same way: after a crash, files the manifest does not list are deleted on the next open
//! and their blocks fetched again.

use crate::error::io;
use crate::tables::{TABLES, schema};
use crate::{Error, Result};
use agora_analytics::FileTable;
use agora_analytics::arrow::record_batch::RecordBatch;
use agora_analytics::datafusion::parquet::arrow::ArrowWriter;
use agora_analytics::datafusion::parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    chain_id: u64,
    partitions: Vec<Partition>,
}

/// A run of blocks ingested together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// Its first block.
    pub from: u64,
    /// Its last block.
    pub to: u64,
    /// The parent hash of block `from`.
    pub parent_hash: String,
    /// The hash of block `to`.
    pub hash: String,
    /// Rows per table (tables without rows are left out).
    pub rows: BTreeMap<String, u64>,
}

fn file(dir: &Path, table: &str, from: u64, to: u64) -> PathBuf {
    dir.join(table).join(format!("{from:012}-{to:012}.parquet"))
}

fn sync_dir(dir: &Path) {
    // A filesystem that cannot sync a folder still renamed the file.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `path` so that a crash leaves the old file or the new one, never part of one.
fn replace_file(
    path: &Path,
    write: impl FnOnce(std::fs::File) -> Result<std::fs::File>,
) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(io(&tmp, "creating"))?;
    let file = write(file)?;
    file.sync_all().map_err(io(&tmp, "syncing"))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io(path, "renaming into"))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent);
    }
    Ok(())
}

fn read_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path, "reading")(e)),
    };
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if manifest.format != FORMAT {
        return Err(Error::Manifest {
            path,
            reason: format!("layout {} (this agora writes {FORMAT})", manifest.format),
        });
    }
    let mut last: Option<u64> = None;
    for p in &manifest.partitions {
        if p.from > p.to || last.is_some_and(|l| p.from <= l) {
            return Err(Error::Manifest {
                path,
                reason: format!("partition {}-{} overlaps or is out of order", p.from, p.to),
            });
        }
        if let Some(t) = p.rows.keys().find(|t| !TABLES.contains(&t.as_str())) {
            return Err(Error::Manifest {
                path,
                reason: format!("unknown table `{t}`"),
            });
        }
        last = Some(p.to);
    }
    Ok(Some(manifest))
}

/// The partitions ingested into `dir` (none if nothing was).
pub fn partitions(dir: &Path) -> Result<Vec<Partition>> {
    Ok(read_manifest(dir)?
        .map(|m| m.partitions)
        .unwrap_or_default())
}

/// The tables ingested into `dir`, for [`agora_analytics::query_files`]: every table, with
/// the files the manifest lists (none for a table without rows yet).
pub fn file_tables(dir: &Path) -> Result<Vec<FileTable>> {
    let dir = std::path::absolute(dir).map_err(io(dir, "resolving"))?;
    let manifest = read_manifest(&dir)?;
    if manifest.is_none() {
        return Err(Error::Manifest {
            path: dir.join(MANIFEST),
            reason: "nothing was ingested here (no manifest)".into(),
        });
    }
    let partitions = manifest.map(|m| m.partitions).unwrap_or_default();
    Ok(TABLES
        .iter()
        .map(|table| FileTable {
            name: (*table).to_string(),
            schema: schema(table).expect("one of TABLES"),
            files: partitions
                .iter()
                .filter(|p| p.rows.get(*table).is_some_and(|n| *n > 0))
                .map(|p| file(&dir, table, p.from, p.to))
                .collect(),
        })
        .collect())
}

/// The output folder, open for writing.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    manifest: Manifest,
}

impl Store {
    /// Opens `dir` for chain `chain_id` (created if missing). Files the manifest does not
    /// list are deleted; a partition whose file is missing is dropped, to be fetched again.
    pub(crate) fn open(dir: &Path, chain_id: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(dir, "creating"))?;
        let manifest = match read_manifest(dir)? {
            Some(m) if m.chain_id != chain_id => {
                return Err(Error::OtherChain {
                    dir: dir.to_path_buf(),
                    stored: m.chain_id,
                    got: chain_id,
                });
            }
            Some(m) => m,
            None => Manifest {
                format: FORMAT,
                chain_id,
                partitions: Vec::new(),
            },
        };
        let mut store = Self {
            dir: dir.to_path_buf(),
            manifest,
        };
        let complete = |p: &Partition| p.rows.keys().all(|t| file(dir, t, p.from, p.to).is_file());
        let before = store.manifest.partitions.len();
        store.manifest.partitions.retain(|p| {
            let ok = complete(p);
            if !ok {
                tracing::warn!(
                    from = p.from,
                    to = p.to,
                    "a file of this partition is missing: ingesting it again"
                );
            }
            ok
        });
        if store.manifest.partitions.len() != before {
            store.save()?;
        }
        store.remove_strays()?;
        Ok(store)
    }

    fn remove_strays(&self) -> Result<()> {
        let listed: BTreeSet<PathBuf> = self
            .manifest
            .partitions
            .iter()
            .flat_map(|p| p.rows.keys().map(|t| file(&self.dir, t, p.from, p.to)))
            .collect();
        for table in TABLES {
            let folder = self.dir.join(table);
            let entries = match std::fs::read_dir(&folder) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&folder, "listing")(e)),
            };
            for entry in entries {
                let path = entry.map_err(io(&folder, "listing"))?.path();
                if path.is_file() && !listed.contains(&path) {
                    std::fs::remove_file(&path).map_err(io(&path, "removing"))?;
                }
            }
        }
        let tmp = self.dir.join(MANIFEST).with_extension("tmp");
        if tmp.exists() {
            std::fs::remove_file(&tmp).map_err(io(&tmp, "removing"))?;
        }
        Ok(())
    }

    fn save(&self) -> Result<()> {
        let path = self.dir.join(MANIFEST);
        let bytes = serde_json::to_vec_pretty(&self.manifest).map_err(|e| Error::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        replace_file(&path, |mut f| {
            f.write_all(&bytes).map_err(io(&path, "writing"))?;
            Ok(f)
        })
    }

    #[cfg(test)]
    fn partitions(&self) -> &[Partition] {
        &self.manifest.partitions
    }

    /// The blocks of `from..=to` not ingested yet, as ranges of at most `size` blocks that
    /// start at multiples of `size` (or where a gap starts).
    pub(crate) fn missing(&self, from: u64, to: u64, size: u64) -> Vec<(u64, u64)> {
        let size = size.max(1);
        let mut gaps = Vec::new();
        let mut next = Some(from);
        for p in &self.manifest.partitions {
            let Some(start) = next else { break };
            if p.to < start {
                continue;
            }
            if p.from > to {
                break;
            }
            if p.from > start {
                gaps.push((start, p.from - 1));
            }
            next = p.to.checked_add(1);
        }
        if let Some(start) = next
            && start <= to
        {
            gaps.push((start, to));
        }
        let mut ranges = Vec::new();
        for (mut a, b) in gaps {
            while a <= b {
                // The block before the next multiple of `size`; past u64's end, `b`.
                let end = (a / size + 1)
                    .checked_mul(size)
                    .map_or(b, |boundary| (boundary - 1).min(b));
                ranges.push((a, end));
                match end.checked_add(1) {
                    Some(n) => a = n,
                    None => break,
                }
            }
        }
        ranges
    }

    /// The partition that ends just before block `from`, and the one that starts just
    /// after block `to`.
    pub(crate) fn neighbours(
        &self,
        from: u64,
        to: u64,
    ) -> (Option<&Partition>, Option<&Partition>) {
        let before = from
            .checked_sub(1)
            .and_then(|b| self.manifest.partitions.iter().find(|p| p.to == b));
        let after = to
            .checked_add(1)
            .and_then(|a| self.manifest.partitions.iter().find(|p| p.from == a));
        (before, after)
    }

    /// Writes one partition's tables, then lists it in the manifest.
    pub(crate) fn write(
        &mut self,
        mut partition: Partition,
        batches: &[(&str, RecordBatch)],
    ) -> Result<()> {
        partition.rows.clear();
        for (table, batch) in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            let folder = self.dir.join(table);
            if !folder.exists() {
                std::fs::create_dir_all(&folder).map_err(io(&folder, "creating"))?;
                sync_dir(&self.dir);
            }
            let path = file(&self.dir, table, partition.from, partition.to);
            let parquet =
                |e: agora_analytics::datafusion::parquet::errors::ParquetError| Error::Parquet {
                    path: path.clone(),
                    reason: e.to_string(),
                };
            replace_file(&path, |f| {
                let props = WriterProperties::builder()
                    .set_max_row_group_row_count(Some(128 * 1024))
                    .build();
                let mut writer =
                    ArrowWriter::try_new(f, batch.schema(), Some(props)).map_err(parquet)?;
                writer.write(batch).map_err(parquet)?;
                writer.into_inner().map_err(parquet)
            })?;
            partition
                .rows
                .insert((*table).to_string(), batch.num_rows() as u64);
        }
        let at = self
            .manifest
            .partitions
            .partition_point(|p| p.from < partition.from);
        self.manifest.partitions.insert(at, partition);
        self.save()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(from: u64, to: u64) -> Partition {
        Partition {
            from,
            to,
            parent_hash: String::new(),
            hash: String::new(),
            rows: BTreeMap::new(),
        }
    }

    #[test]
    fn only_missing_blocks_are_fetched_in_aligned_ranges() {
        let dir = tempfile::tempdir().expect("a folder");
        let mut store = Store::open(dir.path(), 1).expect("opens");
        assert_eq!(store.missing(5, 25, 10), vec![(5, 9), (10, 19), (20, 25)]);
        store.write(partition(10, 19), &[]).expect("writes");
        store.write(partition(0, 3), &[]).expect("writes");
        assert_eq!(store.missing(0, 30, 10), vec![(4, 9), (20, 29), (30, 30)]);
        assert_eq!(store.missing(12, 18, 10), vec![]);
        assert_eq!(store.missing(15, 22, 10), vec![(20, 22)]);
        assert_eq!(store.missing(u64::MAX - 2, u64::MAX, 10).len(), 1);
        let (before, after) = store.neighbours(20, 29);
        assert_eq!((before.map(|p| p.to), after), (Some(19), None));
        // Reopened, the manifest is the same; another chain's folder is refused.
        let reopened = Store::open(dir.path(), 1).expect("reopens");
        assert_eq!(reopened.partitions(), store.partitions());
        let err = Store::open(dir.path(), 2).expect_err("another chain");
        assert!(
            matches!(
                err,
                Error::OtherChain {
                    stored: 1,
                    got: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_corrupt_manifest_is_a_clear_error_and_strays_are_removed() {
        let dir = tempfile::tempdir().expect("a folder");
        drop(Store::open(dir.path(), 1).expect("opens"));
        let stray = dir
            .path()
            .join("evm_logs")
            .join("000000000000-000000000009.parquet");
        std::fs::create_dir_all(stray.parent().expect("a folder")).expect("mkdir");
        std::fs::write(&stray, b"half a file").expect("writes");
        let mut store = Store::open(dir.path(), 1).expect("opens");
        assert!(!stray.exists(), "a file no manifest lists is removed");
        store.write(partition(0, 9), &[]).expect("writes");
        std::fs::write(dir.path().join(MANIFEST), b"{\"format\":1,").expect("writes");
        let err = Store::open(dir.path(), 1).expect_err("corrupt");
        assert!(
            err.to_string().contains("not a readable ingest manifest"),
            "{err}"
        );
    }
}
