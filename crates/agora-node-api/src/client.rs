//! The one client of the node API.

use crate::types::*;
use agora_types::{Address, Hash, SignedTransaction};
use serde::{Serialize, de::DeserializeOwned};
use std::time::Duration;

/// What went wrong talking to a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No answer: the node is down, unreachable or too slow.
    #[error(
        "cannot reach the node at {base} ({reason}); is it running? (set --node or AGORA_NODE)"
    )]
    Unreachable {
        /// The node's base URL.
        base: String,
        /// The transport's error.
        reason: String,
    },
    /// The node answered with an error.
    #[error("{message} [{code}, HTTP {status}]")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The node's stable code (e.g. `nonce_too_low`).
        code: String,
        /// Its explanation.
        message: String,
    },
    /// The node answered something that is not the API's JSON.
    #[error("{path}: the node's answer is not what the API sends: {reason}")]
    Malformed {
        /// The route asked.
        path: String,
        /// What did not fit.
        reason: String,
    },
}

impl ClientError {
    /// The node's code, for a refusal.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Which block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockId {
    /// The latest committed.
    Latest,
    /// At a height.
    Height(u64),
    /// With a hash.
    Hash(Hash),
}

impl std::fmt::Display for BlockId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockId::Latest => f.write_str("latest"),
            BlockId::Height(h) => write!(f, "{h}"),
            BlockId::Hash(h) => write!(f, "{h}"),
        }
    }
}

/// An answer's bytes as they came, with its `x-agora-…` headers.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    /// The body.
    pub body: Vec<u8>,
    /// The `x-agora-…` headers: (name, value).
    pub headers: Vec<(String, String)>,
}

impl RawAnswer {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Attempts of a read that got no answer (or a busy answer) before it fails.
const READ_ATTEMPTS: u32 = 3;

/// A node's HTTP API at a base URL (`http://127.0.0.1:7420`). Calls block: run them off async
/// executors. Reads that get no answer, or a 429/503, are tried again (three attempts, 100 ms
/// then 300 ms apart); submissions are sent once (a repeat would be refused as a duplicate
/// anyway, but its error would hide the first one's answer).
#[derive(Debug, Clone)]
pub struct NodeClient {
    base: String,
    agent: ureq::Agent,
}

impl NodeClient {
    /// A client of the node at `base`, answers within 30 s.
    pub fn new(base: &str) -> Self {
        Self::with_timeout(base, Duration::from_secs(30))
    }

    /// A client whose requests fail after `timeout` (connecting: at most 5 s).
    pub fn with_timeout(base: &str, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
            .timeout_global(Some(timeout))
            .build()
            .into();
        NodeClient {
            base: base.trim_end_matches('/').to_string(),
            agent,
        }
    }

    /// The node's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: ureq::Error) -> ClientError {
        ClientError::Unreachable {
            base: self.base.clone(),
            reason: e.to_string(),
        }
    }

    /// The answer's body as `T`, or the node's error.
    fn read<T: DeserializeOwned>(
        path: &str,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> Result<T, ClientError> {
        let status = resp.status().as_u16();
        let malformed = |reason: String| ClientError::Malformed {
            path: path.to_string(),
            reason,
        };
        let body = resp
            .body_mut()
            .read_to_vec()
            .map_err(|e| malformed(e.to_string()))?;
        if status >= 400 {
            return Err(refusal(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| malformed(e.to_string()))
    }

    fn get_raw(&self, path: &str) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.agent.get(&url).call();
            let retry = match &result {
                Err(_) => true,
                Ok(r) => matches!(r.status().as_u16(), 429 | 503),
            };
            if !retry || attempt >= READ_ATTEMPTS {
                return result.map_err(|e| self.unreachable(e));
            }
            tracing::debug!(%url, attempt, "node read failed; trying again");
            std::thread::sleep(Duration::from_millis(if attempt == 1 { 100 } else { 300 }));
        }
    }

    /// `GET path` as `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        Self::read(path, self.get_raw(path)?)
    }

    /// `GET path` as `T`; `None` when the node has no such object (404 with the object's own
    /// code: a route the node lacks is an error, not an absence).
    pub fn get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ClientError> {
        match self.get(path) {
            Ok(v) => Ok(Some(v)),
            Err(ClientError::Refused {
                status: 404, code, ..
            }) if code != "not_found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST path` with a JSON `body` (sent once): the answer's bytes as they are, with its
    /// `x-agora-…` headers, or the node's error.
    pub fn post_raw<B: Serialize>(&self, path: &str, body: &B) -> Result<RawAnswer, ClientError> {
        let mut resp = self
            .agent
            .post(&format!("{}{path}", self.base))
            .send_json(body)
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-agora-"))
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| ClientError::Malformed {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
        if status >= 400 {
            return Err(refusal(status, &body));
        }
        Ok(RawAnswer { body, headers })
    }

    /// `POST path` with a JSON `body`, as `T` (sent once).
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let resp = self
            .agent
            .post(&format!("{}{path}", self.base))
            .send_json(body)
            .map_err(|e| self.unreachable(e))?;
        Self::read(path, resp)
    }

    /// `POST /v1/search/reports`: publishes an audit job's report (the node must keep a search
    /// index).
    pub fn publish_report(&self, report: &PublishReport) -> Result<PublishResponse, ClientError> {
        self.post("/v1/search/reports", report)
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<StatusResponse, ClientError> {
        self.get("/v1/status")
    }

    /// `GET /health`.
    pub fn health(&self) -> Result<HealthResponse, ClientError> {
        self.get("/health")
    }

    /// The latest committed height.
    pub fn height(&self) -> Result<u64, ClientError> {
        Ok(self.status()?.height)
    }

    /// A block, if the chain has it.
    pub fn block(&self, id: BlockId) -> Result<Option<BlockResponse>, ClientError> {
        self.get_opt(&format!("/v1/blocks/{id}"))
    }

    /// A committed or pending transaction, if the node knows it.
    pub fn tx(&self, hash: &Hash) -> Result<Option<TxResponse>, ClientError> {
        self.get_opt(&format!("/v1/txs/{hash}"))
    }

    /// An account, if it exists.
    pub fn account(&self, address: &Address) -> Result<Option<AccountResponse>, ClientError> {
        self.get_opt(&format!("/v1/accounts/{address}"))
    }

    /// The newest `limit` transactions that concern `address`.
    pub fn account_txs(
        &self,
        address: &Address,
        limit: usize,
    ) -> Result<AccountTxsResponse, ClientError> {
        self.get(&format!("/v1/accounts/{address}/txs?limit={limit}"))
    }

    /// An account with its Merkle proof, if it exists.
    pub fn account_proved(
        &self,
        address: &Address,
    ) -> Result<Option<AccountResponse>, ClientError> {
        self.get_opt(&format!("/v1/accounts/{address}?prove=true"))
    }

    /// The nonce `address`'s next transaction must carry (0 for a new account).
    pub fn nonce(&self, address: &Address) -> Result<u64, ClientError> {
        Ok(self.account(address)?.map_or(0, |a| a.account.nonce))
    }

    /// `GET /v1/validators`.
    pub fn validators(&self) -> Result<ValidatorsResponse, ClientError> {
        self.get("/v1/validators")
    }

    /// Submits one transaction; its hash once the node admitted it.
    pub fn submit(&self, tx: &SignedTransaction) -> Result<Hash, ClientError> {
        let body = SubmitRequest {
            tx: Some(hex::encode(tx.encode())),
            ..SubmitRequest::default()
        };
        self.post::<_, Submitted>("/v1/txs", &body).map(|s| s.hash)
    }

    /// Submits encoded transactions (hex) at once; `relayed` marks them as forwarded by a
    /// validator (they go no further).
    pub fn submit_batch(
        &self,
        txs: Vec<String>,
        relayed: bool,
    ) -> Result<SubmittedBatch, ClientError> {
        let body = SubmitRequest {
            tx: None,
            txs: Some(txs),
            relayed,
        };
        self.post("/v1/txs", &body)
    }

    /// The registered providers (`GET /v1/market/providers`, up to a thousand).
    pub fn providers(&self) -> Result<Vec<ProviderEntry>, ClientError> {
        Ok(self
            .get::<ProvidersResponse>("/v1/market/providers")?
            .providers)
    }

    /// A registered provider, if it is one.
    pub fn provider(&self, address: &Address) -> Result<Option<ProviderEntry>, ClientError> {
        Ok(self
            .get_opt::<ProviderResponse>(&format!("/v1/market/providers/{address}"))?
            .map(|p| p.provider))
    }

    /// The model registry (`GET /v1/market/models`, up to a thousand).
    pub fn models(&self) -> Result<Vec<ModelEntry>, ClientError> {
        Ok(self.get::<ModelsResponse>("/v1/market/models")?.models)
    }

    /// A registered model, if it is one.
    pub fn model(&self, id: &Hash) -> Result<Option<ModelEntry>, ClientError> {
        self.get_opt(&format!("/v1/market/models/{id}"))
    }

    /// The provable models.
    pub fn zk_models(&self) -> Result<Vec<crate::ZkModelEntry>, ClientError> {
        Ok(self.get::<crate::ZkModelsResponse>("/v1/zk/models")?.models)
    }

    /// A provable model, if registered.
    pub fn zk_model(&self, id: &Hash) -> Result<Option<crate::ZkModelEntry>, ClientError> {
        self.get_opt(&format!("/v1/zk/models/{id}"))
    }

    /// An account's attestations and the number its next proof is bound to.
    pub fn zk_attestations(
        &self,
        address: &Address,
    ) -> Result<crate::ZkAttestationsResponse, ClientError> {
        self.get(&format!("/v1/zk/attestations/{address}"))
    }

    /// A client's escrow (zero when it never deposited).
    pub fn escrow(&self, client: &Address) -> Result<agora_state::Escrow, ClientError> {
        Ok(self
            .get::<EscrowResponse>(&format!("/v1/market/escrow/{client}"))?
            .escrow)
    }

    /// A settled job, if settled.
    pub fn job(&self, id: &Hash) -> Result<Option<JobResponse>, ClientError> {
        self.get_opt(&format!("/v1/market/jobs/{id}"))
    }

    /// The registered verifiers (`GET /v1/market/verifiers`, up to a thousand).
    pub fn verifiers(&self) -> Result<Vec<VerifierEntry>, ClientError> {
        Ok(self
            .get::<VerifiersResponse>("/v1/market/verifiers")?
            .verifiers)
    }

    /// A job's check, if it is checked.
    pub fn check(&self, id: &Hash) -> Result<Option<CheckResponse>, ClientError> {
        self.get_opt(&format!("/v1/market/checks/{id}"))
    }

    /// The open checks in which `address` (a provider or a seated verifier) has something to do.
    pub fn open_checks(&self, address: &Address) -> Result<Vec<agora_state::Check>, ClientError> {
        Ok(self
            .get::<OpenChecksResponse>(&format!("/v1/market/open-checks/{address}"))?
            .checks)
    }

    /// The complete reveal of job `id` to `verifier`, if the chain holds one.
    pub fn reveal(&self, id: &Hash, verifier: &Address) -> Result<Option<Vec<u8>>, ClientError> {
        let path = format!("/v1/market/checks/{id}/reveal/{verifier}");
        let Some(r) = self.get_opt::<RevealResponse>(&path)? else {
            return Ok(None);
        };
        hex::decode(&r.data)
            .map(Some)
            .map_err(|e| ClientError::Malformed {
                path,
                reason: e.to_string(),
            })
    }

    /// Every subnet, the lock cost now and emission so far (`GET /v1/subnets`).
    pub fn subnets(&self) -> Result<SubnetsResponse, ClientError> {
        self.get("/v1/subnets")
    }

    /// A subnet, if it exists (`GET /v1/subnets/{netuid}`).
    pub fn subnet(&self, netuid: u16) -> Result<Option<SubnetResponse>, ClientError> {
        self.get_opt(&format!("/v1/subnets/{netuid}"))
    }

    /// A subnet's metagraph, if it exists (`GET /v1/subnets/{netuid}/metagraph`).
    pub fn metagraph(&self, netuid: u16) -> Result<Option<MetagraphResponse>, ClientError> {
        self.get_opt(&format!("/v1/subnets/{netuid}/metagraph"))
    }
}

/// An error answer's body: the node's `{code, message}`, or a limit's `{"error": {...}}`.
fn refusal(status: u16, body: &[u8]) -> ClientError {
    #[derive(serde::Deserialize)]
    struct Wrapped {
        error: ErrorBody,
    }
    let parsed = serde_json::from_slice::<ErrorBody>(body)
        .or_else(|_| serde_json::from_slice::<Wrapped>(body).map(|w| w.error));
    match parsed {
        Ok(e) => ClientError::Refused {
            status,
            code: e.code,
            message: e.message,
        },
        Err(_) => ClientError::Refused {
            status,
            code: "http_error".into(),
            message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}
