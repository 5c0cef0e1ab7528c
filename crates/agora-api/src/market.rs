//! Read-only views of the compute market's on-chain state: each a function of a snapshot
//! ([`views`]), answered over HTTP by the handlers below and in process by
//! [`crate::LocalNode`].

use crate::ApiError;
use crate::routes::AppState;
use crate::views::{ApiResult, parse_address, parse_hash};
use agora_node_api::{
    CheckResponse, EscrowResponse, JobResponse, ModelEntry, ModelsResponse, OpenChecksResponse,
    ProviderResponse, ProvidersResponse, RevealResponse, VerifiersResponse,
};
use axum::{
    Json,
    extract::{Path, State},
};

pub(crate) async fn list_providers(
    State(st): State<AppState>,
) -> ApiResult<Json<ProvidersResponse>> {
    Ok(Json(views::providers(&st.node.snapshot()?)?))
}

pub(crate) async fn get_provider(
    State(st): State<AppState>,
    Path(address): Path<String>,
) -> ApiResult<Json<ProviderResponse>> {
    let address = parse_address(&address)?;
    views::provider(&st.node.snapshot()?, &address)?
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_provider",
                format!("{address} is not a registered provider"),
            )
        })
}

pub(crate) async fn list_models(State(st): State<AppState>) -> ApiResult<Json<ModelsResponse>> {
    Ok(Json(views::models(&st.node.snapshot()?)?))
}

pub(crate) async fn get_model(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ModelEntry>> {
    let id = parse_hash(&id)?;
    views::model(&st.node.snapshot()?, &id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("unknown_model", format!("no model {id}")))
}

pub(crate) async fn get_escrow(
    State(st): State<AppState>,
    Path(address): Path<String>,
) -> ApiResult<Json<EscrowResponse>> {
    let address = parse_address(&address)?;
    Ok(Json(views::escrow(&st.node.snapshot()?, &address)?))
}

pub(crate) async fn get_job(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobResponse>> {
    let id = parse_hash(&id)?;
    views::job(&st.node.snapshot()?, &id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("job {id} has not been settled")))
}

pub(crate) async fn list_verifiers(
    State(st): State<AppState>,
) -> ApiResult<Json<VerifiersResponse>> {
    Ok(Json(views::verifiers(&st.node.snapshot()?)?))
}

pub(crate) async fn get_check(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<CheckResponse>> {
    let id = parse_hash(&id)?;
    views::check(&st.node.snapshot()?, &id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("unknown_check", format!("job {id} is not checked")))
}

/// The open checks in which an address (a provider or a seated verifier) has something to do.
pub(crate) async fn open_checks(
    State(st): State<AppState>,
    Path(address): Path<String>,
) -> ApiResult<Json<OpenChecksResponse>> {
    let address = parse_address(&address)?;
    Ok(Json(views::open_checks(&st.node.snapshot()?, &address)?))
}

/// A complete reveal to one verifier: its parts joined, in hex.
pub(crate) async fn get_reveal(
    State(st): State<AppState>,
    Path((id, verifier)): Path<(String, String)>,
) -> ApiResult<Json<RevealResponse>> {
    let id = parse_hash(&id)?;
    let verifier = parse_address(&verifier)?;
    let snap = st.node.snapshot()?;
    if views::check(&snap, &id)?.is_none() {
        return Err(ApiError::not_found(
            "unknown_check",
            format!("job {id} is not checked"),
        ));
    }
    let data = views::reveal(&snap, &id, &verifier)?.ok_or_else(|| {
        ApiError::not_found(
            "no_reveal",
            format!("no complete reveal of job {id} to {verifier} is held"),
        )
    })?;
    Ok(Json(RevealResponse {
        job_id: id,
        verifier,
        data: hex::encode(data),
    }))
}

/// The market's answers as functions of a committed state.
pub(crate) mod views {
    use crate::ApiError;
    use crate::views::ApiResult;
    use agora_node_api::{
        CheckResponse, EscrowResponse, JobResponse, ModelEntry, ModelsResponse, OpenChecksResponse,
        ProviderEntry, ProviderResponse, ProvidersResponse, VerifierEntry, VerifiersResponse,
    };
    use agora_state::{
        Check, Escrow, JobRecord, ModelInfo, Outcome, Provider, StateRead, check_key, escrow_key,
        job_key, model_key, model_source_key, open_check_prefix, provider_key, reveal_key,
    };
    use agora_store::Snapshot;
    use agora_types::{Address, Hash};
    use borsh::BorshDeserialize;

    /// Most providers, models or verifiers one listing returns.
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

    /// The key's suffix after `prefix`, as a fixed-size array.
    fn suffix<const N: usize>(key: &[u8], prefix: usize) -> ApiResult<[u8; N]> {
        key.get(prefix..)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| ApiError::internal("a market key of the wrong length"))
    }

    fn height(snap: &Snapshot) -> ApiResult<u64> {
        Ok(snap.height()?.unwrap_or(0))
    }

    /// The registered providers.
    pub fn providers(snap: &Snapshot) -> ApiResult<ProvidersResponse> {
        let mut providers = Vec::new();
        for (k, v) in snap.scan_prefix(b"prov/", LIST_LIMIT)? {
            providers.push(ProviderEntry {
                address: Address(suffix(&k, 5)?),
                provider: decode(&v)?,
            });
        }
        Ok(ProvidersResponse {
            height: height(snap)?,
            providers,
        })
    }

    /// A registered provider, if it is one.
    pub fn provider(snap: &Snapshot, address: &Address) -> ApiResult<Option<ProviderResponse>> {
        let Some(provider) = get::<Provider>(snap, &provider_key(address))? else {
            return Ok(None);
        };
        Ok(Some(ProviderResponse {
            height: height(snap)?,
            provider: ProviderEntry {
                address: *address,
                provider,
            },
        }))
    }

    /// The model registry.
    pub fn models(snap: &Snapshot) -> ApiResult<ModelsResponse> {
        let mut models = Vec::new();
        for (k, v) in snap.scan_prefix(b"modl/", LIST_LIMIT)? {
            let info: ModelInfo = decode(&v)?;
            let id = Hash(suffix(&k, 5)?);
            models.push(ModelEntry {
                id,
                name: info.name,
                kind: info.kind,
                source: get(snap, &model_source_key(&id))?,
            });
        }
        Ok(ModelsResponse {
            height: height(snap)?,
            models,
        })
    }

    /// A registered model, if it is one.
    pub fn model(snap: &Snapshot, id: &Hash) -> ApiResult<Option<ModelEntry>> {
        let Some(info) = get::<ModelInfo>(snap, &model_key(id))? else {
            return Ok(None);
        };
        Ok(Some(ModelEntry {
            id: *id,
            name: info.name,
            kind: info.kind,
            source: get(snap, &model_source_key(id))?,
        }))
    }

    /// A client's escrow (zero when it never deposited).
    pub fn escrow(snap: &Snapshot, address: &Address) -> ApiResult<EscrowResponse> {
        Ok(EscrowResponse {
            height: height(snap)?,
            address: *address,
            escrow: get::<Escrow>(snap, &escrow_key(address))?.unwrap_or_default(),
        })
    }

    /// A settled job, if settled.
    pub fn job(snap: &Snapshot, id: &Hash) -> ApiResult<Option<JobResponse>> {
        let height = height(snap)?;
        let Some(job) = get::<JobRecord>(snap, &job_key(id))? else {
            return Ok(None);
        };
        let check: Option<Check> = get(snap, &check_key(id))?;
        // Whether it is checked: drawn in the block after the one that settled it.
        let sampled = match (&check, job.level) {
            (_, agora_types::Verification::None) => Some(false),
            (Some(c), _) if c.drawn => {
                Some(c.outcome != Outcome::NoVerifier || !c.seats.is_empty())
            }
            // Not drawn (a client's challenge may have opened a check since).
            _ if height > job.settled_height => Some(false),
            // Drawn in the next block.
            _ => None,
        };
        Ok(Some(JobResponse {
            height,
            job_id: *id,
            state: job.fee_state.name().to_string(),
            job,
            sampled,
            check,
            zk: get(snap, &agora_state::zk_job_key(id))?,
        }))
    }

    /// The registered verifiers.
    pub fn verifiers(snap: &Snapshot) -> ApiResult<VerifiersResponse> {
        let mut verifiers = Vec::new();
        for (k, v) in snap.scan_prefix(b"vrfr/", LIST_LIMIT)? {
            verifiers.push(VerifierEntry {
                address: Address(suffix(&k, 5)?),
                verifier: decode(&v)?,
            });
        }
        Ok(VerifiersResponse {
            height: height(snap)?,
            verifiers,
        })
    }

    /// A job's check, if it is checked.
    pub fn check(snap: &Snapshot, id: &Hash) -> ApiResult<Option<CheckResponse>> {
        let Some(check) = get::<Check>(snap, &check_key(id))? else {
            return Ok(None);
        };
        Ok(Some(CheckResponse {
            height: height(snap)?,
            check,
        }))
    }

    /// The open checks in which `address` (a provider or a seated verifier) has something to do.
    pub fn open_checks(snap: &Snapshot, address: &Address) -> ApiResult<OpenChecksResponse> {
        let prefix = open_check_prefix(address);
        let mut checks = Vec::new();
        for (k, _) in snap.scan_prefix(&prefix, LIST_LIMIT)? {
            let job = Hash(suffix(&k, prefix.len())?);
            if let Some(c) = get::<Check>(snap, &check_key(&job))? {
                checks.push(c);
            }
        }
        Ok(OpenChecksResponse {
            height: height(snap)?,
            address: *address,
            checks,
        })
    }

    /// The complete reveal of job `id` to `verifier`, its parts joined, if the chain holds one.
    pub fn reveal(snap: &Snapshot, id: &Hash, verifier: &Address) -> ApiResult<Option<Vec<u8>>> {
        let Some(check) = get::<Check>(snap, &check_key(id))? else {
            return Ok(None);
        };
        let Some(seat) = check
            .seats
            .iter()
            .find(|s| s.verifier == *verifier && s.revealed())
        else {
            return Ok(None);
        };
        let mut data = Vec::new();
        for part in 0..seat.parts {
            let Some(bytes) = snap
                .get(&reveal_key(id, verifier, part))
                .map_err(ApiError::internal)?
            else {
                // Removed: the check was decided meanwhile.
                return Ok(None);
            };
            data.extend_from_slice(&bytes);
        }
        Ok(Some(data))
    }
}
