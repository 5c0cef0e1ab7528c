//! `agora data …`: the data market from the command line (DESIGN.md §8): post bounties,
//! submit items, review (pre-screen and vote), export datasets with their proofs, cite them and
//! claim their royalties.

use crate::wallet_cmd::{QueryOpts, TxOpts, read_password, send};
use agora_daemons::data::{Reviewer, VotePolicy, download, load_embedder, upload};
use agora_data::Prescreen;
use agora_data::views::{BountiesResponse, BountyResponse, DatasetItems, DatasetResponse};
use agora_node_api::NodeClient;
use agora_types::{
    Address, BountySpec, CiteTarget, Hash, MerkleProof, Message, dataset_leaf, format_amount,
    parse_amount,
};
use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Post, list and show bounties.
    #[command(subcommand)]
    Bounty(BountyCommand),
    /// Submit items to a bounty: each JSON file (or each line of `--jsonl`) is checked here
    /// against the bounty's schema and spam rules, submitted on chain (its hash and size, with
    /// the bounty's bond), then its bytes uploaded to the node.
    Submit {
        #[command(flatten)]
        opts: TxOpts,
        /// The bounty.
        #[arg(long)]
        bounty: u64,
        /// Items, one JSON document per file.
        files: Vec<PathBuf>,
        /// Items, one JSON document per line.
        #[arg(long)]
        jsonl: Option<PathBuf>,
    },
    /// Ask the reviewers to judge an item of the wallet's that its screener rejected (within the
    /// appeal window); a panel that accepts it makes the screener pay.
    Appeal {
        #[command(flatten)]
        opts: TxOpts,
        #[arg(long)]
        bounty: u64,
        #[arg(long)]
        item: u32,
    },
    /// Stake as a reviewer (drawn to screen and vote on items, in proportion to stake).
    Stake {
        #[command(flatten)]
        opts: TxOpts,
        #[arg(long)]
        amount: String,
    },
    /// Take review stake back (what no open vote locks); it unbonds.
    Unstake {
        #[command(flatten)]
        opts: TxOpts,
        #[arg(long)]
        amount: String,
    },
    /// Review: pre-screen the items the wallet is drawn to screen (schema, spam rules, MiniLM
    /// near-duplicates against the bounty's earlier items) and vote on the items whose panel it
    /// sits on (committed, then revealed in the reveal window). Runs until stopped.
    Review(ReviewArgs),
    /// A dataset: its bounty, contributors, citations and royalties.
    Dataset {
        /// Its root.
        root: String,
        #[command(flatten)]
        q: QueryOpts,
    },
    /// Export a dataset, each item with its inclusion proof, after checking every item's bytes
    /// and the root against the chain.
    Export {
        /// Its root.
        root: String,
        #[command(flatten)]
        q: QueryOpts,
        /// Where to write.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// Check an exported JSONL file against a dataset root: every item's bytes, hash and proof.
    Verify {
        /// The root.
        root: String,
        /// The exported file.
        file: PathBuf,
    },
    /// Cite datasets: for a model (its registrant, in the registration's block; or a provider
    /// serving it, whose fees on it then pay the royalties), the wallet's neuron on a subnet
    /// (its incentive pays them), or a job it paid for.
    Cite {
        #[command(flatten)]
        opts: TxOpts,
        #[arg(long, group = "target")]
        model: Option<String>,
        #[arg(long, group = "target")]
        neuron: Option<u16>,
        #[arg(long, group = "target")]
        job: Option<String>,
        /// Dataset roots (repeat).
        #[arg(long = "dataset", required = true)]
        datasets: Vec<String>,
    },
    /// Claim the wallet's share of a dataset's royalties.
    Claim {
        #[command(flatten)]
        opts: TxOpts,
        #[arg(long)]
        dataset: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BountyCommand {
    /// Post a bounty; its budget moves into escrow.
    Create(CreateArgs),
    /// The newest bounties.
    List(QueryOpts),
    /// A bounty and its items.
    Show {
        id: u64,
        #[command(flatten)]
        q: QueryOpts,
    },
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    opts: TxOpts,
    /// What is wanted.
    #[arg(long)]
    description: String,
    /// The items' JSON Schema: a file, or the JSON itself.
    #[arg(long)]
    schema: String,
    /// Paid per accepted item.
    #[arg(long)]
    reward: String,
    /// Paid to the screener and to each vote on the winning side.
    #[arg(long, default_value = "0.01AGR")]
    review_fee: String,
    /// The budget held in escrow.
    #[arg(long)]
    budget: String,
    /// Votes per reviewed item.
    #[arg(long, default_value_t = 3)]
    quorum: u8,
    /// Stake each vote puts at risk.
    #[arg(long, default_value = "10AGR")]
    review_stake: String,
    /// A contributor's bond per item.
    #[arg(long, default_value = "0.1AGR")]
    bond: String,
    /// Blocks from now to the deadline.
    #[arg(long, default_value_t = 1_000)]
    deadline_blocks: u64,
    /// Largest item.
    #[arg(long, default_value_t = 64 * 1024)]
    max_item_bytes: u32,
    /// Cosine similarity from which an item is a near-duplicate (0 to 1).
    #[arg(long, default_value_t = 0.94)]
    duplicate: f64,
    /// Share of a citing model's earnings paid to the contributors, in basis points.
    #[arg(long, default_value_t = 0)]
    royalty_bps: u16,
}

#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    /// The reviewer's wallet.
    #[arg(long)]
    from: String,
    /// The node's API.
    #[arg(long, env = "AGORA_NODE", default_value = crate::wallet_cmd::DEFAULT_NODE)]
    node: String,
    /// Read the passphrase from this file (else AGORA_PASSWORD, else a prompt).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// How to vote on panels: `auto` accepts what passes the pre-screen; `accept` or `reject`
    /// every item.
    #[arg(long, value_enum, default_value_t = VotePolicy::Auto)]
    vote: VotePolicy,
    /// Stop after one pass over the assignments.
    #[arg(long)]
    once: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<u64>,
    /// Embedding threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Parquet,
}

/// One exported item: what `agora data verify` (or anyone) checks against the root.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExportLine {
    /// The dataset's root.
    pub root: Hash,
    /// The bounty.
    pub bounty: u64,
    /// The item's index in the bounty.
    pub index: u32,
    /// Who contributed it.
    pub contributor: Address,
    /// blake3 of `content`'s bytes.
    pub hash: Hash,
    /// The item's bytes, as text (items are JSON).
    pub content: String,
    /// The inclusion proof of `dataset_leaf(bounty, index, hash)`.
    pub proof: MerkleProof,
}

impl ExportLine {
    /// Whether the line's bytes, hash and proof make `root`.
    pub fn check(&self, root: &Hash) -> Result<()> {
        if Hash::digest(self.content.as_bytes()) != self.hash {
            bail!(
                "item {}/{}: its bytes do not hash to {}",
                self.bounty,
                self.index,
                self.hash
            );
        }
        let leaf = dataset_leaf(self.bounty, self.index, &self.contributor, &self.hash);
        if self.root != *root || !self.proof.verify(root, &leaf) {
            bail!(
                "item {}/{}: its proof does not lead to root {root}",
                self.bounty,
                self.index
            );
        }
        Ok(())
    }
}

fn parse_hash(what: &str, s: &str) -> Result<Hash> {
    s.parse()
        .map_err(|_| anyhow::anyhow!("{what} {s:?}: 64 hex digits"))
}

pub fn data(home: PathBuf, models: PathBuf, cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Bounty(BountyCommand::Create(a)) => create(&home, a),
        DataCommand::Bounty(BountyCommand::List(q)) => list(&q),
        DataCommand::Bounty(BountyCommand::Show { id, q }) => show(id, &q),
        DataCommand::Submit {
            opts,
            bounty,
            files,
            jsonl,
        } => submit(&home, &opts, bounty, &files, jsonl.as_deref()),
        DataCommand::Appeal { opts, bounty, item } => {
            send(&home, &opts, vec![Message::AppealItem { bounty, item }]).map(|_| ())
        }
        DataCommand::Stake { opts, amount } => {
            let amount = parse_amount(&amount)?;
            send(&home, &opts, vec![Message::JoinReviewers { amount }]).map(|_| ())
        }
        DataCommand::Unstake { opts, amount } => {
            let amount = parse_amount(&amount)?;
            send(&home, &opts, vec![Message::LeaveReviewers { amount }]).map(|_| ())
        }
        DataCommand::Review(a) => {
            let key = crate::keystore::Keystore::new(&home)
                .unlock(&a.from, &read_password(a.password_file.as_deref(), false)?)?;
            // The model is loaded before the first assignment: a screener has a window to keep.
            let reviewer = Reviewer {
                key,
                node: a.node.clone(),
                policy: a.vote,
                votes_dir: home.join("data/votes"),
                embed: load_embedder(&models, a.threads)?,
            };
            println!(
                "reviewing as {} ({:?} votes)",
                reviewer.key.address(),
                a.vote
            );
            let start = Instant::now();
            reviewer.run(
                || {
                    a.seconds
                        .is_some_and(|s| start.elapsed() >= Duration::from_secs(s))
                },
                a.once,
            )
        }
        DataCommand::Dataset { root, q } => dataset(&parse_hash("root", &root)?, &q),
        DataCommand::Export {
            root,
            q,
            out,
            format,
        } => export(&parse_hash("root", &root)?, &q, &out, format),
        DataCommand::Verify { root, file } => {
            let root = parse_hash("root", &root)?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mut leaves = Vec::new();
            for (k, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let item: ExportLine = serde_json::from_str(line)
                    .with_context(|| format!("line {}: not an exported item", k + 1))?;
                item.check(&root)
                    .with_context(|| format!("line {}", k + 1))?;
                leaves.push(dataset_leaf(
                    item.bounty,
                    item.index,
                    &item.contributor,
                    &item.hash,
                ));
            }
            // Every item, each once, in order: the lines' leaves make the root themselves.
            if agora_types::merkle_root(&leaves) != root {
                bail!(
                    "the file's {} items are each in dataset {root}, but not all of it, or not once each in order",
                    leaves.len()
                );
            }
            println!(
                "{} items checked: the whole of dataset {root}, each with its proof",
                leaves.len()
            );
            Ok(())
        }
        DataCommand::Cite {
            opts,
            model,
            neuron,
            job,
            datasets,
        } => {
            let target = match (model, neuron, job) {
                (Some(m), None, None) => CiteTarget::Model {
                    id: parse_hash("model", &m)?,
                },
                (None, Some(netuid), None) => CiteTarget::Neuron { netuid },
                (None, None, Some(j)) => CiteTarget::Job {
                    id: parse_hash("job", &j)?,
                },
                _ => bail!("cite for one of --model, --neuron or --job"),
            };
            let datasets = datasets
                .iter()
                .map(|d| parse_hash("dataset", d))
                .collect::<Result<Vec<_>>>()?;
            send(
                &home,
                &opts,
                vec![Message::CiteDatasets { target, datasets }],
            )
            .map(|_| ())
        }
        DataCommand::Claim { opts, dataset } => {
            let dataset = parse_hash("dataset", &dataset)?;
            send(&home, &opts, vec![Message::ClaimRoyalties { dataset }]).map(|_| ())
        }
    }
}

fn create(home: &Path, a: CreateArgs) -> Result<()> {
    let schema = if Path::new(&a.schema).is_file() {
        std::fs::read_to_string(&a.schema).with_context(|| format!("reading {}", a.schema))?
    } else {
        a.schema.clone()
    };
    if !(0.0..=1.0).contains(&a.duplicate) {
        bail!("--duplicate is a cosine similarity, 0 to 1");
    }
    let client = NodeClient::new(&a.opts.node);
    let height = client.status()?.height;
    let spec = BountySpec {
        description: a.description,
        schema,
        reward_per_item: parse_amount(&a.reward)?,
        review_fee: parse_amount(&a.review_fee)?,
        budget: parse_amount(&a.budget)?,
        quorum: a.quorum,
        review_stake: parse_amount(&a.review_stake)?,
        item_bond: parse_amount(&a.bond)?,
        deadline: height + a.deadline_blocks,
        max_item_bytes: a.max_item_bytes,
        duplicate_bps: (a.duplicate * 10_000.0).round() as u16,
        royalty_bps: a.royalty_bps,
    };
    // A schema the screeners cannot use would reject every item: refuse it before paying.
    Prescreen::new(&spec).map_err(anyhow::Error::msg)?;
    let tx = send(home, &a.opts, vec![Message::CreateBounty { spec }])?;
    if let Some(id) = tx
        .as_ref()
        .and_then(|t| event_attr(t, "bounty_created", "bounty"))
    {
        println!("bounty {id} posted");
    }
    Ok(())
}

/// The first `attr` of the first event named `kind` in a committed transaction's receipt.
fn event_attr(tx: &agora_node_api::TxResponse, kind: &str, attr: &str) -> Option<String> {
    tx.entry
        .receipt
        .as_ref()?
        .events
        .iter()
        .find(|e| e.kind == kind)?
        .attributes
        .iter()
        .find(|(k, _)| k == attr)
        .map(|(_, v)| v.clone())
}

fn list(q: &QueryOpts) -> Result<()> {
    let r: BountiesResponse = NodeClient::new(&q.node).get("/v1/data/bounties")?;
    if q.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{:>4}  {:<10} {:>14} {:>14} {:>6} {:>8}  description",
        "id", "state", "reward", "left", "items", "accepted"
    );
    for b in &r.bounties {
        let state = if b.settled {
            "settled"
        } else if r.height > b.spec.deadline {
            "reviewing"
        } else {
            "open"
        };
        println!(
            "{:>4}  {:<10} {:>14} {:>14} {:>6} {:>8}  {}",
            b.id,
            state,
            format_amount(b.spec.reward_per_item),
            format_amount(b.available),
            b.items,
            b.accepted,
            b.spec.description.chars().take(60).collect::<String>()
        );
    }
    Ok(())
}

fn show(id: u64, q: &QueryOpts) -> Result<()> {
    let r: BountyResponse = NodeClient::new(&q.node).get(&format!("/v1/data/bounties/{id}"))?;
    if q.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let b = &r.bounty;
    println!("bounty {}: {}", b.id, b.spec.description);
    println!(
        "requester {}  budget {}  left {}  held {}  paid {}  refunded {}",
        b.requester,
        format_amount(b.spec.budget),
        format_amount(b.available),
        format_amount(b.held),
        format_amount(b.paid),
        format_amount(b.refunded)
    );
    println!(
        "reward {} per item, review fee {}, quorum {}, review stake {}, bond {}, deadline {}, settles at {}{}",
        format_amount(b.spec.reward_per_item),
        format_amount(b.spec.review_fee),
        b.spec.quorum,
        format_amount(b.spec.review_stake),
        format_amount(b.spec.item_bond),
        b.spec.deadline,
        b.settle_at,
        b.dataset
            .map(|r| format!(", dataset {r}"))
            .unwrap_or_default()
    );
    for v in &r.items {
        let stage = match &v.item.stage {
            agora_state::Stage::Rejected { reason } => format!("rejected ({reason})"),
            s => serde_json::to_value(s)?["stage"]
                .as_str()
                .unwrap_or("?")
                .to_string(),
        };
        println!(
            "  {:>4}  {:<24} {} {} bytes{}",
            v.index,
            stage,
            v.item.contributor,
            v.item.size,
            if v.held {
                ""
            } else {
                " (bytes not on this node)"
            }
        );
    }
    Ok(())
}

/// Reads the items to submit: JSON files, or the lines of a JSONL file.
fn read_items(files: &[PathBuf], jsonl: Option<&Path>) -> Result<Vec<Vec<u8>>> {
    let mut items = Vec::new();
    for f in files {
        items.push(std::fs::read(f).with_context(|| format!("reading {}", f.display()))?);
    }
    if let Some(p) = jsonl {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        items.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.as_bytes().to_vec()),
        );
    }
    if items.is_empty() {
        bail!("no items: give JSON files or --jsonl FILE");
    }
    Ok(items)
}

fn submit(
    home: &Path,
    opts: &TxOpts,
    bounty: u64,
    files: &[PathBuf],
    jsonl: Option<&Path>,
) -> Result<()> {
    let client = NodeClient::new(&opts.node);
    let b: BountyResponse = client.get(&format!("/v1/data/bounties/{bounty}"))?;
    let screen = Prescreen::new(&b.bounty.spec).map_err(anyhow::Error::msg)?;
    let items = read_items(files, jsonl)?;
    // What the screener would refuse costs a bond: refuse it here first.
    for (k, bytes) in items.iter().enumerate() {
        if let Err(r) = screen.check(bytes) {
            bail!(
                "item {} would be rejected ({}): {}",
                k + 1,
                r.reason.code(),
                r.detail
            );
        }
    }
    for chunk in items.chunks(agora_types::MAX_MESSAGES) {
        let messages = chunk
            .iter()
            .map(|bytes| Message::SubmitItem {
                bounty,
                hash: Hash::digest(bytes),
                size: bytes.len() as u32,
            })
            .collect();
        let Some(tx) = send(home, opts, messages)? else {
            bail!("submitted without waiting: upload the bytes once the items are on chain");
        };
        let indexes: Vec<u32> = tx
            .entry
            .receipt
            .as_ref()
            .map(|r| {
                r.events
                    .iter()
                    .filter(|e| e.kind == "item_submitted")
                    .filter_map(|e| {
                        e.attributes
                            .iter()
                            .find(|(k, _)| k == "item")
                            .and_then(|(_, v)| v.parse().ok())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if indexes.len() != chunk.len() {
            bail!("the chain took {} of {} items", indexes.len(), chunk.len());
        }
        for (bytes, index) in chunk.iter().zip(indexes) {
            upload(&opts.node, bounty, index, bytes)?;
            println!(
                "item {bounty}/{index} submitted ({} bytes, {})",
                bytes.len(),
                Hash::digest(bytes)
            );
        }
    }
    Ok(())
}

fn dataset(root: &Hash, q: &QueryOpts) -> Result<()> {
    let r: DatasetResponse = NodeClient::new(&q.node).get(&format!("/v1/data/datasets/{root}"))?;
    if q.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let d = &r.dataset;
    println!(
        "dataset {}: {} items from bounty {} ({})",
        d.root, d.items, d.bounty, r.description
    );
    println!(
        "royalty {} bps; received {}, claimed {}; cited by {} models, {} providers, {} neurons, {} jobs",
        d.royalty_bps,
        format_amount(d.received),
        format_amount(d.claimed),
        d.cited_by_models,
        d.cited_by_providers,
        d.cited_by_neurons,
        d.cited_by_jobs
    );
    for (a, n) in &r.contributors {
        println!("  {a}  {n} items");
    }
    Ok(())
}

fn export(root: &Hash, q: &QueryOpts, out: &Path, format: ExportFormat) -> Result<()> {
    let client = NodeClient::new(&q.node);
    let d: DatasetItems = client.get(&format!("/v1/data/datasets/{root}/items"))?;
    let summary: DatasetResponse = client.get(&format!("/v1/data/datasets/{root}"))?;
    let leaves: Vec<Hash> = d
        .items
        .iter()
        .map(|it| dataset_leaf(it.bounty, it.index, &it.contributor, &it.hash))
        .collect();
    if d.items.len() != summary.dataset.items as usize || agora_types::merkle_root(&leaves) != *root
    {
        bail!("the node's items of dataset {root} are not the whole of it");
    }
    let mut lines = Vec::with_capacity(d.items.len());
    for it in &d.items {
        let leaf = dataset_leaf(it.bounty, it.index, &it.contributor, &it.hash);
        if !it.proof.verify(root, &leaf) {
            bail!(
                "the node's proof of item {}/{} does not lead to {root}",
                it.bounty,
                it.index
            );
        }
        let bytes = download(&q.node, it.bounty, it.index, &it.hash)?.with_context(|| {
            format!(
                "the node does not hold item {}/{}'s bytes",
                it.bounty, it.index
            )
        })?;
        let content = String::from_utf8(bytes)
            .with_context(|| format!("item {}/{} is not text", it.bounty, it.index))?;
        let line = ExportLine {
            root: *root,
            bounty: it.bounty,
            index: it.index,
            contributor: it.contributor,
            hash: it.hash,
            content,
            proof: it.proof.clone(),
        };
        line.check(root)?;
        lines.push(line);
    }
    match format {
        ExportFormat::Jsonl => {
            let mut text = String::new();
            for l in &lines {
                text.push_str(&serde_json::to_string(l)?);
                text.push('\n');
            }
            std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
        }
        ExportFormat::Parquet => agora_data::export::write_parquet(
            out,
            &lines
                .iter()
                .map(|l| agora_data::export::Row {
                    root: l.root.to_hex(),
                    bounty: l.bounty,
                    index: l.index,
                    contributor: l.contributor.to_string(),
                    hash: l.hash.to_hex(),
                    content: l.content.clone(),
                    proof: serde_json::to_string(&l.proof).unwrap_or_default(),
                })
                .collect::<Vec<_>>(),
        )?,
    }
    println!(
        "{} items of dataset {root} written to {} ({:?}), each with its proof",
        lines.len(),
        out.display(),
        format
    );
    Ok(())
}
