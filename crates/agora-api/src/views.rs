//! Read-only views of a node's state, each a function of the node or of a snapshot: what the
//! API's handlers answer as JSON, what [`crate::LocalNode`] answers in process, and what the web
//! pages show. One function per answer, so every reader sees the same thing.

use crate::ApiError;
use agora_chain::Node;
use agora_node_api::{
    AccountProof, AccountResponse, AccountTxEntry, AccountTxsResponse, BlockEvent, BlockResponse,
    ChainMode, StatusResponse, TxEntry, TxResponse, TxStatus, ValidatorsResponse,
};
use agora_state::{Account, StateRead, account_key};
use agora_store::Snapshot;
use agora_types::{Address, Block, Hash, Receipt, SignedTransaction};

pub use crate::market::views::{
    check, escrow, job, model, models, open_checks, provider, providers, reveal, verifiers,
};

/// A view's answer, or the error the API would send.
pub type ApiResult<T> = Result<T, ApiError>;

/// A hash typed by a person or given in a path (hex, with or without `0x`).
pub fn parse_hash(s: &str) -> ApiResult<Hash> {
    s.parse()
        .map_err(|e: agora_types::Error| ApiError::bad_request("invalid_hash", e.to_string()))
}

/// An address typed by a person or given in a path.
pub fn parse_address(s: &str) -> ApiResult<Address> {
    s.parse()
        .map_err(|e: agora_types::Error| ApiError::bad_request("invalid_address", e.to_string()))
}

/// The most transactions one page of an account's history holds.
pub const MAX_HISTORY_PAGE: usize = 100;

/// A transaction's kind as a person reads it: its first message's type, `+n` for more.
pub fn tx_kind(messages: &[agora_types::Message]) -> String {
    let name = |m: &agora_types::Message| {
        serde_json::to_value(m)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str().map(str::to_string)))
            .unwrap_or_else(|| "message".into())
    };
    match messages {
        [] => "empty".into(),
        [one] => name(one),
        [first, rest @ ..] => format!("{} +{}", name(first), rest.len()),
    }
}

/// `before` of a history page: `HEIGHT.INDEX`.
pub fn parse_cursor(s: &str) -> ApiResult<(u64, u32)> {
    s.split_once('.')
        .and_then(|(h, i)| Some((h.parse().ok()?, i.parse().ok()?)))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_cursor",
                format!("{s:?} is not HEIGHT.INDEX (the `next` of the page before)"),
            )
        })
}

/// The transactions that concern `address`, newest first: `limit` (at most
/// [`MAX_HISTORY_PAGE`]) of them, before `before` when given.
pub fn account_txs(
    snap: &Snapshot,
    address: &Address,
    before: Option<(u64, u32)>,
    limit: usize,
) -> ApiResult<AccountTxsResponse> {
    let limit = limit.clamp(1, MAX_HISTORY_PAGE);
    let found = snap.account_txs(address, before, limit)?;
    let mut txs = Vec::with_capacity(found.len());
    // Consecutive entries often share a block: read each block once.
    let mut cached: Option<(u64, Block, Vec<Receipt>)> = None;
    for t in &found {
        if cached.as_ref().is_none_or(|(h, _, _)| *h != t.height) {
            let block = snap
                .block(t.height)?
                .ok_or_else(|| ApiError::internal("a block in the history is missing"))?;
            let receipts = snap.results(t.height)?.unwrap_or_default().receipts;
            cached = Some((t.height, block, receipts));
        }
        let (_, block, receipts) = cached.as_ref().expect("just read");
        let tx = block
            .txs
            .get(t.index as usize)
            .ok_or_else(|| ApiError::internal("a transaction in the history is missing"))?;
        let receipt = receipts.get(t.index as usize);
        txs.push(AccountTxEntry {
            hash: t.hash,
            height: t.height,
            index: t.index,
            kind: tx_kind(&tx.tx.messages),
            sender: tx.tx.sender_address(),
            success: receipt.is_some_and(|r| r.success),
            fee_paid: receipt.map_or(0, |r| r.fee_paid),
        });
    }
    let next = (found.len() == limit)
        .then(|| found.last().map(|t| format!("{}.{}", t.height, t.index)))
        .flatten();
    Ok(AccountTxsResponse {
        address: *address,
        height: snap.height()?.unwrap_or(0),
        indexed_to: snap.accounts_indexed_to()?,
        txs,
        next,
    })
}

fn tx_entry(tx: &SignedTransaction, hash: Hash, receipt: Option<&Receipt>) -> TxEntry {
    TxEntry {
        hash,
        tx: tx.clone(),
        receipt: receipt.cloned(),
    }
}

/// A committed transaction with its receipt, or a pending one.
pub fn tx(node: &Node, hash: &Hash) -> ApiResult<TxResponse> {
    let snap = node.snapshot()?;
    if let Some(loc) = snap.tx_location(hash)? {
        let block = snap
            .block(loc.height)?
            .ok_or_else(|| ApiError::internal("block missing"))?;
        let results = snap.results(loc.height)?.unwrap_or_default();
        let tx = block
            .txs
            .get(loc.index as usize)
            .ok_or_else(|| ApiError::internal("tx missing"))?;
        let receipt = results.receipts.get(loc.index as usize);
        return Ok(TxResponse {
            entry: tx_entry(tx, *hash, receipt),
            status: TxStatus::Committed,
            height: Some(loc.height),
            index: Some(loc.index),
            block_hash: Some(block.hash()),
        });
    }
    if let Some(tx) = node.pending(hash) {
        return Ok(TxResponse {
            entry: tx_entry(&tx, *hash, None),
            status: TxStatus::Pending,
            height: None,
            index: None,
            block_hash: None,
        });
    }
    Err(ApiError::not_found(
        "tx_not_found",
        format!("no committed or pending transaction {hash}"),
    ))
}

fn block_response(snap: &Snapshot, block: &Block) -> ApiResult<BlockResponse> {
    let results = snap.results(block.header.height)?.unwrap_or_default();
    let txs: Vec<TxEntry> = block
        .txs
        .iter()
        .enumerate()
        .map(|(i, tx)| {
            let receipt = results.receipts.get(i);
            let hash = receipt.map(|r| r.tx_hash).unwrap_or_else(|| tx.hash());
            tx_entry(tx, hash, receipt)
        })
        .collect();
    Ok(BlockResponse {
        hash: block.hash(),
        header: block.header.clone(),
        txs,
        block_events: results.block_events,
    })
}

/// A block by height, hash or `latest`, with its transactions and receipts.
pub fn block(snap: &Snapshot, id: &str) -> ApiResult<BlockResponse> {
    let block = if id == "latest" {
        snap.latest_block()?
    } else if let Ok(height) = id.parse::<u64>() {
        snap.block(height)?
    } else {
        let hash = parse_hash(id).map_err(|_| {
            ApiError::bad_request(
                "invalid_block_id",
                format!("{id:?} is not a height, a block hash or \"latest\""),
            )
        })?;
        match snap.block_height(&hash)? {
            Some(h) => snap.block(h)?,
            None => None,
        }
    };
    let block = block.ok_or_else(|| {
        let latest = snap.height().ok().flatten().unwrap_or(0);
        ApiError::not_found(
            "block_not_found",
            format!("no block {id}; the latest height is {latest}"),
        )
    })?;
    block_response(snap, &block)
}

/// A block's summary: what the event stream sends for each new block.
pub fn block_summary(block: &Block) -> BlockEvent {
    BlockEvent {
        height: block.header.height,
        hash: block.hash(),
        time_ms: block.header.time_ms,
        txs: block.txs.len(),
        proposer: block.header.proposer,
        state_root: block.header.state_root,
    }
}

/// An account, with a Merkle proof of it against the state root when `prove`.
pub fn account(node: &Node, address: &Address, prove: bool) -> ApiResult<AccountResponse> {
    let key = account_key(address);
    // A proof needs the tree and the state at one height; a block committed in between means
    // taking a fresh snapshot.
    let mut attempts = 0;
    let (snap, value, proof) = loop {
        let snap = node.snapshot()?;
        if !prove {
            let value = snap.get(&key).map_err(ApiError::internal)?;
            break (snap, value, None);
        }
        match snap.prove(&key) {
            Ok((value, proof)) => break (snap, value, Some(proof)),
            Err(agora_store::Error::SnapshotMoved) if attempts < 5 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    };
    let height = snap.height()?.unwrap_or(0);
    let value = value.ok_or_else(|| {
        ApiError::not_found(
            "unknown_account",
            format!("account {address} does not exist: it has never received funds"),
        )
    })?;
    let account: Account = borsh::from_slice(&value).map_err(ApiError::internal)?;
    let proof = match proof {
        Some(proof) => Some(AccountProof {
            height,
            state_root: snap.state_root()?,
            key: hex::encode(&key),
            value: hex::encode(&value),
            proof,
        }),
        None => None,
    };
    Ok(AccountResponse {
        address: *address,
        account,
        height,
        proof,
    })
}

/// The chain's id, head, mempool and fee floor.
pub fn status(node: &Node) -> ApiResult<StatusResponse> {
    let snap = node.snapshot()?;
    let latest = snap
        .latest_block()?
        .ok_or_else(|| ApiError::internal("no genesis block"))?;
    Ok(StatusResponse {
        chain_id: node.chain_id().to_string(),
        height: latest.header.height,
        latest_block_hash: latest.hash(),
        latest_block_time_ms: latest.header.time_ms,
        state_root: latest.header.state_root,
        peers: Vec::new(),
        mempool_size: node.mempool_len(),
        min_fee: node.params().min_fee,
        validator: node.proposer(),
    })
}

/// The validator set in force after the latest block (a dev chain has none: its single block
/// producer is `validator` in the status).
pub fn validators(snap: &Snapshot) -> ApiResult<ValidatorsResponse> {
    let height = snap.height()?.unwrap_or(0);
    let set = agora_state::read_validator_set(snap).map_err(ApiError::internal)?;
    let params: agora_state::ConsensusParams = snap
        .get(&agora_state::consensus_params_key())
        .map_err(ApiError::internal)?
        .map(|b| borsh::from_slice(&b))
        .transpose()
        .map_err(ApiError::internal)?
        .unwrap_or_default();
    let Some(set) = set else {
        return Ok(ValidatorsResponse {
            height,
            mode: ChainMode::Dev,
            validators: Vec::new(),
            total_power: 0,
            epoch_length: params.epoch_length,
            next_epoch_end: None,
        });
    };
    Ok(ValidatorsResponse {
        height,
        mode: ChainMode::Network,
        total_power: set.total_power(),
        validators: set.validators,
        epoch_length: params.epoch_length,
        next_epoch_end: Some((height / params.epoch_length + 1) * params.epoch_length),
    })
}
