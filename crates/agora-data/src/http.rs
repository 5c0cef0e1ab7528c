//! The data market over HTTP, beside the node's API:
//!
//! ```text
//!  GET /v1/data/bounties                             the newest bounties
//!  GET /v1/data/bounties/{id}                        a bounty and its items
//!  PUT /v1/data/bounties/{id}/items/{i}/content      an item's bytes (checked against the chain)
//!  GET /v1/data/bounties/{id}/items/{i}/content      an item's bytes
//!  GET /v1/data/datasets/{root}                      a dataset: contributors, citations, royalties
//!  GET /v1/data/datasets/{root}/items                its items with their inclusion proofs
//!  GET /v1/data/reviewers/{address}                  a reviewer's stake and assignments
//! ```
//!
//! Nobody stores arbitrary bytes here: an upload is taken only for an item already submitted on
//! chain (with its bond and fee paid), not yet rejected, whose hash and size the bytes match.
//! A node asked for bytes it lacks fetches them from its peers (`?local=1` asks a peer for its
//! own only, so a request goes one hop), checks them against the chain and keeps them.
//! Errors are JSON `{code, message}`.

use crate::views::{self, ViewError};
use crate::{BlobStore, Error};
use agora_api::ApiError;
use agora_chain::Node;
use agora_types::{Address, Hash};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Duration;

/// What the routes serve: the node's state and its blob store.
#[derive(Clone, Debug)]
pub struct DataService {
    node: Arc<Node>,
    blobs: Arc<BlobStore>,
    /// Other nodes' API base URLs, asked for bytes this node lacks.
    peers: Arc<Vec<String>>,
    /// Fetches from peers under way (a few at once: each holds a blocking thread).
    fetching: Arc<tokio::sync::Semaphore>,
    /// Items no peer had, and when they were last asked for (not asked again for a while).
    misses: Arc<parking_lot::Mutex<std::collections::BTreeMap<(u64, u32), std::time::Instant>>>,
}

/// How long a peer has to hand over an item's bytes, and all peers together.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);
const PEERS_TIMEOUT: Duration = Duration::from_secs(6);
/// Fetches from peers at once.
const FETCH_SLOTS: usize = 4;
/// How long an item no peer had is not asked for again.
const MISS_MEMORY: Duration = Duration::from_secs(30);
/// Items remembered as missing, at most.
const MISSES_KEPT: usize = 4_096;

impl DataService {
    /// The data market of `node`, its items' bytes in `blobs`.
    pub fn new(node: Arc<Node>, blobs: Arc<BlobStore>) -> Self {
        DataService {
            node,
            blobs,
            peers: Arc::new(Vec::new()),
            fetching: Arc::new(tokio::sync::Semaphore::new(FETCH_SLOTS)),
            misses: Arc::default(),
        }
    }

    /// Asks `peers` (API base URLs) for items' bytes this node lacks.
    pub fn with_peers(mut self, peers: Vec<String>) -> Self {
        self.peers = Arc::new(peers);
        self
    }

    /// Item `id/index`'s bytes from a peer, checked against `item` and kept; `None` when no
    /// peer has them.
    fn fetch_from_peers(&self, id: u64, index: u32, item: &agora_state::Item) -> Option<Vec<u8>> {
        if self.peers.is_empty() {
            return None;
        }
        // A recent miss is not asked for again, and only a few fetches run at once: requests for
        // bytes nobody holds cannot tie up the node's blocking threads.
        if self
            .misses
            .lock()
            .get(&(id, index))
            .is_some_and(|t| t.elapsed() < MISS_MEMORY)
        {
            return None;
        }
        let _slot = self.fetching.try_acquire().ok()?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(PEER_TIMEOUT))
            .build()
            .into();
        let started = std::time::Instant::now();
        for peer in self.peers.iter() {
            if started.elapsed() > PEERS_TIMEOUT {
                break;
            }
            let url = format!(
                "{}/v1/data/bounties/{id}/items/{index}/content?local=1",
                peer.trim_end_matches('/')
            );
            let Ok(mut resp) = agent.get(&url).call() else {
                continue;
            };
            if resp.status().as_u16() != 200 {
                continue;
            }
            let Ok(bytes) = resp
                .body_mut()
                .with_config()
                .limit(u64::from(item.size) + 1)
                .read_to_vec()
            else {
                continue;
            };
            // A peer that lies is simply not believed.
            if bytes.len() as u64 == u64::from(item.size) && Hash::digest(&bytes) == item.hash {
                if let Err(e) = self.blobs.put(&bytes) {
                    tracing::warn!("data: keeping item {id}/{index} from {peer}: {e}");
                }
                return Some(bytes);
            }
            tracing::warn!("data: {peer} served bytes that are not item {id}/{index}");
        }
        let mut misses = self.misses.lock();
        if misses.len() >= MISSES_KEPT {
            misses.clear();
        }
        misses.insert((id, index), std::time::Instant::now());
        None
    }

    /// The blob store.
    pub fn blobs(&self) -> &Arc<BlobStore> {
        &self.blobs
    }

    /// Removes the bytes of items no longer on chain (rejected items go when their bounty
    /// settles); returns how many blobs went.
    pub fn collect_garbage(&self) -> Result<usize, ApiError> {
        // The blobs first, then the state: a blob uploaded in between is for an item already
        // on chain, so it is in the state read after.
        let held = self.blobs.hashes().map_err(ApiError::internal)?;
        let snap = self.node.snapshot().map_err(ApiError::internal)?;
        let live = views::live_hashes(&snap).map_err(view_error)?;
        let mut removed = 0;
        for h in held {
            if !live.contains(&h) && self.blobs.remove(&h).map_err(ApiError::internal)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Collects garbage every `every` on a thread of its own, until `stop` turns true.
    pub fn spawn_collector(
        &self,
        every: Duration,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        let me = self.clone();
        std::thread::spawn(move || {
            let step = Duration::from_millis(200);
            let mut waited = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(step);
                waited += step;
                if waited >= every {
                    waited = Duration::ZERO;
                    match me.collect_garbage() {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!("data: removed {n} blobs of items no longer on chain")
                        }
                        Err(e) => tracing::warn!("data: garbage collection: {}", e.message),
                    }
                }
            }
        })
    }
}

fn view_error(e: ViewError) -> ApiError {
    ApiError::internal(e)
}

fn blob_error(e: Error) -> ApiError {
    match e {
        Error::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "item_too_large",
            e.to_string(),
        ),
        Error::Full { .. } => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "store_full",
            e.to_string(),
        ),
        Error::Corrupt(_) => ApiError::not_found("content_not_held", e.to_string()),
        Error::Io(_) => ApiError::internal(e),
    }
}

fn parse_id(s: &str) -> Result<u64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request("invalid_bounty", format!("{s:?} is not a bounty id")))
}

fn parse_index(s: &str) -> Result<u32, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request("invalid_item", format!("{s:?} is not an item index")))
}

fn parse_root(s: &str) -> Result<Hash, ApiError> {
    s.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_root",
            format!("{s:?} is not a dataset root (64 hex digits)"),
        )
    })
}

/// Runs `f` off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

/// The routes, to merge beside the node's API.
pub fn router(service: DataService) -> Router {
    let max = usize::try_from(service.blobs.limits().max_blob).unwrap_or(usize::MAX);
    Router::new()
        .route("/v1/data/bounties", get(list_bounties))
        .route("/v1/data/bounties/{id}", get(get_bounty))
        .route(
            "/v1/data/bounties/{id}/items/{index}/content",
            get(get_content)
                .put(put_content)
                .layer(DefaultBodyLimit::max(max.saturating_add(1))),
        )
        .route("/v1/data/datasets/{root}", get(get_dataset))
        .route("/v1/data/datasets/{root}/items", get(get_dataset_items))
        .route("/v1/data/reviewers/{address}", get(get_reviewer))
        .with_state(service)
}

async fn list_bounties(
    State(st): State<DataService>,
) -> Result<Json<views::BountiesResponse>, ApiError> {
    blocking(move || {
        let snap = st.node.snapshot().map_err(ApiError::internal)?;
        views::bounties(&snap).map(Json).map_err(view_error)
    })
    .await
}

async fn get_bounty(
    State(st): State<DataService>,
    Path(id): Path<String>,
) -> Result<Json<views::BountyResponse>, ApiError> {
    let id = parse_id(&id)?;
    blocking(move || {
        let snap = st.node.snapshot().map_err(ApiError::internal)?;
        views::bounty(&snap, id, |h| st.blobs.contains(h))
            .map_err(view_error)?
            .map(Json)
            .ok_or_else(|| ApiError::not_found("unknown_bounty", format!("no bounty {id}")))
    })
    .await
}

async fn put_content(
    State(st): State<DataService>,
    Path((id, index)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (id, index) = (parse_id(&id)?, parse_index(&index)?);
    blocking(move || {
        let snap = st.node.snapshot().map_err(ApiError::internal)?;
        let item = views::item(&snap, id, index)
            .map_err(view_error)?
            .ok_or_else(|| {
                ApiError::not_found(
                    "unknown_item",
                    format!("bounty {id} has no item {index} on chain: submit it first"),
                )
            })?;
        if matches!(item.stage, agora_state::Stage::Rejected { .. }) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "item_rejected",
                format!("item {id}/{index} was rejected: its bytes are not kept"),
            ));
        }
        if body.len() as u64 != u64::from(item.size) {
            return Err(ApiError::bad_request(
                "wrong_size",
                format!(
                    "{} bytes, but the item submitted on chain has {}",
                    body.len(),
                    item.size
                ),
            ));
        }
        let hash = Hash::digest(&body);
        if hash != item.hash {
            return Err(ApiError::bad_request(
                "wrong_content",
                format!(
                    "these bytes hash to {hash}, the item submitted on chain to {}",
                    item.hash
                ),
            ));
        }
        st.blobs.put(&body).map_err(blob_error)?;
        Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({"bounty": id, "index": index, "hash": hash})),
        )
            .into_response())
    })
    .await
}

/// `?local=1`: this node's bytes only (what a peer asks).
#[derive(Debug, serde::Deserialize)]
struct ContentQuery {
    #[serde(default)]
    local: Option<u8>,
}

async fn get_content(
    State(st): State<DataService>,
    Path((id, index)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<ContentQuery>,
) -> Result<Response, ApiError> {
    let (id, index) = (parse_id(&id)?, parse_index(&index)?);
    blocking(move || {
        let snap = st.node.snapshot().map_err(ApiError::internal)?;
        let item = views::item(&snap, id, index)
            .map_err(view_error)?
            .ok_or_else(|| {
                ApiError::not_found("unknown_item", format!("bounty {id} has no item {index}"))
            })?;
        let held = st.blobs.get(&item.hash).map_err(blob_error)?;
        let from_peers = || {
            if q.local.is_some() || matches!(item.stage, agora_state::Stage::Rejected { .. }) {
                None
            } else {
                st.fetch_from_peers(id, index, &item)
            }
        };
        let bytes = held.or_else(from_peers).ok_or_else(|| {
            ApiError::not_found(
                "content_not_held",
                format!("neither this node nor its peers hold the bytes of item {id}/{index}"),
            )
        })?;
        Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
    })
    .await
}

async fn get_dataset(
    State(st): State<DataService>,
    Path(root): Path<String>,
) -> Result<Json<views::DatasetResponse>, ApiError> {
    let root = parse_root(&root)?;
    blocking(move || {
        let snap = st.node.snapshot().map_err(ApiError::internal)?;
        views::dataset(&snap, &root)
            .map_err(view_error)?
            .map(Json)
            .ok_or_else(|| ApiError::not_found("unknown_dataset", format!("no dataset {root}")))
    })
    .await
}

async fn get_dataset_items(
    State(st): State<DataService>,
    Path(root): Path<String>,
) -> Result<Json<views::DatasetItems>, ApiError> {
    let root = parse_root(&root)?;
    blocking(move || {
        let snap = st.node.snapshot().map_err(ApiError::internal)?;
        views::dataset_items(&snap, &root)
            .map_err(view_error)?
            .map(Json)
            .ok_or_else(|| ApiError::not_found("unknown_dataset", format!("no dataset {root}")))
    })
    .await
}

async fn get_reviewer(
    State(st): State<DataService>,
    Path(address): Path<String>,
) -> Result<Json<views::ReviewerResponse>, ApiError> {
    let who: Address = address.parse().map_err(|_| {
        ApiError::bad_request("invalid_address", format!("{address:?} is not an address"))
    })?;
    blocking(move || {
        let snap = st.node.snapshot().map_err(ApiError::internal)?;
        views::reviewer(&snap, &who).map(Json).map_err(view_error)
    })
    .await
}
