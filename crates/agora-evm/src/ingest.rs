//! One ingestion run: the missing blocks of a range, fetched with bounded concurrency, checked,
//! linked to their neighbours and written partition by partition.

use crate::fetch::Source;
use crate::store::{Partition, Store};
use crate::tables::{BlockRows, TABLES, batches, hex};
use crate::{Error, Result};
use futures_util::{StreamExt as _, TryStreamExt as _};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Most blocks in one partition: a partition is held in memory until it is written.
pub(crate) const MAX_PARTITION_BLOCKS: u64 = 10_000;

/// What to ingest, from where, and how hard to push the node.
#[derive(Clone, Debug)]
pub struct Options {
    /// The node's JSON-RPC URL (`http://` or `https://`).
    pub rpc: String,
    /// The first block.
    pub from: u64,
    /// The last block (`None`: the node's head less `confirmations`).
    pub to: Option<u64>,
    /// The output folder.
    pub out: PathBuf,
    /// The chain the node must serve (`None`: whichever it serves, which the folder then
    /// keeps to).
    pub chain_id: Option<u64>,
    /// Blocks fetched at once.
    pub concurrency: usize,
    /// Blocks per partition (partitions start at multiples of it).
    pub partition_blocks: u64,
    /// Blocks below the head left alone when `to` is not given (a reorganization deeper than
    /// this is reported when a later run links to it).
    pub confirmations: u64,
    /// Time limit of one call.
    pub timeout: Duration,
    /// Tries per call.
    pub tries: u32,
    /// Times a partition whose blocks do not link (the chain moving under the ingester) is
    /// fetched again before giving up.
    pub refetches: u32,
}

impl Options {
    /// Defaults for `rpc` and `out`: blocks from 0 to 12 below the head, 8 at once, 1,000 per
    /// partition, 20 s and 5 tries per call.
    pub fn new(rpc: impl Into<String>, out: impl Into<PathBuf>) -> Self {
        Self {
            rpc: rpc.into(),
            from: 0,
            to: None,
            out: out.into(),
            chain_id: None,
            concurrency: 8,
            partition_blocks: 1000,
            confirmations: 12,
            timeout: Duration::from_secs(20),
            tries: 5,
            refetches: 3,
        }
    }
}

/// How far a run has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Blocks of the range already ingested before this run.
    pub skipped: u64,
    /// Blocks fetched, checked and written by this run.
    pub blocks: u64,
    /// Blocks this run has to fetch in all.
    pub total: u64,
    /// Logs written by this run.
    pub logs: u64,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The chain.
    pub chain_id: u64,
    /// The range asked for.
    pub from: u64,
    /// Its last block.
    pub to: u64,
    /// Blocks fetched and written, and blocks already there.
    pub progress: Progress,
    /// Rows written per table.
    pub rows: BTreeMap<String, u64>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Ingests the blocks of `options`' range that the output folder does not hold yet, calling
/// `progress` after each partition. Dropping the future (Ctrl-C) between partitions or in one
/// leaves the folder as the last written partition left it.
pub async fn ingest(options: &Options, mut progress: impl FnMut(&Progress)) -> Result<Summary> {
    let start = Instant::now();
    let source = Source::new(&options.rpc, options.timeout, options.tries)?;
    let chain_id = source.chain_id().await?;
    if let Some(expected) = options.chain_id
        && expected != chain_id
    {
        return Err(Error::WrongChain {
            expected,
            got: chain_id,
        });
    }
    let mut store = Store::open(&options.out, chain_id)?;
    let head = source.head().await?;
    let to = match options.to {
        Some(to) if to > head => {
            return Err(Error::Range(format!(
                "block {to} does not exist yet: the node's head is {head}"
            )));
        }
        Some(to) => to,
        None => head.checked_sub(options.confirmations).ok_or_else(|| {
            Error::Range(format!(
                "the node's head is {head}: no block has {} confirmations yet",
                options.confirmations
            ))
        })?,
    };
    if options.from > to {
        return Err(Error::Range(format!(
            "--from {} is past the last block to ingest, {to}",
            options.from
        )));
    }
    let size = options.partition_blocks.clamp(1, MAX_PARTITION_BLOCKS);
    let (total, ranges) = store.missing(options.from, to, size);
    let mut state = Progress {
        skipped: (to - options.from).saturating_add(1).saturating_sub(total),
        total,
        ..Progress::default()
    };
    progress(&state);
    let mut rows: BTreeMap<String, u64> = TABLES.iter().map(|t| (t.to_string(), 0)).collect();
    for (from, last) in ranges {
        let blocks = fetch_linked(&source, options, chain_id, from, last).await?;
        let first = blocks.first().expect("a range has a block");
        let end = blocks.last().expect("a range has a block");
        let partition = Partition {
            from,
            to: last,
            parent_hash: hex(first.block.parent_hash),
            hash: hex(end.block.hash),
            rows: BTreeMap::new(),
            bytes: BTreeMap::new(),
        };
        let (before, after) = store.neighbours(from, last);
        if let Some(before) = before
            && before.hash != partition.parent_hash
        {
            return Err(Error::Reorg {
                number: from,
                what: format!(
                    "block {from}'s parent is {}, and the stored block {} is {}: the chain changed below what {} holds; ingest into a new folder",
                    partition.parent_hash,
                    before.to,
                    before.hash,
                    options.out.display()
                ),
            });
        }
        if let Some(after) = after
            && after.parent_hash != partition.hash
        {
            return Err(Error::Reorg {
                number: last,
                what: format!(
                    "block {last} is {}, and the stored block {} names {} as its parent: the chain changed since {} was written; ingest into a new folder",
                    partition.hash,
                    after.from,
                    after.parent_hash,
                    options.out.display()
                ),
            });
        }
        let tables =
            batches(&blocks).map_err(|e| Error::Range(format!("blocks {from}-{last}: {e}")))?;
        for (table, batch) in &tables {
            *rows.entry((*table).to_string()).or_default() += batch.num_rows() as u64;
        }
        store.write(partition, &tables)?;
        state.blocks += last - from + 1;
        state.logs += blocks.iter().map(|b| b.block.logs).sum::<u64>();
        progress(&state);
    }
    Ok(Summary {
        chain_id,
        from: options.from,
        to,
        progress: state,
        rows,
        elapsed: start.elapsed(),
    })
}

/// Blocks `from..=to`, each the parent of the next; fetched again (up to `refetches` times)
/// while they do not link, as when the chain reorganizes under the ingester.
async fn fetch_linked(
    source: &Source,
    options: &Options,
    chain_id: u64,
    from: u64,
    to: u64,
) -> Result<Vec<BlockRows>> {
    let mut attempt = 0;
    loop {
        // The first failure ends the partition at once; the calls in flight are dropped.
        let blocks: Vec<BlockRows> = futures_util::stream::iter(from..=to)
            .map(|n| source.block(n, chain_id))
            .buffered(options.concurrency.max(1))
            .try_collect()
            .await?;
        let broken = blocks
            .windows(2)
            .find(|w| w[1].block.parent_hash != w[0].block.hash);
        let Some(w) = broken else {
            return Ok(blocks);
        };
        attempt += 1;
        let what = format!(
            "block {}'s parent is {}, not block {} ({})",
            w[1].block.number,
            hex(w[1].block.parent_hash),
            w[0].block.number,
            hex(w[0].block.hash)
        );
        if attempt > options.refetches {
            return Err(Error::Reorg {
                number: w[1].block.number,
                what: format!("{what}, still after {} fetches", options.refetches + 1),
            });
        }
        tracing::warn!("{what}: fetching blocks {from}-{to} again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The node's own pace: blocks `from..=to` and their receipts fetched as [`ingest`] fetches
/// them (same concurrency, same calls), but neither checked nor written. Returns the blocks
/// and logs fetched.
pub async fn fetch_only(options: &Options, from: u64, to: u64) -> Result<Progress> {
    let source = Source::new(&options.rpc, options.timeout, options.tries)?;
    let mut state = Progress::default();
    let mut stream = futures_util::stream::iter(from..=to)
        .map(|n| source.raw_block(n))
        .buffered(options.concurrency.max(1));
    while let Some(answer) = stream.next().await {
        let (_, receipts) = answer?;
        state.blocks += 1;
        state.logs += receipts
            .iter()
            .map(|r| r.inner.logs().len() as u64)
            .sum::<u64>();
    }
    state.total = state.blocks;
    Ok(state)
}
