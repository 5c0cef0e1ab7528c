//! The explorer: the chain's head with blocks arriving live, a block, a transaction with its
//! receipt and events, an account with its proof, and the search box.

use crate::render::{PageError, PageResult, page, v};
use crate::{Web, charts};
use agora_api::views;
use agora_node_api::{TxEntry, TxStatus};
use agora_types::{Address, Hash};
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect},
};
use minijinja::context;
use serde::{Deserialize, Serialize};

/// Blocks in the home page's table; blocks in its charts.
const TABLE_BLOCKS: usize = 20;
const CHART_BLOCKS: usize = 60;
/// Transactions an account's page lists (the API pages through the rest).
const HISTORY: usize = 25;

/// A transaction as a row of a table.
#[derive(Serialize)]
pub(crate) struct TxRow {
    hash: Hash,
    kind: String,
    sender: Address,
    fee: String,
    success: Option<bool>,
}

fn tx_row(e: &TxEntry) -> TxRow {
    TxRow {
        hash: e.hash,
        kind: views::tx_kind(&e.tx.tx.messages),
        sender: e.tx.tx.sender_address(),
        fee: e.tx.tx.fee.to_string(),
        success: e.receipt.as_ref().map(|r| r.success),
    }
}

/// Fees paid and jobs settled in each of the blocks at `heights`.
fn activity(snap: &agora_store::Snapshot, heights: &[u64]) -> Result<Vec<(u128, u64)>, PageError> {
    heights
        .iter()
        .map(|&h| {
            let fees = snap
                .results(h)?
                .map_or(0, |r| r.receipts.iter().map(|r| r.fee_paid).sum::<u128>());
            let jobs = snap.block(h)?.map_or(0, |b| {
                b.txs
                    .iter()
                    .flat_map(|t| &t.tx.messages)
                    .map(|m| match m {
                        agora_types::Message::SettleJobs { jobs } => jobs.len() as u64,
                        _ => 0,
                    })
                    .sum()
            });
            Ok((fees, jobs))
        })
        .collect()
}

pub(crate) async fn home(State(web): State<Web>) -> PageResult {
    let snap = web.node.snapshot()?;
    let status = views::status(&web.node)?;
    let recent = views::recent_blocks(&snap, CHART_BLOCKS)?;
    let oldest_first: Vec<_> = recent.iter().rev().collect();
    let heights: Vec<u64> = oldest_first.iter().map(|b| b.height).collect();
    let activity = activity(&snap, &heights)?;
    let fees = charts::bars(
        "Fees per block",
        "nAGR",
        &heights
            .iter()
            .zip(&activity)
            .map(|(h, (f, _))| (h.to_string(), u64::try_from(*f).unwrap_or(u64::MAX)))
            .collect::<Vec<_>>(),
    );
    let jobs = charts::bars(
        "Jobs settled per block",
        "jobs",
        &heights
            .iter()
            .zip(&activity)
            .map(|(h, (_, j))| (h.to_string(), *j))
            .collect::<Vec<_>>(),
    );
    let txs = charts::bars(
        "Transactions per block",
        "transactions",
        &oldest_first
            .iter()
            .map(|b| (b.height.to_string(), b.txs as u64))
            .collect::<Vec<_>>(),
    );
    let intervals = charts::bars(
        "Milliseconds between blocks",
        "ms",
        &oldest_first
            .windows(2)
            .map(|w| {
                (
                    w[1].height.to_string(),
                    w[1].time_ms.saturating_sub(w[0].time_ms),
                )
            })
            .collect::<Vec<_>>(),
    );
    // Blocks per minute over the charted span.
    let per_minute = match (oldest_first.first(), oldest_first.last()) {
        (Some(a), Some(b)) if b.time_ms > a.time_ms => {
            Some((b.height - a.height) * 60_000 / (b.time_ms - a.time_ms))
        }
        _ => None,
    };
    let validators = views::validators(&snap)?;
    page(
        &web,
        "home.html",
        "explorer",
        "Explorer",
        context! {
            status => v(&status),
            blocks => v(&&recent[..recent.len().min(TABLE_BLOCKS)]),
            chart_txs => txs,
            chart_intervals => intervals,
            chart_fees => fees,
            chart_jobs => jobs,
            per_minute,
            validators => v(&validators),
            demo => web.links.demo.as_ref().map(|d| d.address().to_string()),
        },
    )
}

pub(crate) async fn block(State(web): State<Web>, Path(id): Path<String>) -> PageResult {
    let block = views::block(&web.node.snapshot()?, &id)?;
    let rows: Vec<TxRow> = block.txs.iter().map(tx_row).collect();
    let title = format!("Block {}", block.header.height);
    page(
        &web,
        "block.html",
        "explorer",
        &title,
        context! { block => v(&block), rows => v(&rows) },
    )
}

pub(crate) async fn tx(State(web): State<Web>, Path(hash): Path<String>) -> PageResult {
    let tx = views::tx(&web.node, &views::parse_hash(&hash)?)?;
    let sender = tx.entry.tx.tx.sender_address();
    let messages = serde_json::to_string_pretty(&tx.entry.tx.tx.messages).map_err(|e| {
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "This page failed",
            e.to_string(),
        )
    })?;
    let pending = tx.status == TxStatus::Pending;
    let kind = views::tx_kind(&tx.entry.tx.tx.messages);
    page(
        &web,
        "tx.html",
        "explorer",
        "Transaction",
        context! { tx => v(&tx), sender => sender.to_string(), messages, pending, kind },
    )
}

pub(crate) async fn account(State(web): State<Web>, Path(address): Path<String>) -> PageResult {
    let address = views::parse_address(&address)?;
    let account = views::account(&web.node, &address, true)?;
    let proof_json = serde_json::to_string_pretty(&account.proof).map_err(|e| {
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "This page failed",
            e.to_string(),
        )
    })?;
    let snap = web.node.snapshot()?;
    let escrow = views::escrow(&snap, &address)?.escrow;
    let history = views::account_txs(&snap, &address, None, HISTORY)?;
    let provider = views::provider(&snap, &address)?.is_some();
    let verifier = views::verifiers(&snap)?
        .verifiers
        .iter()
        .any(|v| v.address == address);
    page(
        &web,
        "account.html",
        "explorer",
        "Account",
        context! { account => v(&account), proof_json, escrow => v(&escrow), provider, verifier, history => v(&history) },
    )
}

#[derive(Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// A height, a block, transaction or job hash, or an address: straight to its page.
pub(crate) async fn search(
    State(web): State<Web>,
    Query(SearchQuery { q }): Query<SearchQuery>,
) -> Result<axum::response::Response, PageError> {
    let q = q.trim();
    if q.is_empty() {
        return Ok(Redirect::to("/").into_response());
    }
    if let Ok(height) = q.parse::<u64>() {
        return Ok(Redirect::to(&format!("/blocks/{height}")).into_response());
    }
    if let Ok(address) = q.parse::<Address>() {
        return Ok(Redirect::to(&format!("/accounts/{address}")).into_response());
    }
    if let Ok(hash) = q.parse::<Hash>() {
        let snap = web.node.snapshot()?;
        if snap.tx_location(&hash)?.is_some() || web.node.pending(&hash).is_some() {
            return Ok(Redirect::to(&format!("/txs/{hash}")).into_response());
        }
        if snap.block_height(&hash)?.is_some() {
            return Ok(Redirect::to(&format!("/blocks/{hash}")).into_response());
        }
        if views::job(&snap, &hash)?.is_some() {
            return Ok(Redirect::to(&format!("/market/jobs/{hash}")).into_response());
        }
        return Err(PageError::not_found(format!(
            "no block, transaction or job has the hash {hash}"
        )));
    }
    Err(PageError::new(
        StatusCode::BAD_REQUEST,
        "Not understood",
        format!("{q:?} is not a height, a hash (64 hex digits) or an address"),
    ))
}
