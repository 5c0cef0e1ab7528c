//! Agora's web app, served by the node itself on its API address: the explorer (blocks,
//! transactions, accounts with proofs checked in the page, live blocks), the compute market
//! (providers, models, jobs and their verification, verifiers), with pages rendered on the server
//! from templates embedded in the binary and a little plain JavaScript for what is live.
//!
//! A page is one module with its handlers and one template; adding one means a route in
//! [`router`] and, for a new section, an entry in [`NAV`]. Every page reads the chain through
//! [`agora_api::views`], the same functions that answer the JSON API, so a page never shows what
//! the API would not.

#![forbid(unsafe_code)]

mod charts;
mod data;
mod devnet;
mod explorer;
mod market;
mod playground;
mod render;
mod sql;
mod subnets;
mod zk;

use agora_chain::Node;
use axum::{Router, routing::get};
use std::sync::{Arc, OnceLock};

pub use devnet::DemoWallet;
pub use render::{PageError, utc_time};

/// Where the pages send what the node does not answer itself: the gateway (OpenAI-compatible
/// API) for the playground. Set once it is known (a devnet starts its gateway after its node);
/// until then the playground asks for it.
#[derive(Debug, Clone, Default)]
pub struct Links {
    pub gateway: Arc<OnceLock<String>>,
    /// On a devnet only: its demo wallet, which the explorer's page may send transfers from.
    pub demo: Option<Arc<DemoWallet>>,
}

/// A section of the site: its label in the navigation and its address.
#[derive(Debug, serde::Serialize)]
pub struct NavItem {
    pub key: &'static str,
    pub label: &'static str,
    pub href: &'static str,
}

/// The navigation, in order.
pub const NAV: &[NavItem] = &[
    NavItem {
        key: "explorer",
        label: "Explorer",
        href: "/",
    },
    NavItem {
        key: "search",
        label: "Search",
        href: "/search",
    },
    NavItem {
        key: "market",
        label: "Market",
        href: "/market",
    },
    NavItem {
        key: "verifiers",
        label: "Verifiers",
        href: "/market/verifiers",
    },
    NavItem {
        key: "subnets",
        label: "Subnets",
        href: "/subnets",
    },
    NavItem {
        key: "data",
        label: "Data",
        href: "/data",
    },
    NavItem {
        key: "zk",
        label: "Proofs",
        href: "/zk",
    },
    NavItem {
        key: "sql",
        label: "SQL",
        href: "/sql",
    },
    NavItem {
        key: "playground",
        label: "Playground",
        href: "/playground",
    },
    NavItem {
        key: "audit",
        label: "Audit",
        href: "/audit",
    },
];

/// Block summaries the explorer's head keeps (blocks never change): a few pages' worth.
pub(crate) const SUMMARIES_KEPT: usize = 256;

/// Summaries of blocks already read, by height.
pub(crate) type Summaries =
    Arc<parking_lot::Mutex<std::collections::BTreeMap<u64, explorer::Summary>>>;

#[derive(Clone)]
pub(crate) struct Web {
    pub(crate) node: Arc<Node>,
    pub(crate) links: Links,
    pub(crate) summaries: Summaries,
}

/// The web app's routes over a node: merge them into the node's API router.
pub fn router(node: Arc<Node>) -> Router {
    router_with(node, Links::default())
}

/// [`router`], with where the gateway is.
pub fn router_with(node: Arc<Node>, links: Links) -> Router {
    Router::new()
        .route("/", get(explorer::home))
        .route("/blocks/{id}", get(explorer::block))
        .route("/explorer/blocks/{height}/txs", get(explorer::block_txs))
        .route("/txs/{hash}", get(explorer::tx))
        .route("/accounts/{address}", get(explorer::account))
        .route("/search", get(explorer::search))
        .route("/market", get(market::providers))
        .route("/market/providers/{address}", get(market::provider))
        .route("/market/models", get(market::models))
        .route("/market/jobs/{id}", get(market::job))
        .route("/market/verifiers", get(market::verifiers))
        .route("/market/verifiers/{address}", get(market::verifier))
        .route("/subnets", get(subnets::list))
        .route("/subnets/{netuid}", get(subnets::show))
        .route("/data", get(data::list))
        .route("/data/bounties/{id}", get(data::bounty))
        .route("/data/datasets/{root}", get(data::dataset))
        .route("/zk", get(zk::show))
        .route("/sql", get(sql::show))
        .route("/playground", get(playground::show))
        .route("/audit", get(playground::audit))
        .route("/assets/{name}", get(render::asset))
        .route("/devnet/transfer", axum::routing::post(devnet::transfer))
        .with_state(Web {
            node,
            links,
            summaries: Summaries::default(),
        })
}
