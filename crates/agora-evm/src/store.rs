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
    /// Each table file's size in bytes: a file of another size is not this partition's.
    #[serde(default)]
    pub bytes: BTreeMap<String, u64>,
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
    // A leftover (or a link planted there) is removed, never written through.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&tmp, "removing")(e)),
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io(&tmp, "creating"))?;
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

/// The last block of the range that starts at `a`: the block before the next multiple of
/// `size`, at most `b` (and `b` past u64's end).
fn chunk_end(a: u64, b: u64, size: u64) -> u64 {
    (a / size + 1)
        .checked_mul(size)
        .map_or(b, |boundary| (boundary - 1).min(b))
}

/// The output folder, open for writing.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    manifest: Manifest,
    /// Held while the store is open: one writer per folder.
    _lock: std::fs::File,
}

/// Whether `name` is one this store writes in a table's folder (`<from>-<to>.parquet`, or
/// `.tmp` while being written).
fn ours(name: &str) -> bool {
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    let Some((a, b)) = stem.split_once('-') else {
        return false;
    };
    matches!(ext, "parquet" | "tmp")
        && [a, b]
            .iter()
            .all(|n| n.len() == 12 && n.bytes().all(|c| c.is_ascii_digit()))
}

/// A table's folder: a real directory, never a link (nothing outside `DIR` is touched).
fn real_dir(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(Error::Manifest {
            path: path.to_path_buf(),
            reason: "is not a plain folder (a link or a file?): move it away".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(path, "reading")(e)),
    }
}

impl Store {
    /// Opens `dir` for chain `chain_id` (created if missing). Files the manifest does not
    /// list are deleted; a partition whose file is missing is dropped, to be fetched again.
    pub(crate) fn open(dir: &Path, chain_id: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(dir, "creating"))?;
        let lock_path = dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path, "opening"))?;
        if lock.try_lock().is_err() {
            return Err(Error::Range(format!(
                "another ingest is writing to {}: wait for it to finish",
                dir.display()
            )));
        }
        let stored = read_manifest(dir)?;
        if stored.is_none() {
            // Data files without a manifest are not this tool's to delete.
            for table in TABLES {
                let folder = dir.join(table);
                if real_dir(&folder)?
                    && std::fs::read_dir(&folder)
                        .map_err(io(&folder, "listing"))?
                        .next()
                        .is_some()
                {
                    return Err(Error::Manifest {
                        path: dir.join(MANIFEST),
                        reason: format!(
                            "is missing and {} holds files: ingest into an empty folder",
                            folder.display()
                        ),
                    });
                }
            }
        }
        let manifest = match stored {
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
            _lock: lock,
        };
        let complete = |p: &Partition| {
            p.rows.keys().all(|t| {
                let meta = std::fs::symlink_metadata(file(dir, t, p.from, p.to));
                meta.is_ok_and(|m| {
                    m.is_file() && p.bytes.get(t).is_none_or(|size| *size == m.len())
                })
            })
        };
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
        if store.manifest.partitions.len() != before || !dir.join(MANIFEST).exists() {
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
            if !real_dir(&folder)? {
                continue;
            }
            for entry in std::fs::read_dir(&folder).map_err(io(&folder, "listing"))? {
                let entry = entry.map_err(io(&folder, "listing"))?;
                let path = entry.path();
                let kind = entry.file_type().map_err(io(&path, "reading"))?;
                // Only names this store writes, and a link is removed as a link.
                let name = entry.file_name();
                let ours = name.to_str().is_some_and(ours);
                if ours && !kind.is_dir() && !listed.contains(&path) {
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
    /// start at multiples of `size` (or where a gap starts). Lazy: a range of any length costs
    /// nothing until it is fetched.
    pub(crate) fn missing(
        &self,
        from: u64,
        to: u64,
        size: u64,
    ) -> (u64, impl Iterator<Item = (u64, u64)> + use<>) {
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
        let total = gaps.iter().fold(0u64, |n, (a, b)| {
            n.saturating_add((b - a).saturating_add(1))
        });
        let ranges = gaps.into_iter().flat_map(move |(a, b)| {
            std::iter::successors(Some(a), move |a| {
                let end = chunk_end(*a, b, size);
                end.checked_add(1).filter(|n| *n <= b)
            })
            .map(move |a| (a, chunk_end(a, b, size)))
        });
        (total, ranges)
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
        partition.bytes.clear();
        let overlaps = self
            .manifest
            .partitions
            .iter()
            .any(|p| p.from <= partition.to && partition.from <= p.to);
        if overlaps {
            return Err(Error::Range(format!(
                "blocks {}-{} are already in {}",
                partition.from,
                partition.to,
                self.dir.display()
            )));
        }
        for (table, batch) in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            let folder = self.dir.join(table);
            if !real_dir(&folder)? {
                std::fs::create_dir(&folder).map_err(io(&folder, "creating"))?;
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
            let size = std::fs::metadata(&path)
                .map_err(io(&path, "reading"))?
                .len();
            partition.bytes.insert((*table).to_string(), size);
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
    use std::sync::Arc;

    fn partition(from: u64, to: u64) -> Partition {
        Partition {
            from,
            to,
            parent_hash: String::new(),
            hash: String::new(),
            rows: BTreeMap::new(),
            bytes: BTreeMap::new(),
        }
    }

    #[test]
    fn only_missing_blocks_are_fetched_in_aligned_ranges() {
        let dir = tempfile::tempdir().expect("a folder");
        let mut store = Store::open(dir.path(), 1).expect("opens");
        assert_eq!(
            store.missing(5, 25, 10).1.collect::<Vec<_>>(),
            vec![(5, 9), (10, 19), (20, 25)]
        );
        store.write(partition(10, 19), &[]).expect("writes");
        store.write(partition(0, 3), &[]).expect("writes");
        assert_eq!(
            store.missing(0, 30, 10).1.collect::<Vec<_>>(),
            vec![(4, 9), (20, 29), (30, 30)]
        );
        assert_eq!(store.missing(12, 18, 10).1.collect::<Vec<_>>(), vec![]);
        assert_eq!(
            store.missing(15, 22, 10).1.collect::<Vec<_>>(),
            vec![(20, 22)]
        );
        assert_eq!(
            store
                .missing(u64::MAX - 2, u64::MAX, 10)
                .1
                .collect::<Vec<_>>(),
            vec![(u64::MAX - 2, u64::MAX)]
        );
        // A node claiming a head at u64's end costs nothing until blocks are fetched.
        let (total, mut ranges) = store.missing(40, u64::MAX, 10);
        assert_eq!((total, ranges.next()), (u64::MAX - 39, Some((40, 49))));
        let (before, after) = store.neighbours(20, 29);
        assert_eq!((before.map(|p| p.to), after), (Some(19), None));
        // Reopened, the manifest is the same; another chain's folder is refused.
        let before = store.partitions().to_vec();
        drop(store);
        let reopened = Store::open(dir.path(), 1).expect("reopens");
        assert_eq!(reopened.partitions(), before);
        drop(reopened);
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
    fn nothing_outside_the_folder_is_touched_and_one_writer_at_a_time() {
        let dir = tempfile::tempdir().expect("a folder");
        let elsewhere = tempfile::tempdir().expect("another folder");
        let precious = elsewhere.path().join("000000000000-000000000009.parquet");
        std::fs::write(&precious, b"not the ingester's").expect("writes");
        // A table folder that is a link: refused, and the file it points at stays.
        drop(Store::open(dir.path(), 1).expect("opens"));
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("evm_logs")).expect("links");
        let err = Store::open(dir.path(), 1).expect_err("a linked folder");
        assert!(err.to_string().contains("not a plain folder"), "{err}");
        assert!(precious.exists());
        std::fs::remove_file(dir.path().join("evm_logs")).expect("unlinks");
        // Files of other names in a table folder are left alone; a planted link is removed as
        // a link, its target untouched.
        let folder = dir.path().join("evm_blocks");
        std::fs::create_dir(&folder).expect("mkdir");
        std::fs::write(folder.join("notes.txt"), b"mine").expect("writes");
        let planted = folder.join("000000000010-000000000019.tmp");
        std::os::unix::fs::symlink(&precious, &planted).expect("links");
        let store = Store::open(dir.path(), 1).expect("opens");
        assert!(folder.join("notes.txt").exists());
        assert!(std::fs::symlink_metadata(&planted).is_err() && precious.exists());
        // A second writer is refused while the first holds the folder.
        let err = Store::open(dir.path(), 1).expect_err("locked");
        assert!(err.to_string().contains("another ingest"), "{err}");
        drop(store);
        drop(Store::open(dir.path(), 1).expect("free again"));
        // Data files without a manifest are not deleted: the folder is refused.
        std::fs::remove_file(dir.path().join(MANIFEST)).expect("removes");
        let err = Store::open(dir.path(), 1).expect_err("no manifest");
        assert!(err.to_string().contains("holds files"), "{err}");
        assert!(folder.join("notes.txt").exists());
    }

    #[test]
    fn a_partition_whose_file_changed_size_is_fetched_again() {
        use agora_analytics::arrow::array::Int64Array;
        let dir = tempfile::tempdir().expect("a folder");
        let mut store = Store::open(dir.path(), 1).expect("opens");
        let schema = Arc::new(agora_analytics::arrow::datatypes::Schema::new(vec![
            agora_analytics::arrow::datatypes::Field::new(
                "n",
                agora_analytics::arrow::datatypes::DataType::Int64,
                false,
            ),
        ]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))])
            .expect("a batch");
        store
            .write(partition(0, 9), &[("evm_blocks", batch.clone())])
            .expect("writes");
        store
            .write(partition(10, 19), &[("evm_blocks", batch)])
            .expect("writes");
        let err = store.write(partition(5, 12), &[]).expect_err("overlaps");
        assert!(err.to_string().contains("already in"), "{err}");
        drop(store);
        let path = file(dir.path(), "evm_blocks", 10, 19);
        let mut bytes = std::fs::read(&path).expect("reads");
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&path, bytes).expect("truncates");
        let store = Store::open(dir.path(), 1).expect("reopens");
        assert_eq!(
            store
                .partitions()
                .iter()
                .map(|p| (p.from, p.to))
                .collect::<Vec<_>>(),
            vec![(0, 9)]
        );
        assert!(!path.exists(), "the truncated file is removed");
        assert_eq!(
            store.missing(0, 19, 10).1.collect::<Vec<_>>(),
            vec![(10, 19)]
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
        drop(store);
        std::fs::write(dir.path().join(MANIFEST), b"{\"format\":1,").expect("writes");
        let err = Store::open(dir.path(), 1).expect_err("corrupt");
        assert!(
            err.to_string().contains("not a readable ingest manifest"),
            "{err}"
        );
    }
}
