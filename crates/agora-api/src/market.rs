//! Read-only views of the compute market's on-chain state.

use crate::ApiError;
use crate::routes::{ApiResult, AppState, parse_hash};
use agora_node_api::{
    CheckResponse, EscrowResponse, JobResponse, ModelEntry, ModelsResponse, OpenChecksResponse,
    ProviderEntry, ProviderResponse, ProvidersResponse, RevealResponse, VerifierEntry,
    VerifiersResponse,
};
use agora_state::{
    Check, Escrow, JobRecord, ModelInfo, Outcome, Provider, StateRead, check_key, escrow_key,
    job_key, model_key, open_check_prefix, provider_key, reveal_key,
};
use agora_store::Snapshot;
use agora_types::{Address, Hash};
use axum::{
    Json,
    extract::{Path, State},
};
use borsh::BorshDeserialize;

/// Most providers or models one listing returns.
const LIST_LIMIT: usize = 1_000;

fn decode<T: BorshDeserialize>(bytes: &[u8]) -> ApiResult<T> {
    borsh::from_slice(bytes).map_err(ApiError::internal)
}

fn get<T: BorshDeserialize>(snap: &Snapshot, key: &[u8]) -> ApiResult<Option<T>> {
    snap.get(key)
        .map_err(ApiError::internal)?
        .map(|b| decode(&b))
        .transpose()
}

fn parse_address(s: &str) -> ApiResult<Address> {
    s.parse()
        .map_err(|e: agora_types::Error| ApiError::bad_request("invalid_address", e.to_string()))
}

/// The key's suffix after `prefix`, as a fixed-size array.
fn suffix<const N: usize>(key: &[u8], prefix: usize) -> ApiResult<[u8; N]> {
    key.get(prefix..)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| ApiError::internal("a market key of the wrong length"))
}

pub(crate) async fn list_providers(
    State(st): State<AppState>,
) -> ApiResult<Json<ProvidersResponse>> {
    let snap = st.node.snapshot()?;
    let mut providers = Vec::new();
    for (k, v) in snap.scan_prefix(b"prov/", LIST_LIMIT)? {
        providers.push(ProviderEntry {
            address: Address(suffix(&k, 5)?),
            provider: decode(&v)?,
        });
    }
    Ok(Json(ProvidersResponse {
        height: snap.height()?.unwrap_or(0),
        providers,
    }))
}

pub(crate) async fn get_provider(
    State(st): State<AppState>,
    Path(address): Path<String>,
) -> ApiResult<Json<ProviderResponse>> {
    let address = parse_address(&address)?;
    let snap = st.node.snapshot()?;
    let provider: Provider = get(&snap, &provider_key(&address))?.ok_or_else(|| {
        ApiError::not_found(
            "unknown_provider",
            format!("{address} is not a registered provider"),
        )
    })?;
    Ok(Json(ProviderResponse {
        height: snap.height()?.unwrap_or(0),
        provider: ProviderEntry { address, provider },
    }))
}

pub(crate) async fn list_models(State(st): State<AppState>) -> ApiResult<Json<ModelsResponse>> {
    let snap = st.node.snapshot()?;
    let mut models = Vec::new();
    for (k, v) in snap.scan_prefix(b"modl/", LIST_LIMIT)? {
        let info: ModelInfo = decode(&v)?;
        models.push(ModelEntry {
            id: Hash(suffix(&k, 5)?),
            name: info.name,
            kind: info.kind,
        });
    }
    Ok(Json(ModelsResponse {
        height: snap.height()?.unwrap_or(0),
        models,
    }))
}

pub(crate) async fn get_model(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ModelEntry>> {
    let id = parse_hash(&id)?;
    let snap = st.node.snapshot()?;
    let info: ModelInfo = get(&snap, &model_key(&id))?
        .ok_or_else(|| ApiError::not_found("unknown_model", format!("no model {id}")))?;
    Ok(Json(ModelEntry {
        id,
        name: info.name,
        kind: info.kind,
    }))
}

pub(crate) async fn get_escrow(
    State(st): State<AppState>,
    Path(address): Path<String>,
) -> ApiResult<Json<EscrowResponse>> {
    let address = parse_address(&address)?;
    let snap = st.node.snapshot()?;
    let escrow: Escrow = get(&snap, &escrow_key(&address))?.unwrap_or_default();
    Ok(Json(EscrowResponse {
        height: snap.height()?.unwrap_or(0),
        address,
        escrow,
    }))
}

pub(crate) async fn get_job(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobResponse>> {
    let id = parse_hash(&id)?;
    let snap = st.node.snapshot()?;
    let height = snap.height()?.unwrap_or(0);
    let job: JobRecord = get(&snap, &job_key(&id))?.ok_or_else(|| {
        ApiError::not_found("unknown_job", format!("job {id} has not been settled"))
    })?;
    let check: Option<Check> = get(&snap, &check_key(&id))?;
    let state = job.fee_state.name();
    // Whether it is checked: drawn in the block after the one that settled it.
    let sampled = match (&check, job.level) {
        (_, agora_types::Verification::None) => Some(false),
        (Some(c), _) if c.drawn => Some(c.outcome != Outcome::NoVerifier || !c.seats.is_empty()),
        // Not drawn (a client's challenge may have opened a check since).
        _ if height > job.settled_height => Some(false),
        // Drawn in the next block.
        _ => None,
    };
    Ok(Json(JobResponse {
        height,
        job_id: id,
        state: state.to_string(),
        job,
        sampled,
        check,
    }))
}

pub(crate) async fn list_verifiers(
    State(st): State<AppState>,
) -> ApiResult<Json<VerifiersResponse>> {
    let snap = st.node.snapshot()?;
    let mut verifiers = Vec::new();
    for (k, v) in snap.scan_prefix(b"vrfr/", LIST_LIMIT)? {
        verifiers.push(VerifierEntry {
            address: Address(suffix(&k, 5)?),
            verifier: decode(&v)?,
        });
    }
    Ok(Json(VerifiersResponse {
        height: snap.height()?.unwrap_or(0),
        verifiers,
    }))
}

pub(crate) async fn get_check(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<CheckResponse>> {
    let id = parse_hash(&id)?;
    let snap = st.node.snapshot()?;
    let check: Check = get(&snap, &check_key(&id))?
        .ok_or_else(|| ApiError::not_found("unknown_check", format!("job {id} is not checked")))?;
    Ok(Json(CheckResponse {
        height: snap.height()?.unwrap_or(0),
        check,
    }))
}

/// The open checks in which an address (a provider or a seated verifier) has something to do.
pub(crate) async fn open_checks(
    State(st): State<AppState>,
    Path(address): Path<String>,
) -> ApiResult<Json<OpenChecksResponse>> {
    let address = parse_address(&address)?;
    let snap = st.node.snapshot()?;
    let prefix = open_check_prefix(&address);
    let mut checks = Vec::new();
    for (k, _) in snap.scan_prefix(&prefix, LIST_LIMIT)? {
        let job = Hash(suffix(&k, prefix.len())?);
        if let Some(c) = get::<Check>(&snap, &check_key(&job))? {
            checks.push(c);
        }
    }
    Ok(Json(OpenChecksResponse {
        height: snap.height()?.unwrap_or(0),
        address,
        checks,
    }))
}

/// A complete reveal to one verifier: its parts joined, in hex.
pub(crate) async fn get_reveal(
    State(st): State<AppState>,
    Path((id, verifier)): Path<(String, String)>,
) -> ApiResult<Json<RevealResponse>> {
    let id = parse_hash(&id)?;
    let verifier = parse_address(&verifier)?;
    let snap = st.node.snapshot()?;
    let check: Check = get(&snap, &check_key(&id))?
        .ok_or_else(|| ApiError::not_found("unknown_check", format!("job {id} is not checked")))?;
    let seat = check
        .seats
        .iter()
        .find(|s| s.verifier == verifier && s.revealed())
        .ok_or_else(|| {
            ApiError::not_found(
                "no_reveal",
                format!("no complete reveal of job {id} to {verifier} is held"),
            )
        })?;
    let mut data = Vec::new();
    for part in 0..seat.parts {
        let bytes = snap
            .get(&reveal_key(&id, &verifier, part))
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::not_found("no_reveal", format!("the reveal of job {id} was removed"))
            })?;
        data.extend_from_slice(&bytes);
    }
    Ok(Json(RevealResponse {
        job_id: id,
        verifier,
        data: hex::encode(data),
    }))
}
