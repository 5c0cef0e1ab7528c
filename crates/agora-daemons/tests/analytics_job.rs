//! The analytics model as a job, on a real node's tables: a query and a forecast at a stated
//! height are answered, priced by the rows read, and judged by a verifier whose tables are cut
//! into other segments; every way of doctoring an answer fails its check.

#![allow(clippy::unwrap_used)]

use agora_analytics::{Analytics, Options};
use agora_api::testing::TestNode;
use agora_daemons::analytics_jobs::AnalyticsBackend;
use agora_market::{Backend, Error, JobInput, JobOutput};
use agora_state::{Genesis, GenesisAccount};
use agora_types::{AGR, Fault, JobParams, Keypair, Message, Transaction, Verdict};
use serde_json::json;
use std::ops::ControlFlow;
use std::time::Duration;

const CHAIN: &str = "analytics-job-test";

fn key(name: &str) -> Keypair {
    Keypair::from_seed_label(name)
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

fn fail(fault: Fault) -> Verdict {
    Verdict::Fail { fault }
}

#[test]
fn queries_and_forecasts_are_answered_at_a_height_and_a_doctored_answer_fails_its_check() {
    let genesis = Genesis::new(CHAIN).with_accounts(vec![GenesisAccount {
        address: key("alice").address(),
        balance: 1_000 * AGR,
        bonded: 0,
    }]);
    let (provider_dir, verifier_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut tables = Vec::new();
    let t = TestNode::start_with_pages(&genesis, "job-validator", |node| {
        // The provider's tables close a segment every 2 blocks; the verifier's keep a tail.
        for (dir, blocks) in [(&provider_dir, 2), (&verifier_dir, 1_000)] {
            let options = Options {
                segment_blocks: blocks,
            };
            tables.push(Analytics::start_with(node.clone(), dir.path(), options).unwrap());
        }
        agora_analytics::http::router(tables[0].clone())
    });
    for nonce in 0..12u64 {
        transfer(&t, nonce, u128::from(nonce % 4 + 1) * AGR);
        t.block();
    }
    let height = t.node.snapshot().unwrap().height().unwrap().unwrap();
    for a in &tables {
        assert!(t.rt.block_on(a.wait_for(height, Duration::from_secs(10))));
    }
    let provider = AnalyticsBackend::new(tables[0].clone());
    let verifier = AnalyticsBackend::new(tables[1].clone());
    let model = provider.id();
    assert_eq!(model, agora_analytics::job::model_id());
    assert_eq!(
        agora_analytics::job::MODEL_NAME,
        agora_market::ANALYTICS_MODEL,
        "the gateway's default names the model"
    );
    // The gateway refuses what the engine would, before any provider works on it.
    use agora_market::forecast_limits as gw;
    assert_eq!(
        gw::MAX_HORIZON as usize,
        agora_analytics::predict::MAX_HORIZON
    );
    assert_eq!(
        gw::MAX_SEASON as usize,
        agora_analytics::job::MAX_FORECAST_SEASON
    );
    assert_eq!(
        gw::MAX_WINDOWS as usize,
        agora_analytics::job::MAX_FORECAST_WINDOWS
    );
    let params = JobParams::default();
    let run =
        |input: &JobInput| provider.run(&model, input, &params, &mut |_| ControlFlow::Continue(()));
    let judge = |input: &JobInput, output: &JobOutput, counts| {
        verifier
            .judge(&model, input, &params, output, counts, 0.0)
            .unwrap()
    };

    // A query at a height below the top sees the tables as they stood then.
    let cut = height - 4;
    let input = JobInput::Sql {
        sql: "SELECT height, amount FROM transfers ORDER BY height".into(),
        height: cut,
    };
    let served = run(&input).unwrap();
    let JobOutput::Table { columns, rows } = &served.output else {
        panic!("{:?}", served.output)
    };
    assert_eq!(columns.len(), 2);
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| r[0].as_u64().unwrap() <= cut),
        "{rows:?}"
    );
    assert_eq!(served.output_tokens as usize, rows.len());
    // Priced by the rows read: every transfer at or below the height.
    let transfers_then = rows.len() as u32;
    assert_eq!(served.input_tokens, transfers_then);
    assert_eq!(
        provider.input_tokens(&model, &input).unwrap(),
        served.input_tokens
    );
    let counts = (served.input_tokens, served.output_tokens);
    assert_eq!(judge(&input, &served.output, counts), Verdict::Pass);

    // Doctored: a row dropped, a value changed, rows reordered, counts inflated, another kind.
    let mut dropped = rows.clone();
    dropped.pop();
    let table = |rows: Vec<Vec<serde_json::Value>>| JobOutput::Table {
        columns: columns.clone(),
        rows,
    };
    assert_eq!(
        judge(&input, &table(dropped.clone()), counts),
        fail(Fault::WrongResult)
    );
    // …and with its receipt's counts made to match, the count is wrong.
    assert_eq!(
        judge(&input, &table(dropped), (counts.0, counts.1 - 1)),
        fail(Fault::WrongCount)
    );
    let mut changed = rows.clone();
    changed[0][1] = json!("999000000000");
    assert_eq!(
        judge(&input, &table(changed), counts),
        fail(Fault::WrongResult)
    );
    let mut reordered = rows.clone();
    reordered.reverse();
    assert_ne!(reordered, *rows, "distinct rows to reorder");
    assert_eq!(
        judge(&input, &table(reordered), counts),
        fail(Fault::WrongResult)
    );
    assert_eq!(
        judge(&input, &served.output, (counts.0 * 2, counts.1)),
        fail(Fault::WrongCount)
    );
    assert_eq!(
        judge(
            &input,
            &JobOutput::Forecast {
                forecast: json!({})
            },
            counts
        ),
        fail(Fault::WrongKind)
    );

    // A query that fails everywhere had nothing to deliver; one the provider refuses says why.
    let bad = JobInput::Sql {
        sql: "SELECT now()".into(),
        height,
    };
    let e = run(&bad).unwrap_err();
    assert!(e.to_string().contains("now()"), "{e}");
    assert_eq!(
        judge(&bad, &table(vec![]), (0, 0)),
        fail(Fault::WrongResult)
    );
    // A height past the chain's: no provider could have answered it (the verifier's chain
    // holds the job's settlement, which came after the run).
    let ahead = JobInput::Sql {
        sql: "SELECT count(*) FROM blocks".into(),
        height: height + 1_000,
    };
    assert!(run(&ahead).is_err());
    assert_eq!(
        judge(&ahead, &served.output, counts),
        fail(Fault::WrongResult)
    );

    // A forecast of transfers per block, answered and judged the same way.
    let input = JobInput::Forecast {
        sql:
            "SELECT height, CAST(count(*) AS DOUBLE) FROM transfers GROUP BY height ORDER BY height"
                .into(),
        height,
        horizon: 3,
        season: None,
        level_milli: 900,
        windows: 2,
    };
    let served = run(&input).unwrap();
    let JobOutput::Forecast { forecast } = &served.output else {
        panic!("{:?}", served.output)
    };
    assert_eq!(
        forecast["points"].as_array().unwrap().len(),
        3,
        "{forecast}"
    );
    let counts = (served.input_tokens, served.output_tokens);
    assert_eq!(counts.1, 3);
    assert_eq!(judge(&input, &served.output, counts), Verdict::Pass);
    let mut doctored = forecast.clone();
    let v = doctored["points"][0]["value"].as_f64().unwrap();
    doctored["points"][0]["value"] = json!(v * 1.01 + 1.0);
    assert_eq!(
        judge(&input, &JobOutput::Forecast { forecast: doctored }, counts),
        fail(Fault::WrongResult)
    );

    // Jobs that fail are not charged: a client whose job failed after running (here, more
    // rows than a job returns) waits before its next one runs; other clients do not.
    let as_client = |client: &[u8], input: &JobInput| {
        provider.run_for(client, &model, input, &params, &mut |_| {
            ControlFlow::Continue(())
        })
    };
    let big = JobInput::Sql {
        sql: "SELECT a.height FROM blocks a CROSS JOIN blocks b CROSS JOIN blocks c".into(),
        height,
    };
    let e = as_client(b"mallory", &big).unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Refused {
                code: "row_cap",
                ..
            }
        ),
        "{e}"
    );
    let small = JobInput::Sql {
        sql: "SELECT count(*) FROM blocks".into(),
        height,
    };
    let e = as_client(b"mallory", &small).unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Refused {
                status: 429,
                code: "cooling_down",
                ..
            }
        ),
        "{e}"
    );
    as_client(b"bob", &small).unwrap();
    // The cool-down ends by itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match as_client(b"mallory", &small) {
            Ok(_) => break,
            Err(Error::Refused {
                code: "cooling_down",
                ..
            }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    }
}
