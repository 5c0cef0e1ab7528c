//! `agora ingest evm` against a real anvil node (from its npm package, found through
//! `AGORA_ANVIL`; skipped without it unless `AGORA_REQUIRE_EVM=1`): killed mid-run and run
//! again, it ends with every block once; `agora sql --evm` reads the result.

use crate::{agora, agora_ok};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn anvil() -> Option<PathBuf> {
    let fallback = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/ci-node/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    let path = std::env::var_os("AGORA_ANVIL")
        .map(PathBuf::from)
        .unwrap_or(fallback);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("AGORA_REQUIRE_EVM").as_deref() != Ok("1"),
        "AGORA_REQUIRE_EVM=1 but there is no anvil at {}",
        path.display()
    );
    eprintln!("skipping: no anvil (npm install @foundry-rs/anvil)");
    None
}

fn rpc(url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut answer = ureq::post(url).send_json(&body).expect("the node answers");
    let v: Value = answer.body_mut().read_json().expect("JSON");
    assert!(v.get("error").is_none(), "{method}: {v}");
    v["result"].clone()
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_ingest_killed_mid_run_resumes_without_a_block_twice_or_missing() {
    let Some(anvil) = anvil() else { return };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _node = Killed(
        Command::new(anvil)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--silent",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("anvil starts"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::post(&url)
        .send_json(json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}))
        .is_err()
    {
        assert!(Instant::now() < deadline, "anvil did not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
    // 3,000 blocks, some with a transfer of ether.
    rpc(&url, "anvil_mine", json!(["0xbb8"]));
    let accounts = rpc(&url, "eth_accounts", json!([]));
    for i in 0..5 {
        let hash = rpc(
            &url,
            "eth_sendTransaction",
            json!([{"from": accounts[0], "to": accounts[1 + i], "value": "0x1000"}]),
        );
        // Mined a moment after it is accepted.
        let deadline = Instant::now() + Duration::from_secs(10);
        while rpc(&url, "eth_getTransactionReceipt", json!([hash])).is_null() {
            assert!(Instant::now() < deadline, "never mined");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let head = u64::from_str_radix(
        rpc(&url, "eth_blockNumber", json!([]))
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    let out = dir.path().join("evm");
    let out_arg = out.to_str().unwrap().to_string();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "ingest",
            "evm",
            "--rpc",
            &url,
            "--out",
            &out_arg,
            "--partition-blocks",
            "50",
            "--concurrency",
            "2",
            "--confirmations",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // Started, then killed (SIGKILL: no chance to tidy up) once some partitions are listed.
    let mut run = Killed(
        Command::new(env!("CARGO_BIN_EXE_agora"))
            .arg("--home")
            .arg(dir.path())
            .args(args(&["--to", &head.to_string()]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let manifest = out.join("manifest.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = std::fs::read(&manifest)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map_or(0, |m| m["partitions"].as_array().map_or(0, Vec::len));
        if listed >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no partition written in 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    run.0.kill().unwrap();
    run.0.wait().unwrap();
    let parts: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let written = parts["partitions"].as_array().unwrap().len() as u64;
    assert!(
        written < head / 50,
        "the run was killed before the end ({written} partitions)"
    );

    // Run again: only what the manifest lacks is fetched.
    let h = head.to_string();
    let arg_refs = args(&["--to", &h]);
    let arg_refs: Vec<&str> = arg_refs.iter().map(String::as_str).collect();
    let done = agora_ok(dir.path(), &arg_refs);
    assert!(done.contains("already there"), "{done}");
    let fetched: u64 = done
        .split(" fetched now")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{done}"));
    assert!(fetched < head + 1 && fetched > 0, "{done}");

    // Every block once, the transfers with them.
    let csv = agora_ok(
        dir.path(),
        &[
            "sql",
            "--evm",
            &out_arg,
            "--format",
            "csv",
            "SELECT count(*) AS n, count(DISTINCT number) AS d, min(number) AS lo, max(number) AS hi, sum(transactions) AS txs FROM evm_blocks",
        ],
    );
    assert_eq!(
        csv.lines().nth(1),
        Some(format!("{},{},0,{head},5", head + 1, head + 1).as_str()),
        "{csv}"
    );
    // A write is refused with the node's own error; a bad folder is a clear error.
    let refused = agora(
        dir.path(),
        &["sql", "--evm", &out_arg, "DELETE FROM evm_blocks"],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("read only"),
        "{refused:?}"
    );
    let missing = agora(
        dir.path(),
        &["sql", "--evm", dir.path().to_str().unwrap(), "SELECT 1"],
    );
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("nothing was ingested here"),
        "{missing:?}"
    );
}
