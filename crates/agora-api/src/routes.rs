use crate::{ApiError, market};
use agora_chain::{CommittedBlock, Node};
use agora_node_api::{
    AccountProof, AccountResponse, BlockEvent, BlockResponse, ChainMode, HealthResponse,
    StatusResponse, SubmitOutcome, SubmitRequest, Submitted, SubmittedBatch, TxEntry, TxResponse,
    TxStatus, ValidatorsResponse,
};
use agora_state::{Account, StateRead, account_key};
use agora_store::Snapshot;
use agora_types::{Address, Block, Hash, Receipt, SignedTransaction};
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use futures_util::StreamExt as _;
use serde::Deserialize;
use std::{convert::Infallible, future::Future, sync::Arc};
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::wrappers::BroadcastStream;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) node: Arc<Node>,
    registry: Arc<prometheus_client::registry::Registry>,
    shutdown: watch::Receiver<bool>,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The API's routes over a node. `shutdown` ends open event streams when it turns `true`.
pub fn router(node: Arc<Node>, shutdown: watch::Receiver<bool>) -> Router {
    let registry = Arc::new(node.metrics().registry());
    // Each kind of route has its own limits (`crate::limits`): a flood of one does not starve
    // the others, and `/health` answers whatever happens.
    let submit = Router::new().route(
        "/v1/txs",
        post(submit_txs).layer(axum::extract::DefaultBodyLimit::max(MAX_SUBMIT_BODY)),
    );
    let events = Router::new().route("/v1/events/blocks", get(block_events));
    let reads = Router::new()
        .route("/v1/txs/{hash}", get(get_tx))
        .route("/v1/blocks/{id}", get(get_block))
        .route("/v1/accounts/{address}", get(get_account))
        .route("/v1/status", get(status))
        .route("/v1/validators", get(validators))
        .route("/v1/market/providers", get(market::list_providers))
        .route("/v1/market/providers/{address}", get(market::get_provider))
        .route("/v1/market/models", get(market::list_models))
        .route("/v1/market/models/{id}", get(market::get_model))
        .route("/v1/market/escrow/{address}", get(market::get_escrow))
        .route("/v1/market/jobs/{id}", get(market::get_job))
        .route("/v1/market/verifiers", get(market::list_verifiers))
        .route("/v1/market/checks/{id}", get(market::get_check))
        .route(
            "/v1/market/checks/{id}/reveal/{verifier}",
            get(market::get_reveal),
        )
        .route("/v1/market/open-checks/{address}", get(market::open_checks))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("not_found", "no such route; see /v1/status") });
    crate::limit(reads, crate::Limits::NODE_API)
        .merge(crate::limit(submit, crate::Limits::SUBMIT))
        .merge(crate::limit(events, crate::Limits::EVENTS))
        .route("/health", get(health))
        .with_state(AppState {
            node,
            registry,
            shutdown,
        })
}

/// Serves the API on `listener` (within the limits of [`router`]) until `shutdown` resolves;
/// open event streams are closed then.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = watch::channel(false);
    let app = router(node, rx);
    crate::limits::serve(listener, app, async move {
        shutdown.await;
        let _ = tx.send(true);
    })
    .await
}

fn decode_hex(s: &str) -> Result<Vec<u8>, ApiError> {
    hex::decode(s.trim_start_matches("0x"))
        .map_err(|e| ApiError::bad_request("malformed_tx", format!("transaction is not hex: {e}")))
}

/// Largest request body for `POST /v1/txs`: room for a batch of a few thousand transactions.
const MAX_SUBMIT_BODY: usize = 8 << 20;

async fn submit_txs(
    State(st): State<AppState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "request_too_large",
            format!("{e}: send at most {MAX_SUBMIT_BODY} bytes per request (split the batch)"),
        )
    })?;
    let body: SubmitRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "malformed_request",
            format!("expected {{\"tx\": hex}} or {{\"txs\": [hex…]}}: {e}"),
        )
    })?;
    let node = st.node.clone();
    let relay = !body.relayed;
    match (body.tx, body.txs) {
        (Some(tx), None) => {
            let bytes = decode_hex(&tx)?;
            let hash = tokio::task::spawn_blocking(move || {
                node.submit_batch_from(vec![bytes], relay)
                    .pop()
                    .expect("one result per input")
            })
            .await
            .map_err(ApiError::internal)??;
            Ok((StatusCode::ACCEPTED, Json(Submitted { hash })).into_response())
        }
        (None, Some(txs)) => {
            let items: Vec<Result<Vec<u8>, ApiError>> = txs.iter().map(|t| decode_hex(t)).collect();
            let good: Vec<Vec<u8>> = items
                .iter()
                .filter_map(|r| r.as_ref().ok().cloned())
                .collect();
            let mut results =
                tokio::task::spawn_blocking(move || node.submit_batch_from(good, relay))
                    .await
                    .map_err(ApiError::internal)?
                    .into_iter();
            let results: Vec<SubmitOutcome> = items
                .into_iter()
                .map(|item| {
                    let r = match item {
                        Ok(_) => results
                            .next()
                            .expect("one result per decoded tx")
                            .map_err(ApiError::from),
                        Err(e) => Err(e),
                    };
                    match r {
                        Ok(hash) => SubmitOutcome::Accepted { hash },
                        Err(e) => SubmitOutcome::Refused {
                            code: e.code,
                            message: e.message,
                        },
                    }
                })
                .collect();
            Ok((StatusCode::ACCEPTED, Json(SubmittedBatch { results })).into_response())
        }
        _ => Err(ApiError::bad_request(
            "malformed_request",
            "give exactly one of \"tx\" or \"txs\"",
        )),
    }
}

pub(crate) fn parse_hash(s: &str) -> ApiResult<Hash> {
    s.parse()
        .map_err(|e: agora_types::Error| ApiError::bad_request("invalid_hash", e.to_string()))
}

fn tx_entry(tx: &SignedTransaction, hash: Hash, receipt: Option<&Receipt>) -> TxEntry {
    TxEntry {
        hash,
        tx: tx.clone(),
        receipt: receipt.cloned(),
    }
}

async fn get_tx(
    State(st): State<AppState>,
    Path(hash): Path<String>,
) -> ApiResult<Json<TxResponse>> {
    let hash = parse_hash(&hash)?;
    let snap = st.node.snapshot()?;
    if let Some(loc) = snap.tx_location(&hash)? {
        let block = snap
            .block(loc.height)?
            .ok_or_else(|| ApiError::internal("block missing"))?;
        let results = snap.results(loc.height)?.unwrap_or_default();
        let tx = block
            .txs
            .get(loc.index as usize)
            .ok_or_else(|| ApiError::internal("tx missing"))?;
        let receipt = results.receipts.get(loc.index as usize);
        return Ok(Json(TxResponse {
            entry: tx_entry(tx, hash, receipt),
            status: TxStatus::Committed,
            height: Some(loc.height),
            index: Some(loc.index),
            block_hash: Some(block.hash()),
        }));
    }
    if let Some(tx) = st.node.pending(&hash) {
        return Ok(Json(TxResponse {
            entry: tx_entry(&tx, hash, None),
            status: TxStatus::Pending,
            height: None,
            index: None,
            block_hash: None,
        }));
    }
    Err(ApiError::not_found(
        "tx_not_found",
        format!("no committed or pending transaction {hash}"),
    ))
}

fn block_response(snap: &Snapshot, block: &Block) -> ApiResult<BlockResponse> {
    let results = snap.results(block.header.height)?.unwrap_or_default();
    let txs: Vec<TxEntry> = block
        .txs
        .iter()
        .enumerate()
        .map(|(i, tx)| {
            let receipt = results.receipts.get(i);
            let hash = receipt.map(|r| r.tx_hash).unwrap_or_else(|| tx.hash());
            tx_entry(tx, hash, receipt)
        })
        .collect();
    Ok(BlockResponse {
        hash: block.hash(),
        header: block.header.clone(),
        txs,
        block_events: results.block_events,
    })
}

async fn get_block(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<BlockResponse>> {
    let snap = st.node.snapshot()?;
    let block = if id == "latest" {
        snap.latest_block()?
    } else if let Ok(height) = id.parse::<u64>() {
        snap.block(height)?
    } else {
        let hash = parse_hash(&id).map_err(|_| {
            ApiError::bad_request(
                "invalid_block_id",
                format!("{id:?} is not a height, a block hash or \"latest\""),
            )
        })?;
        match snap.block_height(&hash)? {
            Some(h) => snap.block(h)?,
            None => None,
        }
    };
    let block = block.ok_or_else(|| {
        let latest = snap.height().ok().flatten().unwrap_or(0);
        ApiError::not_found(
            "block_not_found",
            format!("no block {id}; the latest height is {latest}"),
        )
    })?;
    Ok(Json(block_response(&snap, &block)?))
}

#[derive(Deserialize)]
struct AccountQuery {
    #[serde(default)]
    prove: bool,
}

async fn get_account(
    State(st): State<AppState>,
    Path(address): Path<String>,
    Query(q): Query<AccountQuery>,
) -> ApiResult<Json<AccountResponse>> {
    let address: Address = address
        .parse()
        .map_err(|e: agora_types::Error| ApiError::bad_request("invalid_address", e.to_string()))?;
    let key = account_key(&address);
    // A proof needs the tree and the state at one height; a block committed in between means
    // taking a fresh snapshot.
    let mut attempts = 0;
    let (snap, value, proof) = loop {
        let snap = st.node.snapshot()?;
        if !q.prove {
            let value = snap.get(&key).map_err(ApiError::internal)?;
            break (snap, value, None);
        }
        match snap.prove(&key) {
            Ok((value, proof)) => break (snap, value, Some(proof)),
            Err(agora_store::Error::SnapshotMoved) if attempts < 5 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    };
    let height = snap.height()?.unwrap_or(0);
    let value = value.ok_or_else(|| {
        ApiError::not_found(
            "unknown_account",
            format!("account {address} does not exist: it has never received funds"),
        )
    })?;
    let account: Account = borsh::from_slice(&value).map_err(ApiError::internal)?;
    let proof = match proof {
        Some(proof) => Some(AccountProof {
            height,
            state_root: snap.state_root()?,
            key: hex::encode(&key),
            value: hex::encode(&value),
            proof,
        }),
        None => None,
    };
    Ok(Json(AccountResponse {
        address,
        account,
        height,
        proof,
    }))
}

async fn status(State(st): State<AppState>) -> ApiResult<Json<StatusResponse>> {
    let snap = st.node.snapshot()?;
    let latest = snap
        .latest_block()?
        .ok_or_else(|| ApiError::internal("no genesis block"))?;
    Ok(Json(StatusResponse {
        chain_id: st.node.chain_id().to_string(),
        height: latest.header.height,
        latest_block_hash: latest.hash(),
        latest_block_time_ms: latest.header.time_ms,
        state_root: latest.header.state_root,
        peers: Vec::new(),
        mempool_size: st.node.mempool_len(),
        min_fee: st.node.params().min_fee,
        validator: st.node.proposer(),
    }))
}

/// The validator set in force after the latest block (a dev chain has none: its single block
/// producer is `validator` in the status).
async fn validators(State(st): State<AppState>) -> ApiResult<Json<ValidatorsResponse>> {
    let snap = st.node.snapshot()?;
    let height = snap.height()?.unwrap_or(0);
    let set = agora_state::read_validator_set(&snap).map_err(ApiError::internal)?;
    let params: agora_state::ConsensusParams = snap
        .get(&agora_state::consensus_params_key())
        .map_err(ApiError::internal)?
        .map(|b| borsh::from_slice(&b))
        .transpose()
        .map_err(ApiError::internal)?
        .unwrap_or_default();
    let Some(set) = set else {
        return Ok(Json(ValidatorsResponse {
            height,
            mode: ChainMode::Dev,
            validators: Vec::new(),
            total_power: 0,
            epoch_length: params.epoch_length,
            next_epoch_end: None,
        }));
    };
    Ok(Json(ValidatorsResponse {
        height,
        mode: ChainMode::Network,
        total_power: set.total_power(),
        validators: set.validators,
        epoch_length: params.epoch_length,
        next_epoch_end: Some((height / params.epoch_length + 1) * params.epoch_length),
    }))
}

fn block_event(b: &CommittedBlock) -> Event {
    let data = BlockEvent {
        height: b.block.header.height,
        hash: b.hash,
        time_ms: b.block.header.time_ms,
        txs: b.block.txs.len(),
        proposer: b.block.header.proposer,
        state_root: b.block.header.state_root,
    };
    Event::default()
        .event("block")
        .data(serde_json::to_string(&data).expect("a block event is JSON"))
}

async fn block_events(State(st): State<AppState>) -> impl IntoResponse {
    let mut shutdown = st.shutdown.clone();
    let stream = BroadcastStream::new(st.node.subscribe())
        // A subscriber that falls behind skips blocks rather than stalling the node.
        .filter_map(|item| async move { item.ok().map(|b| Ok::<_, Infallible>(block_event(&b))) })
        .take_until(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn metrics(State(st): State<AppState>) -> ApiResult<Response> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &st.registry)
        .map_err(ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

async fn health(State(st): State<AppState>) -> ApiResult<Json<HealthResponse>> {
    let height = st.node.snapshot()?.height()?;
    Ok(Json(HealthResponse {
        status: "ok".into(),
        height,
    }))
}
