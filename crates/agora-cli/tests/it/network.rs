//! A 4-validator network of real `agora node` processes on loopback (`agora testnet init`), with
//! one validator killed by SIGKILL while it commits under load, and restarted from its WAL and
//! store.

use crate::*;
use agora_types::{Address, Keypair, Message, Transaction};
use serde_json::json;
use std::net::TcpListener;

/// A base port with 8 free ports after it (p2p and API of 4 nodes), below the kernel's range of
/// ephemeral ports: while a node is down, no outgoing connection or `bind(0)` of another test can
/// take its port, so it gets it back when it restarts.
fn free_base() -> u16 {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (low, span) = if ephemeral_start > 10_000 + 1_000 {
        (10_000, ephemeral_start - 10_000 - 16)
    } else {
        (1_024, ephemeral_start.saturating_sub(1_024 + 16).max(16))
    };
    let seed = std::process::id() as u16;
    for attempt in 0..200u16 {
        let base = low + (seed.wrapping_mul(7).wrapping_add(attempt * 16)) % span;
        if (base..base + 8).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no free port range");
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a node whose output goes to HOME/node.log (appended across restarts).
fn start(home: &Path) -> Proc {
    start_in(home, &[])
}

/// [`start`], run by the command `wrapper` (its words, then the node's).
fn start_in(home: &Path, wrapper: &[&str]) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join("node.log"))
        .unwrap();
    let mut command = match wrapper {
        [] => Command::new(env!("CARGO_BIN_EXE_agora")),
        [program, args @ ..] => {
            let mut c = Command::new(program);
            c.args(args).arg(env!("CARGO_BIN_EXE_agora"));
            c
        }
    };
    Proc(
        command
            .arg("--home")
            .arg(home)
            .arg("node")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("node starts"),
    )
}

/// Fails the test with what each node was doing: whether it still runs, and the end of its log.
fn fail(procs: &mut [Proc], homes: &[PathBuf], why: String) -> ! {
    for (i, (p, home)) in procs.iter_mut().zip(homes).enumerate() {
        let log = std::fs::read_to_string(home.join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("arc_malachitebft_network") && !l.contains("discovery"))
            .collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        eprintln!(
            "--- node {i}: {:?}, end of its log:\n{tail}",
            p.0.try_wait()
        );
    }
    panic!("{why}");
}

fn height(api: &str) -> Option<u64> {
    get(api, "/v1/status").and_then(|s| s["height"].as_u64())
}

fn wait_all(apis: &[String], target: u64, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let heights: Vec<Option<u64>> = apis.iter().map(|a| height(a)).collect();
        if heights.iter().all(|h| h.is_some_and(|h| h >= target)) {
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(format!("heights {heights:?}, waiting for {target}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (hash, state root) of block `h` as node `api` serves it.
fn block_id(api: &str, h: u64) -> (String, String) {
    let b = get(api, &format!("/v1/blocks/{h}")).unwrap_or_else(|| panic!("{api} lacks {h}"));
    (
        b["hash"].as_str().unwrap().to_string(),
        b["header"]["state_root"].as_str().unwrap().to_string(),
    )
}

fn validator_key(home: &Path) -> Keypair {
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("config/node_key.json")).unwrap())
            .unwrap();
    let mut secret = [0u8; 32];
    hex::decode_to_slice(file["secret"].as_str().unwrap(), &mut secret).unwrap();
    Keypair::from_secret(secret)
}

#[test]
fn a_validator_killed_while_committing_recovers_and_agrees_on_every_root() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    let base = free_base();
    agora_ok(
        dir.path(),
        &[
            "testnet",
            "init",
            "-n",
            "4",
            "--out",
            out.to_str().unwrap(),
            "--chain-id",
            "net-test",
            "--base-port",
            &base.to_string(),
        ],
    );
    let homes: Vec<PathBuf> = (0..4).map(|i| out.join(format!("node{i}"))).collect();
    let apis: Vec<String> = (0..4)
        .map(|i| format!("http://127.0.0.1:{}", base + 2 * i + 1))
        .collect();
    let mut procs: Vec<Proc> = homes.iter().map(|h| start(h)).collect();
    if let Err(e) = wait_all(&apis, 3, Duration::from_secs(60)) {
        fail(&mut procs, &homes, e);
    }
    // Every node serves the same validator set: the four keys, 1,000 AGR of power each.
    let set = get(&apis[2], "/v1/validators").unwrap();
    assert_eq!(set["mode"], "network");
    assert_eq!(set["total_power"], 4_000);
    let mut listed: Vec<String> = set["validators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["address"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut keys: Vec<String> = homes
        .iter()
        .map(|h| validator_key(h).address().to_string())
        .collect();
    keys.sort();
    assert_eq!(listed, keys);

    // Node 0's account pays transfers, sent to node 1 (relayed to the others) while node 3 is
    // killed and restarted three times.
    let payer = validator_key(&homes[0]);
    let mut nonce = get(&apis[1], &format!("/v1/accounts/{}", payer.address())).unwrap()["nonce"]
        .as_u64()
        .unwrap();
    let mut sent = Vec::new();
    for cycle in 0..3u64 {
        let until = Instant::now() + Duration::from_millis(400 + 300 * cycle);
        while Instant::now() < until {
            send_transfers(&apis[1], &payer, &mut nonce, &mut sent);
            std::thread::sleep(Duration::from_millis(20));
        }
        // SIGKILL in the middle of the stream: no chance to clean up.
        let mut victim = std::mem::replace(&mut procs[3], start_placeholder());
        victim.0.kill().unwrap();
        victim.0.wait().unwrap();
        drop(victim);
        let before = height(&apis[0]).unwrap();
        // The three others go on.
        if let Err(e) = wait_all(&apis[..3], before + 3, Duration::from_secs(30)) {
            fail(&mut procs, &homes, e);
        }
        procs[3] = start(&homes[3]);
    }
    let tip = height(&apis[0]).unwrap() + 3;
    if let Err(e) = wait_all(&apis, tip, Duration::from_secs(60)) {
        fail(&mut procs, &homes, e);
    }
    // Every transfer committed, once, at the same place on every node.
    let start_wait = Instant::now();
    for h in &sent {
        loop {
            let v = get(&apis[3], &format!("/v1/txs/{h}"));
            if v.as_ref().is_some_and(|v| v["status"] == "committed") {
                break;
            }
            assert!(
                start_wait.elapsed() < Duration::from_secs(60),
                "transfer {h} not committed on the restarted node"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for (i, api) in apis.iter().enumerate().skip(1) {
        for h in 1..=tip {
            assert_eq!(block_id(api, h), block_id(&apis[0], h), "node {i} at {h}");
        }
    }
    let recipient = get(&apis[2], &format!("/v1/accounts/{}", Address([0x33; 20]))).unwrap();
    assert_eq!(recipient["balance"], json!(sent.len().to_string()));

    // A split of 2 + 2 (nodes 2 and 3 frozen: unreachable, as behind a partition): neither side
    // has the two thirds of power to decide, so nothing commits; healed, all four go on, on one
    // chain.
    for i in [2, 3] {
        signal(&procs[i], "-STOP");
    }
    std::thread::sleep(Duration::from_millis(1_500));
    let split = height(&apis[0]).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let stalled = [height(&apis[0]).unwrap(), height(&apis[1]).unwrap()];
    for i in [2, 3] {
        signal(&procs[i], "-CONT");
    }
    assert!(
        stalled.iter().all(|h| *h <= split + 1),
        "half the power committed alone: {split} then {stalled:?}"
    );
    let healed = stalled[0] + 3;
    if let Err(e) = wait_all(&apis, healed, Duration::from_secs(60)) {
        fail(&mut procs, &homes, e);
    }
    for (i, api) in apis.iter().enumerate().skip(1) {
        for h in tip..=healed {
            assert_eq!(block_id(api, h), block_id(&apis[0], h), "node {i} at {h}");
        }
    }

    // Node 3's disk fills up (its files may not grow past the database's size, as `prlimit
    // --fsize` sets; the signal that would kill it instead is ignored, as a full disk sends
    // none): it stops with a clear error instead of restarting the height for ever; the others
    // go on; given room, it starts again, catches up and agrees.
    // Stopped cleanly, so that opening the database again writes nothing (no recovery), and
    // with a fresh log (the limit covers every file the node writes).
    let mut victim = std::mem::replace(&mut procs[3], start_placeholder());
    sigterm(victim.0.id());
    let stopping = Instant::now();
    while victim.0.try_wait().unwrap().is_none() {
        assert!(
            stopping.elapsed() < Duration::from_secs(30),
            "node 3 did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(victim);
    let _ = std::fs::rename(homes[3].join("node.log"), homes[3].join("node.log.1"));
    let size = std::fs::metadata(homes[3].join("data/chain.redb"))
        .unwrap()
        .len();
    let fsize = format!("--fsize={size}");
    procs[3] = start_in(
        &homes[3],
        &[
            "bash",
            "-c",
            "trap '' XFSZ; exec \"$@\"",
            "bash",
            "prlimit",
            &fsize,
        ],
    );
    let full = Instant::now();
    let status = loop {
        if let Some(status) = procs[3].0.try_wait().unwrap() {
            break status;
        }
        if full.elapsed() > Duration::from_secs(60) {
            fail(&mut procs, &homes, "node 3 went on with a full disk".into());
        }
        // Blocks with transactions, so that the database must grow.
        send_transfers(&apis[1], &payer, &mut nonce, &mut sent);
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(homes[3].join("node.log")).unwrap();
    if status.success()
        || !log.contains("the store cannot commit the block decided at height")
        || !log.contains("Nothing committed is lost")
    {
        fail(
            &mut procs,
            &homes,
            format!("node 3 stopped with {status:?}"),
        );
    }
    let stopped_at = height(&apis[0]).unwrap();
    if let Err(e) = wait_all(&apis[..3], stopped_at + 3, Duration::from_secs(30)) {
        fail(&mut procs, &homes, e);
    }
    procs[3] = start(&homes[3]);
    let end = height(&apis[0]).unwrap() + 3;
    if let Err(e) = wait_all(&apis, end, Duration::from_secs(60)) {
        fail(&mut procs, &homes, e);
    }
    for h in 1..=end {
        assert_eq!(
            block_id(&apis[3], h),
            block_id(&apis[0], h),
            "node 3 at {h}"
        );
    }
}

/// Sends 20 transfers from `payer` to node `api`, noting each accepted one's hash in `sent`.
fn send_transfers(api: &str, payer: &Keypair, nonce: &mut u64, sent: &mut Vec<String>) {
    let txs: Vec<String> = (0..20)
        .map(|k| {
            let tx = Transaction {
                chain_id: "net-test".into(),
                sender: payer.public(),
                nonce: *nonce + k,
                fee: 1_000,
                messages: vec![Message::Transfer {
                    to: Address([0x33; 20]),
                    amount: 1,
                }],
            }
            .sign(payer);
            hex::encode(tx.encode())
        })
        .collect();
    let (status, body) = post(api, "/v1/txs", &json!({ "txs": txs }));
    assert_eq!(status, 202, "{body}");
    for r in body["results"].as_array().unwrap() {
        if let Some(h) = r["hash"].as_str() {
            sent.push(h.to_string());
            *nonce += 1;
        }
    }
}

/// Sends `signal` (e.g. `-STOP`) to a node.
fn signal(node: &Proc, signal: &str) {
    let status = Command::new("kill")
        .arg(signal)
        .arg(node.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

/// A stand-in while a node is down: an already finished process.
fn start_placeholder() -> Proc {
    let mut child = Command::new("true").spawn().unwrap();
    let _ = child.wait();
    Proc(child)
}
