//! Read-only views of the model market (DESIGN.md §7): subnets, their history and metagraphs,
//! each a function of a snapshot ([`views`]), answered over HTTP by the handlers below.

use crate::ApiError;
use crate::routes::AppState;
use crate::views::ApiResult;
use agora_node_api::{MetagraphResponse, SubnetResponse, SubnetsResponse};
use axum::{
    Json,
    extract::{Path, State},
};

fn parse_netuid(s: &str) -> ApiResult<u16> {
    s.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_netuid",
            format!("{s:?} is not a subnet id (0 to 65535)"),
        )
    })
}

fn unknown(netuid: u16) -> ApiError {
    ApiError::not_found("unknown_subnet", format!("no subnet {netuid}"))
}

pub(crate) async fn list_subnets(State(st): State<AppState>) -> ApiResult<Json<SubnetsResponse>> {
    Ok(Json(views::subnets(&st.node.snapshot()?)?))
}

pub(crate) async fn get_subnet(
    State(st): State<AppState>,
    Path(netuid): Path<String>,
) -> ApiResult<Json<SubnetResponse>> {
    let netuid = parse_netuid(&netuid)?;
    views::subnet(&st.node.snapshot()?, netuid)?
        .map(Json)
        .ok_or_else(|| unknown(netuid))
}

pub(crate) async fn get_metagraph(
    State(st): State<AppState>,
    Path(netuid): Path<String>,
) -> ApiResult<Json<MetagraphResponse>> {
    let netuid = parse_netuid(&netuid)?;
    views::metagraph(&st.node.snapshot()?, netuid)?
        .map(Json)
        .ok_or_else(|| unknown(netuid))
}

/// Adds the model market's gauges, read from `snap`, to a scrape's registry: emission minted
/// and burned, and per subnet its stake, pending emission and UIDs, and per UID its incentive,
/// dividends and last emission.
pub(crate) fn register_metrics(
    registry: &mut prometheus_client::registry::Registry,
    snap: &agora_store::Snapshot,
) -> ApiResult<()> {
    use prometheus_client::metrics::{family::Family, gauge::Gauge};
    use std::sync::atomic::AtomicU64;
    type Labels = Vec<(String, String)>;
    type FloatGauge = Gauge<f64, AtomicU64>;
    let all = views::subnets(snap)?;
    let minted = FloatGauge::default();
    minted.set(all.emission.minted as f64);
    registry.register("emission_minted", "Base units minted by emission", minted);
    let burned = FloatGauge::default();
    burned.set(all.emission.burned as f64);
    registry.register("emission_burned", "Base units burned", burned);
    let stake = Family::<Labels, FloatGauge>::default();
    let pending = Family::<Labels, FloatGauge>::default();
    let uids = Family::<Labels, FloatGauge>::default();
    let incentive = Family::<Labels, FloatGauge>::default();
    let dividends = Family::<Labels, FloatGauge>::default();
    let emission = Family::<Labels, FloatGauge>::default();
    for s in &all.subnets {
        let net = vec![("netuid".to_string(), s.netuid.to_string())];
        stake.get_or_create(&net).set(s.stake as f64);
        pending.get_or_create(&net).set(s.pending_emission as f64);
        uids.get_or_create(&net).set(f64::from(s.n));
        let Some(graph) = views::metagraph(snap, s.netuid)? else {
            continue;
        };
        for nr in graph.neurons {
            let mut labels = net.clone();
            labels.push(("uid".to_string(), nr.uid.to_string()));
            incentive.get_or_create(&labels).set(nr.incentive);
            dividends.get_or_create(&labels).set(nr.dividends);
            emission.get_or_create(&labels).set(nr.emission as f64);
        }
    }
    registry.register("subnet_stake", "Stake delegated on a subnet", stake);
    registry.register(
        "subnet_pending_emission",
        "Emission a subnet accrued since its last epoch",
        pending,
    );
    registry.register("subnet_uids", "UIDs in use on a subnet", uids);
    registry.register(
        "neuron_incentive",
        "A UID's incentive in its subnet's last epoch",
        incentive,
    );
    registry.register(
        "neuron_dividends",
        "A UID's dividends in its subnet's last epoch",
        dividends,
    );
    registry.register(
        "neuron_emission",
        "Base units a UID earned in its subnet's last epoch",
        emission,
    );
    Ok(())
}

/// The model market's answers as functions of a committed state.
pub mod views {
    use crate::ApiError;
    use crate::views::ApiResult;
    use agora_node_api::{
        MetagraphEntry, MetagraphResponse, SubnetResponse, SubnetSummary, SubnetsResponse,
    };
    use agora_state::subnet::{EmissionState, HotkeyStake, Neuron, SubnetIndex, SubnetSlot};
    use agora_state::{
        EpochRecord, Prediction, StateRead, Subnet, SubnetParams, WeightCommit, WeightRow,
        bonds_key, commits_key, emission_key, hotkey_stake_key, neuron_key, predictions_key,
        subnet_history_key, subnet_index_key, subnet_key, subnet_params_key, supply_key,
        weights_key, yuma,
    };
    use agora_store::Snapshot;
    use borsh::BorshDeserialize;

    fn get<T: BorshDeserialize>(snap: &Snapshot, key: &[u8]) -> ApiResult<Option<T>> {
        snap.get(key)
            .map_err(ApiError::internal)?
            .map(|b| borsh::from_slice(&b).map_err(ApiError::internal))
            .transpose()
    }

    fn height(snap: &Snapshot) -> ApiResult<u64> {
        Ok(snap.height()?.unwrap_or(0))
    }

    /// A fixed-point value as a decimal.
    fn fraction(x: u64) -> f64 {
        x as f64 / yuma::ONE as f64
    }

    fn summary(subnet: &Subnet, slot: &SubnetSlot) -> SubnetSummary {
        SubnetSummary {
            netuid: subnet.netuid,
            name: subnet.name.clone(),
            owner: subnet.owner,
            task: subnet.task.clone(),
            tempo: subnet.params.tempo,
            n: subnet.n,
            max_uids: subnet.params.max_uids,
            burn: subnet.burn,
            stake: slot.stake,
            pending_emission: slot.pending,
            epochs: subnet.epochs,
            next_epoch: slot.next_epoch,
        }
    }

    fn emission_state(snap: &Snapshot) -> ApiResult<EmissionState> {
        if let Some(e) = get(snap, &emission_key())? {
            return Ok(e);
        }
        let supply: u128 = get(snap, &supply_key())?.unwrap_or(0);
        Ok(EmissionState {
            genesis_supply: supply,
            minted: 0,
            burned: 0,
        })
    }

    /// Every subnet, the lock cost now, and emission so far.
    pub fn subnets(snap: &Snapshot) -> ApiResult<SubnetsResponse> {
        let height = height(snap)?;
        let index: SubnetIndex = get(snap, &subnet_index_key())?.unwrap_or_default();
        let params: SubnetParams = get(snap, &subnet_params_key())?.unwrap_or_default();
        let mut subnets = Vec::with_capacity(index.subnets.len());
        for slot in &index.subnets {
            if let Some(subnet) = get::<Subnet>(snap, &subnet_key(slot.netuid))? {
                subnets.push(summary(&subnet, slot));
            }
        }
        Ok(SubnetsResponse {
            height,
            lock_cost: params.lock_cost(index.last_lock, index.last_lock_height, height + 1),
            emission: emission_state(snap)?,
            subnets,
        })
    }

    /// One subnet with its hyperparameters, last epochs, commitments and forecasts.
    pub fn subnet(snap: &Snapshot, netuid: u16) -> ApiResult<Option<SubnetResponse>> {
        let height = height(snap)?;
        let Some(subnet) = get::<Subnet>(snap, &subnet_key(netuid))? else {
            return Ok(None);
        };
        let index: SubnetIndex = get(snap, &subnet_index_key())?.unwrap_or_default();
        let slot = index
            .subnets
            .iter()
            .find(|s| s.netuid == netuid)
            .cloned()
            .unwrap_or_default();
        let history: Vec<EpochRecord> = get(snap, &subnet_history_key(netuid))?.unwrap_or_default();
        let commits: Vec<WeightCommit> = get(snap, &commits_key(netuid))?.unwrap_or_default();
        let predictions: Vec<Prediction> = get(snap, &predictions_key(netuid))?.unwrap_or_default();
        Ok(Some(SubnetResponse {
            height,
            summary: summary(&subnet, &slot),
            subnet,
            history,
            commits,
            predictions,
        }))
    }

    /// Every UID of a subnet: hotkey, stake, last epoch's figures, weights and bonds.
    pub fn metagraph(snap: &Snapshot, netuid: u16) -> ApiResult<Option<MetagraphResponse>> {
        let height = height(snap)?;
        let Some(subnet) = get::<Subnet>(snap, &subnet_key(netuid))? else {
            return Ok(None);
        };
        let mut neurons = Vec::with_capacity(usize::from(subnet.n));
        for uid in 0..subnet.n {
            let Some(nr) = get::<Neuron>(snap, &neuron_key(netuid, uid))? else {
                continue;
            };
            let stake: HotkeyStake =
                get(snap, &hotkey_stake_key(netuid, &nr.hotkey))?.unwrap_or_default();
            let row: Option<WeightRow> = get(snap, &weights_key(netuid, uid))?;
            let bonds: Vec<(u16, u64)> = get(snap, &bonds_key(netuid, uid))?.unwrap_or_default();
            neurons.push(MetagraphEntry {
                uid,
                hotkey: nr.hotkey,
                endpoint: nr.endpoint.clone(),
                registered_at: nr.registered_at,
                stake: stake.total(),
                stake_counted: nr.stake,
                delegators: stake.delegations.len() as u32,
                validator_permit: nr.validator_permit,
                rank: fraction(nr.rank),
                trust: fraction(nr.trust),
                consensus: fraction(nr.consensus),
                incentive: fraction(nr.incentive),
                dividends: fraction(nr.dividends),
                validator_trust: fraction(nr.validator_trust),
                emission: nr.emission,
                last_update: row.as_ref().map_or(0, |r| r.set_at),
                weights: row.map(|r| r.entries).unwrap_or_default(),
                bonds: bonds.into_iter().map(|(j, b)| (j, fraction(b))).collect(),
            });
        }
        Ok(Some(MetagraphResponse {
            height,
            netuid,
            neurons,
        }))
    }
}
