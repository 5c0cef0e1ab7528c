//! The tables of Agora's chain: their columns, and the rows one committed block adds.
//!
//! Two kinds of table:
//! - **history** tables ([`HISTORY`]) grow with every block (blocks, transactions, events,
//!   transfers, jobs, checks, verdicts, disputes, slashes, subnet epochs, revealed weights): they
//!   are kept as Parquet segments by height range plus an in-memory tail ([`crate::lake`]);
//! - **state** tables ([`STATE`]) are the state at the queried height (accounts, providers,
//!   models, subnets, neurons), converted from one snapshot of the store when a query names them.

use agora_state::subnet::{Neuron, Subnet};
use agora_state::{Account, ModelInfo, Provider};
use agora_types::{
    Address, Amount, Block, Event, Hash, Message, ModelKind, Receipt, SignedTransaction, Verdict,
    Verification,
};
use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Decimal128Builder, Float64Builder, Int64Builder,
    StringBuilder, TimestampMillisecondBuilder, UInt16Builder, UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;

/// A column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Int64` (heights, nonces, counters): signed like SQL's integer literals, so a filter
    /// such as `height > 1000` compares without a cast and prunes segments' row groups.
    U64,
    /// `UInt32`.
    U32,
    /// `UInt16`.
    U16,
    /// `Utf8`: addresses and hashes as Agora prints them.
    Str,
    /// Base units of AGR (10⁻⁹ AGR), `Decimal128(38, 0)`: exact, whatever the amount.
    Amount,
    /// A block's time, `Timestamp(ms, UTC)`.
    Time,
    /// `Boolean`.
    Bool,
    /// `Float64`: a fraction between 0 and 1 (Yuma's outputs), for reading only.
    Frac,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::U64 => DataType::Int64,
            Kind::U32 => DataType::UInt32,
            Kind::U16 => DataType::UInt16,
            Kind::Str => DataType::Utf8,
            Kind::Amount => DataType::Decimal128(38, 0),
            Kind::Time => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Kind::Bool => DataType::Boolean,
            Kind::Frac => DataType::Float64,
        }
    }

    /// The type's name as the API shows it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::U64 => "int64",
            Kind::U32 => "uint32",
            Kind::U16 => "uint16",
            Kind::Str => "string",
            Kind::Amount => "decimal(38,0) base units",
            Kind::Time => "timestamp (UTC)",
            Kind::Bool => "boolean",
            Kind::Frac => "double",
        }
    }
}

/// One column: name, type, whether it may be null, what it holds.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Whether it may be null.
    pub nullable: bool,
    /// What it holds.
    pub doc: &'static str,
}

const fn col(name: &'static str, kind: Kind, doc: &'static str) -> Column {
    Column {
        name,
        kind,
        nullable: false,
        doc,
    }
}

const fn opt(name: &'static str, kind: Kind, doc: &'static str) -> Column {
    Column {
        name,
        kind,
        nullable: true,
        doc,
    }
}

/// A table: its name, what a row is, its columns.
#[derive(Clone, Copy, Debug)]
pub struct TableDef {
    /// The name SQL uses.
    pub name: &'static str,
    /// What one row is.
    pub doc: &'static str,
    /// Its columns, in order.
    pub columns: &'static [Column],
}

impl TableDef {
    /// Its Arrow schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.kind.data_type(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }
}

const HEIGHT: Column = col("height", Kind::U64, "block height");
const TIME: Column = col("time", Kind::Time, "the block's time");
const TX_HASH: Column = col("tx_hash", Kind::Str, "the transaction's hash");
const OPT_TX_HASH: Column = opt(
    "tx_hash",
    Kind::Str,
    "the transaction's hash (null: the block's own event)",
);
const JOB_ID: Column = col("job_id", Kind::Str, "the job's id");

/// The history tables, in the order of [`Rows`].
pub const HISTORY: &[TableDef] = &[
    TableDef {
        name: "blocks",
        doc: "one row per committed block",
        columns: &[
            HEIGHT,
            TIME,
            col("hash", Kind::Str, "the block's hash"),
            col("proposer", Kind::Str, "the validator that proposed it"),
            col("txs", Kind::U32, "transactions in it"),
            col("fees", Kind::Amount, "fees its transactions paid"),
        ],
    },
    TableDef {
        name: "transactions",
        doc: "one row per transaction, executed or failed",
        columns: &[
            HEIGHT,
            TIME,
            col("idx", Kind::U32, "its position in the block"),
            col("hash", Kind::Str, "its hash"),
            col("sender", Kind::Str, "the signing account"),
            col("nonce", Kind::U64, "the sender's nonce"),
            col(
                "kind",
                Kind::Str,
                "its first message's type (transfer, settle_jobs, …)",
            ),
            col("messages", Kind::U32, "messages in it"),
            col("fee", Kind::Amount, "the fee it offered"),
            col("fee_paid", Kind::Amount, "the fee it paid"),
            col("success", Kind::Bool, "whether its messages took effect"),
            opt("error_code", Kind::Str, "why it failed"),
            opt("error", Kind::Str, "the failure in words"),
        ],
    },
    TableDef {
        name: "events",
        doc: "one row per event, of transactions and of blocks themselves",
        columns: &[
            HEIGHT,
            TIME,
            opt(
                "tx_index",
                Kind::U32,
                "the transaction's position (null: the block's own event)",
            ),
            OPT_TX_HASH,
            col(
                "idx",
                Kind::U32,
                "its position among its transaction's (or block's) events",
            ),
            col(
                "kind",
                Kind::Str,
                "what happened (transfer, job_settled, …)",
            ),
            col(
                "attributes",
                Kind::Str,
                "its attributes, a JSON object of strings",
            ),
        ],
    },
    TableDef {
        name: "transfers",
        doc: "one row per transfer of AGR between accounts",
        columns: &[
            HEIGHT,
            TIME,
            OPT_TX_HASH,
            col("from", Kind::Str, "the paying account"),
            col("to", Kind::Str, "the receiving account"),
            col("amount", Kind::Amount, "base units"),
        ],
    },
    TableDef {
        name: "jobs",
        doc: "one row per inference job a provider settled (or tried to)",
        columns: &[
            HEIGHT,
            TIME,
            TX_HASH,
            JOB_ID,
            col("client", Kind::Str, "the paying client"),
            col("provider", Kind::Str, "the serving provider"),
            col("model", Kind::Str, "the model's id"),
            col(
                "verification",
                Kind::Str,
                "none, sampled or redundant:N (the level the client asked)",
            ),
            col("input_tokens", Kind::U32, "prompt tokens"),
            col("output_tokens", Kind::U32, "generated tokens"),
            col("fee", Kind::Amount, "the fee the receipt states"),
            col("max_fee", Kind::Amount, "the client's cap"),
            col("status", Kind::Str, "settled or rejected"),
            opt("reject_code", Kind::Str, "why it was rejected"),
            opt("reject_reason", Kind::Str, "the rejection in words"),
        ],
    },
    TableDef {
        name: "checks",
        doc: "one row per step of a job's verification: sampled, challenged, disputed, committee_drawn, decided",
        columns: &[
            HEIGHT,
            TIME,
            JOB_ID,
            col("event", Kind::Str, "the step"),
            opt("verifiers", Kind::Str, "drawn verifiers, comma-separated"),
            opt("outcome", Kind::Str, "the decision (decided only)"),
        ],
    },
    TableDef {
        name: "verdicts",
        doc: "one row per verdict a verifier posted",
        columns: &[
            HEIGHT,
            TIME,
            OPT_TX_HASH,
            JOB_ID,
            col("verifier", Kind::Str, "the verifier"),
            col("verdict", Kind::Str, "pass, or the fault found"),
        ],
    },
    TableDef {
        name: "disputes",
        doc: "one row per challenge by a client or dispute by a verifier",
        columns: &[
            HEIGHT,
            TIME,
            OPT_TX_HASH,
            JOB_ID,
            col(
                "kind",
                Kind::Str,
                "challenge (by the client) or dispute (by a verifier)",
            ),
            col("by", Kind::Str, "who opened it"),
            opt("bond", Kind::Amount, "the challenger's bond"),
        ],
    },
    TableDef {
        name: "slashes",
        doc: "one row per slashed provider or verifier",
        columns: &[
            HEIGHT,
            TIME,
            OPT_TX_HASH,
            opt("job_id", Kind::Str, "the job it was slashed for"),
            col("role", Kind::Str, "provider or verifier"),
            col("account", Kind::Str, "the slashed account"),
            col("amount", Kind::Amount, "base units taken"),
        ],
    },
    TableDef {
        name: "subnet_epochs",
        doc: "one row per epoch a subnet ran",
        columns: &[
            HEIGHT,
            TIME,
            col("netuid", Kind::U16, "the subnet"),
            col("epoch", Kind::U64, "its epoch number"),
            col("emission", Kind::Amount, "base units paid out"),
            col(
                "recycled",
                Kind::Amount,
                "base units nobody earned (burned)",
            ),
        ],
    },
    TableDef {
        name: "weights",
        doc: "one row per weight a validator revealed",
        columns: &[
            HEIGHT,
            TIME,
            TX_HASH,
            col("netuid", Kind::U16, "the subnet"),
            col("hotkey", Kind::Str, "the validator's hotkey"),
            col("uid", Kind::U16, "the weighted miner's UID"),
            col(
                "weight",
                Kind::U16,
                "the revealed weight (u16, before normalization)",
            ),
        ],
    },
];

/// The state tables.
pub const STATE: &[TableDef] = &[
    TableDef {
        name: "accounts",
        doc: "one row per account at the queried height",
        columns: &[
            col("address", Kind::Str, "the account"),
            col("balance", Kind::Amount, "spendable base units"),
            col("bonded", Kind::Amount, "validator stake"),
            col("unbonding", Kind::Amount, "stake on its way back"),
            col("nonce", Kind::U64, "transactions it has sent"),
        ],
    },
    TableDef {
        name: "providers",
        doc: "one row per registered compute provider",
        columns: &[
            col("address", Kind::Str, "the provider"),
            col("stake", Kind::Amount, "its locked stake"),
            col("endpoint", Kind::Str, "where it serves"),
            col("models", Kind::U32, "models it serves"),
            col("registered_height", Kind::U64, "when it registered"),
            col("jobs_settled", Kind::U64, "jobs it settled"),
            col("fees_settled", Kind::Amount, "fees it settled"),
            col("open_checks", Kind::U32, "checks of its jobs still open"),
            col("frauds", Kind::U64, "faults proven against it"),
        ],
    },
    TableDef {
        name: "models",
        doc: "one row per registered model",
        columns: &[
            col("id", Kind::Str, "SHA-256 of its weights"),
            col("name", Kind::Str, "its name"),
            col("kind", Kind::Str, "chat, embedding or audit"),
        ],
    },
    TableDef {
        name: "subnets",
        doc: "one row per subnet of the model market",
        columns: &[
            col("netuid", Kind::U16, "its id"),
            col("name", Kind::Str, "its name"),
            col("owner", Kind::Str, "its owner"),
            col(
                "task",
                Kind::Str,
                "chat, embeddings, forecast or a custom task",
            ),
            col("neurons", Kind::U16, "UIDs taken"),
            col("epochs", Kind::U64, "epochs run"),
            col("burn", Kind::Amount, "the registration burn"),
            col("created_at", Kind::U64, "its creation height"),
        ],
    },
    TableDef {
        name: "neurons",
        doc: "one row per neuron (a hotkey holding a UID) with what its last epoch said",
        columns: &[
            col("netuid", Kind::U16, "the subnet"),
            col("uid", Kind::U16, "its UID"),
            col("hotkey", Kind::Str, "its hotkey"),
            col("endpoint", Kind::Str, "where it serves"),
            col("registered_at", Kind::U64, "when it got the UID"),
            col("validator_permit", Kind::Bool, "whether it may validate"),
            col("stake", Kind::Amount, "stake counted in the last epoch"),
            col("rank", Kind::Frac, "0 to 1"),
            col("trust", Kind::Frac, "0 to 1"),
            col("consensus", Kind::Frac, "0 to 1"),
            col("incentive", Kind::Frac, "0 to 1"),
            col("dividends", Kind::Frac, "0 to 1"),
            col("validator_trust", Kind::Frac, "0 to 1"),
            col(
                "emission",
                Kind::Amount,
                "base units earned in the last epoch",
            ),
        ],
    },
];

/// A table by name.
pub fn table(name: &str) -> Option<&'static TableDef> {
    HISTORY.iter().chain(STATE).find(|t| t.name == name)
}

/// One cell.
#[derive(Clone, Debug)]
pub(crate) enum V {
    U64(u64),
    U32(u32),
    U16(u16),
    Str(String),
    Amount(Amount),
    Time(u64),
    Bool(bool),
    Frac(f64),
    Null,
}

impl From<Option<String>> for V {
    fn from(v: Option<String>) -> Self {
        v.map_or(V::Null, V::Str)
    }
}

/// Builds one table's batch, row by row.
pub(crate) struct TableBuilder {
    def: &'static TableDef,
    columns: Vec<Box<dyn ArrayBuilder>>,
    rows: usize,
}

impl std::fmt::Debug for TableBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableBuilder")
            .field("table", &self.def.name)
            .field("rows", &self.rows)
            .finish()
    }
}

impl TableBuilder {
    pub(crate) fn new(def: &'static TableDef) -> Self {
        let columns = def
            .columns
            .iter()
            .map(|c| -> Box<dyn ArrayBuilder> {
                match c.kind {
                    Kind::U64 => Box::new(Int64Builder::new()),
                    Kind::U32 => Box::new(UInt32Builder::new()),
                    Kind::U16 => Box::new(UInt16Builder::new()),
                    Kind::Str => Box::new(StringBuilder::new()),
                    Kind::Amount => Box::new(
                        Decimal128Builder::new()
                            .with_precision_and_scale(38, 0)
                            .expect("38 digits, scale 0, is a valid decimal"),
                    ),
                    Kind::Time => Box::new(TimestampMillisecondBuilder::new().with_timezone("UTC")),
                    Kind::Bool => Box::new(BooleanBuilder::new()),
                    Kind::Frac => Box::new(Float64Builder::new()),
                }
            })
            .collect();
        Self {
            def,
            columns,
            rows: 0,
        }
    }

    /// Adds a row: one value per column, of the column's kind (or null where it may be).
    ///
    /// # Panics
    /// If a value does not fit its column: a bug in this module's extraction, caught by its
    /// tests.
    pub(crate) fn push(&mut self, row: Vec<V>) {
        assert_eq!(
            row.len(),
            self.columns.len(),
            "{}: row width",
            self.def.name
        );
        for ((value, builder), column) in
            row.into_iter().zip(&mut self.columns).zip(self.def.columns)
        {
            let any = builder.as_any_mut();
            let ok = match (column.kind, value) {
                (Kind::U64, V::U64(v)) => down::<Int64Builder>(any)
                    .map(|b| b.append_value(i64::try_from(v).unwrap_or(i64::MAX))),
                (Kind::U32, V::U32(v)) => down::<UInt32Builder>(any).map(|b| b.append_value(v)),
                (Kind::U16, V::U16(v)) => down::<UInt16Builder>(any).map(|b| b.append_value(v)),
                (Kind::Str, V::Str(v)) => down::<StringBuilder>(any).map(|b| b.append_value(v)),
                (Kind::Amount, V::Amount(v)) => down::<Decimal128Builder>(any)
                    // An amount above i128::MAX cannot exist: the supply is far below it.
                    .map(|b| b.append_value(i128::try_from(v).unwrap_or(i128::MAX))),
                (Kind::Time, V::Time(v)) => down::<TimestampMillisecondBuilder>(any)
                    .map(|b| b.append_value(i64::try_from(v).unwrap_or(i64::MAX))),
                (Kind::Bool, V::Bool(v)) => down::<BooleanBuilder>(any).map(|b| b.append_value(v)),
                (Kind::Frac, V::Frac(v)) => down::<Float64Builder>(any).map(|b| b.append_value(v)),
                (kind, V::Null) if column.nullable => append_null(kind, any),
                _ => None,
            };
            assert!(
                ok.is_some(),
                "{}.{}: a value of the wrong kind",
                self.def.name,
                column.name
            );
        }
        self.rows += 1;
    }

    /// The rows added so far, as a batch; the builder starts empty again.
    pub(crate) fn finish(&mut self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(|b| b.finish()).collect();
        self.rows = 0;
        RecordBatch::try_new(self.def.schema(), arrays)
            .expect("columns built from the table's own schema")
    }
}

fn down<T: 'static>(any: &mut dyn std::any::Any) -> Option<&mut T> {
    any.downcast_mut::<T>()
}

fn append_null(kind: Kind, any: &mut dyn std::any::Any) -> Option<()> {
    match kind {
        Kind::U64 => down::<Int64Builder>(any).map(|b| b.append_null()),
        Kind::U32 => down::<UInt32Builder>(any).map(|b| b.append_null()),
        Kind::U16 => down::<UInt16Builder>(any).map(|b| b.append_null()),
        Kind::Str => down::<StringBuilder>(any).map(|b| b.append_null()),
        Kind::Amount => down::<Decimal128Builder>(any).map(|b| b.append_null()),
        Kind::Time => down::<TimestampMillisecondBuilder>(any).map(|b| b.append_null()),
        Kind::Bool => down::<BooleanBuilder>(any).map(|b| b.append_null()),
        Kind::Frac => down::<Float64Builder>(any).map(|b| b.append_null()),
    }
}

/// One committed block, as the tables need it.
#[derive(Clone, Copy, Debug)]
pub struct BlockData<'a> {
    /// Its height.
    pub height: u64,
    /// Its time.
    pub time_ms: u64,
    /// Its hash.
    pub hash: &'a Hash,
    /// Its proposer.
    pub proposer: &'a Address,
    /// Its transactions.
    pub txs: &'a [SignedTransaction],
    /// One per transaction.
    pub receipts: &'a [Receipt],
    /// The block's own events.
    pub block_events: &'a [Event],
}

impl<'a> BlockData<'a> {
    /// A block with its results.
    pub fn new(
        block: &'a Block,
        hash: &'a Hash,
        receipts: &'a [Receipt],
        block_events: &'a [Event],
    ) -> Self {
        Self {
            height: block.header.height,
            time_ms: block.header.time_ms,
            hash,
            proposer: &block.header.proposer,
            txs: &block.txs,
            receipts,
            block_events,
        }
    }
}

/// Builders for every history table, filled block by block.
#[derive(Debug)]
pub(crate) struct Rows {
    tables: Vec<TableBuilder>,
}

impl Default for Rows {
    fn default() -> Self {
        Self {
            tables: HISTORY.iter().map(TableBuilder::new).collect(),
        }
    }
}

fn at(name: &str) -> usize {
    HISTORY
        .iter()
        .position(|t| t.name == name)
        .expect("a history table of this module")
}

fn attr<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event
        .attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn attr_string(event: &Event, key: &str) -> String {
    attr(event, key).unwrap_or_default().to_string()
}

fn attr_amount(event: &Event, key: &str) -> Amount {
    attr(event, key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn verification(v: &Verification) -> String {
    match v {
        Verification::None => "none".into(),
        Verification::Sampled => "sampled".into(),
        Verification::Redundant(n) => format!("redundant:{n}"),
        Verification::Zk => "zk".into(),
    }
}

fn verdict(v: &Verdict) -> String {
    match v {
        Verdict::Pass => "pass".into(),
        Verdict::Fail { fault } => fault.code().into(),
    }
}

impl Rows {
    /// The batches of the rows added so far, one per history table (in [`HISTORY`]'s order);
    /// the builders start empty again.
    pub(crate) fn finish(&mut self) -> Vec<RecordBatch> {
        self.tables.iter_mut().map(TableBuilder::finish).collect()
    }

    fn push(&mut self, table: &str, row: Vec<V>) {
        self.tables[at(table)].push(row);
    }

    /// Adds the rows of one committed block.
    pub(crate) fn add_block(&mut self, block: &BlockData<'_>) {
        let BlockData {
            height,
            time_ms: time,
            hash,
            proposer,
            txs,
            receipts,
            block_events,
        } = *block;
        let fees = receipts
            .iter()
            .map(|r| r.fee_paid)
            .fold(0u128, u128::saturating_add);
        self.push(
            "blocks",
            vec![
                V::U64(height),
                V::Time(time),
                V::Str(hash.to_hex()),
                V::Str(proposer.to_string()),
                V::U32(u32::try_from(txs.len()).unwrap_or(u32::MAX)),
                V::Amount(fees),
            ],
        );
        for (i, tx) in txs.iter().enumerate() {
            let receipt = receipts.get(i);
            // The receipt names its transaction: no need to hash it again.
            let tx_hash = receipt.map_or_else(|| tx.hash(), |r| r.tx_hash).to_hex();
            let success = receipt.is_some_and(|r| r.success);
            let failure = receipt.and_then(|r| r.failure.as_ref());
            let sender = tx.tx.sender.address();
            self.push(
                "transactions",
                vec![
                    V::U64(height),
                    V::Time(time),
                    V::U32(u32::try_from(i).unwrap_or(u32::MAX)),
                    V::Str(tx_hash.clone()),
                    V::Str(sender.to_string()),
                    V::U64(tx.tx.nonce),
                    V::Str(
                        tx.tx
                            .messages
                            .first()
                            .map_or("none", Message::kind)
                            .to_string(),
                    ),
                    V::U32(u32::try_from(tx.tx.messages.len()).unwrap_or(u32::MAX)),
                    V::Amount(tx.tx.fee),
                    V::Amount(receipt.map_or(0, |r| r.fee_paid)),
                    V::Bool(success),
                    failure.map(|f| f.code.clone()).into(),
                    failure.map(|f| f.message.clone()).into(),
                ],
            );
            let events = receipt.map_or(&[][..], |r| &r.events[..]);
            self.add_events(height, time, Some((i, &tx_hash)), events);
            if success {
                self.add_messages(height, time, &tx_hash, &sender, &tx.tx.messages, events);
            }
        }
        self.add_events(height, time, None, block_events);
    }

    fn add_messages(
        &mut self,
        height: u64,
        time: u64,
        tx_hash: &str,
        sender: &Address,
        messages: &[Message],
        events: &[Event],
    ) {
        let mut outcomes = events
            .iter()
            .filter(|e| e.kind == "job_settled" || e.kind == "job_rejected");
        for message in messages {
            match message {
                Message::SettleJobs { jobs } => {
                    for job in jobs {
                        let request = &job.request.request;
                        let receipt = &job.receipt.receipt;
                        let id_hex = request.id().to_hex();
                        // Each job of a settlement gets exactly one outcome, in order.
                        let outcome = outcomes.next();
                        let rejected = outcome.filter(|e| e.kind == "job_rejected");
                        self.push(
                            "jobs",
                            vec![
                                V::U64(height),
                                V::Time(time),
                                V::Str(tx_hash.to_string()),
                                V::Str(id_hex),
                                V::Str(request.client.address().to_string()),
                                V::Str(request.provider.to_string()),
                                V::Str(request.model.to_hex()),
                                V::Str(verification(&request.params.verification)),
                                V::U32(receipt.input_tokens),
                                V::U32(receipt.output_tokens),
                                V::Amount(receipt.fee),
                                V::Amount(request.max_fee),
                                V::Str(
                                    if rejected.is_some() {
                                        "rejected"
                                    } else {
                                        "settled"
                                    }
                                    .into(),
                                ),
                                rejected.map(|e| attr_string(e, "code")).into(),
                                rejected.map(|e| attr_string(e, "reason")).into(),
                            ],
                        );
                    }
                }
                Message::RevealWeights {
                    netuid,
                    uids,
                    weights,
                    ..
                } => {
                    for (uid, weight) in uids.iter().zip(weights) {
                        self.push(
                            "weights",
                            vec![
                                V::U64(height),
                                V::Time(time),
                                V::Str(tx_hash.to_string()),
                                V::U16(*netuid),
                                V::Str(sender.to_string()),
                                V::U16(*uid),
                                V::U16(*weight),
                            ],
                        );
                    }
                }
                Message::PostVerdict { job_id, verdict: v } => {
                    self.push(
                        "verdicts",
                        vec![
                            V::U64(height),
                            V::Time(time),
                            V::Str(tx_hash.to_string()),
                            V::Str(job_id.to_hex()),
                            V::Str(sender.to_string()),
                            V::Str(verdict(v)),
                        ],
                    );
                }
                _ => {}
            }
        }
    }

    fn add_events(&mut self, height: u64, time: u64, tx: Option<(usize, &str)>, events: &[Event]) {
        let tx_hash = || V::from(tx.map(|(_, h)| h.to_string()));
        for (idx, event) in events.iter().enumerate() {
            let attributes: serde_json::Map<String, serde_json::Value> = event
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            self.push(
                "events",
                vec![
                    V::U64(height),
                    V::Time(time),
                    tx.map_or(V::Null, |(i, _)| {
                        V::U32(u32::try_from(i).unwrap_or(u32::MAX))
                    }),
                    tx_hash(),
                    V::U32(u32::try_from(idx).unwrap_or(u32::MAX)),
                    V::Str(event.kind.clone()),
                    V::Str(serde_json::Value::Object(attributes).to_string()),
                ],
            );
            let job = || V::Str(attr_string(event, "job_id"));
            match event.kind.as_str() {
                "transfer" => self.push(
                    "transfers",
                    vec![
                        V::U64(height),
                        V::Time(time),
                        tx_hash(),
                        V::Str(attr_string(event, "from")),
                        V::Str(attr_string(event, "to")),
                        V::Amount(attr_amount(event, "amount")),
                    ],
                ),
                "job_sampled" | "job_challenged" | "dispute_opened" | "committee_drawn"
                | "check_decided" => {
                    let step = match event.kind.as_str() {
                        "job_sampled" => "sampled",
                        "job_challenged" => "challenged",
                        "dispute_opened" => "disputed",
                        "committee_drawn" => "committee_drawn",
                        _ => "decided",
                    };
                    let verifiers = attr(event, "verifiers")
                        .or_else(|| attr(event, "committee"))
                        .map(str::to_string);
                    self.push(
                        "checks",
                        vec![
                            V::U64(height),
                            V::Time(time),
                            job(),
                            V::Str(step.into()),
                            verifiers.into(),
                            attr(event, "outcome").map(str::to_string).into(),
                        ],
                    );
                    if event.kind == "job_challenged" || event.kind == "dispute_opened" {
                        let (kind, by, bond) = if event.kind == "job_challenged" {
                            (
                                "challenge",
                                attr_string(event, "client"),
                                V::Amount(attr_amount(event, "bond")),
                            )
                        } else {
                            ("dispute", attr_string(event, "accuser"), V::Null)
                        };
                        self.push(
                            "disputes",
                            vec![
                                V::U64(height),
                                V::Time(time),
                                tx_hash(),
                                job(),
                                V::Str(kind.into()),
                                V::Str(by),
                                bond,
                            ],
                        );
                    }
                }
                "provider_slashed" | "verifier_slashed" => {
                    let (role, who) = if event.kind == "provider_slashed" {
                        ("provider", attr_string(event, "provider"))
                    } else {
                        ("verifier", attr_string(event, "verifier"))
                    };
                    self.push(
                        "slashes",
                        vec![
                            V::U64(height),
                            V::Time(time),
                            tx_hash(),
                            attr(event, "job_id").map(str::to_string).into(),
                            V::Str(role.into()),
                            V::Str(who),
                            V::Amount(attr_amount(event, "slashed")),
                        ],
                    );
                }
                "subnet_epoch" => self.push(
                    "subnet_epochs",
                    vec![
                        V::U64(height),
                        V::Time(time),
                        V::U16(
                            attr(event, "netuid")
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0),
                        ),
                        V::U64(
                            attr(event, "epoch")
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0),
                        ),
                        V::Amount(attr_amount(event, "emission")),
                        V::Amount(attr_amount(event, "recycled")),
                    ],
                ),
                _ => {}
            }
        }
    }
}

/// Converts a fraction stored by an epoch ([`agora_state::yuma::Fx`] as `u64`) for reading.
fn frac(x: u64) -> V {
    // Display only: the state keeps the exact fixed-point value.
    #[allow(clippy::cast_precision_loss)]
    V::Frac(x as f64 / agora_state::yuma::ONE as f64)
}

/// One row of `accounts`.
pub(crate) fn account_row(address: &Address, a: &Account) -> Vec<V> {
    vec![
        V::Str(address.to_string()),
        V::Amount(a.balance),
        V::Amount(a.bonded),
        V::Amount(a.unbonding),
        V::U64(a.nonce),
    ]
}

/// One row of `providers`.
pub(crate) fn provider_row(address: &Address, p: &Provider) -> Vec<V> {
    vec![
        V::Str(address.to_string()),
        V::Amount(p.stake),
        V::Str(p.info.endpoint.clone()),
        V::U32(u32::try_from(p.info.models.len()).unwrap_or(u32::MAX)),
        V::U64(p.registered_height),
        V::U64(p.jobs_settled),
        V::Amount(p.fees_settled),
        V::U32(p.open_checks),
        V::U64(p.frauds),
    ]
}

/// One row of `models`.
pub(crate) fn model_row(id: &Hash, m: &ModelInfo) -> Vec<V> {
    let kind = match m.kind {
        ModelKind::Chat => "chat",
        ModelKind::Embedding => "embedding",
        ModelKind::Audit => "audit",
        ModelKind::Analytics => "analytics",
        ModelKind::Provable => "provable",
    };
    vec![
        V::Str(id.to_hex()),
        V::Str(m.name.clone()),
        V::Str(kind.into()),
    ]
}

/// One row of `subnets`.
pub(crate) fn subnet_row(s: &Subnet) -> Vec<V> {
    vec![
        V::U16(s.netuid),
        V::Str(s.name.clone()),
        V::Str(s.owner.to_string()),
        V::Str(s.task.label().to_string()),
        V::U16(s.n),
        V::U64(s.epochs),
        V::Amount(s.burn),
        V::U64(s.created_at),
    ]
}

/// One row of `neurons`.
pub(crate) fn neuron_row(netuid: u16, uid: u16, n: &Neuron) -> Vec<V> {
    vec![
        V::U16(netuid),
        V::U16(uid),
        V::Str(n.hotkey.to_string()),
        V::Str(n.endpoint.clone()),
        V::U64(n.registered_at),
        V::Bool(n.validator_permit),
        V::Amount(n.stake),
        frac(n.rank),
        frac(n.trust),
        frac(n.consensus),
        frac(n.incentive),
        frac(n.dividends),
        frac(n.validator_trust),
        V::Amount(n.emission),
    ]
}
