//! SQL over a real node's chain, through `POST /v1/sql` on 127.0.0.1: each committed block is
//! queryable at once, every format answers, bad queries get their own errors, and a heavy or
//! abandoned query neither stops the node nor runs on for nobody.

#![allow(clippy::unwrap_used)]

use agora_analytics::format::{self, Format};
use agora_analytics::{Analytics, Options};
use agora_api::testing::TestNode;
use agora_state::{Genesis, GenesisAccount};
use agora_types::{AGR, Keypair, Message, Transaction};
use std::time::{Duration, Instant};

const CHAIN: &str = "sql-test";

fn key(name: &str) -> Keypair {
    Keypair::from_seed_label(name)
}

fn genesis() -> Genesis {
    Genesis::new(CHAIN).with_accounts(vec![GenesisAccount {
        address: key("alice").address(),
        balance: 1_000 * AGR,
        bonded: 0,
    }])
}

/// A node serving SQL beside its API; its tables close a segment every 3 blocks.
fn start() -> (tempfile::TempDir, TestNode, Analytics) {
    let mut analytics = None;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let t = TestNode::start_with_pages(&genesis(), "sql-validator", |node| {
        let a = Analytics::start_with(node, &path, Options { segment_blocks: 3 }).unwrap();
        analytics = Some(a.clone());
        agora_analytics::http::router(a)
    });
    (dir, t, analytics.unwrap())
}

fn transfer(t: &TestNode, nonce: u64, amount: u128) {
    let tx = Transaction {
        chain_id: CHAIN.into(),
        sender: key("alice").public(),
        nonce,
        fee: 1_000_000,
        messages: vec![Message::Transfer {
            to: key("bob").address(),
            amount,
        }],
    }
    .sign(&key("alice"));
    t.node.submit(&tx.encode()).unwrap();
}

fn height(t: &TestNode) -> u64 {
    t.node.snapshot().unwrap().height().unwrap().unwrap()
}

/// Makes a block and waits until the tables hold it.
fn block(t: &TestNode, a: &Analytics) -> u64 {
    t.block();
    let h = height(t);
    assert!(
        t.rt.block_on(a.wait_for(h, Duration::from_secs(10))),
        "the tables never reached block {h}"
    );
    h
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

struct Answer {
    status: u16,
    body: Vec<u8>,
    height: Option<u64>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    #[track_caller]
    fn code(&self) -> String {
        let v = self.json();
        v["code"].as_str().unwrap_or_default().to_string()
    }
}

fn post(t: &TestNode, body: serde_json::Value) -> Answer {
    let mut r = agent(Duration::from_secs(30))
        .post(&format!("{}/v1/sql", t.base))
        .send_json(body)
        .unwrap();
    let height = r
        .headers()
        .get("x-agora-height")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    Answer {
        status: r.status().as_u16(),
        body: r
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap(),
        height,
    }
}

fn sql(t: &TestNode, query: &str) -> serde_json::Value {
    let a = post(t, serde_json::json!({ "sql": query }));
    assert_eq!(
        a.status,
        200,
        "{query}: {}",
        String::from_utf8_lossy(&a.body)
    );
    a.json()
}

#[test]
fn each_committed_block_is_queryable_at_once_in_every_format() {
    let (_dir, t, a) = start();
    let mut last = 0;
    for round in 0..4u64 {
        transfer(&t, round * 2, u128::from(round + 1) * AGR);
        transfer(&t, round * 2 + 1, AGR);
        last = block(&t, &a);
        // The block's rows are there as soon as it is committed, whether in a segment or not.
        let v = sql(&t, "SELECT count(*) AS n, max(height) AS h FROM transfers");
        assert_eq!(v["rows"][0]["n"], 2 * (round + 1), "{v}");
        assert_eq!(v["rows"][0]["h"], last);
    }
    assert!(a.segments() >= 1, "4+ blocks at 3 per segment");
    let v = sql(
        &t,
        "SELECT \"to\", sum(amount) AS total, count(*) AS n FROM transfers GROUP BY \"to\"",
    );
    let row = &v["rows"][0];
    assert_eq!(row["to"], key("bob").address().to_string());
    assert_eq!(
        row["total"].to_string().trim_matches('"'),
        (14 * AGR).to_string()
    );
    assert_eq!(row["n"], 8);
    assert_eq!(v["columns"][1]["type"], "Decimal128(38, 0)");
    // Every block once across segments and tail; transactions with their kind and fee.
    let v = sql(
        &t,
        "SELECT count(*) AS n, count(DISTINCT height) AS d, min(height) AS lo FROM blocks",
    );
    assert_eq!(v["rows"][0]["n"], last + 1);
    assert_eq!(v["rows"][0]["d"], last + 1);
    assert_eq!(v["rows"][0]["lo"], 0);
    let v = sql(
        &t,
        "SELECT kind, count(*) AS n, bool_and(success) AS ok FROM transactions GROUP BY kind",
    );
    assert_eq!(v["rows"][0]["kind"], "transfer");
    assert_eq!(v["rows"][0]["n"], 8);
    assert_eq!(v["rows"][0]["ok"], true);
    // The state tables: balances at the latest height.
    let bob = key("bob").address();
    let v = sql(
        &t,
        &format!("SELECT balance FROM accounts WHERE address = '{bob}'"),
    );
    assert_eq!(
        v["rows"][0]["balance"].to_string().trim_matches('"'),
        (14 * AGR).to_string()
    );
    // Joins and time buckets.
    let v = sql(
        &t,
        "SELECT date_trunc('minute', b.time) AS minute, count(t.hash) AS txs \
         FROM blocks b LEFT JOIN transactions t ON t.height = b.height GROUP BY 1",
    );
    assert_eq!(v["rows"].as_array().unwrap().len(), 1, "{v}");
    // CSV, Arrow and Parquet.
    let q = "SELECT height, amount FROM transfers ORDER BY height, amount";
    let csv = post(&t, serde_json::json!({ "sql": q, "format": "csv" }));
    assert_eq!(csv.status, 200);
    assert_eq!(csv.height, Some(last));
    let text = String::from_utf8(csv.body).unwrap();
    assert_eq!(text.lines().next(), Some("height,amount"));
    assert_eq!(text.lines().count(), 9);
    let arrow = post(&t, serde_json::json!({ "sql": q, "format": "arrow" }));
    let (schema, batches) = format::read_arrow(&arrow.body).unwrap();
    assert_eq!(schema.fields().len(), 2);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 8);
    let table =
        String::from_utf8(format::write(Format::Table, &schema, &batches).unwrap()).unwrap();
    assert!(table.contains("| height |"), "{table}");
    let parquet = post(&t, serde_json::json!({ "sql": q, "format": "parquet" }));
    assert_eq!(&parquet.body[..4], b"PAR1");
    // The schema browser.
    let mut r = agent(Duration::from_secs(10))
        .get(&format!("{}/v1/sql/tables", t.base))
        .call()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap();
    let names: Vec<&str> = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for name in [
        "blocks",
        "transactions",
        "events",
        "transfers",
        "jobs",
        "checks",
        "verdicts",
        "disputes",
        "slashes",
        "subnet_epochs",
        "weights",
        "accounts",
        "providers",
        "models",
        "subnets",
        "neurons",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}

#[test]
fn bad_queries_get_their_own_errors_and_change_nothing() {
    let (_dir, t, a) = start();
    transfer(&t, 0, AGR);
    block(&t, &a);
    let cases: &[(serde_json::Value, u16, &str)] = &[
        (
            serde_json::json!({"sql": "DROP TABLE blocks"}),
            400,
            "read_only",
        ),
        (
            serde_json::json!({"sql": "INSERT INTO blocks VALUES (1)"}),
            400,
            "read_only",
        ),
        (
            serde_json::json!({"sql": "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'"}),
            400,
            "read_only",
        ),
        (
            serde_json::json!({"sql": "COPY blocks TO '/tmp/agora-copy.parquet'"}),
            400,
            "read_only",
        ),
        (
            serde_json::json!({"sql": "SET datafusion.execution.batch_size = 1"}),
            400,
            "read_only",
        ),
        (
            serde_json::json!({"sql": "SELECT 1; SELECT 2"}),
            400,
            "sql_syntax",
        ),
        (serde_json::json!({"sql": "SELEC 1"}), 400, "sql_syntax"),
        (serde_json::json!({"sql": "   "}), 400, "sql_syntax"),
        (
            serde_json::json!({"sql": format!("SELECT '{}'", "x".repeat(66_000))}),
            400,
            "sql_syntax",
        ),
        (
            serde_json::json!({"sql": format!("SELECT '{}'", "x".repeat(80_000))}),
            413,
            "request_too_large",
        ),
        (
            serde_json::json!({"sql": "SELECT * FROM nope"}),
            400,
            "unknown_table",
        ),
        (
            serde_json::json!({"sql": "SELECT * FROM '/etc/hosts'"}),
            400,
            "unknown_table",
        ),
        (
            serde_json::json!({"sql": "SELECT nope FROM blocks"}),
            400,
            "sql_plan",
        ),
        (
            serde_json::json!({"sql": "SELECT * FROM generate_series(1, 100)", "max_rows": 10}),
            422,
            "row_cap",
        ),
        (
            serde_json::json!({"sql": "SELECT count(*) FROM generate_series(1, 100000000000)", "timeout_ms": 300}),
            408,
            "query_timeout",
        ),
        (
            serde_json::json!({"sql": "SELECT value % 1000003 AS k, count(*) FROM generate_series(1, 4000000) GROUP BY k", "memory_mb": 1}),
            422,
            "memory_cap",
        ),
        (
            serde_json::json!({"sql": format!("SELECT {}1", "1+".repeat(30_000))}),
            400,
            "sql_syntax",
        ),
        (
            serde_json::json!({"sql": "SELECT length(repeat('x', 200000000000))"}),
            400,
            "sql_plan",
        ),
        (
            serde_json::json!({"sql": "SELECT lpad('', 2147483647, 'x')"}),
            400,
            "sql_plan",
        ),
        (
            serde_json::json!({"sql": "SELECT value, 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' FROM generate_series(1, 200000)", "max_rows": 1000000, "memory_mb": 4}),
            422,
            "memory_cap",
        ),
        (
            serde_json::json!({"sql": "SELECT * FROM generate_series(1, 20000)", "max_rows": 100000, "format": "table"}),
            422,
            "row_cap",
        ),
        (
            serde_json::json!({"sql": "EXPLAIN COPY blocks TO '/tmp/agora-copy.parquet'"}),
            400,
            "read_only",
        ),
        (
            serde_json::json!({"sql": format!("SELECT count(*) FROM ({})", vec!["SELECT height FROM events"; 40].join(" UNION ALL "))}),
            400,
            "sql_plan",
        ),
        (
            serde_json::json!({"sql": "SELECT 1", "format": "xml"}),
            400,
            "unknown_format",
        ),
        (
            serde_json::json!({"query": "SELECT 1"}),
            422,
            "malformed_request",
        ),
    ];
    for (body, status, code) in cases {
        let answer = post(&t, body.clone());
        let shown: String = body.to_string().chars().take(120).collect();
        assert_eq!(
            answer.status,
            *status,
            "{shown}: {}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(answer.code(), *code, "{shown}");
        let message = answer.json()["message"].as_str().unwrap().to_string();
        assert!(!message.is_empty());
        if body["sql"].as_str().is_some_and(|q| q.contains("repeat(")) {
            assert!(message.contains("repeat() is not offered"), "{message}");
        }
        if *code == "unknown_table" {
            assert!(message.contains("transfers"), "lists the tables: {message}");
        }
    }
    assert!(!std::path::Path::new("/tmp/agora-copy.parquet").exists());
    // A long chain within the limit plans and runs (deep trees live on the analytics threads).
    let chain = format!(
        "SELECT {}1 AS n",
        "1+".repeat(agora_analytics::MAX_OPERATORS - 1)
    );
    let v = sql(&t, &chain);
    assert_eq!(v["rows"][0]["n"], agora_analytics::MAX_OPERATORS as u64);
    // Nothing changed, and the chain and its tables go on.
    let v = sql(&t, "SELECT count(*) AS n FROM transfers");
    assert_eq!(v["rows"][0]["n"], 1);
    transfer(&t, 1, AGR);
    block(&t, &a);
    let v = sql(&t, "SELECT count(*) AS n FROM transfers");
    assert_eq!(v["rows"][0]["n"], 2);
}

/// Waits (bounded) until no query runs.
fn until_idle(a: &Analytics) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if a.running() == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_heavy_query_leaves_the_node_serving_and_an_abandoned_one_stops() {
    let (_dir, t, a) = start();
    block(&t, &a);
    let heavy = serde_json::json!({
        "sql": "SELECT count(*) FROM generate_series(1, 100000000000)",
        "timeout_ms": 4000,
    });
    // A client that gives up after 300 ms: its query is cancelled, not left running.
    let gone = agent(Duration::from_millis(300))
        .post(&format!("{}/v1/sql", t.base))
        .send_json(heavy.clone());
    assert!(gone.is_err(), "the client timed out");
    assert!(until_idle(&a), "the abandoned query still runs");
    // While a heavy query runs, blocks are made and the API answers.
    let base = t.base.clone();
    let running = std::thread::spawn(move || {
        let mut r = agent(Duration::from_secs(30))
            .post(&format!("{base}/v1/sql"))
            .send_json(heavy)
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.running() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(a.running(), 1, "the heavy query started");
    let before = height(&t);
    let h = block(&t, &a);
    assert_eq!(h, before + 1);
    let mut r = agent(Duration::from_secs(5))
        .get(&format!("{}/v1/status", t.base))
        .call()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.body_mut().read_to_string().unwrap()
    );
    assert_eq!(
        a.running(),
        1,
        "the heavy query was still running meanwhile"
    );
    let (status, body) = running.join().unwrap();
    assert_eq!(status, 408, "{body}");
    assert!(until_idle(&a));
}

#[test]
fn tables_reopened_after_a_stop_catch_up_without_doubling_a_row() {
    let t = TestNode::start(&genesis(), "sql-validator");
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_blocks: 2 };
    let a = Analytics::start_with(t.node.clone(), dir.path(), options).unwrap();
    for nonce in 0..5 {
        transfer(&t, nonce, AGR);
        block(&t, &a);
    }
    let q = |a: &Analytics| {
        let out =
            t.rt.block_on(a.query(
                "SELECT count(*) AS n, count(DISTINCT height) AS d FROM blocks",
                agora_analytics::QueryLimits::default(),
            ))
            .unwrap();
        let text =
            String::from_utf8(format::write(Format::Csv, &out.schema, &out.batches).unwrap())
                .unwrap();
        text.lines().nth(1).unwrap().to_string()
    };
    assert_eq!(q(&a), "6,6");
    let segments = a.segments();
    assert!(segments >= 2);
    drop(a);
    // Blocks committed while the tables were closed are read from the store on reopening.
    for nonce in 5..8 {
        transfer(&t, nonce, AGR);
        t.block();
    }
    let a = Analytics::start_with(t.node.clone(), dir.path(), options).unwrap();
    assert!(t.rt.block_on(a.wait_for(height(&t), Duration::from_secs(10))));
    assert_eq!(q(&a), "9,9");
    assert!(a.segments() >= segments);
    let out =
        t.rt.block_on(a.query(
            "SELECT count(*) FROM transfers",
            agora_analytics::QueryLimits::default(),
        ))
        .unwrap();
    let text =
        String::from_utf8(format::write(Format::Csv, &out.schema, &out.batches).unwrap()).unwrap();
    assert_eq!(text.lines().nth(1), Some("8"));
}

#[test]
fn tables_of_another_history_under_the_same_chain_id_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_blocks: 2 };
    let count = |t: &TestNode, a: &Analytics| {
        let out =
            t.rt.block_on(a.query(
                "SELECT count(*) FROM transfers",
                agora_analytics::QueryLimits::default(),
            ))
            .unwrap();
        let text =
            String::from_utf8(format::write(Format::Csv, &out.schema, &out.batches).unwrap())
                .unwrap();
        text.lines().nth(1).unwrap().to_string()
    };
    {
        let t = TestNode::start(&genesis(), "sql-validator");
        let a = Analytics::start_with(t.node.clone(), dir.path(), options).unwrap();
        for nonce in 0..4 {
            transfer(&t, nonce, AGR);
            block(&t, &a);
        }
        assert_eq!(count(&t, &a), "4");
        assert!(a.segments() >= 2);
    }
    // A new store of the same chain id (deleted, or restored from an older copy) with other
    // blocks: the tables must follow it, not mix the two.
    let t = TestNode::start(&genesis(), "sql-validator");
    for _ in 0..6 {
        t.block();
    }
    let a = Analytics::start_with(t.node.clone(), dir.path(), options).unwrap();
    assert!(t.rt.block_on(a.wait_for(height(&t), Duration::from_secs(10))));
    assert_eq!(count(&t, &a), "0");
}

/// `GET /v1/anomalies`: a transfer sent and sent back at once is a wash cycle, named by both
/// transactions; an unknown kind or a reversed range is refused.
#[test]
fn the_anomalies_route_finds_a_transfer_sent_back_with_its_evidence() {
    let (_dir, t, a) = start();
    let send = |from: &str, nonce: u64, to: &str, amount: u128| {
        let tx = Transaction {
            chain_id: CHAIN.into(),
            sender: key(from).public(),
            nonce,
            fee: 1_000_000,
            messages: vec![Message::Transfer {
                to: key(to).address(),
                amount,
            }],
        }
        .sign(&key(from));
        t.node.submit(&tx.encode()).unwrap();
        tx.hash().to_hex()
    };
    let there = send("alice", 0, "bob", 50 * AGR);
    block(&t, &a);
    let back = send("bob", 0, "alice", 49 * AGR + AGR / 2);
    block(&t, &a);
    let get = |path: &str| {
        let mut r = agent(Duration::from_secs(30))
            .get(&format!("{}{path}", t.base))
            .call()
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            r.body_mut().read_json::<serde_json::Value>().unwrap(),
        )
    };
    let (status, v) = get("/v1/anomalies?kind=wash");
    assert_eq!(status, 200, "{v}");
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{v}");
    let f = &findings[0];
    assert_eq!(f["kind"], "wash_trading");
    assert_eq!(f["evidence_ids"], serde_json::json!([there, back]), "{f}");
    assert!(
        f["evidence"]
            .as_str()
            .unwrap()
            .contains("50000000000, 49500000000"),
        "{f}"
    );
    let (status, v) = get("/v1/anomalies?kind=wash&from=1000");
    assert_eq!(
        (status, v["findings"].as_array().unwrap().len()),
        (200, 0),
        "{v}"
    );
    for (path, code) in [
        ("/v1/anomalies?kind=laundering", "unknown_kind"),
        ("/v1/anomalies?from=9&to=3", "bad_range"),
        ("/v1/anomalies?height=3", "malformed_request"),
    ] {
        let (status, v) = get(path);
        assert_eq!(
            (status, v["code"].as_str().unwrap()),
            (400, code),
            "{path}: {v}"
        );
    }
}
