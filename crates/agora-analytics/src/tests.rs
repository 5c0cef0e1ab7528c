//! The tables against the blocks they come from: random runs of every message type (the state
//! machine's adversarial simulation), cut into small segments, must give back every
//! transaction, event, transfer and job exactly once.

#![allow(clippy::unwrap_used)]

use crate::engine::execute;
use crate::lake::Lake;
use crate::tables::BlockData;
use crate::{Error, QueryLimits};
use agora_state::sim;
use agora_types::{Address, Hash, Message};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The first row's columns of a query's result, as text.
#[track_caller]
fn row(lake: &Lake, sql: &str) -> Vec<String> {
    let out = rt()
        .block_on(execute(
            Some(lake.view()),
            None,
            &[],
            sql,
            QueryLimits::default(),
        ))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batch = out.batches.iter().find(|b| b.num_rows() > 0).unwrap();
    (0..batch.num_columns())
        .map(|c| arrow::util::display::array_value_to_string(batch.column(c), 0).unwrap())
        .collect()
}

#[track_caller]
fn count(lake: &Lake, sql: &str) -> u64 {
    row(lake, sql)[0].parse().unwrap()
}

/// What the blocks hold, counted directly.
#[derive(Debug, Default)]
struct Expected {
    blocks: u64,
    txs: u64,
    failed: u64,
    events: BTreeMap<String, u64>,
    transferred: u128,
    jobs: u64,
    rejected: u64,
    weights: u64,
    verdicts: u64,
}

fn genesis_block(lake: &mut Lake) {
    lake.add(&BlockData {
        height: 0,
        time_ms: 0,
        hash: &Hash::ZERO,
        proposer: &Address::default(),
        txs: &[],
        receipts: &[],
        block_events: &[],
    })
    .unwrap();
}

fn check_run(plans: &[Vec<sim::TxPlan>], segment_blocks: u64) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = Lake::open(dir.path(), "agora-sim").unwrap();
    lake.set_segment_blocks(segment_blocks);
    genesis_block(&mut lake);
    let mut expected = Expected {
        blocks: 1,
        ..Expected::default()
    };
    let mut failure = None;
    sim::run_with(plans, |world| {
        let b = world.last_block.as_ref().unwrap();
        let hash = Hash::digest(&b.height.to_le_bytes());
        let data = BlockData {
            height: b.height,
            time_ms: b.time_ms,
            hash: &hash,
            proposer: &b.proposer,
            txs: &b.txs,
            receipts: &b.receipts,
            block_events: &b.block_events,
        };
        if let Err(e) = lake.add(&data) {
            failure.get_or_insert(e);
        }
        expected.blocks += 1;
        for (tx, receipt) in b.txs.iter().zip(&b.receipts) {
            expected.txs += 1;
            expected.failed += u64::from(!receipt.success);
            if receipt.success {
                for m in &tx.tx.messages {
                    match m {
                        Message::SettleJobs { jobs } => expected.jobs += jobs.len() as u64,
                        Message::RevealWeights { uids, .. } => {
                            expected.weights += uids.len() as u64;
                        }
                        Message::PostVerdict { .. } => expected.verdicts += 1,
                        _ => {}
                    }
                }
                expected.rejected += receipt
                    .events
                    .iter()
                    .filter(|e| e.kind == "job_rejected")
                    .count() as u64;
            }
        }
        for e in b
            .receipts
            .iter()
            .flat_map(|r| &r.events)
            .chain(&b.block_events)
        {
            *expected.events.entry(e.kind.clone()).or_default() += 1;
            if e.kind == "transfer" {
                let amount = e.attributes.iter().find(|(k, _)| k == "amount").unwrap();
                expected.transferred += amount.1.parse::<u128>().unwrap();
            }
        }
    })
    .map_err(TestCaseError::fail)?;
    if let Some(e) = failure {
        return Err(TestCaseError::fail(e.to_string()));
    }
    // Every block once, whatever the segments.
    prop_assert_eq!(count(&lake, "SELECT count(*) FROM blocks"), expected.blocks);
    prop_assert_eq!(
        count(&lake, "SELECT count(DISTINCT height) FROM blocks"),
        expected.blocks
    );
    prop_assert_eq!(
        count(&lake, "SELECT max(height) FROM blocks") + 1,
        expected.blocks
    );
    prop_assert_eq!(
        count(&lake, "SELECT count(*) FROM transactions"),
        expected.txs
    );
    prop_assert_eq!(
        count(&lake, "SELECT count(*) FROM transactions WHERE NOT success"),
        expected.failed
    );
    prop_assert_eq!(
        count(
            &lake,
            "SELECT count(*) FROM transactions WHERE NOT success AND error_code IS NULL"
        ),
        0
    );
    let total: u64 = expected.events.values().sum();
    prop_assert_eq!(count(&lake, "SELECT count(*) FROM events"), total);
    for (kind, n) in &expected.events {
        let sql = format!("SELECT count(*) FROM events WHERE kind = '{kind}'");
        prop_assert_eq!(count(&lake, &sql), *n, "{}", kind);
    }
    let transfers = expected.events.get("transfer").copied().unwrap_or(0);
    prop_assert_eq!(count(&lake, "SELECT count(*) FROM transfers"), transfers);
    if transfers > 0 {
        let sum: u128 = row(&lake, "SELECT sum(amount) FROM transfers")[0]
            .parse()
            .unwrap();
        prop_assert_eq!(sum, expected.transferred);
    }
    prop_assert_eq!(count(&lake, "SELECT count(*) FROM jobs"), expected.jobs);
    prop_assert_eq!(
        count(&lake, "SELECT count(*) FROM jobs WHERE status = 'rejected'"),
        expected.rejected
    );
    prop_assert_eq!(
        count(&lake, "SELECT count(*) FROM jobs WHERE status = 'settled'"),
        expected.events.get("job_settled").copied().unwrap_or(0)
    );
    prop_assert_eq!(
        count(&lake, "SELECT count(*) FROM weights"),
        expected.weights
    );
    prop_assert_eq!(
        count(&lake, "SELECT count(*) FROM verdicts"),
        expected.verdicts
    );
    let slashes = expected
        .events
        .get("provider_slashed")
        .copied()
        .unwrap_or(0)
        + expected
            .events
            .get("verifier_slashed")
            .copied()
            .unwrap_or(0);
    prop_assert_eq!(count(&lake, "SELECT count(*) FROM slashes"), slashes);
    prop_assert_eq!(
        count(&lake, "SELECT count(*) FROM subnet_epochs"),
        expected.events.get("subnet_epoch").copied().unwrap_or(0)
    );
    // Blocks' fees are their transactions' fees.
    let (a, b) = {
        let r = row(
            &lake,
            "SELECT (SELECT sum(fees) FROM blocks), (SELECT sum(fee_paid) FROM transactions)",
        );
        (r[0].clone(), r[1].clone())
    };
    prop_assert_eq!(a, b);
    // Reopened, the segments are all there and the tail is gone (the node rebuilds it from
    // its store); nothing is doubled.
    let flushed = lake.view().files[0].len();
    let segments = lake.segments();
    drop(lake);
    let lake = Lake::open(dir.path(), "agora-sim").unwrap();
    prop_assert_eq!(lake.segments(), segments);
    prop_assert_eq!(lake.view().files[0].len(), flushed);
    if segments > 0 {
        prop_assert_eq!(
            count(&lake, "SELECT count(*) FROM blocks"),
            count(&lake, "SELECT count(DISTINCT height) FROM blocks")
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn the_tables_hold_every_block_transaction_and_event_once(
        plans in sim::arb_run(24),
        segment_blocks in 1u64..12,
    ) {
        check_run(&plans, segment_blocks)?;
    }
}

#[test]
fn a_stray_segment_from_a_crash_is_deleted_and_a_corrupt_manifest_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = Lake::open(dir.path(), "c").unwrap();
    lake.set_segment_blocks(1);
    genesis_block(&mut lake);
    assert_eq!(lake.segments(), 1);
    drop(lake);
    // A segment written by a run that crashed before its manifest, and a half-written file.
    let stray = dir.path().join("blocks/000000000001-000000000001.parquet");
    std::fs::write(&stray, b"PAR1 half a file").unwrap();
    let tmp = dir.path().join("blocks/000000000002-000000000002.tmp");
    std::fs::write(&tmp, b"partial").unwrap();
    let lake = Lake::open(dir.path(), "c").unwrap();
    assert!(!stray.exists() && !tmp.exists());
    assert_eq!(lake.height(), Some(0));
    assert_eq!(count(&lake, "SELECT count(*) FROM blocks"), 1);
    drop(lake);
    // A listed segment whose file is gone: the tables end before it.
    let mut lake = Lake::open(dir.path(), "c").unwrap();
    lake.set_segment_blocks(1);
    lake.add(&BlockData {
        height: 1,
        time_ms: 1,
        hash: &Hash([1; 32]),
        proposer: &Address::default(),
        txs: &[],
        receipts: &[],
        block_events: &[],
    })
    .unwrap();
    assert_eq!(lake.segments(), 2);
    drop(lake);
    std::fs::remove_file(dir.path().join("blocks/000000000000-000000000000.parquet")).unwrap();
    let lake = Lake::open(dir.path(), "c").unwrap();
    assert_eq!(lake.segments(), 0);
    assert_eq!(lake.height(), None);
    assert!(
        !dir.path()
            .join("blocks/000000000001-000000000001.parquet")
            .exists()
    );
    drop(lake);
    // Another chain's tables, or an unreadable manifest: start again (the store has it all).
    let lake = Lake::open(dir.path(), "another").unwrap();
    assert_eq!(lake.height(), None);
    assert!(
        !dir.path()
            .join("blocks/000000000000-000000000000.parquet")
            .exists()
    );
    drop(lake);
    std::fs::write(dir.path().join("manifest.json"), b"{not json").unwrap();
    let lake = Lake::open(dir.path(), "c").unwrap();
    assert_eq!(lake.height(), None);
}

#[test]
fn blocks_out_of_order_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = Lake::open(dir.path(), "c").unwrap();
    genesis_block(&mut lake);
    let err = lake
        .add(&BlockData {
            height: 5,
            time_ms: 0,
            hash: &Hash::ZERO,
            proposer: &Address::default(),
            txs: &[],
            receipts: &[],
            block_events: &[],
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::OutOfOrder {
                expected: 1,
                got: 5
            }
        ),
        "{err}"
    );
    assert_eq!(lake.height(), Some(0));
}

/// The same random run in two lakes cut into segments differently.
fn two_lakes(plans: &[Vec<sim::TxPlan>], a: u64, b: u64) -> (Vec<Lake>, Vec<tempfile::TempDir>) {
    let dirs = vec![tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut lakes: Vec<Lake> = dirs
        .iter()
        .map(|d| Lake::open(d.path(), "agora-sim").unwrap())
        .collect();
    lakes[0].set_segment_blocks(a);
    lakes[1].set_segment_blocks(b);
    for lake in &mut lakes {
        genesis_block(lake);
    }
    sim::run_with(plans, |world| {
        let b = world.last_block.as_ref().unwrap();
        let hash = Hash::digest(&b.height.to_le_bytes());
        let data = BlockData {
            height: b.height,
            time_ms: b.time_ms,
            hash: &hash,
            proposer: &b.proposer,
            txs: &b.txs,
            receipts: &b.receipts,
            block_events: &b.block_events,
        };
        for lake in &mut lakes {
            lake.add(&data).unwrap();
        }
    })
    .unwrap();
    (lakes, dirs)
}

fn job_rows(lake: &Lake, sql: &str, height: u64) -> crate::Result<Vec<Vec<serde_json::Value>>> {
    rt().block_on(async {
        let planned = crate::engine::plan(
            Some(lake.view()),
            None,
            &[],
            sql,
            QueryLimits::default(),
            Some(height),
        )
        .await?;
        let out = crate::engine::collect(planned, QueryLimits::default()).await?;
        Ok(crate::job::json_rows(&out.batches))
    })
}

/// A job's answer at a height is the same whatever the segments: rows in the same order,
/// floats to the bit, the tables cut at the height; what would differ between nodes is refused.
#[test]
fn a_job_answers_the_same_rows_whatever_the_segments_and_refuses_what_would_differ() {
    let plans = proptest::strategy::ValueTree::current(
        &sim::arb_run(30)
            .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
            .unwrap(),
    );
    let (lakes, _dirs) = two_lakes(&plans, 2, 1_000);
    let top = lakes[0].height().unwrap();
    assert!(top >= 10, "{top} blocks");
    let queries = [
        "SELECT height, idx, hash, sender, fee, success FROM transactions",
        "SELECT kind, count(*), sum(fee), avg(CAST(fee AS DOUBLE)) FROM transactions GROUP BY kind",
        "SELECT sender, sum(CAST(fee AS DOUBLE)) / 3.0 AS f FROM transactions GROUP BY sender LIMIT 3",
        "SELECT kind, attributes FROM events ORDER BY kind LIMIT 5",
        "SELECT b.height, count(t.hash) FROM blocks b LEFT JOIN transactions t ON t.height = b.height GROUP BY b.height",
        "SELECT max(height), count(*) FROM blocks",
    ];
    for height in [top / 2, top] {
        for sql in queries {
            let a = job_rows(&lakes[0], sql, height).unwrap_or_else(|e| panic!("{sql}: {e}"));
            let b = job_rows(&lakes[1], sql, height).unwrap();
            assert_eq!(a, b, "{sql} at {height}");
        }
        let cut = job_rows(
            &lakes[0],
            "SELECT max(height), count(*) FROM blocks",
            height,
        )
        .unwrap();
        assert_eq!(
            cut,
            vec![vec![
                serde_json::json!(height),
                serde_json::json!(height + 1)
            ]]
        );
    }
    for sql in [
        "SELECT now()",
        "SELECT random() FROM blocks",
        "EXPLAIN SELECT 1",
        // A union's inputs are merged as they come.
        "SELECT sender FROM transactions UNION ALL SELECT \"from\" FROM transfers",
        // Immutable in name, but it names the machine's OS and CPU.
        "SELECT version()",
        // Platform maths libraries round differently in the last bit.
        "SELECT exp(CAST(fee AS DOUBLE)) FROM transactions",
        // Approximations merged batch by batch.
        "SELECT approx_distinct(sender) FROM transactions",
        // A recursive CTE reads no table: its work would be free.
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 9) SELECT * FROM r",
    ] {
        let e = job_rows(&lakes[0], sql, top).unwrap_err();
        assert!(matches!(e, Error::Plan(_) | Error::Syntax(_)), "{sql}: {e}");
    }
    // Table functions (which would fold `now()` before any check) are not there.
    let e = job_rows(&lakes[0], "SELECT * FROM generate_series(1, 3)", top).unwrap_err();
    assert!(e.to_string().contains("generate_series"), "{e}");
    // The state tables are today's, not the height's: not offered to a job.
    let e = job_rows(&lakes[0], "SELECT * FROM accounts", top).unwrap_err();
    assert!(matches!(e, Error::UnknownTable { .. }), "{e}");
}
