//! Feeds and folders into the index: RSS, Atom and JSON Feed from a local HTTP server, a
//! Latin-1 feed, HTML in items, a gigantic item; and what must fail cleanly: bad XML, a feed over
//! the size bound, a server that never answers, a folder with files to leave out.

#![allow(clippy::unwrap_used)]

use agora_search::ingest::{self, MAX_FEED_BYTES};
use agora_search::{Error, HashEmbed, Kind, Query, SearchIndex};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RSS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Chain news</title>
<item><title>Validators &amp; slashing</title><link>https://news.example/slashing</link>
<guid>n-1</guid><pubDate>Tue, 01 Dec 2026 10:00:00 GMT</pubDate>
<description>&lt;p&gt;A validator that &lt;b&gt;double-signs&lt;/b&gt; loses stake.&lt;/p&gt;</description></item>
<item><title>Oracles</title><link>javascript:alert(1)</link><guid>n-2</guid>
<description>Price oracles feed markets.</description></item>
</channel></rss>"#;

const ATOM: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Research</title><id>urn:r</id>
<updated>2026-12-02T00:00:00Z</updated>
<entry><title>Zero-knowledge inference</title><id>urn:r:1</id><updated>2026-12-02T00:00:00Z</updated>
<link href="https://research.example/zk"/><summary>Proofs that a model produced an output.</summary></entry>
</feed>"#;

const JSON: &str = r#"{"version": "https://jsonfeed.org/version/1.1", "title": "Blog",
"items": [{"id": "b-1", "url": "https://blog.example/mev", "title": "MEV explained",
"content_text": "Maximal extractable value and sandwich attacks.", "date_published": "2026-11-30T08:00:00Z"}]}"#;

/// A server on 127.0.0.1 answering each path with its body (or never, for `/hang`), for as
/// long as the test runs.
fn serve(routes: Vec<(&'static str, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let routes = routes.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut unchanged = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    // Every body is version "v1": asked for again with it, nothing changed.
                    unchanged |= line.eq_ignore_ascii_case("if-none-match: \"v1\"\r\n");
                }
                if path == "/hang" {
                    std::thread::sleep(Duration::from_secs(30));
                    return;
                }
                let body = routes
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map(|(_, b)| b.clone());
                let (status, body) = match body {
                    Some(_) if unchanged => ("304 Not Modified", Vec::new()),
                    Some(b) => ("200 OK", b),
                    None => ("404 Not Found", b"no".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nETag: \"v1\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    base
}

#[test]
fn feeds_of_every_format_become_articles_and_bad_ones_fail_cleanly() {
    // Latin-1 bytes, as the declaration says.
    let mut latin1 =
        b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><rss version=\"2.0\"><channel><title>t</title><item><title>Caf".to_vec();
    latin1.push(0xE9);
    latin1.extend_from_slice(b" des validateurs</title><guid>l-1</guid><description>r");
    latin1.push(0xE9);
    latin1.extend_from_slice(b"seau</description></item></channel></rss>");
    let giant = format!(
        "<rss version=\"2.0\"><channel><title>g</title><item><title>Giant</title><guid>g</guid><description>{}</description></item></channel></rss>",
        "word ".repeat(60_000)
    );
    let base = serve(vec![
        ("/rss", RSS.as_bytes().to_vec()),
        ("/atom", ATOM.as_bytes().to_vec()),
        ("/json", JSON.as_bytes().to_vec()),
        ("/latin1", latin1),
        ("/giant", giant.into_bytes()),
        ("/bad", b"<rss><channel><item><title>unclosed".to_vec()),
        ("/html", b"<html><body>not a feed</body></html>".to_vec()),
        ("/huge", vec![b' '; MAX_FEED_BYTES as usize + 10]),
    ]);
    let t = Duration::from_secs(5);
    let rss = ingest::fetch_feed(&format!("{base}/rss"), t).unwrap();
    assert_eq!(rss.len(), 2);
    assert_eq!(rss[0].title, "Validators & slashing");
    assert_eq!(rss[0].body, "A validator that double-signs loses stake.");
    assert_eq!(rss[0].url.as_deref(), Some("https://news.example/slashing"));
    assert!(rss[0].time_ms > 1_700_000_000_000, "{}", rss[0].time_ms);
    assert_eq!(rss[1].url, None, "a javascript: link is dropped");
    assert!(
        rss.iter()
            .all(|d| d.kind == Kind::Article && d.id.starts_with("article:127.0.0.1"))
    );
    let atom = ingest::fetch_feed(&format!("{base}/atom"), t).unwrap();
    assert_eq!(atom[0].title, "Zero-knowledge inference");
    let json = ingest::fetch_feed(&format!("{base}/json"), t).unwrap();
    assert_eq!(json[0].url.as_deref(), Some("https://blog.example/mev"));
    let latin = ingest::fetch_feed(&format!("{base}/latin1"), t).unwrap();
    assert_eq!(latin[0].title, "Café des validateurs");
    assert_eq!(latin[0].body, "réseau");
    let giant = ingest::fetch_feed(&format!("{base}/giant"), t).unwrap();

    for (path, says) in [
        ("/bad", "not a feed"),
        ("/html", "not a feed"),
        ("/huge", "larger than 4 MiB"),
        ("/missing", "answered 404"),
    ] {
        let e = ingest::fetch_feed(&format!("{base}{path}"), t).unwrap_err();
        assert!(matches!(e, Error::Ingest(_)), "{path}: {e}");
        assert!(e.to_string().contains(says), "{path}: {e}");
    }
    let started = Instant::now();
    let e = ingest::fetch_feed(&format!("{base}/hang"), Duration::from_secs(2)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{e}");
    assert!(ingest::fetch_feed("file:///etc/passwd", t).is_err());

    // Into the index: found by words, the giant item cut to the body bound.
    let dir = tempfile::tempdir().unwrap();
    let index = SearchIndex::open(dir.path(), Arc::new(HashEmbed::new(64))).unwrap();
    let mut all = rss;
    all.extend(atom);
    all.extend(json);
    all.extend(giant);
    index.upsert(all.clone()).unwrap();
    let hits = index.search(&Query::new("double-signs slashing")).unwrap();
    assert_eq!(hits[0].title, "Validators & slashing");
    let giant = index.get(&all.last().unwrap().id).unwrap().unwrap();
    assert!(giant.body.len() <= agora_search::doc::MAX_BODY);
    // Fetching again changes nothing (stable ids).
    assert_eq!(index.upsert(all).unwrap(), 0);
}

#[test]
fn a_folder_gives_its_text_files_and_leaves_out_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("guides")).unwrap();
    std::fs::write(
        root.join("guides/staking.md"),
        "# Staking\n\nLock AGR to validate.",
    )
    .unwrap();
    std::fs::write(root.join("notes.txt"), "Plain notes about escrow.").unwrap();
    std::fs::write(root.join("image.png"), [0u8, 1, 2]).unwrap();
    std::fs::write(root.join("latin1.txt"), [b'c', b'a', b'f', 0xE9]).unwrap();
    std::fs::write(root.join("big.md"), vec![b'a'; (1 << 20) + 1]).unwrap();
    let docs = ingest::folder_docs(root, "handbook").unwrap();
    let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "article:handbook/notes.txt",
            "article:handbook/guides/staking.md"
        ],
        "{ids:?}"
    );
    assert_eq!(docs[1].title, "Staking");
    assert!(ingest::folder_docs(&root.join("nothing"), "x").is_err());
}

#[test]
fn the_ingester_keeps_its_sources_in_the_index_and_survives_a_failing_one() {
    let dir = tempfile::tempdir().unwrap();
    let content = tempfile::tempdir().unwrap();
    std::fs::write(
        content.path().join("a.md"),
        "# Bridges\n\nCross-chain bridges.",
    )
    .unwrap();
    let base = serve(vec![("/rss", RSS.as_bytes().to_vec())]);
    let index = Arc::new(SearchIndex::open(dir.path(), Arc::new(HashEmbed::new(64))).unwrap());
    let ingester = ingest::Ingester::start(
        index.clone(),
        vec![
            ingest::Source::Feed(format!("{base}/missing")),
            ingest::Source::Feed(format!("{base}/rss")),
            ingest::Source::Folder(content.path().to_path_buf()),
        ],
        Duration::from_millis(200),
    )
    .unwrap();
    let started = Instant::now();
    while index.len().unwrap() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "nothing ingested"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A file added later arrives at the next reading.
    std::fs::write(
        content.path().join("b.md"),
        "# Rollups\n\nOptimistic rollups.",
    )
    .unwrap();
    // The record is written before the derived indexes, so wait for the
    // search itself rather than the count of records.
    let hits = loop {
        let hits = index.search(&Query::new("rollups")).unwrap();
        if hits.first().is_some_and(|h| h.bm25_rank == Some(1)) {
            break hits;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the new file never arrived: {hits:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(hits[0].title.contains("Rollups"), "{hits:?}");
    assert_eq!(index.len().unwrap(), 4);
    // A file the folder no longer holds leaves the index; the feed's items stay.
    std::fs::remove_file(content.path().join("a.md")).unwrap();
    while index
        .search(&Query::new("bridges"))
        .unwrap()
        .iter()
        .any(|h| h.title == "Bridges")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the removed file stayed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(ingester);
    assert_eq!(index.len().unwrap(), 3);
}

#[test]
fn a_feed_that_did_not_change_is_not_read_again() {
    let base = serve(vec![("/rss", RSS.as_bytes().to_vec())]);
    let url = format!("{base}/rss");
    let mut seen = ingest::Validators::default();
    let first = ingest::fetch_feed_if_changed(&url, Duration::from_secs(5), &mut seen).unwrap();
    assert_eq!(first.map(|d| d.len()), Some(2));
    assert_eq!(seen.etag.as_deref(), Some("\"v1\""));
    let again = ingest::fetch_feed_if_changed(&url, Duration::from_secs(5), &mut seen).unwrap();
    assert_eq!(again, None, "the server said 304");
    // Without what the server said, the feed is read in full.
    let full = ingest::fetch_feed_if_changed(
        &url,
        Duration::from_secs(5),
        &mut ingest::Validators::default(),
    )
    .unwrap();
    assert_eq!(full.map(|d| d.len()), Some(2));
    // Two folders of one name are two sources.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (da, db) = (a.path().join("docs"), b.path().join("docs"));
    assert_ne!(
        ingest::Source::folder_name(&da),
        ingest::Source::folder_name(&db)
    );
    assert!(ingest::Source::folder_name(&da).starts_with("docs-"));
    // A long name keeps its hash, and stays what ids carry.
    let long = a.path().join("x".repeat(80));
    let name = ingest::Source::folder_name(&long);
    assert_eq!(ingest::source_name(&name), name);
    assert_ne!(
        name,
        ingest::Source::folder_name(&b.path().join("x".repeat(80)))
    );
}
