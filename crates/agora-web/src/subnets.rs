//! The model market: subnets (task, UIDs, stake, burn, the next epoch, what creating one costs),
//! and a subnet's page: its hyperparameters, emission and incentive over its last epochs, and
//! its metagraph.

use crate::Web;
use crate::render::{PageError, PageResult, blocking, page, v};
use agora_api::subnets::views;
use axum::extract::{Path, State};
use minijinja::context;

/// The hotkey's short label in charts.
fn label(uid: u16) -> String {
    format!("UID {uid}")
}

pub(crate) async fn list(State(web): State<Web>) -> PageResult {
    blocking(move || {
        let snap = web.node.snapshot()?;
        let all = views::subnets(&snap)?;
        let stake_chart = crate::charts::bars(
            "Stake per subnet",
            "base units",
            &all.subnets
                .iter()
                .map(|s| {
                    (
                        format!("{} {}", s.netuid, s.name),
                        u64::try_from(s.stake).unwrap_or(u64::MAX),
                    )
                })
                .collect::<Vec<_>>(),
        );
        page(
            &web,
            "subnets.html",
            "subnets",
            "Subnets",
            context! { all => v(&all), stake_chart },
        )
    })
    .await
}

pub(crate) async fn show(State(web): State<Web>, Path(netuid): Path<String>) -> PageResult {
    blocking(move || {
        let netuid: u16 = netuid
            .parse()
            .map_err(|_| PageError::not_found(format!("{netuid:?} is not a subnet id")))?;
        let snap = web.node.snapshot()?;
        let not_found = || PageError::not_found(format!("no subnet {netuid}"));
        let subnet = views::subnet(&snap, netuid)?.ok_or_else(not_found)?;
        let graph = views::metagraph(&snap, netuid)?.ok_or_else(not_found)?;
        let emission_chart = crate::charts::bars(
            "Emission per epoch",
            "base units",
            &subnet
                .history
                .iter()
                .map(|e| {
                    (
                        format!("block {}", e.height),
                        u64::try_from(e.emission).unwrap_or(u64::MAX),
                    )
                })
                .collect::<Vec<_>>(),
        );
        // Incentive over the last epochs for the UIDs that earn most now (in millionths).
        let mut top: Vec<&agora_node_api::MetagraphEntry> = graph.neurons.iter().collect();
        top.sort_by(|a, b| b.incentive.total_cmp(&a.incentive).then(a.uid.cmp(&b.uid)));
        let incentive_charts: Vec<(String, String)> = top
            .iter()
            .take(3)
            .map(|n| {
                let series: Vec<(String, u64)> = subnet
                    .history
                    .iter()
                    .map(|e| {
                        let x = e.incentive.get(usize::from(n.uid)).copied().unwrap_or(0);
                        (
                            format!("block {}", e.height),
                            (u128::from(x) * 1_000_000 / agora_state::yuma::ONE) as u64,
                        )
                    })
                    .collect();
                let title = format!("Incentive of {} over epochs", label(n.uid));
                (
                    title.clone(),
                    crate::charts::bars(&title, "millionths", &series),
                )
            })
            .collect();
        let uid_chart = crate::charts::bars(
            "Incentive per UID in the last epoch",
            "millionths",
            &graph
                .neurons
                .iter()
                .map(|n| (label(n.uid), (n.incentive * 1e6) as u64))
                .collect::<Vec<_>>(),
        );
        page(
            &web,
            "subnet.html",
            "subnets",
            &format!("Subnet {netuid}"),
            context! {
                s => v(&subnet), graph => v(&graph), emission_chart, uid_chart,
                incentive_charts => v(&incentive_charts),
            },
        )
    })
    .await
}
