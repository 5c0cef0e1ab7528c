//! Calls to the RPC node, each bounded in time and retried with backoff, and the checks that
//! make a block's rows trustworthy: everything kept is committed to by the block's hash.

use crate::tables::{BlockRow, BlockRows, ContractRow, LogRow, ReceiptRow, TxRow, transfer};
use crate::{Error, Result};
use alloy::consensus::proofs::{calculate_receipt_root, calculate_transaction_root};
use alloy::consensus::transaction::SignerRecoverable as _;
use alloy::consensus::{ReceiptEnvelope, Transaction as _, TxEnvelope, TxReceipt as _};
use alloy::eips::{BlockId, BlockNumberOrTag, Encodable2718 as _, Typed2718 as _};
use alloy::primitives::{B256, keccak256};
use alloy::providers::{Provider as _, RootProvider};
use alloy::rpc::types::{Block, BlockTransactions, TransactionReceipt};
use std::future::Future;
use std::time::Duration;

/// An RPC node, with limits on every call.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    provider: RootProvider,
    timeout: Duration,
    tries: u32,
}

impl Source {
    pub(crate) fn new(url: &str, timeout: Duration, tries: u32) -> Result<Self> {
        let parsed: alloy::transports::http::reqwest::Url =
            url.parse().map_err(|e: url::ParseError| Error::BadUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::BadUrl {
                url: url.to_string(),
                reason: "only http:// and https:// are supported".into(),
            });
        }
        Ok(Self {
            provider: RootProvider::new_http(parsed),
            timeout,
            tries: tries.max(1),
        })
    }

    /// Runs `call` until it answers, at most `tries` times, each within the time limit, with a
    /// pause that doubles between tries.
    async fn call<T, F, Fut, E>(&self, what: impl Fn() -> String, call: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: std::fmt::Display,
    {
        let mut pause = Duration::from_millis(100);
        let mut last = String::new();
        for attempt in 1..=self.tries {
            match tokio::time::timeout(self.timeout, call()).await {
                Ok(Ok(Some(value))) => return Ok(value),
                Ok(Ok(None)) => last = "the node has no such block".into(),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("no answer within {:?}", self.timeout),
            }
            tracing::debug!(call = %what(), attempt, "RPC call failed: {last}");
            if attempt < self.tries {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
        Err(Error::Rpc {
            call: what(),
            tries: self.tries,
            last,
        })
    }

    pub(crate) async fn chain_id(&self) -> Result<u64> {
        self.call(
            || "eth_chainId".into(),
            || async { self.provider.get_chain_id().await.map(Some) },
        )
        .await
    }

    pub(crate) async fn head(&self) -> Result<u64> {
        self.call(
            || "eth_blockNumber".into(),
            || async { self.provider.get_block_number().await.map(Some) },
        )
        .await
    }

    /// Block `number` with its transactions and receipts, checked ([`check`]).
    pub(crate) async fn block(&self, number: u64, chain_id: u64) -> Result<BlockRows> {
        let (block, receipts) = self.raw_block(number).await?;
        // Hashing and signature recovery take a while for a full block: on a thread of their
        // own, so the blocks in flight are checked side by side.
        tokio::task::spawn_blocking(move || check(number, chain_id, block, receipts))
            .await
            .map_err(|e| lie(number, format!("checking it failed: {e}")))?
    }

    /// Block `number` and its receipts as the node gives them. The receipts are asked for by
    /// the block's hash, so a reorganization between the two calls cannot pair a block with
    /// another block's receipts.
    pub(crate) async fn raw_block(&self, number: u64) -> Result<(Block, Vec<TransactionReceipt>)> {
        let block = self
            .call(
                || format!("eth_getBlockByNumber({number})"),
                || async {
                    self.provider
                        .get_block_by_number(BlockNumberOrTag::Number(number))
                        .full()
                        .await
                },
            )
            .await?;
        let hash = block.header.hash;
        // Checked before its hash is used to ask for the receipts.
        let computed = block.header.inner.hash_slow();
        if computed != hash {
            return Err(lie(
                number,
                format!("its header hashes to {computed}, not to the hash {hash} it was given"),
            ));
        }
        let receipts = self
            .call(
                || format!("eth_getBlockReceipts({hash})"),
                || async { self.provider.get_block_receipts(BlockId::hash(hash)).await },
            )
            .await?;
        Ok((block, receipts))
    }
}

fn lie(number: u64, what: impl Into<String>) -> Error {
    Error::Lie {
        number,
        what: what.into(),
    }
}

/// The rows of block `number`, after checking that the node's answers agree with each other
/// and with the block's hash:
/// - the header hashes to the hash given, and has the number asked for;
/// - each transaction's hash is its encoding's, its sender recovers from its signature, and
///   together they give the header's transactions root;
/// - the receipts, one per transaction in order, give the header's receipts root (status,
///   cumulative gas and logs); each receipt's gas used is its cumulative gas less the one
///   before, its effective gas price follows from its transaction and the base fee, and its
///   contract address from the creator's address and nonce;
/// - each log names its block, transaction and position.
pub(crate) fn check(
    number: u64,
    chain_id: u64,
    block: Block,
    receipts: Vec<TransactionReceipt>,
) -> Result<BlockRows> {
    let header = &block.header;
    // The tables keep heights, times, gas and nonces as signed 64-bit integers (times in ms).
    let fits = |what: &str, v: u64, max: u64| {
        if v > max {
            Err(lie(
                number,
                format!("its {what} {v} is past what any chain reaches"),
            ))
        } else {
            Ok(())
        }
    };
    const I64: u64 = i64::MAX as u64;
    fits("number", number, I64)?;
    fits("timestamp", header.inner.timestamp, I64 / 1000)?;
    fits("gas limit", header.inner.gas_limit, I64)?;
    if header.inner.number != number {
        return Err(lie(
            number,
            format!(
                "asked for block {number}, got block {}",
                header.inner.number
            ),
        ));
    }
    let computed = header.inner.hash_slow();
    if computed != header.hash {
        return Err(lie(
            number,
            format!(
                "its header hashes to {computed}, not to the hash {} it was given",
                header.hash
            ),
        ));
    }
    let BlockTransactions::Full(transactions) = &block.transactions else {
        return Err(lie(number, "its transactions came without their bodies"));
    };
    let envelopes: Vec<&TxEnvelope> = transactions.iter().map(|t| t.inner.inner()).collect();
    let root = calculate_transaction_root(&envelopes);
    if root != header.inner.transactions_root {
        return Err(lie(
            number,
            format!(
                "its transactions give the root {root}, and its header says {}",
                header.inner.transactions_root
            ),
        ));
    }
    if receipts.len() != transactions.len() {
        return Err(lie(
            number,
            format!(
                "{} receipts for {} transactions",
                receipts.len(),
                transactions.len()
            ),
        ));
    }
    let primitive: Vec<ReceiptEnvelope> = receipts
        .iter()
        .map(|r| r.inner.clone().into_primitives_receipt())
        .collect();
    let root = calculate_receipt_root(&primitive);
    if root != header.inner.receipts_root {
        return Err(lie(
            number,
            format!(
                "its receipts give the root {root}, and its header says {}",
                header.inner.receipts_root
            ),
        ));
    }
    let base_fee = header.inner.base_fee_per_gas;
    let mut rows = BlockRows {
        block: BlockRow {
            number,
            hash: header.hash,
            parent_hash: header.inner.parent_hash,
            timestamp: header.inner.timestamp,
            miner: header.inner.beneficiary,
            gas_used: header.inner.gas_used,
            gas_limit: header.inner.gas_limit,
            base_fee_per_gas: base_fee,
            transactions: transactions.len() as u64,
            logs: 0,
        },
        transactions: Vec::with_capacity(transactions.len()),
        receipts: Vec::with_capacity(transactions.len()),
        logs: Vec::new(),
        transfers: Vec::new(),
        contracts: Vec::new(),
    };
    let mut cumulative = 0u64;
    let mut log_index = 0u64;
    for (i, ((tx, receipt), envelope)) in transactions
        .iter()
        .zip(&receipts)
        .zip(&primitive)
        .enumerate()
    {
        let index = i as u64;
        let body = tx.inner.inner();
        let hash: B256 = keccak256(body.encoded_2718());
        if *body.tx_hash() != hash || receipt.transaction_hash != hash {
            return Err(lie(
                number,
                format!(
                    "transaction {index} encodes to the hash {hash}; the node named it {} and its receipt {}",
                    body.tx_hash(),
                    receipt.transaction_hash
                ),
            ));
        }
        // Unchecked: signatures before EIP-2 (Homestead) may have a high s, and were valid.
        let from = body.recover_signer_unchecked().map_err(|e| {
            lie(
                number,
                format!("transaction {hash}'s signature does not recover: {e}"),
            )
        })?;
        if from != tx.inner.signer() {
            return Err(lie(
                number,
                format!(
                    "transaction {hash} was signed by {from}, and the node says {}",
                    tx.inner.signer()
                ),
            ));
        }
        if let Some(id) = body.chain_id()
            && id != chain_id
        {
            return Err(lie(
                number,
                format!(
                    "transaction {hash} is signed for chain {id}, and the node serves chain {chain_id}"
                ),
            ));
        }
        fits("transaction gas limit", body.gas_limit(), I64)?;
        fits("transaction nonce", body.nonce(), I64)?;
        let placed = (tx.block_number, tx.transaction_index);
        let receipt_placed = (receipt.block_number, receipt.transaction_index);
        if placed != (Some(number), Some(index)) || receipt_placed != placed {
            return Err(lie(
                number,
                format!(
                    "transaction {hash} is placed at {placed:?}, its receipt at {receipt_placed:?}"
                ),
            ));
        }
        let cumulative_now = envelope.cumulative_gas_used();
        let gas_used = cumulative_now.checked_sub(cumulative).ok_or_else(|| {
            lie(
                number,
                format!("receipt {index}'s cumulative gas goes down"),
            )
        })?;
        cumulative = cumulative_now;
        if receipt.gas_used != gas_used {
            return Err(lie(
                number,
                format!(
                    "receipt {index} says it used {} gas, and its cumulative gas says {gas_used}",
                    receipt.gas_used
                ),
            ));
        }
        let price = body.effective_gas_price(base_fee);
        if receipt.effective_gas_price != price {
            return Err(lie(
                number,
                format!(
                    "receipt {index}'s effective gas price is {}, and its transaction and the base fee give {price}",
                    receipt.effective_gas_price
                ),
            ));
        }
        // Before Byzantium a receipt holds a state root instead of a status: unknown.
        let success = match envelope.status_or_post_state() {
            alloy::consensus::Eip658Value::Eip658(ok) => Some(ok),
            alloy::consensus::Eip658Value::PostState(_) => None,
        };
        // A creation's address follows from its creator and nonce. Nodes differ on whether a
        // failed creation's receipt names it (geth does, anvil does not): either is honest.
        let address = body.to().is_none().then(|| from.create(body.nonce()));
        let named_ok = match receipt.contract_address {
            None => true,
            Some(named) => Some(named) == address,
        };
        if !named_ok
            || (success == Some(true) && receipt.contract_address.is_none() && address.is_some())
        {
            return Err(lie(
                number,
                format!(
                    "receipt {index} names the contract {:?}; its creator and nonce give {address:?}",
                    receipt.contract_address
                ),
            ));
        }
        // Listed as created unless the receipt says the creation failed.
        let created = address.filter(|_| success != Some(false));
        let logs = receipt.inner.logs();
        for (log, kept) in logs.iter().zip(envelope.logs()) {
            let at = (log.block_number, log.transaction_hash, log.log_index);
            if at != (Some(number), Some(hash), Some(log_index)) {
                return Err(lie(
                    number,
                    format!("log {log_index} of transaction {hash} is placed at {at:?}"),
                ));
            }
            let row = LogRow {
                tx_index: index,
                tx_hash: hash,
                log_index,
                address: kept.address,
                topics: kept.data.topics().to_vec(),
                data: kept.data.data.clone(),
            };
            rows.transfers.extend(transfer(&row));
            rows.logs.push(row);
            log_index += 1;
        }
        if let Some(address) = created {
            rows.contracts.push(ContractRow {
                address,
                tx_hash: hash,
                creator: from,
            });
        }
        rows.transactions.push(TxRow {
            index,
            hash,
            from,
            to: body.to(),
            value: body.value(),
            nonce: body.nonce(),
            gas_limit: body.gas_limit(),
            gas_price: body.gas_price(),
            max_fee_per_gas: body.gas_price().is_none().then(|| body.max_fee_per_gas()),
            max_priority_fee_per_gas: body.max_priority_fee_per_gas(),
            ty: body.ty(),
            input: body.input().clone(),
        });
        rows.receipts.push(ReceiptRow {
            index,
            tx_hash: hash,
            success,
            gas_used,
            cumulative_gas_used: cumulative_now,
            effective_gas_price: price,
            contract_address: receipt.contract_address,
            logs: logs.len() as u64,
        });
    }
    if cumulative != header.inner.gas_used {
        return Err(lie(
            number,
            format!(
                "its receipts used {cumulative} gas, and its header says {}",
                header.inner.gas_used
            ),
        ));
    }
    rows.block.logs = log_index;
    Ok(rows)
}
