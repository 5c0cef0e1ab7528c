//! The tables of an ingested EVM chain: their columns, and the rows of one checked block.
//!
//! Addresses and hashes are lowercase `0x` hex strings, as a person pastes them into a query.
//! Token amounts and values are `DECIMAL(76, 0)`: exact up to 10^76 − 1, and NULL above (a
//! uint256 reaches about 1.16 × 10^77; such values are nearly always "unlimited" sentinels).
//! Gas prices are `DECIMAL(38, 0)`. Times are the block's timestamp in UTC.

use agora_analytics::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Decimal128Array, Decimal256Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use agora_analytics::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, i256};
use agora_analytics::arrow::record_batch::RecordBatch;
use alloy::primitives::{Address, B256, Bytes, U256};
use std::sync::Arc;

/// The tables, in the order [`Rows::batches`] gives them.
pub const TABLES: [&str; 6] = [
    "evm_blocks",
    "evm_transactions",
    "evm_receipts",
    "evm_logs",
    "evm_token_transfers",
    "evm_contracts",
];

/// `Transfer(address,address,uint256)`: ERC-20's (value in the data) and ERC-721's (token id
/// as a fourth topic).
pub const TRANSFER_TOPIC: B256 =
    alloy::primitives::b256!("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");

fn time() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

const AMOUNT: DataType = DataType::Decimal256(76, 0);
const GAS_PRICE: DataType = DataType::Decimal128(38, 0);

/// The columns of `table` (one of [`TABLES`]).
pub fn schema(table: &str) -> Option<SchemaRef> {
    use DataType::{Binary, Boolean, Int64, Utf8};
    let f = |name: &str, ty: DataType, nullable: bool| Field::new(name, ty, nullable);
    let fields = match table {
        "evm_blocks" => vec![
            f("number", Int64, false),
            f("hash", Utf8, false),
            f("parent_hash", Utf8, false),
            f("time", time(), false),
            f("miner", Utf8, false),
            f("gas_used", Int64, false),
            f("gas_limit", Int64, false),
            f("base_fee_per_gas", Int64, true),
            f("transactions", Int64, false),
            f("logs", Int64, false),
        ],
        "evm_transactions" => vec![
            f("block_number", Int64, false),
            f("block_time", time(), false),
            f("tx_index", Int64, false),
            f("hash", Utf8, false),
            f("from", Utf8, false),
            f("to", Utf8, true),
            f("value", AMOUNT, true),
            f("nonce", Int64, false),
            f("gas_limit", Int64, false),
            f("gas_price", GAS_PRICE, true),
            f("max_fee_per_gas", GAS_PRICE, true),
            f("max_priority_fee_per_gas", GAS_PRICE, true),
            f("type", Int64, false),
            f("method_id", Utf8, true),
            f("input", Binary, false),
        ],
        "evm_receipts" => vec![
            f("block_number", Int64, false),
            f("block_time", time(), false),
            f("tx_index", Int64, false),
            f("tx_hash", Utf8, false),
            f("success", Boolean, true),
            f("gas_used", Int64, false),
            f("cumulative_gas_used", Int64, false),
            f("effective_gas_price", GAS_PRICE, true),
            f("contract_address", Utf8, true),
            f("logs", Int64, false),
        ],
        "evm_logs" => vec![
            f("block_number", Int64, false),
            f("block_time", time(), false),
            f("tx_index", Int64, false),
            f("tx_hash", Utf8, false),
            f("log_index", Int64, false),
            f("address", Utf8, false),
            f("topic0", Utf8, true),
            f("topic1", Utf8, true),
            f("topic2", Utf8, true),
            f("topic3", Utf8, true),
            f("data", Binary, false),
        ],
        "evm_token_transfers" => vec![
            f("block_number", Int64, false),
            f("block_time", time(), false),
            f("tx_hash", Utf8, false),
            f("log_index", Int64, false),
            f("token", Utf8, false),
            f("standard", Utf8, false),
            f("from", Utf8, false),
            f("to", Utf8, false),
            f("value", AMOUNT, true),
            f("token_id", AMOUNT, true),
        ],
        "evm_contracts" => vec![
            f("address", Utf8, false),
            f("block_number", Int64, false),
            f("block_time", time(), false),
            f("tx_hash", Utf8, false),
            f("creator", Utf8, false),
        ],
        _ => return None,
    };
    Some(Arc::new(Schema::new(fields)))
}

/// `0x` and lowercase hex.
pub fn hex(bytes: impl AsRef<[u8]>) -> String {
    format!("0x{}", alloy::primitives::hex::encode(bytes))
}

/// One block's row.
#[derive(Clone, Debug)]
pub(crate) struct BlockRow {
    pub(crate) number: u64,
    pub(crate) hash: B256,
    pub(crate) parent_hash: B256,
    pub(crate) timestamp: u64,
    pub(crate) miner: Address,
    pub(crate) gas_used: u64,
    pub(crate) gas_limit: u64,
    pub(crate) base_fee_per_gas: Option<u64>,
    pub(crate) transactions: u64,
    pub(crate) logs: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct TxRow {
    pub(crate) index: u64,
    pub(crate) hash: B256,
    pub(crate) from: Address,
    pub(crate) to: Option<Address>,
    pub(crate) value: U256,
    pub(crate) nonce: u64,
    pub(crate) gas_limit: u64,
    pub(crate) gas_price: Option<u128>,
    pub(crate) max_fee_per_gas: Option<u128>,
    pub(crate) max_priority_fee_per_gas: Option<u128>,
    pub(crate) ty: u8,
    pub(crate) input: Bytes,
}

#[derive(Clone, Debug)]
pub(crate) struct ReceiptRow {
    pub(crate) index: u64,
    pub(crate) tx_hash: B256,
    pub(crate) success: Option<bool>,
    pub(crate) gas_used: u64,
    pub(crate) cumulative_gas_used: u64,
    pub(crate) effective_gas_price: u128,
    pub(crate) contract_address: Option<Address>,
    pub(crate) logs: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct LogRow {
    pub(crate) tx_index: u64,
    pub(crate) tx_hash: B256,
    pub(crate) log_index: u64,
    pub(crate) address: Address,
    pub(crate) topics: Vec<B256>,
    pub(crate) data: Bytes,
}

#[derive(Clone, Debug)]
pub(crate) struct TransferRow {
    pub(crate) tx_hash: B256,
    pub(crate) log_index: u64,
    pub(crate) token: Address,
    pub(crate) standard: &'static str,
    pub(crate) from: Address,
    pub(crate) to: Address,
    pub(crate) value: Option<U256>,
    pub(crate) token_id: Option<U256>,
}

#[derive(Clone, Debug)]
pub(crate) struct ContractRow {
    pub(crate) address: Address,
    pub(crate) tx_hash: B256,
    pub(crate) creator: Address,
}

/// The rows of one block, checked against its hash.
#[derive(Clone, Debug)]
pub(crate) struct BlockRows {
    pub(crate) block: BlockRow,
    pub(crate) transactions: Vec<TxRow>,
    pub(crate) receipts: Vec<ReceiptRow>,
    pub(crate) logs: Vec<LogRow>,
    pub(crate) transfers: Vec<TransferRow>,
    pub(crate) contracts: Vec<ContractRow>,
}

/// The token transfer a log records, if it is a standard one: `Transfer` with two address
/// topics and a 32-byte value (ERC-20), or three topics and no data (ERC-721).
pub(crate) fn transfer(log: &LogRow) -> Option<TransferRow> {
    if log.topics.first() != Some(&TRANSFER_TOPIC) {
        return None;
    }
    let address = |topic: &B256| {
        // An address topic is left-padded with twelve zero bytes.
        topic[..12]
            .iter()
            .all(|b| *b == 0)
            .then(|| Address::from_slice(&topic[12..]))
    };
    let (from, to) = (address(log.topics.get(1)?)?, address(log.topics.get(2)?)?);
    let (standard, value, token_id) = match (log.topics.len(), log.data.len()) {
        (3, 32) => ("erc20", Some(U256::from_be_slice(&log.data)), None),
        (4, 0) => ("erc721", None, Some(U256::from_be_bytes(log.topics[3].0))),
        _ => return None,
    };
    Some(TransferRow {
        tx_hash: log.tx_hash,
        log_index: log.log_index,
        token: log.address,
        standard,
        from,
        to,
        value,
        token_id,
    })
}

fn ints(values: impl Iterator<Item = u64>) -> ArrayRef {
    // Heights, gas and counts stay far below 2^63; a value above it is NULL, never wrapped.
    Arc::new(
        values
            .map(|v| i64::try_from(v).ok())
            .collect::<Int64Array>(),
    )
}

fn opt_ints(values: impl Iterator<Item = Option<u64>>) -> ArrayRef {
    Arc::new(
        values
            .map(|v| v.and_then(|v| i64::try_from(v).ok()))
            .collect::<Int64Array>(),
    )
}

fn strings(values: impl Iterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn times(values: impl Iterator<Item = u64>) -> ArrayRef {
    Arc::new(
        values
            .map(|s| i64::try_from(s).ok().and_then(|s| s.checked_mul(1000)))
            .collect::<TimestampMillisecondArray>()
            .with_timezone("UTC"),
    )
}

fn binaries<'a>(values: impl Iterator<Item = &'a [u8]>) -> ArrayRef {
    Arc::new(values.map(Some).collect::<BinaryArray>())
}

/// 10^76: the first value `DECIMAL(76, 0)` cannot hold.
fn amount_limit() -> U256 {
    U256::from(10u8).pow(U256::from(76u8))
}

fn amounts(values: impl Iterator<Item = Option<U256>>) -> ArrayRef {
    let limit = amount_limit();
    let array = values
        .map(|v| {
            v.filter(|v| *v < limit)
                .map(|v| i256::from_le_bytes(v.to_le_bytes::<32>()))
        })
        .collect::<Decimal256Array>()
        .with_precision_and_scale(76, 0)
        .expect("76 digits is Decimal256's precision");
    Arc::new(array)
}

fn gas_prices(values: impl Iterator<Item = Option<u128>>) -> ArrayRef {
    const LIMIT: u128 = 10u128.pow(38);
    let array = values
        .map(|v| {
            v.filter(|v| *v < LIMIT)
                .and_then(|v| i128::try_from(v).ok())
        })
        .collect::<Decimal128Array>()
        .with_precision_and_scale(38, 0)
        .expect("38 digits is Decimal128's precision");
    Arc::new(array)
}

/// The rows of a run of blocks, one batch per table (in [`TABLES`]' order).
pub(crate) fn batches(blocks: &[BlockRows]) -> Result<Vec<(&'static str, RecordBatch)>, String> {
    let b = || blocks.iter();
    let txs = || b().flat_map(|r| r.transactions.iter().map(move |t| (&r.block, t)));
    let receipts = || b().flat_map(|r| r.receipts.iter().map(move |t| (&r.block, t)));
    let logs = || b().flat_map(|r| r.logs.iter().map(move |t| (&r.block, t)));
    let transfers = || b().flat_map(|r| r.transfers.iter().map(move |t| (&r.block, t)));
    let contracts = || b().flat_map(|r| r.contracts.iter().map(move |t| (&r.block, t)));
    let topic = |i: usize| strings(logs().map(move |(_, l)| l.topics.get(i).map(hex)));
    let columns: [Vec<ArrayRef>; 6] = [
        vec![
            ints(b().map(|r| r.block.number)),
            strings(b().map(|r| Some(hex(r.block.hash)))),
            strings(b().map(|r| Some(hex(r.block.parent_hash)))),
            times(b().map(|r| r.block.timestamp)),
            strings(b().map(|r| Some(hex(r.block.miner)))),
            ints(b().map(|r| r.block.gas_used)),
            ints(b().map(|r| r.block.gas_limit)),
            opt_ints(b().map(|r| r.block.base_fee_per_gas)),
            ints(b().map(|r| r.block.transactions)),
            ints(b().map(|r| r.block.logs)),
        ],
        vec![
            ints(txs().map(|(b, _)| b.number)),
            times(txs().map(|(b, _)| b.timestamp)),
            ints(txs().map(|(_, t)| t.index)),
            strings(txs().map(|(_, t)| Some(hex(t.hash)))),
            strings(txs().map(|(_, t)| Some(hex(t.from)))),
            strings(txs().map(|(_, t)| t.to.map(hex))),
            amounts(txs().map(|(_, t)| Some(t.value))),
            ints(txs().map(|(_, t)| t.nonce)),
            ints(txs().map(|(_, t)| t.gas_limit)),
            gas_prices(txs().map(|(_, t)| t.gas_price)),
            gas_prices(txs().map(|(_, t)| t.max_fee_per_gas)),
            gas_prices(txs().map(|(_, t)| t.max_priority_fee_per_gas)),
            ints(txs().map(|(_, t)| u64::from(t.ty))),
            strings(txs().map(|(_, t)| t.input.get(..4).map(hex))),
            binaries(txs().map(|(_, t)| t.input.as_ref())),
        ],
        vec![
            ints(receipts().map(|(b, _)| b.number)),
            times(receipts().map(|(b, _)| b.timestamp)),
            ints(receipts().map(|(_, r)| r.index)),
            strings(receipts().map(|(_, r)| Some(hex(r.tx_hash)))),
            Arc::new(receipts().map(|(_, r)| r.success).collect::<BooleanArray>()),
            ints(receipts().map(|(_, r)| r.gas_used)),
            ints(receipts().map(|(_, r)| r.cumulative_gas_used)),
            gas_prices(receipts().map(|(_, r)| Some(r.effective_gas_price))),
            strings(receipts().map(|(_, r)| r.contract_address.map(hex))),
            ints(receipts().map(|(_, r)| r.logs)),
        ],
        vec![
            ints(logs().map(|(b, _)| b.number)),
            times(logs().map(|(b, _)| b.timestamp)),
            ints(logs().map(|(_, l)| l.tx_index)),
            strings(logs().map(|(_, l)| Some(hex(l.tx_hash)))),
            ints(logs().map(|(_, l)| l.log_index)),
            strings(logs().map(|(_, l)| Some(hex(l.address)))),
            topic(0),
            topic(1),
            topic(2),
            topic(3),
            binaries(logs().map(|(_, l)| l.data.as_ref())),
        ],
        vec![
            ints(transfers().map(|(b, _)| b.number)),
            times(transfers().map(|(b, _)| b.timestamp)),
            strings(transfers().map(|(_, t)| Some(hex(t.tx_hash)))),
            ints(transfers().map(|(_, t)| t.log_index)),
            strings(transfers().map(|(_, t)| Some(hex(t.token)))),
            strings(transfers().map(|(_, t)| Some(t.standard.to_string()))),
            strings(transfers().map(|(_, t)| Some(hex(t.from)))),
            strings(transfers().map(|(_, t)| Some(hex(t.to)))),
            amounts(transfers().map(|(_, t)| t.value)),
            amounts(transfers().map(|(_, t)| t.token_id)),
        ],
        vec![
            strings(contracts().map(|(_, c)| Some(hex(c.address)))),
            ints(contracts().map(|(b, _)| b.number)),
            times(contracts().map(|(b, _)| b.timestamp)),
            strings(contracts().map(|(_, c)| Some(hex(c.tx_hash)))),
            strings(contracts().map(|(_, c)| Some(hex(c.creator)))),
        ],
    ];
    TABLES
        .iter()
        .zip(columns)
        .map(|(name, columns)| {
            let schema = schema(name).expect("one of TABLES");
            // Fails only on a value the checks let through that a column cannot hold.
            let batch =
                RecordBatch::try_new(schema, columns).map_err(|e| format!("{name}: {e}"))?;
            Ok((*name, batch))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_analytics::arrow::array::Array as _;

    fn log(topics: Vec<B256>, data: Vec<u8>) -> LogRow {
        LogRow {
            tx_index: 0,
            tx_hash: B256::ZERO,
            log_index: 7,
            address: Address::repeat_byte(0xaa),
            topics,
            data: data.into(),
        }
    }

    fn address_topic(byte: u8) -> B256 {
        let mut t = [0u8; 32];
        t[12..].fill(byte);
        B256::from(t)
    }

    #[test]
    fn transfers_are_told_apart_by_their_topics() {
        let amount = U256::from(1_234_567u64);
        let erc20 = log(
            vec![TRANSFER_TOPIC, address_topic(1), address_topic(2)],
            amount.to_be_bytes::<32>().to_vec(),
        );
        let t = transfer(&erc20).expect("an ERC-20 transfer");
        assert_eq!(
            (t.standard, t.value, t.token_id),
            ("erc20", Some(amount), None)
        );
        assert_eq!(
            (t.from, t.to),
            (Address::repeat_byte(1), Address::repeat_byte(2))
        );

        let erc721 = log(
            vec![
                TRANSFER_TOPIC,
                address_topic(1),
                address_topic(2),
                B256::with_last_byte(9),
            ],
            Vec::new(),
        );
        let t = transfer(&erc721).expect("an ERC-721 transfer");
        assert_eq!(
            (t.standard, t.value, t.token_id),
            ("erc721", None, Some(U256::from(9)))
        );

        // Not standard: a topic that is no address, data of the wrong size, another event.
        let mut bad_topic = address_topic(1);
        bad_topic.0[0] = 1;
        for (topics, data) in [
            (
                vec![TRANSFER_TOPIC, bad_topic, address_topic(2)],
                vec![0; 32],
            ),
            (
                vec![TRANSFER_TOPIC, address_topic(1), address_topic(2)],
                vec![0; 31],
            ),
            (
                vec![
                    TRANSFER_TOPIC,
                    address_topic(1),
                    address_topic(2),
                    B256::ZERO,
                ],
                vec![0; 32],
            ),
            (
                vec![B256::ZERO, address_topic(1), address_topic(2)],
                vec![0; 32],
            ),
            (vec![TRANSFER_TOPIC], vec![]),
        ] {
            assert!(transfer(&log(topics, data)).is_none());
        }
    }

    #[test]
    fn amounts_past_76_digits_are_null_not_wrapped() {
        let limit = amount_limit();
        let array = amounts(
            [
                Some(U256::ZERO),
                Some(limit - U256::from(1)),
                Some(limit),
                Some(U256::MAX),
                None,
            ]
            .into_iter(),
        );
        let array = array
            .as_any()
            .downcast_ref::<Decimal256Array>()
            .expect("decimals");
        assert_eq!(array.value_as_string(0), "0");
        assert_eq!(array.value_as_string(1), "9".repeat(76));
        assert!(array.is_null(2) && array.is_null(3) && array.is_null(4));
    }
}
