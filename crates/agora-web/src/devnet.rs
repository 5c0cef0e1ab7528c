//! On `agora devnet` only: transfers from the demo wallet, sent from the explorer's page. The
//! route sends only when the devnet has handed its demo key to the web app; a node of a real
//! network has no such key (the route answers 404), so nothing in a page can spend from a wallet
//! without it.
//!
//! Who may ask: only this machine. The connection must come from a loopback address (a devnet
//! whose API listens on every interface does not lend its wallet to the network), and the `Host`
//! must name this machine (a site that rebinds its own name to 127.0.0.1 is refused). The request
//! must be JSON, which a page of another origin cannot send without a CORS preflight that this
//! node never grants.

use crate::Web;
use agora_api::{ApiError, views};
use agora_node_api::Submitted;
use agora_types::{Address, Keypair, Message, Transaction, parse_amount};
use axum::{
    Json,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode, header},
};
use parking_lot::Mutex;
use serde::Deserialize;
use std::net::SocketAddr;

/// The devnet's demo wallet, unlocked by the devnet for its pages.
#[derive(Debug)]
pub struct DemoWallet {
    key: Keypair,
    /// The nonce after the last transaction this page sent (it may still be pending).
    next: Mutex<u64>,
}

impl DemoWallet {
    pub fn new(key: Keypair) -> Self {
        Self {
            key,
            next: Mutex::new(0),
        }
    }

    pub fn address(&self) -> Address {
        self.key.address()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransferRequest {
    to: String,
    /// AGR (`"1.5"`, `"1.5AGR"`) or base units (`"1500nagr"`).
    amount: String,
}

/// Whether `host` (a `Host` header: name or address, and a port) names this machine.
fn local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(crate) async fn transfer(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(req): Json<TransferRequest>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let Some(demo) = web.links.demo.clone() else {
        return Err(ApiError::not_found(
            "not_devnet",
            "only a devnet sends from a demo wallet",
        ));
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !peer.ip().is_loopback() || !local_host(host) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_local",
            "the demo wallet sends only for pages opened on this machine (127.0.0.1 or localhost)",
        ));
    }
    let to = views::parse_address(req.to.trim())?;
    let amount = parse_amount(req.amount.trim())
        .map_err(|e| ApiError::bad_request("invalid_amount", e.to_string()))?;
    if amount == 0 {
        return Err(ApiError::bad_request(
            "invalid_amount",
            "send more than nothing",
        ));
    }
    let node = web.node.clone();
    let sent = tokio::task::spawn_blocking(move || {
        let committed = views::account(&node, &demo.address(), false)?.account.nonce;
        let mut next = demo.next.lock();
        let nonce = committed.max(*next);
        let messages = vec![Message::Transfer { to, amount }];
        let tx = Transaction {
            chain_id: node.chain_id().to_string(),
            sender: demo.key.public(),
            nonce,
            fee: node.params().min_fee * u128::from(agora_types::work_units(&messages)),
            messages,
        }
        .sign(&demo.key);
        match node.submit(&tx.encode()) {
            Ok(hash) => {
                *next = nonce + 1;
                Ok(hash)
            }
            Err(e) => {
                // A transaction of ours that left the mempool unused: start again from the chain.
                *next = committed;
                Err(ApiError::from(e))
            }
        }
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((StatusCode::ACCEPTED, Json(Submitted { hash: sent })))
}

#[cfg(test)]
mod tests {
    use super::local_host;

    #[test]
    fn only_names_of_this_machine_are_local() {
        for host in [
            "127.0.0.1:7421",
            "localhost:7421",
            "LOCALHOST",
            "[::1]:7421",
            "127.0.0.2",
        ] {
            assert!(local_host(host), "{host}");
        }
        for host in [
            "evil.example:7421",
            "10.0.0.5:7421",
            "",
            "[2001:db8::1]:80",
            "localhost.evil",
        ] {
            assert!(!local_host(host), "{host}");
        }
    }
}
