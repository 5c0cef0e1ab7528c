//! Documents for the chain's objects (accounts, transactions, providers, models, jobs, subnets
//! and neurons), kept current as blocks commit.
//!
//! A block gives one document per transaction, and names the objects its transactions touched;
//! each of those is rendered again from the node's state. The follower writes a run of blocks'
//! documents and its position (height and hash of the last block) in one write of the record, so
//! after a crash it goes on from the last run it wrote; a store whose block at that height has
//! another hash (deleted, restored from an older copy) makes it forget the chain's documents and
//! start again from the genesis.

use crate::{Batch, Doc, Error, Kind, SearchIndex};
use agora_api::LocalNode;
use agora_chain::Node;
use agora_node_api::{Chain, ClientError};
use agora_store::Snapshot;
use agora_types::{Address, Hash, Message, Receipt, SignedTransaction, format_amount};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// The follower's position: the last block indexed, its height (8 bytes LE) then its hash.
const POSITION: &str = "chain/position";
/// Blocks read per write, at most.
const BLOCKS_PER_WRITE: u64 = 64;
/// Documents per write, about (a block is never split).
const DOCS_PER_WRITE: usize = 256;
/// Accounts of the genesis indexed, at most.
const GENESIS_ACCOUNTS: usize = 10_000;
/// The id prefixes of chain documents (published audit reports included: they stand for jobs
/// of the chain).
const CHAIN_PREFIXES: [&str; 8] = [
    "audit:",
    "account:",
    "tx:",
    "provider:",
    "model:",
    "job:",
    "subnet:",
    "neuron:",
];

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(format!("chain: {e}"))
}

fn client_err(e: ClientError) -> Error {
    Error::Store(format!("chain: {e}"))
}

/// One object a block changed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Touched {
    Account(Address),
    Provider(Address),
    Model(Hash),
    Job(Hash),
    /// Every subnet (a creation does not name its netuid).
    Subnets,
    Neuron(u16, Address),
}

fn amount(a: u128) -> String {
    format_amount(a).replace("AGR", " AGR")
}

/// Up to `n` characters of `s`, with an ellipsis when cut.
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// A sentence about one message, and the objects it touches.
fn describe(m: &Message, sender: &Address, out: &mut BTreeSet<Touched>) -> (String, String) {
    match m {
        Message::Transfer { to, amount: a } => {
            out.insert(Touched::Account(*to));
            (
                format!("Transfer of {} to {to}", amount(*a)),
                format!("Transfer: sent {} from {sender} to {to}.", amount(*a)),
            )
        }
        Message::Bond { amount: a } => (
            format!("Bond {} as stake", amount(*a)),
            format!(
                "Bond: {sender} staked {} (locked as validator stake).",
                amount(*a)
            ),
        ),
        Message::Unbond { amount: a } => (
            format!("Unbond {}", amount(*a)),
            format!(
                "Unbond: {sender} started unlocking {} of stake.",
                amount(*a)
            ),
        ),
        Message::RegisterProvider { stake, info } => {
            out.insert(Touched::Provider(*sender));
            info.models.iter().for_each(|m| {
                out.insert(Touched::Model(*m));
            });
            (
                "Compute provider registered".into(),
                format!(
                    "Register provider: {sender} became a compute provider selling inference at {}, staking {}, serving {} models.",
                    info.endpoint,
                    amount(*stake),
                    info.models.len()
                ),
            )
        }
        Message::UpdateProvider { info } => {
            out.insert(Touched::Provider(*sender));
            (
                "Compute provider updated".into(),
                format!(
                    "Update provider: {sender} changed its models, prices or endpoint ({}).",
                    info.endpoint
                ),
            )
        }
        Message::UnregisterProvider => {
            out.insert(Touched::Provider(*sender));
            (
                "Compute provider retired".into(),
                format!(
                    "Unregister provider: {sender} stopped selling compute; its stake unbonds."
                ),
            )
        }
        Message::RegisterModel { id, name, kind } => {
            out.insert(Touched::Model(*id));
            (
                format!("Model {name} registered"),
                format!(
                    "Register model: {name}, a {} model with weights hash {id}, added to the registry.",
                    model_kind(kind)
                ),
            )
        }
        Message::PublishModelSource { id, source } => {
            out.insert(Touched::Model(*id));
            (
                format!("Source of model {} published", short(&id.to_hex(), 12)),
                format!(
                    "Publish model source: the weights of model {id} ({} quantization) are in the \
                     package {}=={}, file {}.",
                    source.quantization, source.package, source.version, source.file
                ),
            )
        }
        Message::EscrowDeposit { amount: a } => (
            format!("Escrow deposit of {}", amount(*a)),
            format!(
                "Escrow deposit: {sender} put {} in escrow to pay for inference jobs.",
                amount(*a)
            ),
        ),
        Message::EscrowWithdraw { amount: a } => (
            format!("Escrow withdrawal of {}", amount(*a)),
            format!(
                "Escrow withdraw: {sender} started taking {} out of its escrow.",
                amount(*a)
            ),
        ),
        Message::SettleJobs { jobs } => {
            let mut clients = BTreeSet::new();
            for j in jobs {
                out.insert(Touched::Job(j.request.request.id()));
                clients.insert(j.request.request.client.address());
            }
            out.insert(Touched::Provider(*sender));
            for c in &clients {
                out.insert(Touched::Account(*c));
            }
            (
                format!("Settlement of {} inference jobs", jobs.len()),
                format!(
                    "Settle jobs: provider {sender} settled {} paid inference jobs for {} clients.",
                    jobs.len(),
                    clients.len()
                ),
            )
        }
        Message::RegisterVerifier { stake, info } => (
            "Verifier registered".into(),
            format!(
                "Register verifier: {sender} staked {} to re-execute and check jobs of {} models.",
                amount(*stake),
                info.models.len()
            ),
        ),
        Message::UnregisterVerifier => (
            "Verifier retired".into(),
            format!("Unregister verifier: {sender} stopped checking jobs."),
        ),
        Message::RevealJob {
            job_id,
            part,
            parts,
            ..
        } => (
            format!("Reveal of job {}", short(&job_id.to_hex(), 12)),
            format!(
                "Reveal job: part {} of {parts} of job {job_id}, sealed to its verifier.",
                u32::from(*part) + 1
            ),
        ),
        Message::ChallengeJob { job_id } => {
            out.insert(Touched::Job(*job_id));
            (
                format!("Challenge of job {}", short(&job_id.to_hex(), 12)),
                format!(
                    "Challenge job: the client {sender} disputed job {job_id}; a committee re-checks it."
                ),
            )
        }
        Message::PostVerdict { job_id, verdict } => {
            out.insert(Touched::Job(*job_id));
            let v = match verdict {
                agora_types::Verdict::Pass => "pass".to_string(),
                agora_types::Verdict::Fail { fault } => format!("fail ({})", fault.code()),
            };
            (
                format!("Verdict {v} on job {}", short(&job_id.to_hex(), 12)),
                format!("Post verdict: verifier {sender} re-executed job {job_id} and found {v}."),
            )
        }
        Message::CreateSubnet { name, task, .. } => {
            out.insert(Touched::Subnets);
            (
                format!("Subnet {name} created"),
                format!(
                    "Create subnet: {sender} created the subnet {name} where miners compete at {} for rewards.",
                    task.label()
                ),
            )
        }
        Message::SetSubnetParam { netuid, param } => {
            out.insert(Touched::Subnets);
            (
                format!("Subnet {netuid} parameter changed"),
                format!("Set subnet param: the owner of subnet {netuid} set {param:?}."),
            )
        }
        Message::RegisterNeuron {
            netuid, endpoint, ..
        } => {
            out.insert(Touched::Subnets);
            out.insert(Touched::Neuron(*netuid, *sender));
            (
                format!("Neuron registered on subnet {netuid}"),
                format!(
                    "Register neuron: {sender} joined subnet {netuid} as a miner or validator serving at {endpoint}."
                ),
            )
        }
        Message::AddSubnetStake {
            netuid,
            hotkey,
            amount: a,
        } => {
            out.insert(Touched::Neuron(*netuid, *hotkey));
            out.insert(Touched::Subnets);
            (
                format!("Stake of {} on subnet {netuid}", amount(*a)),
                format!(
                    "Add subnet stake: {sender} delegated {} to neuron {hotkey} on subnet {netuid}.",
                    amount(*a)
                ),
            )
        }
        Message::RemoveSubnetStake {
            netuid,
            hotkey,
            amount: a,
        } => {
            out.insert(Touched::Neuron(*netuid, *hotkey));
            out.insert(Touched::Subnets);
            (
                format!("Unstake of {} on subnet {netuid}", amount(*a)),
                format!(
                    "Remove subnet stake: {sender} took back {} from neuron {hotkey} on subnet {netuid}.",
                    amount(*a)
                ),
            )
        }
        Message::CommitWeights { netuid, .. } => (
            format!("Weights committed on subnet {netuid}"),
            format!(
                "Commit weights: validator {sender} committed its scores of subnet {netuid}'s miners."
            ),
        ),
        Message::RevealWeights { netuid, uids, .. } => (
            format!("Weights revealed on subnet {netuid}"),
            format!(
                "Reveal weights: validator {sender} revealed scores of {} miners of subnet {netuid}.",
                uids.len()
            ),
        ),
        Message::CommitPrediction { netuid, .. } => (
            format!("Prediction committed on subnet {netuid}"),
            format!("Commit prediction: miner {sender} sealed a forecast on subnet {netuid}."),
        ),
        Message::RevealPrediction { netuid, value, .. } => (
            format!("Prediction revealed on subnet {netuid}"),
            format!(
                "Reveal prediction: miner {sender} revealed the forecast {value} on subnet {netuid}."
            ),
        ),
        Message::CreateBounty { spec } => (
            format!("Data bounty posted: {}", short(&spec.description, 60)),
            format!(
                "Create bounty: {sender} posted a data bounty with a budget of {}, paying {} per accepted item until height {}: {}",
                amount(spec.budget),
                amount(spec.reward_per_item),
                spec.deadline,
                short(&spec.description, 400)
            ),
        ),
        Message::SubmitItem { bounty, hash, size } => (
            format!("Item submitted to bounty {bounty}"),
            format!(
                "Submit item: {sender} submitted an item of {size} bytes (content hash {hash}) to data bounty {bounty}."
            ),
        ),
        Message::ScreenItem {
            bounty,
            item,
            verdict,
        } => (
            format!("Item {bounty}/{item} pre-screened"),
            format!(
                "Screen item: screener {sender} {} item {item} of data bounty {bounty}.",
                match verdict {
                    agora_types::ScreenVerdict::Pass => "passed".to_string(),
                    agora_types::ScreenVerdict::Reject { reason, .. } =>
                        format!("rejected ({})", reason.code()),
                }
            ),
        ),
        Message::AppealItem { bounty, item } => (
            format!("Item {bounty}/{item} appealed"),
            format!(
                "Appeal item: {sender} asked reviewers to judge its item {item} of data bounty {bounty}, which the screener rejected."
            ),
        ),
        Message::CommitVote { bounty, item, .. } => (
            format!("Vote committed on item {bounty}/{item}"),
            format!(
                "Commit vote: reviewer {sender} sealed its vote on item {item} of data bounty {bounty}."
            ),
        ),
        Message::RevealVote {
            bounty,
            item,
            accept,
            ..
        } => (
            format!("Vote revealed on item {bounty}/{item}"),
            format!(
                "Reveal vote: reviewer {sender} voted to {} item {item} of data bounty {bounty}.",
                if *accept { "accept" } else { "reject" }
            ),
        ),
        Message::JoinReviewers { amount: a } => (
            format!("Review stake {}", amount(*a)),
            format!(
                "Join reviewers: {sender} staked {} to review data-market items.",
                amount(*a)
            ),
        ),
        Message::LeaveReviewers { amount: a } => (
            format!("Review stake withdrawn {}", amount(*a)),
            format!(
                "Leave reviewers: {sender} took back {} of review stake; it unbonds.",
                amount(*a)
            ),
        ),
        Message::CiteDatasets { target, datasets } => {
            if let agora_types::CiteTarget::Model { id } = target {
                out.insert(Touched::Model(*id));
            }
            (
                format!("{} datasets cited", datasets.len()),
                format!(
                    "Cite datasets: {sender} cited the datasets {} for its {}.",
                    datasets
                        .iter()
                        .map(|d| d.to_hex())
                        .collect::<Vec<_>>()
                        .join(", "),
                    match target {
                        agora_types::CiteTarget::Model { id } => format!("model {id}"),
                        agora_types::CiteTarget::Neuron { netuid } =>
                            format!("neuron on subnet {netuid}"),
                        agora_types::CiteTarget::Job { id } => format!("job {id}"),
                    }
                ),
            )
        }
        Message::ClaimRoyalties { dataset } => (
            "Dataset royalties claimed".into(),
            format!(
                "Claim royalties: contributor {sender} claimed its share of the royalties paid to dataset {dataset}."
            ),
        ),
        Message::RegisterZkModel { name, .. } => (
            format!("Provable model {} registered", short(name, 40)),
            format!(
                "Register provable model: {sender} registered {name:?}, a model whose results are proved in zero knowledge, by its verifying key."
            ),
        ),
        Message::CertifyZkInput { subject, .. } => {
            out.insert(Touched::Account(*subject));
            (
                "Input commitment certified".into(),
                format!(
                    "Certify zk input: {sender} certified the commitment to {subject}'s private input."
                ),
            )
        }
        Message::ZkAttest { claim, .. } => {
            out.insert(Touched::Model(claim.model));
            (
                "Zero-knowledge attestation".into(),
                format!(
                    "Zk attestation: {sender} proved that its private input gives a score {} {} with model {}.",
                    if claim.below { "below" } else { "at least" },
                    claim.threshold,
                    claim.model
                ),
            )
        }
        Message::SettleZkJob { job, .. } => {
            out.insert(Touched::Job(job.request.request.id()));
            out.insert(Touched::Model(job.request.request.model));
            (
                "Proved job settled".into(),
                format!(
                    "Settle zk job: {sender} settled a job with a zero-knowledge proof the chain verified."
                ),
            )
        }
    }
}

/// What a message means, without its particulars (accounts, amounts, ids): the text a
/// transaction's vector is computed from. Transactions of one kind share it, so indexing them
/// costs one model pass for all (the words of each stay in the full-text index).
fn gist(m: &Message) -> &'static str {
    match m {
        Message::Transfer { .. } => "Transfer: an account sent AGR tokens to another account.",
        Message::Bond { .. } => "Bond: an account staked AGR tokens with a validator.",
        Message::Unbond { .. } => {
            "Unbond: an account took back AGR tokens staked with a validator."
        }
        Message::RegisterProvider { .. } => {
            "Register provider: an account staked tokens to sell AI inference on the compute market."
        }
        Message::UpdateProvider { .. } => {
            "Update provider: a compute provider changed its models, prices or endpoint."
        }
        Message::UnregisterProvider => {
            "Unregister provider: a compute provider left the market and takes back its stake."
        }
        Message::RegisterModel { .. } => "Register model: a model joined the market's list.",
        Message::PublishModelSource { .. } => {
            "Publish model source: a registered model's weights can now be fetched from a pinned package."
        }
        Message::EscrowDeposit { .. } => {
            "Escrow deposit: a client put tokens in escrow to pay for inference jobs."
        }
        Message::EscrowWithdraw { .. } => {
            "Escrow withdrawal: a client took tokens back out of its escrow."
        }
        Message::SettleJobs { .. } => {
            "Settlement of inference jobs: a provider settled paid jobs, paid from clients' escrow."
        }
        Message::RegisterVerifier { .. } => {
            "Register verifier: an account staked tokens to re-execute and check inference jobs."
        }
        Message::UnregisterVerifier => "Unregister verifier: a verifier stopped checking jobs.",
        Message::RevealJob { .. } => {
            "Reveal job: a provider revealed a job's input and output to its verifiers."
        }
        Message::ChallengeJob { .. } => {
            "Challenge job: a client disputed an inference job's result."
        }
        Message::PostVerdict { .. } => {
            "Post verdict: a verifier re-executed an inference job and said whether it holds."
        }
        Message::CreateSubnet { .. } => {
            "Create subnet: a new model market where miners compete for rewards scored by validators."
        }
        Message::SetSubnetParam { .. } => {
            "Set subnet parameter: a subnet's owner changed its settings."
        }
        Message::RegisterNeuron { .. } => "Register neuron: a miner or validator joined a subnet.",
        Message::AddSubnetStake { .. } => {
            "Add subnet stake: an account delegated tokens to a neuron of a subnet."
        }
        Message::RemoveSubnetStake { .. } => {
            "Remove subnet stake: an account took back tokens delegated to a neuron."
        }
        Message::CommitWeights { .. } => {
            "Commit weights: a subnet validator sealed its scores of the miners."
        }
        Message::RevealWeights { .. } => {
            "Reveal weights: a subnet validator revealed its scores of the miners."
        }
        Message::CommitPrediction { .. } => "Commit prediction: a miner sealed a forecast.",
        Message::RevealPrediction { .. } => "Reveal prediction: a miner revealed its forecast.",
        Message::CreateBounty { .. } => {
            "Create bounty: a requester posted a paid data-collection bounty with a budget in escrow."
        }
        Message::SubmitItem { .. } => {
            "Submit item: a contributor submitted a data item to a bounty."
        }
        Message::ScreenItem { .. } => {
            "Screen item: a screener pre-screened a submitted data item (schema, duplicates, spam)."
        }
        Message::AppealItem { .. } => {
            "Appeal item: a contributor asked reviewers to judge a data item the screener rejected."
        }
        Message::CommitVote { .. } => "Commit vote: a reviewer sealed its vote on a data item.",
        Message::RevealVote { .. } => "Reveal vote: a reviewer revealed its vote on a data item.",
        Message::JoinReviewers { .. } => {
            "Join reviewers: an account staked tokens to review data-market items."
        }
        Message::LeaveReviewers { .. } => "Leave reviewers: a reviewer took back review stake.",
        Message::CiteDatasets { .. } => {
            "Cite datasets: a model, neuron or job cited the datasets it was built or evaluated with."
        }
        Message::ClaimRoyalties { .. } => {
            "Claim royalties: a data contributor claimed royalties its dataset earned."
        }
        Message::RegisterZkModel { .. } => {
            "Register provable model: a small model whose results are proved in zero knowledge joined the market."
        }
        Message::CertifyZkInput { .. } => {
            "Certify zk input: an account vouched for the commitment to another's private input."
        }
        Message::ZkAttest { .. } => {
            "Zero-knowledge attestation: an account proved a score of its private data without revealing it."
        }
        Message::SettleZkJob { .. } => {
            "Settlement of a proved job: an inference job settled with a zero-knowledge proof the chain verified."
        }
    }
}

fn model_kind(k: &agora_types::ModelKind) -> &'static str {
    match k {
        agora_types::ModelKind::Chat => "chat (text generation)",
        agora_types::ModelKind::Embedding => "embedding",
        agora_types::ModelKind::Audit => "smart-contract audit",
        agora_types::ModelKind::Analytics => "analytics (SQL and forecasts)",
        agora_types::ModelKind::Provable => "provable (zero-knowledge)",
    }
}

/// The addresses a message names besides its sender.
fn message_addresses(m: &Message) -> Vec<Address> {
    match m {
        Message::Transfer { to, .. } => vec![*to],
        Message::RevealJob { verifier, .. } => vec![*verifier],
        Message::AddSubnetStake { hotkey, .. } | Message::RemoveSubnetStake { hotkey, .. } => {
            vec![*hotkey]
        }
        Message::SettleJobs { jobs } => jobs
            .iter()
            .map(|j| j.request.request.client.address())
            .collect(),
        _ => Vec::new(),
    }
}

fn message_subnet(m: &Message) -> Option<u16> {
    match m {
        Message::SetSubnetParam { netuid, .. }
        | Message::RegisterNeuron { netuid, .. }
        | Message::AddSubnetStake { netuid, .. }
        | Message::RemoveSubnetStake { netuid, .. }
        | Message::CommitWeights { netuid, .. }
        | Message::RevealWeights { netuid, .. }
        | Message::CommitPrediction { netuid, .. }
        | Message::RevealPrediction { netuid, .. } => Some(*netuid),
        _ => None,
    }
}

fn time(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The document of one transaction, and the objects it touched (when it succeeded).
fn tx_doc(
    tx: &SignedTransaction,
    receipt: Option<&Receipt>,
    height: u64,
    time_ms: u64,
    touched: &mut BTreeSet<Touched>,
) -> Doc {
    let hash = tx.hash();
    let sender = tx.tx.sender_address();
    let mut mine = BTreeSet::new();
    mine.insert(Touched::Account(sender));
    let mut titles = Vec::new();
    let mut body = Vec::new();
    let mut gists: Vec<&str> = Vec::new();
    let mut addresses = vec![sender];
    let mut subnet = None;
    for m in &tx.tx.messages {
        if !gists.contains(&gist(m)) {
            gists.push(gist(m));
        }
        let (t, b) = describe(m, &sender, &mut mine);
        titles.push(t);
        body.push(b);
        addresses.extend(message_addresses(m));
        subnet = subnet.or(message_subnet(m));
    }
    let ok = receipt.is_some_and(|r| r.success);
    match receipt.and_then(|r| r.failure.as_ref()) {
        Some(f) => body.push(format!(
            "Failed ({}): {}. Nothing but the fee was charged.",
            f.code, f.message
        )),
        None if ok => body.push("Succeeded.".into()),
        None => {}
    }
    body.push(format!(
        "Transaction {hash} sent by {sender} in block {height}, fee {}.",
        amount(receipt.map_or(0, |r| r.fee_paid))
    ));
    if ok {
        touched.extend(mine);
    } else {
        // A failed transaction still paid its fee.
        touched.insert(Touched::Account(sender));
    }
    let mut title = match titles.len() {
        0 => "Empty transaction".to_string(),
        1 => titles.remove(0),
        n => format!("{} (+{} more)", titles.remove(0), n - 1),
    };
    if !ok {
        title = format!("{title}, failed");
        gists.push("The transaction failed.");
    }
    addresses.sort();
    addresses.dedup();
    // The sender first, then as many others as a document keeps (a transaction may name more).
    addresses.retain(|a| *a != sender);
    addresses.insert(0, sender);
    addresses.truncate(crate::doc::MAX_ADDRESSES);
    Doc {
        about: (!gists.is_empty()).then(|| gists.join(" ")),
        time_ms: time(time_ms),
        addresses: addresses.iter().map(Address::to_string).collect(),
        subnet,
        keys: vec![hash.to_hex()],
        url: Some(format!("/txs/{hash}")),
        ..Doc::new(
            format!("tx:{hash}"),
            Kind::Transaction,
            title,
            body.join(" "),
        )
    }
}

/// Renders touched objects from the node's current state.
struct Render<'a> {
    local: LocalNode,
    snap: &'a Snapshot,
    time_ms: i64,
    validators: BTreeSet<Address>,
}

impl Render<'_> {
    fn model_name(&self, id: &Hash) -> Result<String, Error> {
        Ok(self
            .local
            .model(id)
            .map_err(client_err)?
            .map_or_else(|| short(&id.to_hex(), 12), |m| m.name))
    }

    fn account(&self, a: &Address) -> Result<Option<Doc>, Error> {
        let Some(acct) = agora_state::read_account(self.snap, a).map_err(store_err)? else {
            return Ok(None);
        };
        let mut roles = Vec::new();
        if self.validators.contains(a) {
            roles.push("a validator of the chain".to_string());
        }
        if let Some(p) = self.local.provider(a).map_err(client_err)? {
            roles.push(if p.provider.active() {
                "a compute provider selling inference".to_string()
            } else {
                "a retired compute provider".to_string()
            });
        }
        if self.local.verifier_key(a).map_err(client_err)?.is_some() {
            roles.push("a verifier that re-executes jobs".to_string());
        }
        let mut body = format!(
            "Account {a}: balance {}, staked {}, unbonding {}; it has sent {} transactions.",
            amount(acct.balance),
            amount(acct.bonded),
            amount(acct.unbonding),
            acct.nonce
        );
        let about = if roles.is_empty() {
            format!("Account {a}: an account of the Agora chain that holds and sends AGR.")
        } else {
            format!("Account {a}: {}.", roles.join(", "))
        };
        if !roles.is_empty() {
            body.push_str(&format!(" It is {}.", roles.join(", ")));
        }
        Ok(Some(Doc {
            about: Some(about),
            time_ms: self.time_ms,
            addresses: vec![a.to_string()],
            keys: vec![a.to_string()],
            url: Some(format!("/accounts/{a}")),
            ..Doc::new(
                format!("account:{a}"),
                Kind::Account,
                format!("Account {a}"),
                body,
            )
        }))
    }

    fn provider(&self, a: &Address) -> Result<Option<Doc>, Error> {
        let Some(entry) = self.local.provider(a).map_err(client_err)? else {
            return Ok(None);
        };
        let p = &entry.provider;
        let mut names = Vec::new();
        for m in &p.info.models {
            names.push(self.model_name(m)?);
        }
        let state = if p.active() { "active" } else { "retired" };
        let body = format!(
            "Compute provider {a} ({state}) sells AI inference at {} serving the models {}. Prices: {} per 1,000 input tokens, {} per 1,000 output tokens. Stake {}; {} jobs settled for {} in fees; {} frauds proven against it.",
            p.info.endpoint,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            },
            amount(p.info.price_input_per_1k),
            amount(p.info.price_output_per_1k),
            amount(p.stake),
            p.jobs_settled,
            amount(p.fees_settled),
            p.frauds
        );
        let models = if names.is_empty() {
            "no models".to_string()
        } else {
            names.join(", ")
        };
        Ok(Some(Doc {
            about: Some(format!(
                "Compute provider {a} ({state}) sells AI inference serving {models}."
            )),
            time_ms: self.time_ms,
            addresses: vec![a.to_string()],
            keys: vec![a.to_string()],
            url: Some(format!("/market/providers/{a}")),
            ..Doc::new(
                format!("provider:{a}"),
                Kind::Provider,
                format!("Provider {} ({state})", short(&a.to_string(), 18)),
                body,
            )
        }))
    }

    fn model(&self, id: &Hash) -> Result<Option<Doc>, Error> {
        let Some(m) = self.local.model(id).map_err(client_err)? else {
            return Ok(None);
        };
        let serving = self
            .local
            .providers()
            .map_err(client_err)?
            .into_iter()
            .filter(|p| p.provider.active() && p.provider.info.models.contains(id))
            .count();
        Ok(Some(Doc {
            time_ms: self.time_ms,
            keys: vec![id.to_hex()],
            url: Some("/market/models".into()),
            ..Doc::new(
                format!("model:{id}"),
                Kind::Model,
                format!("Model {}", m.name),
                format!(
                    "{} is a {} model in Agora's registry, weights hash {id}, served by {serving} providers.",
                    m.name,
                    model_kind(&m.kind)
                ),
            )
        }))
    }

    /// The job's document, and whether its check found it wrong (a published report of it
    /// is then withdrawn).
    fn job(&self, id: &Hash) -> Result<(Option<Doc>, bool), Error> {
        let Some(j) = self.local.job(id).map_err(client_err)? else {
            return Ok((None, false));
        };
        let fraud = crate::reports::found_wrong(&j);
        let r = &j.job;
        let model = self.model_name(&r.model)?;
        let check = match &j.check {
            Some(c) => format!(" Verification: {:?}.", c.outcome),
            None => String::new(),
        };
        let doc = Doc {
            about: Some(format!(
                "Inference job on {model}: client {} paid provider {} to run {model}.",
                r.client, r.provider
            )),
            time_ms: self.time_ms,
            addresses: vec![r.client.to_string(), r.provider.to_string()],
            keys: vec![id.to_hex()],
            url: Some(format!("/market/jobs/{id}")),
            ..Doc::new(
                format!("job:{id}"),
                Kind::Job,
                format!("Inference job on {model} ({})", j.state),
                format!(
                    "Inference job {id}: client {} paid provider {} {} to run {model} ({} input tokens, {} output tokens), settled at block {}, state {}.{check}",
                    r.client,
                    r.provider,
                    amount(r.fee),
                    r.input_tokens,
                    r.output_tokens,
                    r.settled_height,
                    j.state
                ),
            )
        };
        Ok((Some(doc), fraud))
    }

    fn subnets(&self) -> Result<Vec<Doc>, Error> {
        let all =
            agora_api::subnets::views::subnets(self.snap).map_err(|e| store_err(e.message))?;
        Ok(all
            .subnets
            .into_iter()
            .map(|s| Doc {
                about: Some(format!(
                    "Subnet {} \"{}\" is a model market where miners compete at {} and validators score them for rewards; owner {}.",
                    s.netuid,
                    s.name,
                    s.task.label(),
                    s.owner
                )),
                time_ms: self.time_ms,
                addresses: vec![s.owner.to_string()],
                subnet: Some(s.netuid),
                url: Some(format!("/subnets/{}", s.netuid)),
                ..Doc::new(
                    format!("subnet:{}", s.netuid),
                    Kind::Subnet,
                    format!("Subnet {}: {}", s.netuid, s.name),
                    format!(
                        "Subnet {} \"{}\" is a model market where miners compete at {} and validators score them for rewards. Owner {}; {} of {} neurons registered; registration burn {}; stake {}; {} epochs run, every {} blocks.",
                        s.netuid,
                        s.name,
                        s.task.label(),
                        s.owner,
                        s.n,
                        s.max_uids,
                        amount(s.burn),
                        amount(s.stake),
                        s.epochs,
                        s.tempo
                    ),
                )
            })
            .collect())
    }

    fn neuron(&self, netuid: u16, hotkey: &Address) -> Result<Option<Doc>, Error> {
        let Some(graph) = self.local.metagraph(netuid).map_err(client_err)? else {
            return Ok(None);
        };
        let Some(n) = graph.neurons.iter().find(|n| n.hotkey == *hotkey) else {
            return Ok(None);
        };
        let role = if n.validator_permit {
            "validator"
        } else {
            "miner"
        };
        Ok(Some(Doc {
            about: Some(format!(
                "Neuron UID {} of subnet {netuid}, hotkey {hotkey}, a {role} serving at {}.",
                n.uid, n.endpoint
            )),
            time_ms: self.time_ms,
            addresses: vec![hotkey.to_string()],
            subnet: Some(netuid),
            keys: vec![hotkey.to_string()],
            url: Some(format!("/subnets/{netuid}")),
            ..Doc::new(
                format!("neuron:{netuid}/{}", n.uid),
                Kind::Neuron,
                format!("Neuron {} of subnet {netuid} ({role})", n.uid),
                format!(
                    "Neuron UID {} of subnet {netuid}, hotkey {hotkey}, a {role} serving at {}; stake {} from {} delegators; registered at block {}; last emission {}.",
                    n.uid,
                    n.endpoint,
                    amount(n.stake),
                    n.delegators,
                    n.registered_at,
                    amount(n.emission)
                ),
            )
        }))
    }

    /// Renders `t` again into `out`; what it makes obsolete goes to `gone`.
    fn render(&self, t: &Touched, out: &mut Vec<Doc>, gone: &mut Vec<String>) -> Result<(), Error> {
        match t {
            Touched::Account(a) => out.extend(self.account(a)?),
            Touched::Provider(a) => out.extend(self.provider(a)?),
            Touched::Model(id) => out.extend(self.model(id)?),
            Touched::Job(id) => {
                let (doc, fraud) = self.job(id)?;
                out.extend(doc);
                if fraud {
                    gone.push(format!("audit:{id}"));
                }
            }
            Touched::Subnets => out.extend(self.subnets()?),
            Touched::Neuron(netuid, hotkey) => out.extend(self.neuron(*netuid, hotkey)?),
        }
        Ok(())
    }
}

fn position(index: &SearchIndex) -> Result<Option<(u64, Hash)>, Error> {
    Ok(index.mark(POSITION)?.and_then(|v| {
        let height = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
        let hash: [u8; 32] = v.get(8..40)?.try_into().ok()?;
        Some((height, Hash(hash)))
    }))
}

/// Forgets every chain document (the store holds another history).
fn forget_chain(index: &SearchIndex) -> Result<(), Error> {
    loop {
        let mut ids = Vec::new();
        for prefix in CHAIN_PREFIXES {
            ids.extend(index.ids_with_prefix(prefix, 10_000)?);
        }
        // The position is cleared last: a crash midway leaves it pointing at the other
        // history, so the next start goes on forgetting.
        let done = ids.is_empty();
        index.apply(Batch {
            remove: ids,
            marks: if done {
                vec![(POSITION.into(), Vec::new())]
            } else {
                Vec::new()
            },
            ..Batch::default()
        })?;
        if done {
            return Ok(());
        }
    }
}

/// The objects events name: a job by its id, a provider, any account.
fn touched_by_events(events: &[agora_types::Event], out: &mut BTreeSet<Touched>) {
    for e in events {
        for (key, value) in &e.attributes {
            if let Ok(a) = value.parse::<Address>() {
                out.insert(Touched::Account(a));
                if key == "provider" {
                    out.insert(Touched::Provider(a));
                }
            } else if key == "job_id"
                && let Ok(h) = value.parse::<Hash>()
            {
                out.insert(Touched::Job(h));
            }
        }
    }
}

/// The index's position, if the store holds the same block there; otherwise the chain's
/// documents are forgotten and there is none.
fn checked_position(snap: &Snapshot, index: &SearchIndex) -> Result<Option<(u64, Hash)>, Error> {
    let Some((height, hash)) = position(index)? else {
        return Ok(None);
    };
    let stored = snap.block(height).map_err(store_err)?.map(|b| b.hash());
    if stored == Some(hash) {
        return Ok(Some((height, hash)));
    }
    tracing::warn!(
        height,
        "search: the chain's documents do not match the store's block {height}; indexing the chain again"
    );
    forget_chain(index)?;
    Ok(None)
}

/// Indexes what `node` committed after the index's position, in runs of blocks; returns the
/// last height indexed.
pub fn catch_up(node: &Arc<Node>, index: &SearchIndex) -> Result<Option<u64>, Error> {
    loop {
        let snap = node.snapshot().map_err(store_err)?;
        let Some(tip) = snap.height().map_err(store_err)? else {
            return Ok(None);
        };
        let at = checked_position(&snap, index)?;
        let next = at.map_or(0, |(h, _)| h + 1);
        if next > tip {
            return Ok(Some(tip));
        }
        let mut docs = Vec::new();
        let mut touched = BTreeSet::new();
        let mut last = None;
        let mut last_time = 0;
        for height in next..=tip.min(next + BLOCKS_PER_WRITE - 1) {
            let block = snap
                .block(height)
                .map_err(store_err)?
                .ok_or_else(|| store_err(format!("block {height} is missing")))?;
            let results = snap
                .results(height)
                .map_err(store_err)?
                .ok_or_else(|| store_err(format!("block {height} has no results")))?;
            if height == 0 {
                for (k, _) in snap
                    .scan_prefix(b"acct/", GENESIS_ACCOUNTS)
                    .map_err(store_err)?
                {
                    if let Some(a) = k.get(5..).and_then(|a| <[u8; 20]>::try_from(a).ok()) {
                        touched.insert(Touched::Account(Address(a)));
                    }
                }
                touched.insert(Touched::Subnets);
                let local = LocalNode::new(node.clone());
                for m in local.models().map_err(client_err)? {
                    touched.insert(Touched::Model(m.id));
                }
                for p in local.providers().map_err(client_err)? {
                    touched.insert(Touched::Provider(p.address));
                }
            }
            for (i, tx) in block.txs.iter().enumerate() {
                docs.push(tx_doc(
                    tx,
                    results.receipts.get(i),
                    height,
                    block.header.time_ms,
                    &mut touched,
                ));
            }
            // What the block changed by itself (fees released, epochs, slashes) and what the
            // transactions' events name.
            for r in &results.receipts {
                touched_by_events(&r.events, &mut touched);
            }
            touched_by_events(&results.block_events, &mut touched);
            last = Some((height, block.hash()));
            last_time = block.header.time_ms;
            if docs.len() + touched.len() >= DOCS_PER_WRITE {
                break;
            }
        }
        let Some((height, hash)) = last else {
            return Ok(at.map(|(h, _)| h));
        };
        let render = Render {
            local: LocalNode::new(node.clone()),
            snap: &snap,
            time_ms: time(last_time),
            validators: agora_api::views::validators(&snap)
                .map_err(|e| store_err(e.message))?
                .validators
                .into_iter()
                .map(|v| v.address)
                .collect(),
        };
        let mut gone = Vec::new();
        for t in &touched {
            render.render(t, &mut docs, &mut gone)?;
        }
        let mut mark = height.to_le_bytes().to_vec();
        mark.extend_from_slice(&hash.0);
        // A document the index refuses is left out, not the whole run: chain data is anyone's
        // to write, and one bad document must not stop the follower.
        let docs = docs
            .into_iter()
            .filter_map(|d| {
                let id = d.id.clone();
                d.checked()
                    .map_err(|e| tracing::warn!("search: leaving out {id}: {e}"))
                    .ok()
            })
            .collect();
        index.apply(Batch {
            upsert: docs,
            remove: gone,
            marks: vec![(POSITION.into(), mark)],
        })?;
    }
}

/// Keeps an index's chain documents current on a thread of its own, until dropped.
#[derive(Debug)]
pub struct ChainIndexer {
    stop: watch::Sender<bool>,
    indexed: watch::Receiver<Option<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ChainIndexer {
    /// Starts following `node`: what it committed before, then each block as it commits.
    pub fn start(node: Arc<Node>, index: Arc<SearchIndex>) -> Result<ChainIndexer, Error> {
        let (stop, mut stopped) = watch::channel(false);
        let snap = node.snapshot().map_err(store_err)?;
        let at = checked_position(&snap, &index)?;
        drop(snap);
        let (indexed_tx, indexed) = watch::channel(at.map(|(h, _)| h));
        // Subscribed before catching up, so no block falls between the two.
        let mut blocks = node.subscribe();
        let thread = std::thread::Builder::new()
            .name("search-chain".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("search: cannot follow the chain: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut pause = Duration::from_secs(1);
                    loop {
                        // A panic in rendering is an error to retry later, not a dead thread.
                        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            catch_up(&node, &index)
                        }))
                        .unwrap_or_else(|_| {
                            Err(Error::Store("indexing the chain panicked".into()))
                        });
                        match run {
                            Ok(h) => {
                                indexed_tx.send_replace(h);
                                pause = Duration::from_secs(1);
                            }
                            Err(e) => {
                                tracing::warn!(
                                    "search: indexing the chain: {e}; trying again in {pause:?}"
                                );
                                tokio::select! {
                                    () = tokio::time::sleep(pause) => {}
                                    _ = stopped.wait_for(|s| *s) => return,
                                }
                                pause = (pause * 2).min(Duration::from_secs(60));
                                continue;
                            }
                        }
                        tokio::select! {
                            r = blocks.recv() => {
                                if let Err(broadcast::error::RecvError::Closed) = r {
                                    return;
                                }
                            }
                            _ = stopped.wait_for(|s| *s) => return,
                        }
                    }
                });
            })?;
        Ok(ChainIndexer {
            stop,
            indexed,
            thread: Some(thread),
        })
    }

    /// The last block whose documents are in the index.
    pub fn height(&self) -> Option<u64> {
        *self.indexed.borrow()
    }

    /// Waits until the index holds block `height` (or `timeout` passes); returns whether it
    /// does.
    pub async fn wait_for(&self, height: u64, timeout: Duration) -> bool {
        let mut rx = self.indexed.clone();
        tokio::time::timeout(timeout, rx.wait_for(|h| h.is_some_and(|h| h >= height)))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for ChainIndexer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
