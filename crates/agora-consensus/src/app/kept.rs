//! Blocks this validator may vote for, kept on disk until one is committed: a validator that
//! voted for a block and crashed before committing it can still commit it after a restart.

use super::*;

impl ConsensusApp {
    /// Keeps the valid blocks of the current height in `dir` (see [`ConsensusApp`]).
    pub fn with_block_dir(mut self, dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        self.block_dir = Some(dir);
        Ok(self)
    }

    pub(super) fn block_file(&self, hash: &Hash) -> Option<PathBuf> {
        self.block_dir
            .as_ref()
            .map(|d| d.join(format!("{}.block", hash.to_hex())))
    }

    /// Writes a valid block of the current height to disk (synced) before consensus may vote for
    /// it. A failure is logged: the block can still come back by sync.
    pub(super) fn keep_block(&self, block: &Block) {
        let Some(path) = self.block_file(&block.hash()) else {
            return;
        };
        if path.exists() {
            return;
        }
        let bytes = borsh::to_vec(block).expect("borsh into a Vec");
        if let Err(e) =
            agora_types::durable::write(&path, &bytes, agora_types::durable::Access::Shared)
        {
            warn!(error = %e, path = %path.display(), "could not keep a proposed block on disk");
        }
    }

    /// A block kept by [`ConsensusApp::keep_block`] before a restart.
    pub(super) fn kept_block(&self, hash: &Hash) -> Option<Block> {
        let bytes = std::fs::read(self.block_file(hash)?).ok()?;
        borsh::from_slice(&bytes).ok()
    }

    /// Forgets the kept blocks (after a commit, they are all of past heights).
    pub(super) fn clear_kept_blocks(&self) {
        let Some(dir) = &self.block_dir else {
            return;
        };
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
