//! The crate's integration tests, in one binary: each file a module (one link of the
//! workspace's dependencies instead of one per file).

mod search_quality;
mod topic_classifier;

use std::path::PathBuf;

use agora_infer::models::{Installed, MINILM, ModelCache};

/// MiniLM from the tests' model cache (fetched on first use); `None`, and the test skips, where
/// it cannot be had, unless `AGORA_REQUIRE_MODELS` is set.
fn minilm() -> Option<Installed> {
    let cache = ModelCache::new(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("models"));
    match cache.ensure(&MINILM, &mut |line| eprintln!("{line}")) {
        Ok(m) => Some(m),
        Err(e) if std::env::var_os("AGORA_REQUIRE_MODELS").is_some() => {
            panic!("MiniLM is required: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: MiniLM is not available here ({e})");
            None
        }
    }
}
