//! `agora anomalies` and `agora predict` against a running node: a transfer sent and sent back
//! is found as a wash cycle with both transactions; a seasonal series is forecast with its
//! backtest.

use crate::{NodeProc, agora, agora_ok};
use serde_json::Value;
use std::path::Path;

fn address_of(home: &Path, name: &str) -> String {
    let out = agora_ok(home, &["wallet", "show", name, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["address"].as_str().unwrap().to_string()
}

fn hash_of(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("hash"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| panic!("no hash in {out}"))
}

#[test]
fn a_transfer_sent_back_is_a_wash_cycle_and_a_series_is_forecast() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    agora_ok(home, &["wallet", "new", "alice"]);
    agora_ok(home, &["wallet", "new", "bob"]);
    let alice = address_of(home, "alice");
    let bob = address_of(home, "bob");
    agora_ok(
        home,
        &[
            "genesis",
            "init",
            "--chain-id",
            "anomaly-test",
            "--account",
            "alice=1000AGR",
            "--account",
            "bob=10AGR",
        ],
    );
    let node = NodeProc::start(home, 50);
    let api = node.api.clone();
    let send = |from: &str, to: &str, amount: &str| {
        hash_of(&agora_ok(
            home,
            &[
                "tx", "transfer", "--from", from, "--to", to, "--amount", amount, "--node", &api,
            ],
        ))
    };
    let started = std::time::Instant::now();
    let there = send("alice", &bob, "50AGR");
    let back = send("bob", &alice, "49.5AGR");
    // An unrelated payment of another size is no cycle.
    send("alice", &bob, "3AGR");

    let mut found = Vec::new();
    for _ in 0..50 {
        let out = agora_ok(
            home,
            &[
                "anomalies",
                "--kind",
                "wash",
                "--node",
                &api,
                "--format",
                "json",
            ],
        );
        found = serde_json::from_str::<Vec<Value>>(&out).unwrap();
        if !found.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f["kind"], "wash_trading");
    assert_eq!(f["evidence_ids"], serde_json::json!([there, back]));
    let words = f["evidence"].as_str().unwrap();
    assert!(
        words.contains(&format!("{alice} → {bob} → {alice}")),
        "{words}"
    );
    assert!(words.contains("50000000000, 49500000000"), "{words}");
    // The text form says the same in words.
    let text = agora_ok(home, &["anomalies", "--node", &api]);
    assert!(
        text.contains("[wash_trading]") && text.contains(&there),
        "{text}"
    );

    // A seasonal series from SQL (by height): forecast with intervals, backtested.
    node.wait_height(45);
    // Columns named so that their alphabetical order is not theirs: read by position.
    let sql = "SELECT height AS z, CAST(height % 5 AS DOUBLE) * 10 AS a FROM blocks WHERE height BETWEEN 1 AND 40";
    let out = agora_ok(
        home,
        &[
            "predict",
            "--sql",
            sql,
            "--season",
            "5",
            "--horizon",
            "5",
            "--windows",
            "2",
            "--node",
            &api,
            "--format",
            "json",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let points = v["forecast"]["points"].as_array().unwrap();
    assert_eq!(points.len(), 5);
    for (i, p) in points.iter().enumerate() {
        let height = 41 + i as i64;
        assert_eq!(p["time_ms"], height);
        let expected = (height % 5) as f64 * 10.0;
        let got = p["value"].as_f64().unwrap();
        assert!(
            (got - expected).abs() < 2.0,
            "height {height}: {got} for {expected}"
        );
        assert!(p["lower"].as_f64().unwrap() <= got && got <= p["upper"].as_f64().unwrap());
    }
    assert!(v["forecast"]["model"].as_str().unwrap().starts_with("MSTL"));
    let text = agora_ok(
        home,
        &[
            "predict",
            "--sql",
            sql,
            "--season",
            "5",
            "--horizon",
            "3",
            "--node",
            &api,
        ],
    );
    assert!(
        text.contains("backtest, ") && text.contains("seasonal-naive"),
        "{text}"
    );
    // Bad input: a clear error.
    // A built-in metric: transfers per second, with the time in ms (one more transfer, 8 s
    // after the first, gives the series its length).
    std::thread::sleep(std::time::Duration::from_secs(8).saturating_sub(started.elapsed()));
    send("alice", &bob, "1AGR");
    let out = agora_ok(
        home,
        &[
            "predict",
            "--metric",
            "transfers",
            "--interval",
            "1",
            "--horizon",
            "2",
            "--windows",
            "0",
            "--node",
            &api,
            "--format",
            "json",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let start = v["series"]["start_ms"].as_i64().unwrap();
    assert_eq!(v["series"]["step_ms"], 1000);
    // The node's block times are this machine's clock: the series must start near now.
    #[allow(clippy::disallowed_methods)]
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (now_ms - start).abs() < 600_000,
        "the series starts at {start} ms, now is {now_ms}"
    );
    let out = agora(home, &["predict", "--metric", "nope", "--node", &api]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown metric"),
        "{out:?}"
    );
    let out = agora(
        home,
        &[
            "predict",
            "--sql",
            "SELECT 1 AS t, 2.0 AS v",
            "--node",
            &api,
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 2 points"),
        "{out:?}"
    );
}
