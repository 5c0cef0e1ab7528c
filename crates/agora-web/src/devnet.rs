//! On `agora devnet` only: transfers from the demo wallet, sent from the explorer's page. The
//! route exists only when the devnet hands its demo key to the web app; a node of a real network
//! has no such key and no such route, so nothing in a page can spend from a wallet without it.
//! The request must be JSON, which a page of another origin cannot send here without a CORS
//! preflight this node never grants.

use crate::Web;
use agora_api::{ApiError, views};
use agora_node_api::Submitted;
use agora_types::{Address, Keypair, Message, Transaction, parse_amount};
use axum::{Json, extract::State, http::StatusCode};
use parking_lot::Mutex;
use serde::Deserialize;

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

pub(crate) async fn transfer(
    State(web): State<Web>,
    Json(req): Json<TransferRequest>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let Some(demo) = web.links.demo.clone() else {
        return Err(ApiError::not_found(
            "not_devnet",
            "only a devnet sends from a demo wallet",
        ));
    };
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
        let hash = node.submit(&tx.encode())?;
        *next = nonce + 1;
        Ok::<_, ApiError>(hash)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((StatusCode::ACCEPTED, Json(Submitted { hash: sent })))
}
