//! Read-only views of the zero-knowledge records (DESIGN.md §9): provable models and accounts'
//! attestations, each a function of a snapshot ([`views`]), answered over HTTP below.

use crate::ApiError;
use crate::routes::AppState;
use crate::views::{ApiResult, parse_address, parse_hash};
use agora_node_api::{ZkAttestationsResponse, ZkModelEntry, ZkModelsResponse};
use axum::{
    Json,
    extract::{Path, State},
};

pub(crate) async fn list_models(State(st): State<AppState>) -> ApiResult<Json<ZkModelsResponse>> {
    Ok(Json(views::zk_models(&st.node.snapshot()?)?))
}

pub(crate) async fn get_model(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ZkModelEntry>> {
    let id = parse_hash(&id)?;
    views::zk_model(&st.node.snapshot()?, &id)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("unknown_zk_model", format!("no provable model {id}")))
}

pub(crate) async fn attestations(
    State(st): State<AppState>,
    Path(address): Path<String>,
) -> ApiResult<Json<ZkAttestationsResponse>> {
    let address = parse_address(&address)?;
    Ok(Json(views::zk_attestations(
        &st.node.snapshot()?,
        &address,
    )?))
}

/// The answers as functions of a committed state.
pub mod views {
    use crate::ApiError;
    use crate::views::ApiResult;
    use agora_node_api::{
        ZkAttestationEntry, ZkAttestationsResponse, ZkModelEntry, ZkModelsResponse,
    };
    use agora_state::{
        StateRead, ZkAttestation, ZkModelRecord, zk_attestation_key, zk_model_key, zk_seq_key,
    };
    use agora_store::Snapshot;
    use agora_types::{Address, Hash};
    use borsh::BorshDeserialize;

    /// Most models or attestations one listing returns.
    const LIST_LIMIT: usize = 1_000;

    fn decode<T: BorshDeserialize>(bytes: &[u8]) -> ApiResult<T> {
        borsh::from_slice(bytes).map_err(ApiError::internal)
    }

    fn height(snap: &Snapshot) -> ApiResult<u64> {
        Ok(snap.height()?.unwrap_or(0))
    }

    fn entry(id: Hash, record: ZkModelRecord) -> ZkModelEntry {
        let arch = agora_zk::VerifyingKey::from_bytes(&record.key)
            .map(|vk| vk.arch)
            .unwrap_or(agora_zk::Architecture { layers: Vec::new() });
        ZkModelEntry {
            id,
            weights: arch.params(),
            layers: arch.layers,
            record,
        }
    }

    /// The provable models.
    pub fn zk_models(snap: &Snapshot) -> ApiResult<ZkModelsResponse> {
        let mut models = Vec::new();
        for (k, v) in snap.scan_prefix(b"zkm/", LIST_LIMIT)? {
            let id: [u8; 32] = k
                .get(4..)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| ApiError::internal("a zk model key of the wrong length"))?;
            models.push(entry(Hash(id), decode(&v)?));
        }
        Ok(ZkModelsResponse {
            height: height(snap)?,
            models,
        })
    }

    /// A provable model, if registered.
    pub fn zk_model(snap: &Snapshot, id: &Hash) -> ApiResult<Option<ZkModelEntry>> {
        snap.get(&zk_model_key(id))
            .map_err(ApiError::internal)?
            .map(|b| Ok(entry(*id, decode(&b)?)))
            .transpose()
    }

    /// An account's attestations and its next attestation number.
    pub fn zk_attestations(
        snap: &Snapshot,
        address: &Address,
    ) -> ApiResult<ZkAttestationsResponse> {
        let next_seq = match snap.get(&zk_seq_key(address)).map_err(ApiError::internal)? {
            Some(b) => decode(&b)?,
            None => 0,
        };
        let mut prefix = b"zka/".to_vec();
        prefix.extend_from_slice(&address.0);
        let mut attestations = Vec::new();
        for (k, v) in snap.scan_prefix(&prefix, LIST_LIMIT)? {
            let model: [u8; 32] = k
                .get(prefix.len()..)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| ApiError::internal("an attestation key of the wrong length"))?;
            let attestation: ZkAttestation = decode(&v)?;
            debug_assert_eq!(zk_attestation_key(address, &Hash(model)), k);
            attestations.push(ZkAttestationEntry {
                model: Hash(model),
                attestation,
            });
        }
        Ok(ZkAttestationsResponse {
            height: height(snap)?,
            address: *address,
            next_seq,
            attestations,
        })
    }
}
