//! The blob store on a real disk: bounds, crashes, corruption and concurrent writers.

#![allow(clippy::unwrap_used)]

use agora_data::{BlobStore, Error, Limits};
use agora_types::Hash;
use std::sync::Arc;

const SMALL: Limits = Limits {
    max_blob: 1_000,
    max_total: 2_500,
};

#[test]
fn blobs_are_found_by_their_hash_once_and_within_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), SMALL).unwrap();
    let item = br#"{"text": "a labelled example"}"#;
    let hash = store.put(item).unwrap();
    assert_eq!(hash, Hash::digest(item));
    assert_eq!(store.get(&hash).unwrap().as_deref(), Some(&item[..]));
    assert!(store.contains(&hash));
    // The same bytes again cost nothing.
    assert_eq!(store.put(item).unwrap(), hash);
    assert_eq!(store.used(), item.len() as u64);
    assert_eq!(store.get(&Hash([7; 32])).unwrap(), None);

    // Over the blob's bound: refused, nothing written.
    let big = vec![b'x'; 1_001];
    assert!(matches!(
        store.put(&big),
        Err(Error::TooLarge {
            size: 1_001,
            max: 1_000
        })
    ));
    assert!(!store.contains(&Hash::digest(&big)));
    // Over the store's bound: refused until something is removed.
    let a = store.put(&[b'a'; 1_000]).unwrap();
    store.put(&[b'b'; 1_000]).unwrap();
    let full = store.put(&[b'c'; 1_000]).unwrap_err();
    assert!(matches!(full, Error::Full { .. }), "{full}");
    assert!(full.to_string().contains("full"));
    assert!(!store.contains(&Hash::digest(&[b'c'; 1_000])));
    assert!(store.remove(&a).unwrap());
    assert!(!store.remove(&a).unwrap());
    store.put(&[b'c'; 1_000]).unwrap();
    assert_eq!(store.used(), item.len() as u64 + 2_000);
    assert_eq!(store.hashes().unwrap().len(), 3);
}

#[test]
fn a_crash_leaves_no_half_blob_and_a_corrupt_one_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path(), SMALL).unwrap();
    let hash = store.put(b"first item").unwrap();
    drop(store);
    // A write cut short by a crash: a temporary file, never under a blob's name.
    std::fs::write(dir.path().join("tmp").join("deadbeef.0"), b"half").unwrap();
    let store = BlobStore::open(dir.path(), SMALL).unwrap();
    assert_eq!(store.used(), 10, "the half-written file is not counted");
    assert!(
        std::fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none()
    );
    assert_eq!(store.hashes().unwrap(), vec![hash]);

    // The disk changes a blob: reading it says so, and removes it.
    let hex = hash.to_hex();
    std::fs::write(dir.path().join(&hex[..2]).join(&hex), b"first itex").unwrap();
    assert!(matches!(store.get(&hash), Err(Error::Corrupt(h)) if h == hash));
    assert_eq!(store.get(&hash).unwrap(), None);
    assert_eq!(store.used(), 0);
    // It can be submitted again.
    assert_eq!(store.put(b"first item").unwrap(), hash);
    assert_eq!(
        store.get(&hash).unwrap().as_deref(),
        Some(&b"first item"[..])
    );
}

#[test]
fn writers_at_once_keep_the_count_and_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(BlobStore::open(dir.path(), SMALL).unwrap());
    // Eight writers of 5 distinct 400-byte blobs (each written by several at once): 2,000
    // bytes, under the 2,500 bound.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..5u8 {
                    store.put(&[(i + t) % 5; 400]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.used(), 2_000);
    assert_eq!(store.hashes().unwrap().len(), 5);
    drop(store);
    assert_eq!(
        BlobStore::open(dir.path(), SMALL).unwrap().used(),
        2_000,
        "the count survives a restart"
    );
}
