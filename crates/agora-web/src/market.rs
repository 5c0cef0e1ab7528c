//! The compute market: providers (models, prices, stake, jobs, frauds), models, a job with its
//! receipt, fee state and verification, and the verifiers.

use crate::Web;
use crate::render::{PageError, PageResult, blocking, page, v};
use agora_api::views;
use agora_store::Snapshot;
use agora_types::{Address, Hash};
use axum::extract::{Path, State};
use minijinja::context;
use serde::Serialize;
use std::collections::BTreeMap;

/// Jobs a provider's page lists.
const PROVIDER_JOBS: usize = 50;
/// Transactions of a provider's history read to find them.
const HISTORY_SCAN: usize = 200;

/// Model names by id, for showing a name where the chain stores a hash.
fn model_names(snap: &Snapshot) -> Result<BTreeMap<String, String>, PageError> {
    Ok(views::models(snap)?
        .models
        .into_iter()
        .map(|m| (m.id.to_string(), m.name))
        .collect())
}

pub(crate) async fn providers(State(web): State<Web>) -> PageResult {
    blocking(move || {
    let snap = web.node.snapshot()?;
    let providers = views::providers(&snap)?.providers;
    let models = views::models(&snap)?.models;
    let names = model_names(&snap)?;
    let label = |a: &Address| {
        let s = a.to_string();
        s.chars().skip(6).take(8).collect::<String>()
    };
    let jobs_chart = crate::charts::bars(
        "Jobs settled per provider",
        "jobs",
        &providers
            .iter()
            .map(|p| (label(&p.address), p.provider.jobs_settled))
            .collect::<Vec<_>>(),
    );
    let price_chart = crate::charts::bars(
        "Output price per provider",
        "nAGR per 1k tokens",
        &providers
            .iter()
            .map(|p| {
                let price = p.provider.info.price_output_per_1k;
                (label(&p.address), u64::try_from(price).unwrap_or(u64::MAX))
            })
            .collect::<Vec<_>>(),
    );
    page(
        &web,
        "providers.html",
        "market",
        "Market",
        context! { providers => v(&providers), models => v(&models), names, jobs_chart, price_chart },
    )
    })
    .await
}

#[derive(Serialize)]
struct JobRow {
    id: Hash,
    client: Address,
    model: Hash,
    input_tokens: u32,
    output_tokens: u32,
    fee: String,
    settled_height: u64,
    state: &'static str,
}

/// The newest jobs `provider` settled, found through its own history (its settlement
/// transactions, newest first): at most [`PROVIDER_JOBS`] jobs, reading at most
/// [`HISTORY_SCAN`] of its transactions; and whether older ones may exist unread.
fn provider_jobs(snap: &Snapshot, provider: &Address) -> Result<(Vec<JobRow>, bool), PageError> {
    let history = snap.account_txs(provider, None, HISTORY_SCAN)?;
    let mut rows = Vec::new();
    let mut block: Option<agora_types::Block> = None;
    for t in &history {
        if block.as_ref().is_none_or(|b| b.header.height != t.height) {
            block = snap.block(t.height)?;
        }
        let Some(tx) = block.as_ref().and_then(|b| b.txs.get(t.index as usize)) else {
            continue;
        };
        if tx.tx.sender_address() != *provider {
            continue;
        }
        for m in &tx.tx.messages {
            let agora_types::Message::SettleJobs { jobs } = m else {
                continue;
            };
            // Newest first within a settlement too.
            for settled in jobs.iter().rev() {
                let id = settled.request.request.id();
                let Some(job) = views::job(snap, &id)? else {
                    continue;
                };
                if job.job.provider != *provider {
                    continue;
                }
                rows.push(JobRow {
                    id,
                    client: job.job.client,
                    model: job.job.model,
                    input_tokens: job.job.input_tokens,
                    output_tokens: job.job.output_tokens,
                    fee: job.job.fee.to_string(),
                    settled_height: job.job.settled_height,
                    state: job.job.fee_state.name(),
                });
                if rows.len() == PROVIDER_JOBS {
                    return Ok((rows, true));
                }
            }
        }
    }
    Ok((rows, history.len() == HISTORY_SCAN))
}

/// What the gateway reports of a provider and model (`GET /v1/providers/stats` on the gateway).
#[derive(serde::Deserialize)]
struct GatewayStats {
    provider: Address,
    model: Hash,
    latency_ms: Option<u64>,
    recent_ms: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct GatewayStatsList {
    data: Vec<GatewayStats>,
}

/// The gateway's latency charts of `provider`, one per model, or why there are none. Latency is
/// not on chain: the gateway this node knows measures it as it routes jobs.
fn latency_charts(
    web: &Web,
    provider: &Address,
    names: &BTreeMap<String, String>,
) -> Result<Vec<(String, Option<u64>, String)>, String> {
    let Some(gateway) = web.links.gateway.get() else {
        return Err("no gateway is known to this node".into());
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(1)))
        .build()
        .into();
    let list: GatewayStatsList = agent
        .get(&format!("{gateway}/v1/providers/stats"))
        .call()
        .and_then(|mut r| r.body_mut().read_json())
        .map_err(|e| format!("the gateway did not answer: {e}"))?;
    Ok(list
        .data
        .into_iter()
        .filter(|s| s.provider == *provider && !s.recent_ms.is_empty())
        .map(|s| {
            let name = names
                .get(&s.model.to_string())
                .cloned()
                .unwrap_or_else(|| s.model.to_string());
            let points: Vec<(String, u64)> = s
                .recent_ms
                .iter()
                .enumerate()
                .map(|(i, ms)| ((i + 1).to_string(), u64::from(*ms)))
                .collect();
            let chart =
                crate::charts::bars(&format!("Time to first output, {name}"), "ms", &points);
            (name, s.latency_ms, chart)
        })
        .collect())
}

pub(crate) async fn provider(State(web): State<Web>, Path(address): Path<String>) -> PageResult {
    blocking(move || {
        let address = views::parse_address(&address)?;
        let snap = web.node.snapshot()?;
        let provider = views::provider(&snap, &address)?
            .ok_or_else(|| PageError::not_found(format!("{address} is not a registered provider")))?
            .provider;
        let (jobs, truncated) = provider_jobs(&snap, &address)?;
        let names = model_names(&snap)?;
        let (latency, latency_note) = match latency_charts(&web, &address, &names) {
            Ok(charts) => (charts, None),
            Err(why) => (Vec::new(), Some(why)),
        };
        page(
            &web,
            "provider.html",
            "market",
            "Provider",
            context! {
                p => v(&provider), jobs => v(&jobs), truncated, names,
                latency => v(&latency), latency_note,
            },
        )
    })
    .await
}

pub(crate) async fn models(State(web): State<Web>) -> PageResult {
    blocking(move || {
        let snap = web.node.snapshot()?;
        let models = views::models(&snap)?.models;
        let providers = views::providers(&snap)?.providers;
        // How many providers serve each model.
        let mut served: BTreeMap<String, usize> = BTreeMap::new();
        for p in &providers {
            for m in &p.provider.info.models {
                *served.entry(m.to_string()).or_default() += 1;
            }
        }
        page(
            &web,
            "models.html",
            "market",
            "Models",
            context! { models => v(&models), served },
        )
    })
    .await
}

pub(crate) async fn job(State(web): State<Web>, Path(id): Path<String>) -> PageResult {
    blocking(move || {
        let id = views::parse_hash(&id)?;
        let snap = web.node.snapshot()?;
        let job = views::job(&snap, &id)?.ok_or_else(|| {
            PageError::not_found(format!(
                "no settled job {id}: a job appears once its provider settles it on chain"
            ))
        })?;
        let names = model_names(&snap)?;
        page(
            &web,
            "job.html",
            "market",
            "Job",
            context! { j => v(&job), names },
        )
    })
    .await
}

pub(crate) async fn verifiers(State(web): State<Web>) -> PageResult {
    blocking(move || {
        let snap = web.node.snapshot()?;
        let verifiers = views::verifiers(&snap)?.verifiers;
        page(
            &web,
            "verifiers.html",
            "verifiers",
            "Verifiers",
            context! { verifiers => v(&verifiers) },
        )
    })
    .await
}

pub(crate) async fn verifier(State(web): State<Web>, Path(address): Path<String>) -> PageResult {
    blocking(move || {
        let address = views::parse_address(&address)?;
        let snap = web.node.snapshot()?;
        let verifier = views::verifiers(&snap)?
            .verifiers
            .into_iter()
            .find(|v| v.address == address)
            .ok_or_else(|| {
                PageError::not_found(format!("{address} is not a registered verifier"))
            })?;
        let open = views::open_checks(&snap, &address)?.checks;
        // Its seat in each open check.
        let seats: Vec<_> = open
            .iter()
            .filter_map(|c| {
                c.seats
                    .iter()
                    .find(|s| s.verifier == address)
                    .map(|s| (c.job_id, s.clone(), c.dispute))
            })
            .collect();
        let names = model_names(&snap)?;
        page(
            &web,
            "verifier.html",
            "verifiers",
            "Verifier",
            context! { vr => v(&verifier), seats => v(&seats), names },
        )
    })
    .await
}
