//! The web app in a real browser (headless Chromium over WebDriver) against `agora devnet` with
//! the real models: blocks arrive live without a reload, the page's BLAKE3 is the chain's, an
//! account's proof verifies in the page and a tampered one does not, a provider's page shows the
//! job just run, a page that cannot be shown says why, and the playground streams a chat, shows its
//! receipt and then its verification, refuses a wrong key in the page, and compares embeddings. Screenshots of each page go to
//! `target/screenshots/`.

use crate::infer::models_available;
use crate::market::{ShowLogOnFailure, start_devnet, wait_settled};
use crate::sigterm;
use crate::webdriver::{Browser, browser_available};
use agora_types::Hash;
use serde_json::{Value, json};
use std::path::PathBuf;

/// A contract with a flaw the auditor reports (authorization by `tx.origin`).
const WALLET: &str = "pragma solidity ^0.4.24;
contract Wallet {
    address owner;
    function Wallet() public { owner = msg.sender; }
    function withdraw(uint amount) public {
        require(tx.origin == owner);
        msg.sender.transfer(amount);
    }
}
";

/// A severity as the API writes it.
fn severity_name(s: agora_audit::Severity) -> String {
    serde_json::to_value(s)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
}

/// The height in the live table's top row.
fn top_height(b: &Browser) -> Option<u64> {
    b.run(
        "const r = document.querySelector('table[data-live-blocks] tbody tr'); \
         return r ? Number(r.dataset.height) : null;",
        json!([]),
    )
    .as_u64()
}

#[test]
fn the_web_app_in_a_real_browser() {
    if !browser_available() || !models_available() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("devnet.log");
    let _show = ShowLogOnFailure(log_path.clone());
    // Ten blocks a second: the explorer must keep up in the browser.
    let (mut child, api, gateway) = start_devnet(
        home.path(),
        &log_path,
        "warn",
        &["--settle-every", "1", "--block-time-ms", "100"],
    );
    let shots = screenshots();
    let b = Browser::start(1280, 900);

    // A new block appears without reloading the page.
    b.goto(&format!("{api}/"));
    b.wait("the live stream", || {
        b.text("[data-live-status]").contains("live").then_some(())
    });
    b.run("window.agoraMarker = 42;", json!([]));
    let first = b.wait("a block in the table", || top_height(&b));
    let later = b.wait("a newer block, live", || {
        top_height(&b).filter(|h| *h > first)
    });
    assert!(later > first);
    // Blocks committed before the stream began are fetched: the table has no gap.
    b.wait("the table without a gap", || {
        let heights = b.run(
            "return Array.from(document.querySelectorAll('table[data-live-blocks] tbody tr'))\
             .map(r => Number(r.dataset.height));",
            json!([]),
        );
        let heights: Vec<u64> = serde_json::from_value(heights).unwrap();
        (heights.len() > 1 && heights.windows(2).all(|w| w[0] == w[1] + 1)).then_some(())
    });
    assert_eq!(
        b.run("return window.agoraMarker;", json!([])),
        json!(42),
        "the page was reloaded"
    );
    // At 10 blocks a second the page stays with the chain: over two seconds its top row is
    // never more than two blocks behind the node (what the node says, read in the same breath).
    let mut worst = 0;
    for _ in 0..20 {
        let lag = b.run(
            "return fetch('/v1/status').then(r => r.json()).then(s => s.height - \
               Number(document.querySelector('table[data-live-blocks] tbody tr').dataset.height));",
            json!([]),
        );
        worst = worst.max(lag.as_i64().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        worst <= 2,
        "the page fell {worst} blocks behind at 10 blocks/s"
    );
    eprintln!(
        "the explorer in the browser at 10 blocks/s: at most {worst} block(s) behind the node"
    );
    b.screenshot(&shots, "explorer");

    // On a devnet, the demo wallet sends a transfer from the page.
    let validator = b.run(
        "return fetch('/v1/status').then(r => r.json()).then(s => s.validator);",
        json!([]),
    );
    b.fill("[data-demo-to]", validator.as_str().unwrap());
    b.fill("[data-demo-amount]", "2.5");
    b.click("[data-demo-send]");
    // The node checks and admits the transfer while the other tests load models and run
    // chains on the same two cores: that can take more than the usual wait (it once took
    // over 10 s in a full run; alone it takes well under one).
    let sent = b.wait_for(
        "the transfer's hash",
        std::time::Duration::from_secs(30),
        &mut || Some(b.text("[data-demo-result]")).filter(|t| t.starts_with("Sent")),
    );
    assert!(b.text("[data-demo-error]").is_empty(), "{sent}");
    // The transfer arrives in the latest transactions, without a reload, once in a block.
    let sent_hash = b
        .run(
            "return document.querySelector('[data-demo-result] a').getAttribute('href').slice(5);",
            json!([]),
        )
        .as_str()
        .unwrap()
        .to_string();
    b.wait("the transfer among the latest transactions", || {
        b.find(&format!("table[data-live-txs] tr[data-hash='{sent_hash}']"))
    });
    assert_eq!(
        b.run("return window.agoraMarker;", json!([])),
        json!(42),
        "the page was reloaded"
    );
    b.click("[data-demo-result] a");
    b.wait("the transfer's page", || {
        Some(b.text("main")).filter(|t| t.contains("transfer"))
    });

    // The page's BLAKE3 (for proofs) gives the chain's hashes, across block and chunk edges.
    for len in [0usize, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 3000, 5000] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let js = b.run(
            "return agoraBlake3Hex(arguments[0]);",
            json!([hex::encode(&bytes)]),
        );
        assert_eq!(
            js.as_str().unwrap(),
            Hash::digest(&bytes).to_hex(),
            "{len} bytes"
        );
    }

    // A chat through the gateway; its job on the provider's page once settled.
    let key = std::fs::read_to_string(home.path().join("config/gateway_api_key")).unwrap();
    let mut r = ureq::post(&format!("{gateway}/v1/chat/completions"))
        .header("Authorization", &format!("Bearer {}", key.trim()))
        .send_json(json!({
            "model": "smollm2-135m-instruct",
            "messages": [{"role": "user", "content": "Name a colour."}],
            "max_tokens": 8,
        }))
        .unwrap();
    let answer: Value = r.body_mut().read_json().unwrap();
    let id = answer["agora"]["job_id"].as_str().unwrap().to_string();
    let settled = wait_settled(&api, &id);
    let provider = settled["job"]["provider"].as_str().unwrap().to_string();
    let client = settled["job"]["client"].as_str().unwrap().to_string();
    // The provider's page finds its jobs through its history, indexed moments after the block.
    let jobs = b.wait("the job on its provider's page", || {
        b.goto(&format!("{api}/market/providers/{provider}"));
        b.find("table[data-provider-jobs]")
            .map(|_| b.text("table[data-provider-jobs]"))
    });
    assert!(
        jobs.contains(&id[..16]),
        "the job just run is listed: {jobs}"
    );
    assert_ne!(b.text("[data-jobs-settled]"), "0");
    // Latency is the gateway's measure: the provider's page draws what it reports.
    let bars = b.run(
        "return document.querySelectorAll('[data-latency] svg rect').length;",
        json!([]),
    );
    assert!(
        bars.as_u64().unwrap() >= 1,
        "a latency chart with the job's bar"
    );
    b.screenshot(&shots, "provider");
    b.click(&format!("a[href='/market/jobs/{id}']"));
    let state = b.text("[data-fee-state]");
    assert!(
        ["held", "released", "pending"].contains(&state.as_str()),
        "{state}"
    );
    b.screenshot(&shots, "job");
    b.goto(&format!("{api}/market"));
    assert!(
        b.text("main").contains("smollm2"),
        "the market lists the provider's models"
    );
    b.screenshot(&shots, "market");

    // The client's account: its proof verifies in the page, and a tampered one does not.
    b.goto(&format!("{api}/accounts/{client}"));
    b.click("[data-proof-verify]");
    let verdict = b.wait("the proof's verdict", || {
        Some(b.text("[data-proof-result]")).filter(|t| !t.is_empty())
    });
    assert!(verdict.starts_with("Valid"), "{verdict}");
    b.screenshot(&shots, "account");
    b.run(
        "const f = document.querySelector('[data-proof-json]'); \
         const p = JSON.parse(f.value); \
         const last = p.value.slice(-1); \
         p.value = p.value.slice(0, -1) + (last === '0' ? '1' : '0'); \
         f.value = JSON.stringify(p, null, 2);",
        json!([]),
    );
    b.click("[data-proof-verify]");
    let verdict = b.wait("the tampered proof's verdict", || {
        Some(b.text("[data-proof-result]")).filter(|t| t.starts_with("Invalid"))
    });
    assert!(
        verdict.contains("does not lead to the state root"),
        "{verdict}"
    );

    // The search box finds the job; a missing block is a page that says so.
    b.goto(&format!("{api}/"));
    b.fill("#q", &id);
    b.click("form[role='search'] button");
    b.wait("the job's page from the search", || {
        b.find("[data-fee-state]").map(|_| ())
    });
    b.goto(&format!("{api}/blocks/99999999"));
    assert!(b.text("[data-error-message]").contains("no block 99999999"));
    b.screenshot(&shots, "error");

    // The playground: a wrong key is an error in the page; the right one streams an answer,
    // then its receipt, then the chain's settlement and verification of the job.
    b.goto(&format!("{api}/playground"));
    let url = b.run(
        "return document.querySelector('[data-gateway-url]').value;",
        json!([]),
    );
    assert_eq!(
        url.as_str(),
        Some(gateway.as_str()),
        "the devnet's gateway is filled in"
    );
    b.fill("[data-gateway-key]", "sk-agora-wrong");
    b.click("[data-chat-send]");
    let error = b.wait("the wrong key's error", || {
        Some(b.text("[data-chat-error]")).filter(|t| !t.is_empty())
    });
    assert!(
        error.contains("401") || error.to_lowercase().contains("key"),
        "{error}"
    );
    b.fill("[data-gateway-key]", key.trim());
    b.fill("[data-chat-max]", "16");
    b.click("[data-chat-logprobs]");
    b.run(
        "window.agoraUpdates = 0; \
         new MutationObserver(() => window.agoraUpdates++).observe( \
           document.querySelector('[data-chat-output]'), \
           { childList: true, characterData: true, subtree: true });",
        json!([]),
    );
    b.click("[data-chat-send]");
    let job = b.wait_for(
        "the chat's receipt",
        std::time::Duration::from_secs(60),
        &mut || Some(b.text("[data-receipt-job]")).filter(|t| t.len() == 64),
    );
    assert!(b.text("[data-chat-error]").is_empty());
    assert!(!b.text("[data-chat-output]").is_empty(), "an answer");
    let updates = b
        .run("return window.agoraUpdates;", json!([]))
        .as_u64()
        .unwrap();
    assert!(
        updates > 1,
        "the answer arrived in pieces ({updates} updates)"
    );
    // With log-probabilities asked for, the answer's tokens shown by probability.
    let shown = b
        .run(
            "return document.querySelectorAll('[data-chat-tokens] [data-logprob]').length;",
            json!([]),
        )
        .as_u64()
        .unwrap();
    assert!(shown > 0, "the tokens' probabilities are shown");
    let settled = b.wait_for(
        "the job's settlement in the page",
        std::time::Duration::from_secs(30),
        &mut || Some(b.text("[data-job-state]")).filter(|t| t.starts_with("settled at block")),
    );
    assert!(settled.contains("fee"), "{settled}");
    let verification = b.text("[data-job-verification]");
    assert!(verification.starts_with("sampled: "), "{verification}");
    assert!(
        wait_settled(&api, &job)["job"]["output_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    b.run(
        "document.querySelector('[data-chat]').scrollIntoView();",
        json!([]),
    );
    b.screenshot(&shots, "playground-chat");
    // With a JSON schema, the answer is JSON that follows it.
    b.fill("[data-chat-max]", "64");
    b.fill(
        "[data-chat-schema]",
        r#"{"type": "object", "properties": {"answer": {"type": "string", "maxLength": 60},
            "sure": {"type": "boolean"}}, "required": ["answer", "sure"],
            "additionalProperties": false}"#,
    );
    b.click("[data-chat-send]");
    b.wait_for(
        "the structured answer's receipt",
        std::time::Duration::from_secs(60),
        &mut || Some(b.text("[data-receipt-job]")).filter(|t| t.len() == 64 && *t != job),
    );
    assert!(b.text("[data-chat-error]").is_empty());
    let answer: serde_json::Value =
        serde_json::from_str(&b.text("[data-chat-output]")).expect("the answer is JSON");
    assert!(
        answer["answer"].is_string() && answer["sure"].is_boolean(),
        "{answer}"
    );
    b.fill("[data-chat-schema]", "");
    b.click("[data-embed-send]");
    b.wait("the similarity matrix", || {
        b.find("[data-embed-matrix]:not([hidden]) td")
    });
    let sims = b.run(
        "return Array.from(document.querySelectorAll('[data-embed-matrix] td')).map(t => Number(t.dataset.sim));",
        json!([]),
    );
    let sims: Vec<f64> = serde_json::from_value(sims).unwrap();
    assert_eq!(sims.len(), 9, "three texts, three by three");
    assert!((sims[0] - 1.0).abs() < 1e-3, "a text is itself");
    assert!(
        sims[1] > sims[2],
        "cat ~ kitten more than cat ~ tax form: {sims:?}"
    );
    b.run(
        "document.querySelector('[data-embed]').scrollIntoView();",
        json!([]),
    );
    b.screenshot(&shots, "playground-embeddings");

    // The auditor's page: a vulnerable contract's findings on their lines, filters, an
    // explanation on demand, SARIF to download.
    b.goto(&format!("{api}/audit"));
    assert_eq!(
        b.run(
            "return document.querySelector('[data-gateway-key]').value;",
            json!([])
        ),
        json!(key.trim()),
        "the key typed in the playground is kept for this tab"
    );
    b.fill("[data-audit-source]", WALLET);
    b.click("[data-audit-publish]");
    b.click("[data-audit-send]");
    b.wait_for(
        "the audit's findings",
        std::time::Duration::from_secs(60),
        &mut || b.find("[data-audit-result]:not([hidden]) .finding"),
    );
    let flagged = b.run(
        "return Array.from(document.querySelectorAll('ol.source li.flag')).map(l => [Number(l.dataset.line), l.dataset.severity]);",
        json!([]),
    );
    let flagged: Vec<(u64, String)> = serde_json::from_value(flagged).unwrap();
    let local = agora_audit::audit_files([("pasted.sol", WALLET)]);
    let origin = local
        .findings
        .iter()
        .find(|f| f.detector == "tx-origin")
        .expect("the auditor flags tx.origin");
    assert!(
        flagged.contains(&(origin.line as u64, severity_name(origin.severity))),
        "line {} is highlighted: {flagged:?}",
        origin.line
    );
    let listed = b.run(
        "return document.querySelectorAll('.finding').length;",
        json!([]),
    );
    assert_eq!(
        listed.as_u64(),
        Some(local.findings.len() as u64),
        "every finding is listed"
    );
    // Hiding a severity hides its findings and their lines' marks.
    let sev = severity_name(origin.severity);
    b.click(&format!("[data-severity-filter][value='{sev}']"));
    let hidden = b.run(
        "return document.querySelector(`.finding[data-severity='${arguments[0]}']`).hidden \
           && !document.querySelector(`ol.source li[data-severity='${arguments[0]}']`).classList.contains('flag');",
        json!([sev]),
    );
    assert_eq!(hidden, json!(true));
    b.click(&format!("[data-severity-filter][value='{sev}']"));
    b.click(".finding button");
    let explained = b.wait_for(
        "an explanation",
        std::time::Duration::from_secs(60),
        &mut || Some(b.text(".finding .explanation")).filter(|t| t.contains("generated by")),
    );
    assert!(explained.len() > 40, "{explained}");
    let sarif = b.run(
        "return fetch(document.querySelector('[data-sarif-download]').href).then(r => r.json()).then(j => j.version);",
        json!([]),
    );
    assert_eq!(sarif, json!("2.1.0"));
    let published = b.text("[data-audit-published]");
    assert!(published.contains("published as audit:"), "{published}");
    b.screenshot(&shots, "audit");

    // Proofs: the provable models, and an account's attestations through the page's form.
    b.goto(&format!("{api}/zk"));
    assert!(b.text("h1").contains("Zero-knowledge proofs"));
    b.fill("#zk-address", &client);
    b.click("form[action='/zk'] button");
    let next = b.wait("the account's attestations", || b.find("[data-next-seq]"));
    assert!(!next.is_empty());
    assert_eq!(b.text("[data-next-seq]"), "0", "no attestation yet");
    b.screenshot(&shots, "zk");

    // SQL over the chain: the demo transfer and the jobs above are rows, as a table and a chart;
    // a query saved to the dashboard runs again on the next visit; a bad query says why.
    b.goto(&format!("{api}/sql"));
    b.fill(
        "[data-sql-query]",
        "SELECT kind, count(*) AS n FROM transactions GROUP BY kind ORDER BY n DESC",
    );
    b.click("[data-sql-run]");
    let status = b.wait("the query's result", || {
        Some(b.text("[data-sql-status]")).filter(|t| t.contains("row(s)"))
    });
    assert!(b.text("[data-sql-error]").is_empty(), "{status}");
    let kinds = b.text("table[data-sql-table]");
    assert!(
        kinds.contains("transfer") && kinds.contains("settle_jobs"),
        "{kinds}"
    );
    b.element("[data-sql-chart] svg rect");
    b.fill("[data-sql-name]", "Transactions by kind");
    b.click("[data-sql-save]");
    b.goto(&format!("{api}/sql"));
    b.wait("the saved query on the dashboard", || {
        b.find("[data-dashboard-panel='Transactions by kind'] svg rect")
    });
    b.element("[data-sql-schema='transfers']");
    b.fill("[data-sql-query]", "DELETE FROM blocks");
    b.click("[data-sql-run]");
    let refused = b.wait("the refusal", || {
        Some(b.text("[data-sql-error]")).filter(|t| !t.is_empty())
    });
    assert!(refused.contains("read_only"), "{refused}");
    // The anomalies panel asks the node's detectors and lists what they find.
    b.click("[data-anomalies-form] button");
    let looked = b.wait("the anomalies", || {
        Some(b.text("[data-anomalies-status]")).filter(|t| t.contains("finding(s)"))
    });
    assert!(b.text("[data-anomalies-error]").is_empty(), "{looked}");
    b.screenshot(&shots, "sql");

    // Search: words find the jobs just run (the index follows the chain with MiniLM), each with
    // its highlighted words; the demo wallet's feed lists items with their reasons.
    b.goto(&format!("{api}/search?q=inference%20job"));
    b.run(
        "document.querySelector('[data-search-kind]').value = 'job';",
        json!([]),
    );
    let mut tries = 0;
    let found = b.wait_for(
        "the search's results",
        std::time::Duration::from_secs(90),
        &mut || {
            if b.find("[data-search-hit^='job:']").is_some() {
                return Some(b.text("[data-search-status]"));
            }
            // The index may still be catching up: ask again, now and then.
            tries += 1;
            if tries % 20 == 0 {
                eprintln!(
                    "search page: {:?} {:?}",
                    b.text("[data-search-status]"),
                    b.text("[data-search-error]")
                );
                b.click("[data-search-form] button");
            }
            None
        },
    );
    assert!(b.text("[data-search-error]").is_empty(), "{found}");
    assert!(found.contains("result(s)"), "{found}");
    let shown = b.run(
        "return document.querySelectorAll('[data-search-hit]').length;",
        json!([]),
    );
    assert!(
        (1..=20).contains(&shown.as_u64().unwrap()),
        "one search's results, no more: {shown}"
    );
    b.element("[data-search-results] b");
    b.click("[data-feed-form] button");
    b.wait("the feed", || {
        Some(b.text("[data-feed-status]")).filter(|t| t.contains("item(s)"))
    });
    assert!(b.text("[data-feed-error]").is_empty());
    b.element("[data-feed-item] [data-feed-reasons] li");
    b.screenshot(&shots, "search");
    // The audit published above is found by its flaw once its job settled.
    let mut tries = 0;
    b.goto(&format!("{api}/search?q=tx.origin&kind=audit"));
    b.wait_for(
        "the published audit",
        std::time::Duration::from_secs(90),
        &mut || {
            if b.find("[data-search-hit^='audit:']").is_some() {
                return Some(());
            }
            tries += 1;
            if tries % 20 == 0 {
                b.click("[data-search-form] button");
            }
            None
        },
    );

    // Phone width: nothing wider than the screen but the tables, which scroll in their box.
    drop(b);
    let phone = Browser::start(390, 844);
    phone.goto(&format!("{api}/"));
    phone.element("table[data-live-blocks]");
    let overflow = phone.run(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        json!([]),
    );
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "the page scrolls sideways: {overflow}"
    );
    phone.screenshot(&shots, "explorer-phone");

    sigterm(child.id());
    assert!(child.wait().unwrap().success());
}
