//! Search and feeds over HTTP, beside the node's API:
//!
//! ```text
//!  GET  /v1/search?q=…&kind=tx,account&since=MS&until=MS&address=A&subnet=N&limit=N&mode=hybrid|bm25|vector
//!  GET  /v1/search/stats
//!  GET  /v1/feed/{address}?limit=N
//!  GET  /v1/feed/{address}/prefs
//!  POST /v1/feed/{address}/prefs        a signed PrefsUpdate
//!  POST /v1/search/reports              a client's signed PublishReport of an audit job
//! ```
//! Errors are JSON `{code, message}`: 400 for the caller's mistakes (`empty_query`,
//! `query_too_long`, `unknown_filter`, `bad_prefs`…), 503 `busy` when every search slot stays
//! taken for a while. Searches run off the async workers, a few at a time.

use crate::chain::ChainIndexer;
use crate::feed::{self, Feed, Prefs, PrefsUpdate};
use crate::reports::{self, PublishReport, PublishResponse};
use crate::{Error, Filters, Hit, Kind, Mode, Query, SearchIndex, Stats};
use agora_api::ApiError;
use agora_chain::Node;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Searches and feeds computed at once; more wait, a while.
const SLOTS: usize = 4;
/// Publications checked at once.
const PUBLISH_SLOTS: usize = 2;
/// How long a request waits for a slot.
const SLOT_WAIT: Duration = Duration::from_secs(5);
/// Largest body of a preferences update.
const MAX_PREFS_BODY: usize = 64 * 1024;

/// Largest body of a report's publication (its input and output, JSON-escaped).
const MAX_REPORT_BODY: usize = 4 * (reports::MAX_REPORT_INPUT + reports::MAX_REPORT_OUTPUT);

/// What the routes serve.
#[derive(Clone, Debug)]
pub struct SearchService {
    index: Arc<SearchIndex>,
    node: Arc<Node>,
    follower: Option<Arc<ChainIndexer>>,
    slots: Arc<Semaphore>,
    /// Publications, apart: each runs the auditor, and must not take the searches' slots.
    publish_slots: Arc<Semaphore>,
}

impl SearchService {
    /// The index of `node`'s objects, kept current by `follower` (if any).
    pub fn new(
        index: Arc<SearchIndex>,
        node: Arc<Node>,
        follower: Option<Arc<ChainIndexer>>,
    ) -> Self {
        SearchService {
            index,
            node,
            follower,
            slots: Arc::new(Semaphore::new(SLOTS)),
            publish_slots: Arc::new(Semaphore::new(PUBLISH_SLOTS)),
        }
    }

    /// The index.
    pub fn index(&self) -> &Arc<SearchIndex> {
        &self.index
    }

    fn height(&self) -> Option<u64> {
        self.follower.as_ref().and_then(|f| f.height())
    }

    /// Runs `f` on a blocking thread once a slot is free.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SearchService) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.run_in(self.slots.clone(), "search", f).await
    }

    /// [`SearchService::run`] with a slot of `slots` (for `what`, named if all are taken).
    async fn run_in<T: Send + 'static>(
        &self,
        slots: Arc<Semaphore>,
        what: &'static str,
        f: impl FnOnce(&SearchService) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(SLOT_WAIT, slots.acquire_owned())
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    format!("every {what} slot is taken: try again shortly"),
                )
            })?
            .map_err(ApiError::internal)?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&me)
        })
        .await
        .map_err(ApiError::internal)?
    }
}

fn api_error(e: Error) -> ApiError {
    let code = match &e {
        Error::EmptyQuery => "empty_query",
        Error::QueryTooLong { .. } => "query_too_long",
        Error::UnknownFilter(_) => "unknown_filter",
        Error::BadDoc { .. } => "bad_document",
        Error::BadPrefs(_) => "bad_prefs",
        Error::BadReport(_) => "bad_report",
        _ => "search_failed",
    };
    if e.is_bad_request() {
        ApiError::bad_request(code, e.to_string())
    } else {
        tracing::warn!("search: {e}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code, e.to_string())
    }
}

/// The routes, to merge beside the node's API.
pub fn router(service: SearchService) -> Router {
    Router::new()
        .route("/v1/search", get(search))
        .route("/v1/search/stats", get(stats))
        .route("/v1/feed/{address}", get(get_feed))
        .route(
            "/v1/feed/{address}/prefs",
            get(get_prefs)
                .post(set_prefs)
                .layer(DefaultBodyLimit::max(MAX_PREFS_BODY)),
        )
        .merge(agora_api::limit(
            Router::new().route(
                "/v1/search/reports",
                post(publish_report).layer(DefaultBodyLimit::max(MAX_REPORT_BODY)),
            ),
            agora_api::Limits::PUBLISH,
        ))
        .with_state(service)
}

/// `GET /v1/search`'s parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Words, a hash or an address.
    pub q: String,
    /// Kinds, comma-separated (`tx,account,provider…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only objects of this time or later (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Only objects of this time or earlier (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Only objects about this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Only objects of this subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<u16>,
    /// Most results (default 10, at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// `hybrid` (default), `bm25` or `vector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

impl SearchParams {
    /// The index's query.
    pub fn query(&self) -> Result<Query, Error> {
        let mut kinds = Vec::new();
        for k in self.kind.iter().flat_map(|k| k.split(',')) {
            if !k.trim().is_empty() {
                let k = Kind::parse(k)?;
                if !kinds.contains(&k) {
                    kinds.push(k);
                }
            }
        }
        let mut q = Query::new(self.q.clone())
            .filters(Filters {
                kinds,
                since_ms: self.since,
                until_ms: self.until,
                address: self.address.clone().filter(|a| !a.trim().is_empty()),
                subnet: self.subnet,
            })
            .limit(self.limit.unwrap_or(10));
        if let Some(m) = &self.mode {
            q = q.mode(Mode::parse(m)?);
        }
        Ok(q)
    }
}

/// `GET /v1/search`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SearchResponse {
    pub query: String,
    /// The last block whose objects the index holds.
    pub height: Option<u64>,
    pub took_ms: u64,
    pub hits: Vec<Hit>,
}

async fn search(
    State(s): State<SearchService>,
    params: Result<axum::extract::Query<SearchParams>, QueryRejection>,
) -> Result<Json<SearchResponse>, ApiError> {
    let axum::extract::Query(params) =
        params.map_err(|e| ApiError::bad_request("malformed_request", e.body_text()))?;
    let query = params.query().map_err(api_error)?;
    let started = Instant::now();
    let text = params.q.trim().to_string();
    let hits = s
        .run(move |s| {
            let mut hits = s.index.search(&query).map_err(api_error)?;
            if !hits.iter().any(|h| h.exact)
                && let Some(hit) = block_hit(&s.node, &text)
            {
                hits.insert(0, hit);
            }
            Ok(hits)
        })
        .await?;
    Ok(Json(SearchResponse {
        query: params.q,
        height: s.height(),
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        hits,
    }))
}

/// A block hash typed in whole goes to its block (blocks are not documents: the store finds
/// them by hash).
fn block_hit(node: &Node, text: &str) -> Option<Hit> {
    let hex = text.strip_prefix("0x").unwrap_or(text);
    if hex.len() != 64 {
        return None;
    }
    let hash = agora_types::Hash(hex::decode(hex).ok()?.try_into().ok()?);
    let snap = node.snapshot().ok()?;
    let height = snap.block_height(&hash).ok()??;
    let block = snap.block(height).ok()??;
    Some(Hit {
        id: format!("block:{height}"),
        kind: Kind::Transaction,
        title: format!("Block {height}"),
        snippet: format!(
            "Block {height} with {} transactions, proposed by {}.",
            block.txs.len(),
            block.header.proposer
        ),
        url: Some(format!("/blocks/{height}")),
        time_ms: i64::try_from(block.header.time_ms).unwrap_or(i64::MAX),
        score: 1.0,
        bm25_rank: None,
        vector_rank: None,
        exact: true,
    })
}

/// `GET /v1/search/stats`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatsResponse {
    pub height: Option<u64>,
    pub stats: Stats,
}

async fn stats(State(s): State<SearchService>) -> Result<Json<StatsResponse>, ApiError> {
    let height = s.height();
    let stats = s.run(|s| s.index.stats().map_err(api_error)).await?;
    Ok(Json(StatsResponse { height, stats }))
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedParams {
    limit: Option<usize>,
}

/// `GET /v1/feed/{address}`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FeedResponse {
    pub height: Option<u64>,
    #[serde(flatten)]
    pub feed: Feed,
}

async fn get_feed(
    State(s): State<SearchService>,
    Path(address): Path<String>,
    params: Result<axum::extract::Query<FeedParams>, QueryRejection>,
) -> Result<Json<FeedResponse>, ApiError> {
    let axum::extract::Query(params) =
        params.map_err(|e| ApiError::bad_request("malformed_request", e.body_text()))?;
    let height = s.height();
    let feed = s
        .run(move |s| {
            // The chain's time: decay is measured from the last block, not a clock.
            let now = s
                .node
                .snapshot()
                .ok()
                .and_then(|snap| snap.latest_block().ok().flatten())
                .map_or(0, |b| i64::try_from(b.header.time_ms).unwrap_or(i64::MAX));
            feed::feed(&s.index, &address, now, params.limit.unwrap_or(20)).map_err(api_error)
        })
        .await?;
    Ok(Json(FeedResponse { height, feed }))
}

/// `GET /v1/feed/{address}/prefs`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PrefsResponse {
    pub address: String,
    /// The last update's nonce (0: none yet); the next must be above it.
    pub nonce: u64,
    pub prefs: Prefs,
}

async fn get_prefs(
    State(s): State<SearchService>,
    Path(address): Path<String>,
) -> Result<Json<PrefsResponse>, ApiError> {
    if address.parse::<agora_types::Address>().is_err() {
        return Err(ApiError::bad_request(
            "bad_prefs",
            format!("{address:?} is not an address"),
        ));
    }
    let (prefs, nonce) = feed::prefs(&s.index, &address).map_err(api_error)?;
    Ok(Json(PrefsResponse {
        address,
        nonce,
        prefs,
    }))
}

async fn set_prefs(
    State(s): State<SearchService>,
    Path(address): Path<String>,
    body: Result<Json<PrefsUpdate>, JsonRejection>,
) -> Result<Json<PrefsResponse>, ApiError> {
    let Json(update) = body.map_err(|e| ApiError::new(e.status(), "bad_prefs", e.body_text()))?;
    if update.address != address {
        return Err(ApiError::bad_request(
            "bad_prefs",
            "the update is for another account than the path's",
        ));
    }
    let chain_id = s.node.chain_id().to_string();
    s.run(move |s| {
        // Only accounts of the chain keep preferences: a key made for free cannot fill the
        // node's disk with them.
        let known = update
            .address
            .parse::<agora_types::Address>()
            .ok()
            .map(|a| {
                let snap = s.node.snapshot().map_err(ApiError::internal)?;
                agora_state::read_account(&snap, &a)
                    .map(|acct| acct.is_some())
                    .map_err(ApiError::internal)
            })
            .transpose()?
            .unwrap_or(false);
        if !known {
            return Err(ApiError::bad_request(
                "unknown_account",
                format!(
                    "{} has no account on this chain: it must hold funds to keep a feed's preferences",
                    update.address
                ),
            ));
        }
        feed::set_prefs(&s.index, &chain_id, &update).map_err(api_error)
    })
    .await?;
    get_prefs(State(s), Path(address)).await
}

async fn publish_report(
    State(s): State<SearchService>,
    body: Result<Json<PublishReport>, JsonRejection>,
) -> Result<Json<PublishResponse>, ApiError> {
    let Json(report) = body.map_err(|e| ApiError::new(e.status(), "bad_report", e.body_text()))?;
    let id = s
        .run_in(s.publish_slots.clone(), "publication", move |s| {
            reports::publish(&s.index, &s.node, &report).map_err(api_error)
        })
        .await?;
    Ok(Json(PublishResponse { id }))
}
