//! Files that must survive a crash: keys, genesis and network files, a provider's receipts (its
//! claims to fees) and kept jobs, blocks a validator voted for.
//!
//! [`write`] leaves either the old file or the whole new one, never a part: the bytes go to a
//! temporary file beside the target, which is synced, renamed over the target, and the folder is
//! synced so that the rename itself survives a power cut.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Who may read a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Its owner only (mode 0600): keys, passwords, receipts, kept jobs.
    Private,
    /// As the process's umask allows: genesis and network files.
    Shared,
}

/// Writes `bytes` to `path` durably (see the module's documentation), creating its folder.
pub fn write(path: &Path, bytes: &[u8], access: Access) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
    // One temporary name per write in this process, so concurrent writers never share one.
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if access == Access::Private {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_whole_file_and_leaves_nothing_beside_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("sub").join("file.json");
        write(&path, b"first", Access::Shared).unwrap();
        write(&path, b"second, longer", Access::Private).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file.json"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A write that cannot finish (the target is a folder) leaves the old state and no
        // temporary file.
        let folder = dir.join("sub").join("folder");
        std::fs::create_dir_all(folder.join("inside")).unwrap();
        assert!(write(&folder, b"x", Access::Shared).is_err());
        assert!(folder.join("inside").is_dir());
        let mut names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["file.json", "folder"]);
    }
}
