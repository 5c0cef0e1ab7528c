use crate::views::{self, ApiResult, parse_hash};
use crate::{ApiError, market};
use agora_chain::{CommittedBlock, Node};
use agora_node_api::{
    AccountResponse, AccountTxsResponse, BlockResponse, HealthResponse, StatusResponse,
    SubmitOutcome, SubmitRequest, Submitted, SubmittedBatch, TxResponse, ValidatorsResponse,
};
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
    shutdown: watch::Receiver<bool>,
}

/// The API's routes over a node. `shutdown` ends open event streams when it turns `true`.
pub fn router(node: Arc<Node>, shutdown: watch::Receiver<bool>) -> Router {
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
        .route("/v1/accounts/{address}/txs", get(get_account_txs))
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
        .route("/v1/subnets", get(crate::subnets::list_subnets))
        .route("/v1/subnets/{netuid}", get(crate::subnets::get_subnet))
        .route(
            "/v1/subnets/{netuid}/metagraph",
            get(crate::subnets::get_metagraph),
        )
        .route("/v1/zk/models", get(crate::zk::list_models))
        .route("/v1/zk/models/{id}", get(crate::zk::get_model))
        .route(
            "/v1/zk/attestations/{address}",
            get(crate::zk::attestations),
        )
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("not_found", "no such route; see /v1/status") });
    crate::limit(reads, crate::Limits::NODE_API)
        .merge(crate::limit(submit, crate::Limits::SUBMIT))
        .merge(crate::limit(events, crate::Limits::EVENTS))
        .route("/health", get(health))
        .with_state(AppState { node, shutdown })
}

/// Serves the API on `listener` (within the limits of [`router`]) until `shutdown` resolves;
/// open event streams are closed then.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_pages(node, listener, Router::new(), shutdown).await
}

/// [`serve`], with `pages` (the web app's routes, which must not overlap the API's) beside the
/// API, under the read routes' limits.
pub async fn serve_with_pages(
    node: Arc<Node>,
    listener: TcpListener,
    pages: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = watch::channel(false);
    let app = router(node, rx).merge(crate::limit(pages, crate::Limits::NODE_API));
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

async fn get_tx(
    State(st): State<AppState>,
    Path(hash): Path<String>,
) -> ApiResult<Json<TxResponse>> {
    Ok(Json(views::tx(&st.node, &parse_hash(&hash)?)?))
}

async fn get_block(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<BlockResponse>> {
    Ok(Json(views::block(&st.node.snapshot()?, &id)?))
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
    Ok(Json(views::account(
        &st.node,
        &views::parse_address(&address)?,
        q.prove,
    )?))
}

#[derive(Deserialize)]
struct HistoryQuery {
    #[serde(default = "default_history_page")]
    limit: usize,
    before: Option<String>,
}

fn default_history_page() -> usize {
    25
}

async fn get_account_txs(
    State(st): State<AppState>,
    Path(address): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Json<AccountTxsResponse>> {
    let address = views::parse_address(&address)?;
    let before = q.before.as_deref().map(views::parse_cursor).transpose()?;
    // A page may read a block per entry: off the async threads.
    let node = st.node.clone();
    let page = tokio::task::spawn_blocking(move || {
        views::account_txs(&node.snapshot()?, &address, before, q.limit)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(page))
}

async fn status(State(st): State<AppState>) -> ApiResult<Json<StatusResponse>> {
    Ok(Json(views::status(&st.node)?))
}

async fn validators(State(st): State<AppState>) -> ApiResult<Json<ValidatorsResponse>> {
    Ok(Json(views::validators(&st.node.snapshot()?)?))
}

fn block_event(b: &CommittedBlock) -> Event {
    Event::default().event("block").data(
        serde_json::to_string(&views::block_summary(&b.block)).expect("a block event is JSON"),
    )
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
    // The node's counters, and the model market's figures as of the latest block.
    let mut registry = st.node.metrics().registry();
    crate::subnets::register_metrics(&mut registry, &st.node.snapshot()?)?;
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).map_err(ApiError::internal)?;
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
