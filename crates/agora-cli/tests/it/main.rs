//! End-to-end tests of the `agora` binary: real processes, real HTTP on 127.0.0.1, real storage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod analytics;
mod audit;
mod cli;
mod crash;
mod data;
mod evm;
mod infer;
mod market;
mod network;
mod subnet;
mod web;
mod webdriver;
mod zk;

use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

pub const PASSWORD: &str = "test-passphrase";

/// Runs `agora --home HOME args…` to completion.
pub fn agora(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agora"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("AGORA_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .output()
        .expect("agora runs")
}

/// Like [`agora`], but the command must succeed; returns stdout.
pub fn agora_ok(home: &Path, args: &[&str]) -> String {
    let out = agora(home, args);
    assert!(
        out.status.success(),
        "agora {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A running `agora node --dev`.
#[derive(Debug)]
pub struct NodeProc {
    pub child: Child,
    pub api: String,
    pub home: PathBuf,
}

impl NodeProc {
    pub fn start(home: &Path, block_time_ms: u64) -> NodeProc {
        Self::start_in(home, block_time_ms, &[])
    }

    /// [`NodeProc::start`] through `wrapper` (a command that runs the rest, e.g. `prlimit …`),
    /// which must `exec` it so that the node keeps the child's pid.
    pub fn start_in(home: &Path, block_time_ms: u64, wrapper: &[&str]) -> NodeProc {
        let addr_file = home.join("api.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_agora"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_agora")),
        };
        let child = command
            .arg("--home")
            .arg(home)
            .args([
                "node",
                "--dev",
                "--api-addr",
                "127.0.0.1:0",
                "--block-time-ms",
            ])
            .arg(block_time_ms.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        let start = Instant::now();
        let api = loop {
            if let Ok(api) = std::fs::read_to_string(&addr_file)
                && get(&api, "/health").is_some()
            {
                break api;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "node did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        NodeProc {
            child,
            api,
            home: home.to_path_buf(),
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and the exit status and stdout.
    pub fn stop(mut self) -> (bool, String) {
        use std::io::Read;
        sigterm(self.child.id());
        let mut stdout = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let status = self.child.wait().unwrap();
        (status.success(), stdout)
    }

    pub fn height(&self) -> u64 {
        get(&self.api, "/v1/status").unwrap()["height"]
            .as_u64()
            .unwrap()
    }

    pub fn wait_height(&self, target: u64) {
        let start = Instant::now();
        while self.height() < target {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "height {target} not reached"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// GET returning the JSON body of a 200, or `None`.
pub fn get(api: &str, path: &str) -> Option<Value> {
    let mut r = agent().get(&format!("{api}{path}")).call().ok()?;
    if r.status().as_u16() != 200 {
        return None;
    }
    r.body_mut().read_json().ok()
}

/// POST JSON; returns status and body.
pub fn post(api: &str, path: &str, body: &Value) -> (u16, Value) {
    let mut r = agent()
        .post(&format!("{api}{path}"))
        .send_json(body)
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_json().unwrap())
}
