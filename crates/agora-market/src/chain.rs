//! What the market's daemons need from the chain, and a client for a node's HTTP API.

use crate::Error;
use agora_types::{Address, Amount, Hash, SignedTransaction};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// A client's escrow as the chain reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EscrowView {
    /// Available to pay jobs.
    pub balance: Amount,
    /// Being withdrawn, still claimable until it unlocks.
    pub unlocking: Amount,
}

impl EscrowView {
    /// What settlements can still draw on.
    pub fn claimable(&self) -> Amount {
        self.balance.saturating_add(self.unlocking)
    }
}

/// The chain, as the provider and gateway see it. Calls block; run them off async executors.
pub trait Chain: Send + Sync {
    /// The chain id requests must carry.
    fn chain_id(&self) -> Result<String, Error>;
    /// The latest committed height.
    fn height(&self) -> Result<u64, Error>;
    /// A client's escrow (zero when it never deposited).
    fn escrow(&self, client: &Address) -> Result<EscrowView, Error>;
    /// The nonce the account's next transaction must carry (0 for a new account).
    fn nonce(&self, account: &Address) -> Result<u64, Error>;
    /// Submits a signed transaction; returns its hash.
    fn submit(&self, tx: &SignedTransaction) -> Result<Hash, Error>;
    /// Whether `provider` is registered and serving (not convicted).
    fn is_provider(&self, provider: &Address) -> Result<bool, Error>;
    /// Whether the job `job_id` is settled.
    fn is_settled(&self, job_id: &Hash) -> Result<bool, Error>;
    /// A settled job's record, if settled.
    fn job(&self, job_id: &Hash) -> Result<Option<JobView>, Error>;
    /// The open checks in which `address` (a provider or a seated verifier) has something to do.
    fn open_checks(&self, address: &Address) -> Result<Vec<CheckView>, Error>;
    /// A registered verifier's X25519 key, if registered.
    fn verifier_key(&self, verifier: &Address) -> Result<Option<[u8; 32]>, Error>;
    /// The complete reveal of `job_id` to `verifier`, if the chain holds one.
    fn reveal(&self, job_id: &Hash, verifier: &Address) -> Result<Option<Vec<u8>>, Error>;
    /// Whether a settled job can no longer be checked (not drawn, or its check decided); `None`
    /// when the job is not settled.
    fn verification_over(&self, job_id: &Hash) -> Result<Option<bool>, Error>;
}

/// A settled job as the chain reports it (the fields a verifier checks a reveal against).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct JobView {
    /// Who paid.
    pub client: Address,
    /// Who served.
    pub provider: Address,
    /// The model.
    pub model: Hash,
    /// The client's signed request, hashed.
    pub request_hash: Hash,
    /// blake3 of the input.
    pub input_hash: Hash,
    /// blake3 of the output.
    pub output_hash: Hash,
    /// Receipt's input tokens.
    pub input_tokens: u32,
    /// Receipt's output tokens.
    pub output_tokens: u32,
}

/// One verifier's seat on a check.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SeatView {
    /// Who.
    pub verifier: Address,
    /// Parts of the reveal announced so far (0: none).
    pub parts: u16,
    /// When the reveal was complete.
    pub revealed_height: Option<u64>,
    /// Its verdict, once posted.
    pub verdict: Option<Value>,
}

/// An open check as the chain reports it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct CheckView {
    /// The job.
    pub job_id: Hash,
    /// Who served it.
    pub provider: Address,
    /// The model.
    pub model: Hash,
    /// `open`, `passed`, …
    pub outcome: String,
    /// Seated verifiers.
    pub seats: Vec<SeatView>,
}

/// A node's HTTP API (`/v1/...`).
#[derive(Debug, Clone)]
pub struct HttpChain {
    base: String,
    agent: ureq::Agent,
}

impl HttpChain {
    /// A client of the node API at `base` (e.g. `http://127.0.0.1:26657`).
    pub fn new(base: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        HttpChain {
            base: base.trim_end_matches('/').to_string(),
            agent,
        }
    }

    fn get(&self, path: &str) -> Result<(u16, Value), Error> {
        let mut r = self
            .agent
            .get(&format!("{}{path}", self.base))
            .call()
            .map_err(|e| Error::Chain(format!("node API {path}: {e}")))?;
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .read_json()
            .map_err(|e| Error::Chain(format!("node API {path}: {e}")))?;
        Ok((status, body))
    }

    fn ok(&self, path: &str) -> Result<Value, Error> {
        match self.get(path)? {
            (200, body) => Ok(body),
            (status, body) => Err(Error::Chain(format!("node API {path}: {status} {body}"))),
        }
    }

    /// Whether `model` is in the chain's model registry.
    pub fn model_registered(&self, model: &Hash) -> Result<bool, Error> {
        match self.get(&format!("/v1/market/models/{model}"))? {
            (200, _) => Ok(true),
            (404, _) => Ok(false),
            (status, body) => Err(Error::Chain(format!(
                "node API /v1/market/models: {status} {body}"
            ))),
        }
    }
}

fn amount(v: &Value, what: &str) -> Result<Amount, Error> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Chain(format!("node API: {what} is not an amount")))
}

impl Chain for HttpChain {
    fn chain_id(&self) -> Result<String, Error> {
        let status = self.ok("/v1/status")?;
        status["chain_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Chain("node API: no chain id".into()))
    }

    fn height(&self) -> Result<u64, Error> {
        self.ok("/v1/status")?["height"]
            .as_u64()
            .ok_or_else(|| Error::Chain("node API: no height".into()))
    }

    fn escrow(&self, client: &Address) -> Result<EscrowView, Error> {
        let body = self.ok(&format!("/v1/market/escrow/{client}"))?;
        Ok(EscrowView {
            balance: amount(&body["escrow"]["balance"], "escrow balance")?,
            unlocking: amount(&body["escrow"]["unlocking"], "escrow unlocking")?,
        })
    }

    fn nonce(&self, account: &Address) -> Result<u64, Error> {
        match self.get(&format!("/v1/accounts/{account}"))? {
            (200, body) => body["nonce"]
                .as_u64()
                .ok_or_else(|| Error::Chain("node API: no nonce".into())),
            (404, _) => Ok(0),
            (status, body) => Err(Error::Chain(format!("node API accounts: {status} {body}"))),
        }
    }

    fn submit(&self, tx: &SignedTransaction) -> Result<Hash, Error> {
        let mut r = self
            .agent
            .post(&format!("{}/v1/txs", self.base))
            .send_json(serde_json::json!({ "tx": hex::encode(tx.encode()) }))
            .map_err(|e| Error::Chain(format!("node API /v1/txs: {e}")))?;
        let status = r.status().as_u16();
        let body: Value = r
            .body_mut()
            .read_json()
            .map_err(|e| Error::Chain(format!("node API /v1/txs: {e}")))?;
        if status != 202 {
            return Err(Error::Chain(format!(
                "transaction refused: {} {}",
                body["code"], body["message"]
            )));
        }
        body["hash"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| Error::Chain("node API: no transaction hash".into()))
    }

    fn is_provider(&self, provider: &Address) -> Result<bool, Error> {
        match self.get(&format!("/v1/market/providers/{provider}"))? {
            // A convicted provider keeps its record (and stake) but serves no more.
            (200, body) => Ok(body["provider"]["retired_height"].is_null()),
            (404, _) => Ok(false),
            (status, body) => Err(Error::Chain(format!("node API providers: {status} {body}"))),
        }
    }

    fn is_settled(&self, job_id: &Hash) -> Result<bool, Error> {
        match self.get(&format!("/v1/market/jobs/{job_id}"))? {
            (200, _) => Ok(true),
            (404, _) => Ok(false),
            (status, body) => Err(Error::Chain(format!("node API jobs: {status} {body}"))),
        }
    }

    fn job(&self, job_id: &Hash) -> Result<Option<JobView>, Error> {
        match self.get(&format!("/v1/market/jobs/{job_id}"))? {
            (200, body) => serde_json::from_value(body["job"].clone())
                .map(Some)
                .map_err(|e| Error::Chain(format!("node API jobs: {e}"))),
            (404, _) => Ok(None),
            (status, body) => Err(Error::Chain(format!("node API jobs: {status} {body}"))),
        }
    }

    fn open_checks(&self, address: &Address) -> Result<Vec<CheckView>, Error> {
        let body = self.ok(&format!("/v1/market/open-checks/{address}"))?;
        serde_json::from_value(body["checks"].clone())
            .map_err(|e| Error::Chain(format!("node API open checks: {e}")))
    }

    fn verifier_key(&self, verifier: &Address) -> Result<Option<[u8; 32]>, Error> {
        let body = self.ok("/v1/market/verifiers")?;
        let listed = body["verifiers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["address"].as_str() == Some(verifier.to_string().as_str()));
        let Some(v) = listed else {
            return Ok(None);
        };
        let mut key = [0u8; 32];
        hex::decode_to_slice(
            v["info"]["encryption_key"].as_str().unwrap_or_default(),
            &mut key,
        )
        .map_err(|_| Error::Chain("node API: a verifier key that is not hex".into()))?;
        Ok(Some(key))
    }

    fn verification_over(&self, job_id: &Hash) -> Result<Option<bool>, Error> {
        match self.get(&format!("/v1/market/jobs/{job_id}"))? {
            (200, body) => Ok(Some(
                body["sampled"] == Value::Bool(false)
                    || body["check"]["outcome"]
                        .as_str()
                        .is_some_and(|o| o != "open"),
            )),
            (404, _) => Ok(None),
            (status, body) => Err(Error::Chain(format!("node API jobs: {status} {body}"))),
        }
    }

    fn reveal(&self, job_id: &Hash, verifier: &Address) -> Result<Option<Vec<u8>>, Error> {
        match self.get(&format!("/v1/market/checks/{job_id}/reveal/{verifier}"))? {
            (200, body) => hex::decode(body["data"].as_str().unwrap_or_default())
                .map(Some)
                .map_err(|_| Error::Chain("node API: a reveal that is not hex".into())),
            (404, _) => Ok(None),
            (status, body) => Err(Error::Chain(format!("node API reveal: {status} {body}"))),
        }
    }
}
