//! The explorer: the chain's head with blocks arriving live, a block, a transaction with its
//! receipt and events, an account with its proof, and the search box.

use crate::render::{PageError, PageResult, blocking, page, v};
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
#[derive(Clone, Debug, Serialize)]
pub(crate) struct TxRow {
    hash: Hash,
    height: u64,
    kind: String,
    sender: Address,
    fee: String,
    success: Option<bool>,
}

fn tx_row(height: u64, e: &TxEntry) -> TxRow {
    TxRow {
        hash: e.hash,
        height,
        kind: views::tx_kind(&e.tx.tx.messages),
        sender: e.tx.tx.sender_address(),
        fee: e.tx.tx.fee.to_string(),
        success: e.receipt.as_ref().map(|r| r.success),
    }
}

/// What the explorer's head shows of a block: its summary, the fees paid and the jobs settled
/// in it. Blocks never change, so each is read once and kept (see [`crate::Summaries`]).
#[derive(Clone, Debug)]
pub(crate) struct Summary {
    block: agora_node_api::BlockEvent,
    fees: u128,
    jobs: u64,
    /// Its first [`TABLE_TXS`] transactions, newest (last in the block) first.
    txs: Vec<TxRow>,
}

/// Transactions in the head's live table.
const TABLE_TXS: usize = 10;

/// The rows of block `height`'s last `n` transactions, newest first.
fn block_rows(
    snap: &agora_store::Snapshot,
    height: u64,
    n: usize,
) -> Result<Vec<TxRow>, PageError> {
    let block = views::block(snap, &height.to_string())?;
    Ok(block
        .txs
        .iter()
        .rev()
        .take(n)
        .map(|e| tx_row(height, e))
        .collect())
}

/// The latest `n` blocks' summaries, newest first: only blocks not seen before are read.
fn summaries(web: &Web, snap: &agora_store::Snapshot, n: usize) -> Result<Vec<Summary>, PageError> {
    let Some(latest) = snap.height()? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(n);
    for h in (0..=latest).rev().take(n) {
        if let Some(s) = web.summaries.lock().get(&h) {
            out.push(s.clone());
            continue;
        }
        let Some(block) = snap.block(h)? else {
            continue;
        };
        let fees = snap
            .results(h)?
            .map_or(0, |r| r.receipts.iter().map(|r| r.fee_paid).sum::<u128>());
        let jobs = block
            .txs
            .iter()
            .flat_map(|t| &t.tx.messages)
            .map(|m| match m {
                agora_types::Message::SettleJobs { jobs } => jobs.len() as u64,
                _ => 0,
            })
            .sum();
        let txs = if block.txs.is_empty() {
            Vec::new()
        } else {
            block_rows(snap, h, TABLE_TXS)?
        };
        let summary = Summary {
            block: views::block_summary(&block),
            fees,
            jobs,
            txs,
        };
        let mut cache = web.summaries.lock();
        cache.insert(h, summary.clone());
        while cache.len() > crate::SUMMARIES_KEPT {
            cache.pop_first();
        }
        out.push(summary);
    }
    Ok(out)
}

pub(crate) async fn home(State(web): State<Web>) -> PageResult {
    blocking(move || {
        let snap = web.node.snapshot()?;
        let status = views::status(&web.node)?;
        let recent = summaries(&web, &snap, CHART_BLOCKS)?;
        let oldest_first: Vec<&Summary> = recent.iter().rev().collect();
        let fees = charts::bars(
            "Fees per block",
            "nAGR",
            &oldest_first
                .iter()
                .map(|s| {
                    (
                        s.block.height.to_string(),
                        u64::try_from(s.fees).unwrap_or(u64::MAX),
                    )
                })
                .collect::<Vec<_>>(),
        );
        let jobs = charts::bars(
            "Jobs settled per block",
            "jobs",
            &oldest_first
                .iter()
                .map(|s| (s.block.height.to_string(), s.jobs))
                .collect::<Vec<_>>(),
        );
        let txs = charts::bars(
            "Transactions per block",
            "transactions",
            &oldest_first
                .iter()
                .map(|s| (s.block.height.to_string(), s.block.txs as u64))
                .collect::<Vec<_>>(),
        );
        let intervals = charts::bars(
            "Milliseconds between blocks",
            "ms",
            &oldest_first
                .windows(2)
                .map(|w| {
                    (
                        w[1].block.height.to_string(),
                        w[1].block.time_ms.saturating_sub(w[0].block.time_ms),
                    )
                })
                .collect::<Vec<_>>(),
        );
        // Blocks per minute over the charted span.
        let per_minute = match (oldest_first.first(), oldest_first.last()) {
            (Some(a), Some(b)) if b.block.time_ms > a.block.time_ms => Some(
                (b.block.height - a.block.height) * 60_000 / (b.block.time_ms - a.block.time_ms),
            ),
            _ => None,
        };
        let validators = views::validators(&snap)?;
        let latest_txs: Vec<&TxRow> = recent.iter().flat_map(|s| &s.txs).take(TABLE_TXS).collect();
        page(
            &web,
            "home.html",
            "explorer",
            "Explorer",
            context! {
                status => v(&status),
                blocks => v(&recent
                    .iter()
                    .take(TABLE_BLOCKS)
                    .map(|s| &s.block)
                    .collect::<Vec<_>>()),
                chart_txs => txs,
                chart_intervals => intervals,
                chart_fees => fees,
                chart_jobs => jobs,
                per_minute,
                validators => v(&validators),
                txs => v(&latest_txs),
                demo => web.links.demo.as_ref().map(|d| d.address().to_string()),
            },
        )
    })
    .await
}

pub(crate) async fn block(State(web): State<Web>, Path(id): Path<String>) -> PageResult {
    blocking(move || {
        let block = views::block(&web.node.snapshot()?, &id)?;
        let rows: Vec<TxRow> = block
            .txs
            .iter()
            .map(|e| tx_row(block.header.height, e))
            .collect();
        let title = format!("Block {}", block.header.height);
        page(
            &web,
            "block.html",
            "explorer",
            &title,
            context! { block => v(&block), rows => v(&rows) },
        )
    })
    .await
}

pub(crate) async fn tx(State(web): State<Web>, Path(hash): Path<String>) -> PageResult {
    blocking(move || {
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
    })
    .await
}

pub(crate) async fn account(State(web): State<Web>, Path(address): Path<String>) -> PageResult {
    blocking(move || {
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
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// A height, a block, transaction or job hash, or an address: straight to its page; anything
/// else (words, a hash the chain does not know as a block, transaction or job) goes to the
/// search page, whose script asks `GET /v1/search` (served when the node keeps a search index).
pub(crate) async fn search(
    State(web): State<Web>,
    Query(SearchQuery { q }): Query<SearchQuery>,
) -> Result<axum::response::Response, PageError> {
    blocking(move || {
        let q = q.trim();
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
        }
        let demo = web.links.demo.as_ref().map(|d| d.address().to_string());
        page(
            &web,
            "search.html",
            "search",
            "Search",
            context! { q, demo },
        )
        .map(IntoResponse::into_response)
    })
    .await
}

/// A block's transactions as the live table shows them (JSON, for the explorer's script).
pub(crate) async fn block_txs(
    State(web): State<Web>,
    Path(height): Path<u64>,
) -> Result<axum::Json<Vec<TxRow>>, agora_api::ApiError> {
    tokio::task::spawn_blocking(move || {
        let snap = web.node.snapshot()?;
        block_rows(&snap, height, TABLE_TXS).map_err(|e| e.into_api())
    })
    .await
    .map_err(agora_api::ApiError::internal)?
    .map(axum::Json)
}
