//! Zero-knowledge proofs (DESIGN.md §9): the provable models, and an account's attestations —
//! claims about its private input that the chain verified.

use crate::Web;
use crate::render::{PageError, PageResult, blocking, page, v};
use agora_api::zk::views;
use axum::extract::{Query, State};
use minijinja::context;

#[derive(Debug, serde::Deserialize)]
pub(crate) struct ZkQuery {
    address: Option<String>,
}

pub(crate) async fn show(State(web): State<Web>, Query(q): Query<ZkQuery>) -> PageResult {
    blocking(move || {
        let snap = web.node.snapshot()?;
        let models = views::zk_models(&snap)?.models;
        let address = q.address.filter(|a| !a.trim().is_empty());
        let attestations = match &address {
            Some(a) => {
                let addr = agora_api::views::parse_address(a.trim())
                    .map_err(|_| PageError::not_found(format!("{a:?} is not an address")))?;
                Some(views::zk_attestations(&snap, &addr)?)
            }
            None => None,
        };
        page(
            &web,
            "zk.html",
            "zk",
            "Proofs",
            context! { models => v(&models), attestations => v(&attestations), address },
        )
    })
    .await
}
