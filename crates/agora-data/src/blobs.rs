//! A content-addressed store of blobs on disk: a blob's name is the blake3 hash of its bytes.
//!
//! - Bounded: a blob's size and the store's total are limited; a blob over either is refused
//!   and nothing is written.
//! - Crash-safe: a blob is written to a temporary file, synced, then renamed into place, so a
//!   blob under its name is whole. Temporary files a crash left are removed when the store opens.
//! - Checked: reading a blob hashes it again; one that does not match (a corrupt disk, a file
//!   changed behind the node's back) is removed and reported, never served.
//!
//! Layout: `DIR/<first two hex digits>/<hash in hex>`, and `DIR/tmp/` for writes under way.

use crate::Error;
use agora_types::Hash;
use parking_lot::Mutex;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The store's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest blob, in bytes.
    pub max_blob: u64,
    /// Most bytes the store holds.
    pub max_total: u64,
}

impl Default for Limits {
    /// 1 MiB a blob, 8 GiB in all.
    fn default() -> Self {
        Limits {
            max_blob: 1 << 20,
            max_total: 8 << 30,
        }
    }
}

/// Blobs by their hash, in a folder.
#[derive(Debug)]
pub struct BlobStore {
    dir: PathBuf,
    limits: Limits,
    /// Bytes held; the lock also makes a write's check of the total and the write one step.
    used: Mutex<u64>,
    /// Numbers temporary files (two writes of one blob never share one).
    next_tmp: AtomicU64,
}

impl BlobStore {
    /// Its bounds.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Opens (or creates) the store in `dir`: removes what a crash left half-written and
    /// counts the bytes held.
    pub fn open(dir: &Path, limits: Limits) -> Result<BlobStore, Error> {
        let tmp = dir.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        let mut used = 0;
        for shard in std::fs::read_dir(dir)? {
            let shard = shard?;
            if shard.file_name() == "tmp" || !shard.file_type()?.is_dir() {
                continue;
            }
            for blob in std::fs::read_dir(shard.path())? {
                used += blob?.metadata()?.len();
            }
        }
        Ok(BlobStore {
            dir: dir.to_path_buf(),
            limits,
            used: Mutex::new(used),
            next_tmp: AtomicU64::new(0),
        })
    }

    fn path(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Stores `bytes`; returns their hash. A blob already held costs nothing.
    pub fn put(&self, bytes: &[u8]) -> Result<Hash, Error> {
        let size = bytes.len() as u64;
        if size > self.limits.max_blob {
            return Err(Error::TooLarge {
                size,
                max: self.limits.max_blob,
            });
        }
        let hash = Hash::digest(bytes);
        let path = self.path(&hash);
        let mut used = self.used.lock();
        if path.exists() {
            return Ok(hash);
        }
        if *used + size > self.limits.max_total {
            return Err(Error::Full {
                used: *used,
                max: self.limits.max_total,
            });
        }
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join("tmp").join(format!("{}.{n}", hash.to_hex()));
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            let shard = path.parent().unwrap_or(&self.dir);
            std::fs::create_dir_all(shard)?;
            std::fs::rename(&tmp, &path)?;
            // The rename itself is durable once the folder is synced.
            std::fs::File::open(shard)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
        *used += size;
        Ok(hash)
    }

    /// The blob `hash`, checked against its hash; `None` if the store does not hold it.
    pub fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>, Error> {
        let path = self.path(hash);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if Hash::digest(&bytes) != *hash {
            tracing::error!(%hash, "blob store: a blob does not match its hash; removing it");
            self.remove(hash)?;
            return Err(Error::Corrupt(*hash));
        }
        Ok(Some(bytes))
    }

    /// Whether the store holds blob `hash` (unchecked).
    pub fn contains(&self, hash: &Hash) -> bool {
        self.path(hash).exists()
    }

    /// Removes blob `hash`; returns whether it was held.
    pub fn remove(&self, hash: &Hash) -> Result<bool, Error> {
        let path = self.path(hash);
        let mut used = self.used.lock();
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        std::fs::remove_file(&path)?;
        *used = used.saturating_sub(size);
        Ok(true)
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        *self.used.lock()
    }

    /// The hashes of every blob held, in order (what a collection of rejected items walks).
    pub fn hashes(&self) -> Result<Vec<Hash>, Error> {
        let mut out = Vec::new();
        for shard in std::fs::read_dir(&self.dir)? {
            let shard = shard?;
            if shard.file_name() == "tmp" || !shard.file_type()?.is_dir() {
                continue;
            }
            for blob in std::fs::read_dir(shard.path())? {
                let name = blob?.file_name();
                let parsed = hex::decode(name.to_string_lossy().as_bytes())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok());
                match parsed {
                    Some(h) => out.push(Hash(h)),
                    None => tracing::warn!(?name, "blob store: a file that is not a blob"),
                }
            }
        }
        out.sort();
        Ok(out)
    }
}
