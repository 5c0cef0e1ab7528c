//! EVM ingestion against a real local node: anvil (from its npm package) runs a chain, the
//! test deploys its own ERC-20 and ERC-721 contracts (compiled with solc from npm) and sends
//! traffic, then ingests the chain and compares every row with what the node answers over
//! JSON-RPC, and the token tables with the contracts' own balances. A proxy in front of the
//! node then lies, hangs and answers garbage, and the chain is reorganized under the ingester.
//!
//! The tools are found through `AGORA_ANVIL` and `AGORA_SOLCJS` (`.ci/run` installs them);
//! without them the tests skip, unless `AGORA_REQUIRE_EVM=1`.

use agora_analytics::QueryLimits;
use agora_analytics::format::Format;
use agora_evm::{Error, Options, file_tables, ingest, partitions};
use alloy::primitives::{U256, keccak256};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tool(var: &str, fallback: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ci-node");
    std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| Some(root.join(fallback)))
        .filter(|p| p.is_file())
}

/// anvil and solcjs, or `None` (with a line saying why) to skip.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let anvil = tool(
        "AGORA_ANVIL",
        "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
    );
    let solc = tool("AGORA_SOLCJS", "node_modules/.bin/solcjs");
    match (anvil, solc) {
        (Some(a), Some(s)) => Some((a, s)),
        _ => {
            assert!(
                std::env::var("AGORA_REQUIRE_EVM").as_deref() != Ok("1"),
                "AGORA_REQUIRE_EVM=1 but anvil or solcjs is missing (set AGORA_ANVIL and \
                 AGORA_SOLCJS, or run .ci/run once to install them)"
            );
            eprintln!("skipping: no anvil or solcjs (npm install @foundry-rs/anvil solc)");
            None
        }
    }
}

/// A local anvil node; stopped when dropped.
struct Anvil {
    child: Child,
    url: String,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Anvil {
    fn start(binary: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(binary)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--silent",
            ])
            .args(["--no-mining", "--chain-id", "31337"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("anvil starts");
        let anvil = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while try_rpc(&anvil.url, "eth_chainId", json!([])).is_err() {
            assert!(Instant::now() < deadline, "anvil did not answer in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        anvil
    }
}

fn try_rpc(url: &str, method: &str, params: Value) -> Result<Value, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut answer = agent
        .post(url)
        .send_json(&body)
        .map_err(|e| e.to_string())?;
    let v: Value = answer.body_mut().read_json().map_err(|e| e.to_string())?;
    match v.get("error") {
        Some(e) => Err(format!("{method}: {e}")),
        None => Ok(v["result"].clone()),
    }
}

#[track_caller]
fn rpc(url: &str, method: &str, params: Value) -> Value {
    try_rpc(url, method, params).unwrap_or_else(|e| panic!("{e}"))
}

fn quantity(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("a quantity: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

fn big(v: &Value) -> String {
    let s = v.as_str().unwrap_or_else(|| panic!("a quantity: {v}"));
    U256::from_str_radix(s.trim_start_matches("0x"), 16)
        .expect("hex")
        .to_string()
}

/// Compiles `tests/contracts/Tokens.sol` with solcjs; returns each contract's creation code.
fn compile(solc: &Path, out: &Path) -> (String, String) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contracts/Tokens.sol");
    let status = Command::new(solc)
        .args(["--bin", "--optimize", "--base-path"])
        .arg(source.parent().expect("a folder"))
        .arg("-o")
        .arg(out)
        .arg(&source)
        .status()
        .expect("solcjs runs");
    assert!(status.success(), "solcjs failed");
    let read = |name: &str| {
        let found = std::fs::read_dir(out)
            .expect("solc's output")
            .map(|e| e.expect("an entry").path())
            .find(|p| p.to_string_lossy().ends_with(&format!("{name}.bin")))
            .unwrap_or_else(|| panic!("no {name}.bin from solc"));
        std::fs::read_to_string(found)
            .expect("reads")
            .trim()
            .to_string()
    };
    (read("TestToken"), read("TestNft"))
}

fn selector(signature: &str) -> String {
    alloy::primitives::hex::encode(&keccak256(signature.as_bytes())[..4])
}

fn word_address(a: &str) -> String {
    format!("{:0>64}", a.trim_start_matches("0x"))
}

fn word(n: u128) -> String {
    format!("{n:064x}")
}

/// A chain with contracts and traffic on it.
struct Chain {
    anvil: Anvil,
    accounts: Vec<String>,
    token: String,
    nft: String,
    /// Holders of the ERC-20 and owners of the ERC-721 (token ids minted).
    minted: Vec<u128>,
}

impl Chain {
    fn send(
        &self,
        from: usize,
        to: Option<&str>,
        data: String,
        value: u128,
        gas: Option<u64>,
    ) -> String {
        let mut tx = json!({"from": self.accounts[from], "data": format!("0x{data}"), "value": format!("0x{value:x}")});
        if let Some(to) = to {
            tx["to"] = json!(to);
        }
        if let Some(gas) = gas {
            tx["gas"] = json!(format!("0x{gas:x}"));
        }
        rpc(&self.anvil.url, "eth_sendTransaction", json!([tx]))
            .as_str()
            .expect("a hash")
            .to_string()
    }

    fn mine(&self) {
        rpc(&self.anvil.url, "evm_mine", json!([]));
    }

    fn receipt(&self, hash: &str) -> Value {
        rpc(&self.anvil.url, "eth_getTransactionReceipt", json!([hash]))
    }

    fn head(&self) -> u64 {
        quantity(&rpc(&self.anvil.url, "eth_blockNumber", json!([])))
    }

    fn call(&self, to: &str, data: String) -> String {
        let result = rpc(
            &self.anvil.url,
            "eth_call",
            json!([{"to": to, "data": format!("0x{data}")}, "latest"]),
        );
        result.as_str().expect("bytes").to_string()
    }

    /// Deploys the contracts and sends `rounds` rounds of traffic, a few transactions a block.
    fn new(anvil: Anvil, solc: &Path, scratch: &Path, rounds: u128) -> Self {
        let (token_code, nft_code) = compile(solc, scratch);
        let accounts: Vec<String> = rpc(&anvil.url, "eth_accounts", json!([]))
            .as_array()
            .expect("accounts")
            .iter()
            .map(|a| a.as_str().expect("an address").to_lowercase())
            .collect();
        let mut chain = Self {
            anvil,
            accounts,
            token: String::new(),
            nft: String::new(),
            minted: Vec::new(),
        };
        let supply = 10u128.pow(24);
        let t = chain.send(0, None, format!("{token_code}{}", word(supply)), 0, None);
        let n = chain.send(0, None, nft_code, 0, None);
        chain.mine();
        let address = |h: &str| {
            chain.receipt(h)["contractAddress"]
                .as_str()
                .expect("a contract")
                .to_string()
        };
        let (token, nft) = (address(&t), address(&n));
        chain.token = token;
        chain.nft = nft;
        // A creation that runs out of gas storing its code: mined, failed, no contract.
        chain.send(
            0,
            None,
            format!("{token_code}{}", word(1)),
            0,
            Some(150_000),
        );
        chain.mine();
        let (token, nft) = (chain.token.clone(), chain.nft.clone());
        let a = chain.accounts.clone();
        for i in 0..rounds {
            let to = &a[(i as usize % 8) + 1];
            let transfer = selector("transfer(address,uint256)");
            chain.send(
                0,
                Some(&token),
                format!("{transfer}{}{}", word_address(to), word(1000 + i * 7)),
                0,
                None,
            );
            if i % 3 == 0 {
                chain.send(
                    1,
                    Some(&token),
                    format!("{transfer}{}{}", word_address(&a[2]), word(3 + i)),
                    0,
                    None,
                );
            }
            if i % 4 == 0 {
                let mint = selector("mint(address,uint256)");
                chain.send(
                    0,
                    Some(&nft),
                    format!("{mint}{}{}", word_address(&a[i as usize % 10]), word(i)),
                    0,
                    None,
                );
                chain.minted.push(i);
            }
            if i % 5 == 1 {
                // Plain ether, and an ERC-721 moved on by its owner when it has one.
                chain.send(3, Some(&a[4]), String::new(), 10u128.pow(15) + i, None);
            }
            if i == 6 {
                let approve = selector("approve(address,uint256)");
                chain.send(
                    0,
                    Some(&token),
                    format!("{approve}{}{}", word_address(&a[5]), word(500)),
                    0,
                    None,
                );
                chain.mine();
                let from = selector("transferFrom(address,address,uint256)");
                chain.send(
                    5,
                    Some(&token),
                    format!(
                        "{from}{}{}{}",
                        word_address(&a[0]),
                        word_address(&a[6]),
                        word(321)
                    ),
                    0,
                    None,
                );
                // Moves token 4 from its owner (a[4]) to a[7].
                chain.send(
                    4,
                    Some(&nft),
                    format!(
                        "{from}{}{}{}",
                        word_address(&a[4]),
                        word_address(&a[7]),
                        word(4)
                    ),
                    0,
                    None,
                );
            }
            if i == 7 {
                // Reverts (a[9] holds no tokens), mined with the gas given.
                chain.send(
                    9,
                    Some(&token),
                    format!("{transfer}{}{}", word_address(&a[1]), word(5)),
                    0,
                    Some(100_000),
                );
            }
            chain.mine();
            if i % 6 == 5 {
                chain.mine(); // an empty block now and then
            }
        }
        chain
    }
}

fn query(dir: &Path, sql: &str) -> Vec<Value> {
    let tables = file_tables(dir).expect("the ingested tables");
    let (_, bytes) =
        agora_analytics::query_files(&tables, sql, QueryLimits::default(), Format::Json)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let v: Value = serde_json::from_slice(&bytes).expect("JSON");
    v["rows"].as_array().expect("rows").clone()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn options(url: &str, out: &Path) -> Options {
    let mut o = Options::new(url, out);
    o.confirmations = 0;
    o.partition_blocks = 7;
    o.concurrency = 4;
    o
}

#[test]
fn every_ingested_row_matches_what_the_node_answers() {
    let Some((anvil, solc)) = tools() else { return };
    let scratch = tempfile::tempdir().expect("a folder");
    let chain = Chain::new(Anvil::start(&anvil), &solc, scratch.path(), 24);
    let url = chain.anvil.url.clone();
    let out = scratch.path().join("evm");
    let rt = runtime();
    let head = chain.head();
    let mut seen = Vec::new();
    let summary = rt
        .block_on(ingest(&options(&url, &out), |p| seen.push(*p)))
        .expect("ingests");
    assert_eq!(
        (summary.chain_id, summary.from, summary.to),
        (31337, 0, head)
    );
    assert_eq!(summary.progress.blocks, head + 1);
    assert!(
        seen.windows(2).all(|w| w[0].blocks < w[1].blocks),
        "progress grows: {seen:?}"
    );
    let parts = partitions(&out).expect("partitions");
    assert_eq!(parts.len() as u64, head / 7 + 1, "partitions of 7 blocks");

    // Blocks, transactions and receipts: every field against the node's own answers.
    let blocks = query(
        &out,
        "SELECT number, hash, parent_hash, to_unixtime(time) AS t, miner, gas_used, transactions, logs FROM evm_blocks ORDER BY number",
    );
    assert_eq!(blocks.len() as u64, head + 1);
    let txs = query(
        &out,
        "SELECT block_number, tx_index, hash, \"from\", \"to\", CAST(value AS VARCHAR) AS value, nonce, gas_limit, type, method_id, encode(input, 'hex') AS input FROM evm_transactions ORDER BY block_number, tx_index",
    );
    let receipts = query(
        &out,
        "SELECT tx_hash, success, gas_used, cumulative_gas_used, CAST(effective_gas_price AS VARCHAR) AS price, contract_address, logs FROM evm_receipts ORDER BY block_number, tx_index",
    );
    let mut tx_rows = txs.iter();
    let mut receipt_rows = receipts.iter();
    let (mut failed, mut created) = (0, Vec::new());
    for (n, row) in blocks.iter().enumerate() {
        let b = rpc(
            &url,
            "eth_getBlockByNumber",
            json!([format!("0x{n:x}"), true]),
        );
        assert_eq!(row["number"], json!(n));
        assert_eq!(row["hash"], b["hash"]);
        assert_eq!(row["parent_hash"], b["parentHash"]);
        assert_eq!(row["t"], json!(quantity(&b["timestamp"])));
        assert_eq!(row["miner"], b["miner"]);
        assert_eq!(row["gas_used"], json!(quantity(&b["gasUsed"])));
        let list = b["transactions"].as_array().expect("transactions");
        assert_eq!(row["transactions"], json!(list.len()));
        for tx in list {
            let r = tx_rows.next().expect("a row per transaction");
            assert_eq!(r["block_number"], json!(n));
            assert_eq!(r["tx_index"], json!(quantity(&tx["transactionIndex"])));
            assert_eq!(r["hash"], tx["hash"]);
            assert_eq!(r["from"], tx["from"]);
            assert_eq!(r["to"], tx["to"]);
            assert_eq!(r["value"], json!(big(&tx["value"])));
            assert_eq!(r["nonce"], json!(quantity(&tx["nonce"])));
            assert_eq!(r["gas_limit"], json!(quantity(&tx["gas"])));
            assert_eq!(r["type"], json!(quantity(&tx["type"])));
            let input = tx["input"]
                .as_str()
                .expect("input")
                .trim_start_matches("0x");
            assert_eq!(r["input"], json!(input));
            let method = (input.len() >= 8).then(|| format!("0x{}", &input[..8]));
            assert_eq!(r["method_id"], json!(method));
            let receipt = rpc(&url, "eth_getTransactionReceipt", json!([tx["hash"]]));
            let rr = receipt_rows.next().expect("a row per receipt");
            assert_eq!(rr["tx_hash"], tx["hash"]);
            let ok = quantity(&receipt["status"]) == 1;
            failed += usize::from(!ok);
            assert_eq!(rr["success"], json!(ok));
            assert_eq!(rr["gas_used"], json!(quantity(&receipt["gasUsed"])));
            assert_eq!(
                rr["cumulative_gas_used"],
                json!(quantity(&receipt["cumulativeGasUsed"]))
            );
            assert_eq!(rr["price"], json!(big(&receipt["effectiveGasPrice"])));
            assert_eq!(rr["contract_address"], receipt["contractAddress"]);
            assert_eq!(
                rr["logs"],
                json!(receipt["logs"].as_array().expect("logs").len())
            );
            if let Some(c) = receipt["contractAddress"].as_str().filter(|_| ok) {
                created.push(c.to_string());
            }
        }
    }
    assert!(
        tx_rows.next().is_none() && receipt_rows.next().is_none(),
        "no extra rows"
    );
    assert!(txs.len() >= 45, "{} transactions", txs.len());
    assert!(
        blocks.iter().any(|b| b["transactions"].as_u64() > Some(1)),
        "blocks of several transactions"
    );
    assert_eq!(failed, 2, "the reverted transfer and the failed creation");

    // Logs, against eth_getLogs over the whole range.
    let logs = query(
        &out,
        "SELECT block_number, log_index, tx_hash, address, topic0, topic1, topic2, topic3, encode(data, 'hex') AS data FROM evm_logs ORDER BY block_number, log_index",
    );
    let node_logs = rpc(
        &url,
        "eth_getLogs",
        json!([{"fromBlock": "0x0", "toBlock": format!("0x{head:x}")}]),
    );
    let node_logs = node_logs.as_array().expect("logs");
    assert_eq!(logs.len(), node_logs.len());
    assert!(logs.len() >= 40, "{} logs", logs.len());
    for (row, log) in logs.iter().zip(node_logs) {
        assert_eq!(row["block_number"], json!(quantity(&log["blockNumber"])));
        assert_eq!(row["log_index"], json!(quantity(&log["logIndex"])));
        assert_eq!(row["tx_hash"], log["transactionHash"]);
        assert_eq!(row["address"], log["address"]);
        let topics = log["topics"].as_array().expect("topics");
        for i in 0..4 {
            assert_eq!(
                row[format!("topic{i}")],
                topics.get(i).cloned().unwrap_or(Value::Null)
            );
        }
        assert_eq!(
            row["data"],
            json!(log["data"].as_str().expect("data").trim_start_matches("0x"))
        );
    }

    // ERC-20: each holder's net flow is the balance the contract reports.
    let flows = query(
        &out,
        &format!(
            "WITH f AS (SELECT \"to\" AS who, value FROM evm_token_transfers WHERE token = '{t}' UNION ALL SELECT \"from\", -value FROM evm_token_transfers WHERE token = '{t}') SELECT who, CAST(SUM(value) AS VARCHAR) AS balance FROM f WHERE who <> '0x0000000000000000000000000000000000000000' GROUP BY who ORDER BY who",
            t = chain.token
        ),
    );
    assert!(flows.len() >= 9, "holders: {flows:?}");
    for row in &flows {
        let who = row["who"].as_str().expect("an address");
        let balance = chain.call(
            &chain.token,
            format!("{}{}", selector("balanceOf(address)"), word_address(who)),
        );
        assert_eq!(row["balance"], json!(big(&json!(balance))), "{who}");
    }
    // ERC-721: each token's last recipient is its owner.
    let owners = query(
        &out,
        &format!(
            "SELECT CAST(token_id AS VARCHAR) AS id, last_value(\"to\" ORDER BY block_number, log_index) AS owner, COUNT(*) AS moves FROM evm_token_transfers WHERE token = '{}' AND standard = 'erc721' GROUP BY token_id ORDER BY token_id",
            chain.nft
        ),
    );
    assert_eq!(owners.len(), chain.minted.len());
    assert!(
        owners.iter().any(|o| o["moves"] == json!(2)),
        "token 4 moved once after its mint"
    );
    for row in &owners {
        let id: u128 = row["id"]
            .as_str()
            .expect("an id")
            .parse()
            .expect("a number");
        let owner = chain.call(
            &chain.nft,
            format!("{}{}", selector("ownerOf(uint256)"), word(id)),
        );
        assert_eq!(
            row["owner"],
            json!(format!("0x{}", &owner[26..])),
            "token {id}"
        );
    }
    // Contract creations: the two the test deployed, with code at each.
    let contracts = query(
        &out,
        "SELECT address, creator FROM evm_contracts ORDER BY block_number, address",
    );
    let mut listed: Vec<String> = contracts
        .iter()
        .map(|c| c["address"].as_str().expect("an address").to_string())
        .collect();
    listed.sort();
    created.sort();
    assert_eq!(listed, created);
    assert!(listed.contains(&chain.token) && listed.contains(&chain.nft));
    assert!(
        contracts
            .iter()
            .all(|c| c["creator"] == json!(chain.accounts[0]))
    );

    // A second run fetches nothing; new blocks are fetched alone, and link to the stored ones.
    let again = rt
        .block_on(ingest(&options(&url, &out), |_| {}))
        .expect("ingests again");
    assert_eq!(
        (again.progress.blocks, again.progress.skipped),
        (0, head + 1)
    );
    chain.send(0, Some(&chain.accounts[1]), String::new(), 1, None);
    chain.mine();
    chain.mine();
    let more = rt
        .block_on(ingest(&options(&url, &out), |_| {}))
        .expect("ingests the new blocks");
    assert_eq!(
        (more.progress.blocks, more.progress.skipped, more.to),
        (2, head + 1, head + 2)
    );
    let count = query(
        &out,
        "SELECT COUNT(*) AS n, MAX(number) AS top FROM evm_blocks",
    );
    assert_eq!(
        (&count[0]["n"], &count[0]["top"]),
        (&json!(head + 3), &json!(head + 2))
    );

    // Another chain id: refused before anything is fetched.
    let mut wrong = options(&url, &out);
    wrong.chain_id = Some(1);
    let err = rt
        .block_on(ingest(&wrong, |_| {}))
        .expect_err("another chain");
    assert!(
        matches!(
            err,
            Error::WrongChain {
                expected: 1,
                got: 31337
            }
        ),
        "{err}"
    );
    // A range past the head, or backwards: clear errors.
    let mut past = options(&url, &out);
    past.to = Some(head + 100);
    let err = rt
        .block_on(ingest(&past, |_| {}))
        .expect_err("past the head");
    assert!(err.to_string().contains("does not exist yet"), "{err}");
}

/// A reorganization below what is stored is found where the next run links to it.
#[test]
fn a_reorganized_chain_is_refused_where_it_links() {
    let Some((anvil, solc)) = tools() else { return };
    let scratch = tempfile::tempdir().expect("a folder");
    let chain = Chain::new(Anvil::start(&anvil), &solc, scratch.path(), 3);
    let url = chain.anvil.url.clone();
    let snapshot = rpc(&url, "evm_snapshot", json!([]));
    let fork = chain.head();
    for i in 0..4 {
        chain.send(2, Some(&chain.accounts[3]), String::new(), 1 + i, None);
        chain.mine();
    }
    let out = scratch.path().join("evm");
    let rt = runtime();
    let first = rt
        .block_on(ingest(&options(&url, &out), |_| {}))
        .expect("ingests");
    let stored = partitions(&out).expect("partitions");
    // The chain is rolled back below the stored head and grows another way.
    assert_eq!(rpc(&url, "evm_revert", json!([snapshot])), json!(true));
    for i in 0..6 {
        chain.send(2, Some(&chain.accounts[5]), String::new(), 100 + i, None);
        chain.mine();
    }
    assert!(chain.head() > first.to);
    let err = rt
        .block_on(ingest(&options(&url, &out), |_| {}))
        .expect_err("a reorganization");
    let Error::Reorg { number, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*number, first.to + 1, "{err}");
    assert!(
        err.to_string().contains("ingest into a new folder"),
        "{err}"
    );
    assert!(fork < first.to);
    assert_eq!(
        partitions(&out).expect("partitions"),
        stored,
        "nothing written"
    );
}

/// How the proxy changes the node's answers.
#[derive(Clone, Copy, Debug)]
enum Lie {
    ChainId,
    ReceiptGas,
    Price,
    LogIndex,
    Timestamp,
    BlockHash,
    Sender,
    LogData,
    Garbage,
    Hang,
}

/// Starts a JSON-RPC proxy to `upstream` on `rt` that tells `lie` about block `target`.
fn proxy(rt: &tokio::runtime::Runtime, upstream: String, lie: Lie, target: u64) -> String {
    use axum::routing::post;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("binds");
    let address = listener.local_addr().expect("an address");
    let target_hash: Arc<String> = Arc::new(
        rpc(
            &upstream,
            "eth_getBlockByNumber",
            json!([format!("0x{target:x}"), false]),
        )["hash"]
            .as_str()
            .expect("a hash")
            .to_string(),
    );
    let upstream = Arc::new(upstream);
    let app = axum::Router::new().route(
        "/",
        post(move |body: String| {
            let upstream = upstream.clone();
            let target_hash = target_hash.clone();
            async move {
                let request: Value = serde_json::from_str(&body).expect("a JSON-RPC request");
                let method = request["method"].as_str().unwrap_or_default().to_string();
                // Block `target` by number, or its receipts by its hash.
                let param = &request["params"][0];
                let about_target = param
                    .as_str()
                    .or_else(|| param["blockHash"].as_str())
                    .is_some_and(|b| b == format!("0x{target:x}") || b == target_hash.as_str());
                if method == "eth_chainId" && matches!(lie, Lie::ChainId) {
                    return json!({"jsonrpc": "2.0", "id": request["id"], "result": "0x1"})
                        .to_string();
                }
                if about_target && matches!(lie, Lie::Garbage) {
                    return "<html>this is not JSON</html>".to_string();
                }
                if about_target && matches!(lie, Lie::Hang) {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                let params = request["params"].clone();
                let m = method.clone();
                let up = upstream.clone();
                let mut result = tokio::task::spawn_blocking(move || rpc(&up, &m, params))
                    .await
                    .expect("the upstream call");
                if about_target {
                    match (lie, method.as_str()) {
                        (Lie::Timestamp, "eth_getBlockByNumber") => {
                            result["timestamp"] =
                                json!(format!("0x{:x}", quantity(&result["timestamp"]) + 1));
                        }
                        (Lie::BlockHash, "eth_getBlockByNumber") => {
                            result["hash"] = json!(format!("0x{}", "11".repeat(32)));
                        }
                        (Lie::Sender, "eth_getBlockByNumber") => {
                            result["transactions"][0]["from"] =
                                json!(format!("0x{}", "22".repeat(20)));
                        }
                        (Lie::ReceiptGas, "eth_getBlockReceipts") => {
                            result[0]["gasUsed"] =
                                json!(format!("0x{:x}", quantity(&result[0]["gasUsed"]) + 1));
                        }
                        (Lie::Price, "eth_getBlockReceipts") => {
                            result[0]["effectiveGasPrice"] = json!(format!(
                                "0x{:x}",
                                quantity(&result[0]["effectiveGasPrice"]) + 1
                            ));
                        }
                        (Lie::LogIndex, "eth_getBlockReceipts") => {
                            result[0]["logs"][0]["logIndex"] = json!("0x9");
                        }
                        (Lie::LogData, "eth_getBlockReceipts") => {
                            result[0]["logs"][0]["data"] = json!(format!("0x{}", "33".repeat(32)));
                        }
                        _ => {}
                    }
                }
                json!({"jsonrpc": "2.0", "id": request["id"], "result": result}).to_string()
            }
        }),
    );
    rt.spawn(async move {
        axum::serve(listener, app).await.expect("serves");
    });
    format!("http://{address}")
}

#[test]
fn a_node_that_lies_hangs_or_answers_garbage_is_refused_and_nothing_is_written() {
    let Some((anvil, solc)) = tools() else { return };
    let scratch = tempfile::tempdir().expect("a folder");
    let chain = Chain::new(Anvil::start(&anvil), &solc, scratch.path(), 4);
    let rt = runtime();
    // Block 3 has token transfers and their logs (block 2 is the failed creation).
    let target = 3;
    assert!(
        !rpc(&chain.anvil.url, "eth_getBlockReceipts", json!(["0x3"]))[0]["logs"]
            .as_array()
            .expect("logs")
            .is_empty()
    );
    for (lie, says) in [
        (Lie::ReceiptGas, "says it used"),
        (Lie::Price, "effective gas price"),
        (Lie::LogIndex, "is placed at"),
        (Lie::Timestamp, "header hashes to"),
        (Lie::BlockHash, "header hashes to"),
        (Lie::Sender, "was signed by"),
        (Lie::LogData, "receipts give the root"),
        (Lie::Garbage, "failed after 2 tries"),
        (Lie::Hang, "no answer within"),
    ] {
        let url = proxy(&rt, chain.anvil.url.clone(), lie, target);
        let out = scratch.path().join(format!("{lie:?}"));
        let mut o = options(&url, &out);
        o.partition_blocks = 2;
        o.tries = 2;
        o.timeout = Duration::from_millis(700);
        let started = Instant::now();
        let err = rt.block_on(ingest(&o, |_| {})).expect_err("refused");
        assert!(err.to_string().contains(says), "{lie:?}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{lie:?} took {:?}",
            started.elapsed()
        );
        // Blocks 0-1 were written before; nothing of blocks 2-3 was, nor after.
        let parts = partitions(&out).expect("partitions");
        assert_eq!(
            parts.iter().map(|p| (p.from, p.to)).collect::<Vec<_>>(),
            vec![(0, 1)],
            "{lie:?}"
        );
        let files: usize = std::fs::read_dir(&out)
            .expect("the folder")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| std::fs::read_dir(e.path()).expect("a table").count())
            .sum();
        let listed: usize = parts.iter().map(|p| p.rows.len()).sum();
        assert_eq!(files, listed, "{lie:?}: only the listed files");
        // The honest node then completes the folder.
        let mut honest = options(&chain.anvil.url, &out);
        honest.partition_blocks = 2;
        let done = rt.block_on(ingest(&honest, |_| {})).expect("ingests");
        assert_eq!(done.progress.skipped, 2);
    }
    // A node that claims another chain than its transactions are signed for.
    let url = proxy(&rt, chain.anvil.url.clone(), Lie::ChainId, target);
    let out = scratch.path().join("ChainId");
    let err = rt
        .block_on(ingest(&options(&url, &out), |_| {}))
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("is signed for chain 31337, and the node serves chain 1"),
        "{err}"
    );
    assert!(partitions(&out).expect("partitions").is_empty());
}
