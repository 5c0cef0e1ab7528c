//! A data-market reviewer (DESIGN.md §8): it screens the items it is drawn for with the
//! pre-screen (the bounty's schema, spam rules, MiniLM near-duplicates against the bounty's earlier
//! items), commits its votes on the panels it sits on and reveals them in their window. `agora
//! data review` runs one; the devnet runs two.

use agora_data::prescreen::item_text;
use agora_data::views::{Assignment, BountyResponse, ReviewerResponse};
use agora_data::{DuplicateIndex, Prescreen};
use agora_node_api::{NodeClient, TxStatus};
use agora_search::Embed;
use agora_types::{
    Address, Hash, Keypair, Message, RejectReason, ScreenVerdict, Transaction, vote_commitment,
};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a reviewer votes on panels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum VotePolicy {
    /// Accept what passes the pre-screen.
    Auto,
    /// Accept every item.
    Accept,
    /// Reject every item.
    Reject,
}

/// A reviewer: its key, its node, how it votes, where it keeps its votes, its model.
pub struct Reviewer {
    /// Signs its verdicts and votes.
    pub key: Keypair,
    /// The node's API.
    pub node: String,
    /// How it votes.
    pub policy: VotePolicy,
    /// Where votes wait for their reveal.
    pub votes_dir: PathBuf,
    /// MiniLM (or any sentence model), shared.
    pub embed: Arc<dyn Embed>,
}

impl std::fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reviewer")
            .field("address", &self.key.address())
            .field("node", &self.node)
            .field("policy", &self.policy)
            .finish()
    }
}

/// MiniLM from the model cache in `models`, fetched on first use.
pub fn load_embedder(models: &Path, threads: usize) -> Result<Arc<dyn Embed>> {
    let cache = agora_infer::models::ModelCache::new(models);
    let minilm = cache.ensure_reporting(&agora_infer::models::MINILM)?;
    Ok(Arc::new(agora_search::LocalEmbed::load(&minilm, threads)?))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Puts an item's bytes on the node.
pub fn upload(node: &str, bounty: u64, index: u32, bytes: &[u8]) -> Result<()> {
    let url = format!(
        "{}/v1/data/bounties/{bounty}/items/{index}/content",
        node.trim_end_matches('/')
    );
    let mut resp = agent()
        .put(&url)
        .send(bytes)
        .with_context(|| format!("uploading to {url}"))?;
    if resp.status().as_u16() >= 300 {
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        bail!("the node refused item {bounty}/{index}'s bytes: {body}");
    }
    Ok(())
}

/// An item's bytes from the node, checked against `hash`.
pub fn download(node: &str, bounty: u64, index: u32, hash: &Hash) -> Result<Option<Vec<u8>>> {
    let url = format!(
        "{}/v1/data/bounties/{bounty}/items/{index}/content",
        node.trim_end_matches('/')
    );
    let mut resp = agent()
        .get(&url)
        .call()
        .with_context(|| format!("fetching {url}"))?;
    if resp.status().as_u16() == 404 {
        return Ok(None);
    }
    if resp.status().as_u16() >= 300 {
        bail!("{url}: status {}", resp.status());
    }
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_vec()?;
    Ok((Hash::digest(&bytes) == *hash).then_some(bytes))
}

/// Signs and submits `messages` and waits for the block (until `stop`); the receipt's failure
/// is an error.
fn submit_tx(
    client: &NodeClient,
    key: &Keypair,
    messages: Vec<Message>,
    stop: &dyn Fn() -> bool,
) -> Result<()> {
    let status = client.status()?;
    let account = client
        .account(&key.address())?
        .context("the reviewer's account does not exist")?;
    let fee = status
        .min_fee
        .saturating_mul(u128::from(agora_types::work_units(&messages)));
    let signed = Transaction {
        chain_id: status.chain_id,
        sender: key.public(),
        nonce: account.account.nonce,
        fee,
        messages,
    }
    .sign(key);
    let hash = client.submit(&signed)?;
    let start = Instant::now();
    loop {
        if let Some(tx) = client.tx(&hash)?
            && tx.status == TxStatus::Committed
        {
            if let Some(f) = tx.entry.receipt.and_then(|r| r.failure) {
                bail!("transaction {hash} failed: {}", f.message);
            }
            return Ok(());
        }
        if stop() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("transaction {hash} was not committed within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Keeps a chosen vote (written to a temporary file, then renamed: never half written).
fn keep_vote(path: &Path, accept: bool) -> Result<()> {
    std::fs::create_dir_all(path.parent().context("a vote file has a folder")?)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&accept)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The commitment `who` made on an assignment's item, as the chain has it.
fn committed_vote(client: &NodeClient, job: &Assignment, who: &Address) -> Result<Option<Hash>> {
    let b: BountyResponse = client.get(&format!("/v1/data/bounties/{}", job.bounty))?;
    Ok(b.items
        .iter()
        .find(|v| v.index == job.index)
        .and_then(|v| match &v.item.stage {
            agora_state::Stage::Voting { seats, .. } => seats
                .iter()
                .find(|s| s.reviewer == *who)
                .and_then(|s| s.commitment),
            _ => None,
        }))
}

/// A vote's salt: derived from the reviewer's key, so a restart reveals what it committed.
fn vote_salt(key: &Keypair, bounty: u64, index: u32) -> Hash {
    let mut msg = b"agora/vote-salt/v1".to_vec();
    msg.extend_from_slice(&bounty.to_le_bytes());
    msg.extend_from_slice(&index.to_le_bytes());
    Hash::digest(&key.sign(&msg).0)
}

/// A reviewer's pre-screen of one bounty: its schema, and its earlier items' vectors.
struct BountyScreen {
    screen: Prescreen,
    index: DuplicateIndex,
    known: std::collections::BTreeSet<u32>,
}

impl Reviewer {
    /// Reviews until `stop` says so (after one pass over the assignments with `once`).
    pub fn run(&self, stop: impl Fn() -> bool, once: bool) -> Result<()> {
        let key = &self.key;
        let who = key.address();
        let client = NodeClient::new(&self.node);
        let mut screens: BTreeMap<u64, BountyScreen> = BTreeMap::new();
        tracing::info!("reviewing as {who} ({:?} votes)", self.policy);
        loop {
            let r: ReviewerResponse = match client.get(&format!("/v1/data/reviewers/{who}")) {
                Ok(r) => r,
                Err(e) => {
                    // A node that does not answer for a while: keep trying, the windows are long.
                    tracing::warn!("review: {e}");
                    if once || stop() {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            let mut messages = Vec::new();
            for job in &r.assignments {
                if r.height < job.from || r.height > job.until {
                    continue;
                }
                match job.step.as_str() {
                    "screen" | "commit" => {
                        let verdict = match self.prescreen(&client, &mut screens, job) {
                            Ok(v) => v,
                            Err(e) => {
                                tracing::warn!("item {}/{}: {e:#}", job.bounty, job.index);
                                continue;
                            }
                        };
                        if job.step == "screen" {
                            tracing::info!(
                                "screen {}/{}: {}",
                                job.bounty,
                                job.index,
                                verdict_text(&verdict)
                            );
                            messages.push(Message::ScreenItem {
                                bounty: job.bounty,
                                item: job.index,
                                verdict,
                            });
                        } else {
                            let accept = match self.policy {
                                VotePolicy::Accept => true,
                                VotePolicy::Reject => false,
                                VotePolicy::Auto => verdict == ScreenVerdict::Pass,
                            };
                            // A vote once chosen is kept: a commit sent again (after a timeout) must
                            // commit to the same vote the reveal will show.
                            let path = self.vote_file(job.bounty, job.index);
                            let accept = match std::fs::read(&path)
                                .ok()
                                .and_then(|b| serde_json::from_slice::<bool>(&b).ok())
                            {
                                Some(kept) => kept,
                                None => {
                                    if let Err(e) = keep_vote(&path, accept) {
                                        // Not committed: the reveal could not be made.
                                        tracing::warn!("item {}/{}: {e:#}", job.bounty, job.index);
                                        continue;
                                    }
                                    accept
                                }
                            };
                            tracing::info!(
                                "vote {}/{}: {} (sealed until the reveal window)",
                                job.bounty,
                                job.index,
                                if accept { "accept" } else { "reject" }
                            );
                            messages.push(Message::CommitVote {
                                bounty: job.bounty,
                                item: job.index,
                                commitment: vote_commitment(
                                    job.bounty,
                                    job.index,
                                    &who,
                                    accept,
                                    &vote_salt(key, job.bounty, job.index),
                                ),
                            });
                        }
                    }
                    "reveal" => {
                        // The salt is the key's: the vote is whichever of the two the chain's
                        // commitment matches (no file needed, none trusted).
                        let salt = vote_salt(key, job.bounty, job.index);
                        let committed = match committed_vote(&client, job, &who) {
                            Ok(c) => c,
                            Err(e) => {
                                tracing::warn!("item {}/{}: {e:#}", job.bounty, job.index);
                                continue;
                            }
                        };
                        let Some(accept) = [true, false].into_iter().find(|v| {
                            Some(vote_commitment(job.bounty, job.index, &who, *v, &salt))
                                == committed
                        }) else {
                            tracing::warn!(
                                "item {}/{}: the committed vote is not this key's",
                                job.bounty,
                                job.index
                            );
                            continue;
                        };
                        tracing::info!("reveal {}/{}", job.bounty, job.index);
                        messages.push(Message::RevealVote {
                            bounty: job.bounty,
                            item: job.index,
                            accept,
                            salt,
                        });
                    }
                    _ => {}
                }
            }
            // One transaction each: a message that fails (its window just closed) takes no other
            // down with it.
            for m in messages {
                if stop() {
                    return Ok(());
                }
                if let Err(e) = submit_tx(&client, key, vec![m], &stop) {
                    tracing::warn!("review: {e:#}");
                }
            }
            if once || stop() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn verdict_text(v: &ScreenVerdict) -> String {
    match v {
        ScreenVerdict::Pass => "pass".into(),
        ScreenVerdict::Reject { reason, detail, .. } => {
            format!("reject ({}): {detail}", reason.code())
        }
    }
}

/// The pre-screen's verdict on an assignment's item: its bytes from the node, the bounty's
/// schema and spam rules, then near-duplicates among the bounty's earlier items.
impl Reviewer {
    /// Where the vote committed on an item is kept until its reveal.
    fn vote_file(&self, bounty: u64, index: u32) -> PathBuf {
        self.votes_dir
            .join(format!("{}-{bounty}-{index}.json", self.key.address()))
    }

    /// The pre-screen's verdict on an assignment's item: its bytes from the node, the bounty's
    /// schema and spam rules, then near-duplicates among the bounty's earlier items.
    fn prescreen(
        &self,
        client: &NodeClient,
        screens: &mut BTreeMap<u64, BountyScreen>,
        job: &Assignment,
    ) -> Result<ScreenVerdict> {
        let b: BountyResponse = client.get(&format!("/v1/data/bounties/{}", job.bounty))?;
        if let std::collections::btree_map::Entry::Vacant(e) = screens.entry(job.bounty) {
            let screen = match Prescreen::new(&b.bounty.spec) {
                Ok(s) => s,
                Err(why) => {
                    return Ok(ScreenVerdict::Reject {
                        reason: RejectReason::Schema,
                        duplicate_of: None,
                        detail: why.chars().take(200).collect(),
                    });
                }
            };
            e.insert(BountyScreen {
                screen,
                index: DuplicateIndex::new(),
                known: Default::default(),
            });
        }
        let Some(bytes) = download(&self.node, job.bounty, job.index, &job.hash)? else {
            return Ok(ScreenVerdict::Reject {
                reason: RejectReason::Unavailable,
                duplicate_of: None,
                detail: "no node this reviewer asked holds its bytes".into(),
            });
        };
        let bs = screens.get_mut(&job.bounty).expect("inserted above");
        let text = match bs.screen.check(&bytes) {
            Ok(t) => t,
            Err(r) => return Ok(r.verdict()),
        };
        let embed = &self.embed;
        // The bounty's earlier items not rejected, embedded once each.
        let mut new_texts = Vec::new();
        for v in &b.items {
            if v.index >= job.index
                || bs.known.contains(&v.index)
                || matches!(v.item.stage, agora_state::Stage::Rejected { .. })
            {
                continue;
            }
            if let Some(earlier) = download(&self.node, job.bounty, v.index, &v.item.hash)?
                && let Ok(value) = serde_json::from_slice::<serde_json::Value>(&earlier)
            {
                new_texts.push((v.index, item_text(&value)));
            }
            bs.known.insert(v.index);
        }
        if !new_texts.is_empty() {
            let refs: Vec<&str> = new_texts.iter().map(|(_, t)| t.as_str()).collect();
            let vectors = embed.embed(&refs)?;
            for ((i, t), v) in new_texts.iter().zip(vectors) {
                bs.index.add(*i, v, t);
            }
        }
        let v = embed
            .embed(&[text.as_str()])?
            .pop()
            .context("the model gave no vector")?;
        Ok(
            match bs
                .index
                .duplicate(&v, &text, job.index, bs.screen.threshold)
            {
                Some(r) => r.verdict(),
                None => ScreenVerdict::Pass,
            },
        )
    }
}
