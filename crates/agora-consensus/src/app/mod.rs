//! The application side of consensus: answers every message of the engine (each carries a reply
//! that must be sent) by building, checking and committing blocks through [`Node`].
//!
//! ```text
//!  proposer:  GetValue ─▶ Node::build_block ─▶ parts (Init, Data…, Fin+signature) ─▶ network
//!  others:    ReceivedProposalPart ─▶ reassemble ─▶ signature, proposer ─▶ Node::check_block
//!             ─▶ ProposedValue { validity }
//!  all:       Decided ─▶ Node::commit_block(block, certificate) ─▶ Finalized ─▶ next height
//!  lagging:   ProcessSyncedValue ─▶ Node::check_block;  GetDecidedValues ◀─ blocks + certificates
//! ```
//!
//! A block is checked against the state of its parent, so a proposal for a height this node has
//! not reached yet is kept, complete, and checked when that height starts.

use crate::{
    codec::AgoraCodec,
    context::{AgoraContext, BlockId, Height, ProposalPart, ValidatorAddress, ValidatorSet},
    signing::{Ed25519Signer, parts_sign_bytes},
    streams::{Assembled, Streams},
};
use agora_chain::{CheckedBlock, Node, now_ms};
use agora_types::{Block, Hash};
use bytes::Bytes;
use malachitebft_app::types::{
    LocallyProposedValue, ProposedValue,
    codec::Codec,
    core::{
        CommitCertificate, Context as _, ExtendedCommitCertificate, LinearTimeouts, Round,
        Validity, VoteExtensions,
    },
    streaming::{StreamId, StreamMessage},
    sync::RawDecidedValue,
};
use malachitebft_app_channel::{
    AppMsg, Channels, NetworkMsg,
    app::{
        engine::host::{HeightParams, Next, SyncedValueOutcome},
        streaming::StreamContent,
    },
};
use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};
use tracing::{debug, error, info, warn};

mod kept;

/// Bytes of block data per proposal part.
const CHUNK: usize = 256 * 1024;
/// How far ahead of this node's clock a proposed block's time may be.
const MAX_CLOCK_DRIFT_MS: u64 = 10_000;
/// Most decided values served per sync request.
const MAX_SYNC_BATCH: u64 = 64;
/// Most bytes of blocks and certificates in one sync response: a block of
/// [`agora_types::MAX_BLOCK_BYTES`] with its certificate always fits, and the response stays
/// under the codec's [`crate::codec::MAX_MESSAGE_BYTES`].
const MAX_SYNC_BYTES: usize = 12 << 20;
const _: () = assert!(agora_types::MAX_BLOCK_BYTES + (1 << 20) <= MAX_SYNC_BYTES);
const _: () = assert!(MAX_SYNC_BYTES + (1 << 20) <= crate::codec::MAX_MESSAGE_BYTES);
/// Proposals kept for heights ahead of this node's (at most this many heights ahead).
const MAX_HEIGHTS_AHEAD: u64 = 4;

/// Consensus settings of a node.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Round timeouts.
    pub timeouts: LinearTimeouts,
    /// Least time between two heights (`None`: start the next height as soon as one is decided).
    pub target_time: Option<Duration>,
    /// Test hook for Byzantine behaviour: alters every block this node proposes (after it is
    /// built, before it is signed and streamed). Never set on a real node.
    #[doc(hidden)]
    pub tamper: Option<fn(&mut Block)>,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            timeouts: LinearTimeouts {
                propose: Duration::from_millis(1_000),
                propose_delta: Duration::from_millis(500),
                prevote: Duration::from_millis(500),
                prevote_delta: Duration::from_millis(250),
                precommit: Duration::from_millis(500),
                precommit_delta: Duration::from_millis(250),
                rebroadcast: Duration::from_millis(2_000),
                max_timeout: Duration::from_secs(30),
            },
            target_time: None,
            tamper: None,
        }
    }
}

/// A block seen at the current height: built here, proposed by another validator, or synced.
struct Candidate {
    block: Arc<Block>,
    /// `None` when the block is invalid (or was already committed).
    checked: Option<CheckedBlock>,
}

/// The application state of a consensus node.
pub struct ConsensusApp {
    node: Arc<Node>,
    ctx: AgoraContext,
    signer: Ed25519Signer,
    address: ValidatorAddress,
    config: AppConfig,
    /// The height consensus works on.
    height: Height,
    /// Blocks of the current height by hash.
    candidates: BTreeMap<Hash, Candidate>,
    /// Values seen per round of the current height, for `StartedRound` replies.
    seen: BTreeMap<Round, Vec<ProposedValue<AgoraContext>>>,
    /// The block this node proposed in each round of the current height.
    own: BTreeMap<Round, Hash>,
    /// Complete proposals for later heights, checked when their height starts.
    future: BTreeMap<Height, Vec<Assembled>>,
    streams: Streams,
    /// Where valid blocks of the current height are kept on disk until one is committed, so that
    /// a node that voted for a block and crashed before committing it can still commit it.
    block_dir: Option<PathBuf>,
}

impl std::fmt::Debug for ConsensusApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsensusApp")
            .field("address", &self.address)
            .field("height", &self.height)
            .field("candidates", &self.candidates.len())
            .finish()
    }
}

/// What went wrong in the application (logged; consensus restarts the height if it must).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The node failed.
    #[error(transparent)]
    Node(#[from] agora_chain::Error),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] agora_store::Error),
    /// State failed.
    #[error(transparent)]
    State(#[from] agora_state::Error),
    /// The chain has no validator set (a dev chain cannot run consensus).
    #[error(
        "the chain state has no validator set: give genesis `validators` to run a network (a dev chain runs with --dev)"
    )]
    NoValidatorSet,
    /// A blocking task failed.
    #[error("task failed: {0}")]
    Task(String),
    /// The store cannot commit decided blocks (a full disk, an I/O error): the application
    /// stops, and the node with it; a restart goes on from what was committed.
    #[error("the store cannot commit the block decided at height {height}: {cause}")]
    CannotCommit {
        /// The decided height.
        height: u64,
        /// The store's error.
        cause: String,
    },
}

impl ConsensusApp {
    /// The application of validator `address` over `node`.
    pub fn new(
        node: Arc<Node>,
        signer: Ed25519Signer,
        address: ValidatorAddress,
        config: AppConfig,
    ) -> Self {
        ConsensusApp {
            node,
            ctx: AgoraContext,
            signer,
            address,
            config,
            height: Height(0),
            candidates: BTreeMap::new(),
            seen: BTreeMap::new(),
            own: BTreeMap::new(),
            future: BTreeMap::new(),
            streams: Streams::new(64 << 20),
            block_dir: None,
        }
    }

    /// The validator set in force after the latest committed block.
    pub fn validator_set(node: &Node) -> Result<ValidatorSet, AppError> {
        let snap = node.snapshot()?;
        let set = agora_state::read_validator_set(&snap)?.ok_or(AppError::NoValidatorSet)?;
        Ok(ValidatorSet::from_state(&set))
    }

    fn committed_height(&self) -> Result<u64, AppError> {
        Ok(self
            .node
            .snapshot()?
            .height()?
            .ok_or(agora_chain::Error::NoGenesis)?)
    }

    fn params(&self) -> Result<HeightParams<AgoraContext>, AppError> {
        Ok(HeightParams::new(
            Self::validator_set(&self.node)?,
            self.config.timeouts,
            self.config.target_time,
        ))
    }

    /// Moves to `height`: forgets what belonged to earlier heights.
    fn enter(&mut self, height: Height) {
        if height != self.height {
            self.height = height;
            self.candidates.clear();
            self.seen.clear();
            self.own.clear();
            self.future = self.future.split_off(&height);
        }
    }

    /// Runs until the engine closes its channel.
    pub async fn run(mut self, channels: &mut Channels<AgoraContext>) -> Result<(), AppError> {
        while let Some(msg) = channels.consensus.recv().await {
            match self.handle(msg, channels).await {
                Ok(()) => {}
                Err(e @ AppError::CannotCommit { .. }) => {
                    error!(error = %e, "the store cannot commit blocks: consensus stops");
                    return Err(e);
                }
                Err(e) => warn!(error = %e, "consensus application error"),
            }
        }
        Ok(())
    }

    async fn handle(
        &mut self,
        msg: AppMsg<AgoraContext>,
        channels: &mut Channels<AgoraContext>,
    ) -> Result<(), AppError> {
        match msg {
            AppMsg::ConsensusReady { reply } => {
                let start = Height(self.committed_height()? + 1);
                self.enter(start);
                info!(height = %start, "consensus ready");
                let _ = reply.send((start, self.params()?));
            }
            AppMsg::StartedRound {
                height,
                round,
                proposer,
                role,
                reply_value,
            } => {
                debug!(%height, %round, %proposer, ?role, "round started");
                self.enter(height);
                if let Some(waiting) = self.future.remove(&height) {
                    for assembled in waiting {
                        self.accept(assembled).await;
                    }
                }
                let values = self.seen.get(&round).cloned().unwrap_or_default();
                let _ = reply_value.send(values);
            }
            AppMsg::GetValue {
                height,
                round,
                timeout: _,
                reply,
            } => {
                self.enter(height);
                let hash = match self.own.get(&round) {
                    Some(hash) => *hash,
                    None => match self.build(height).await? {
                        Some(hash) => hash,
                        // Behind: nothing sensible to propose; the round times out.
                        None => return Ok(()),
                    },
                };
                self.own.insert(round, hash);
                let _ = reply.send(LocallyProposedValue::new(height, round, BlockId(hash)));
                self.publish(channels, height, round, Round::Nil, hash)
                    .await;
            }
            AppMsg::ExtendVote { reply, .. } => {
                let _ = reply.send(None);
            }
            AppMsg::VerifyVoteExtensions {
                extensions, reply, ..
            } => {
                // Agora's chains use no extensions; none is ever expected.
                let verdicts = extensions
                    .into_iter()
                    .map(|(a, _)| {
                        (
                            a,
                            Err(malachitebft_app::consensus::VoteExtensionError::InvalidVoteExtension),
                        )
                    })
                    .collect();
                let _ = reply.send(verdicts);
            }
            AppMsg::RestreamProposal {
                height,
                round,
                valid_round,
                address,
                value_id,
            } => {
                if address == self.address && self.candidates.contains_key(&value_id) {
                    self.publish(channels, height, round, valid_round, value_id)
                        .await;
                }
            }
            AppMsg::GetHistoryMinHeight { reply } => {
                let _ = reply.send(Height(1));
            }
            AppMsg::ReceivedProposalPart {
                from,
                published_by,
                part,
                reply,
            } => {
                let value = match self.streams.insert(published_by.unwrap_or(from), part) {
                    Some(assembled) => self.received(assembled).await,
                    None => None,
                };
                let _ = reply.send(value);
            }
            AppMsg::Decided {
                certificate,
                extensions: _,
                reply,
            } => {
                let height = certificate.height.0;
                let committed = self.commit(certificate).await;
                let _ = reply.send(());
                match committed {
                    Ok(()) => {}
                    // The database failed (a full disk, an I/O error): it refuses every write
                    // after a failed one until it is opened again, so restarting the height
                    // would fail the same way, for ever. (Logic errors are not this.)
                    Err(
                        AppError::Node(agora_chain::Error::Store(e @ agora_store::Error::Db(_)))
                        | AppError::Store(e @ agora_store::Error::Db(_)),
                    ) => {
                        return Err(AppError::CannotCommit {
                            height,
                            cause: e.to_string(),
                        });
                    }
                    Err(e) => warn!(error = %e, "could not commit the decided block"),
                }
            }
            AppMsg::Finalized {
                certificate,
                evidence,
                reply,
                ..
            } => {
                if !evidence.is_empty() {
                    warn!(
                        height = %certificate.height,
                        conflicting_votes = evidence.votes.len(),
                        conflicting_proposals = evidence.proposals.len(),
                        "validators signed conflicting messages"
                    );
                }
                let committed = self.committed_height()?;
                let next = if committed >= certificate.height.0 {
                    let next = Height(committed + 1);
                    self.enter(next);
                    Next::Start(next, self.params()?)
                } else {
                    warn!(height = %certificate.height, "decided block not committed: restarting the height");
                    Next::Restart(certificate.height, self.params()?)
                };
                let _ = reply.send(next);
            }
            AppMsg::GetDecidedValues { range, reply } => {
                let values = self.decided_values(*range.start(), *range.end())?;
                let _ = reply.send(values);
            }
            AppMsg::ProcessSyncedValue {
                height,
                round,
                proposer,
                value_bytes,
                reply,
            } => {
                let outcome = self.synced(height, round, proposer, value_bytes).await;
                let _ = reply.send(outcome);
            }
        }
        Ok(())
    }

    /// Builds this node's proposal for `height`; `None` if the node is not at its parent.
    async fn build(&mut self, height: Height) -> Result<Option<Hash>, AppError> {
        if self.committed_height()? + 1 != height.0 {
            warn!(%height, "asked to propose at a height this node is not at");
            return Ok(None);
        }
        let node = self.node.clone();
        let checked = tokio::task::spawn_blocking(move || node.build_block(now_ms()))
            .await
            .map_err(|e| AppError::Task(e.to_string()))??;
        if let Some(tamper) = self.config.tamper {
            let mut block = checked.block.clone();
            tamper(&mut block);
            let hash = block.hash();
            warn!(%height, block = %hash, "proposing a tampered block (test hook)");
            self.candidates.insert(
                hash,
                Candidate {
                    block: Arc::new(block),
                    checked: None,
                },
            );
            return Ok(Some(hash));
        }
        let hash = checked.hash;
        info!(%height, txs = checked.block.txs.len(), block = %hash, "proposing");
        self.keep_block(&checked.block);
        self.candidates.insert(
            hash,
            Candidate {
                block: Arc::new(checked.block.clone()),
                checked: Some(checked),
            },
        );
        Ok(Some(hash))
    }

    /// Streams the block `hash` as the proposal of (`height`, `round`).
    async fn publish(
        &self,
        channels: &mut Channels<AgoraContext>,
        height: Height,
        round: Round,
        pol_round: Round,
        hash: Hash,
    ) {
        let Some(candidate) = self.candidates.get(&hash) else {
            return;
        };
        let bytes = borsh::to_vec(&*candidate.block).expect("borsh into a Vec");
        let mut parts = vec![ProposalPart::Init {
            height,
            round,
            proposer: self.address,
            pol_round,
        }];
        parts.extend(bytes.chunks(CHUNK).map(|c| ProposalPart::Data(c.to_vec())));
        parts.push(ProposalPart::Fin {
            signature: self.signer.sign_parts(height, round, pol_round, &hash),
        });
        let mut id = height.0.to_be_bytes().to_vec();
        id.extend_from_slice(&round.as_i64().to_be_bytes());
        let stream_id = StreamId::new(Bytes::from(id));
        let count = parts.len() as u64;
        let messages = parts
            .into_iter()
            .enumerate()
            .map(|(i, p)| StreamMessage::new(stream_id.clone(), i as u64, StreamContent::Data(p)))
            .chain(std::iter::once(StreamMessage::new(
                stream_id.clone(),
                count,
                StreamContent::Fin,
            )));
        for msg in messages {
            if channels
                .network
                .send(NetworkMsg::PublishProposalPart(msg))
                .await
                .is_err()
            {
                warn!("network channel closed");
                return;
            }
        }
    }

    /// A complete proposal from the network: checked now if it is for the current height, kept
    /// for later if it is ahead.
    async fn received(&mut self, assembled: Assembled) -> Option<ProposedValue<AgoraContext>> {
        let height = assembled.height()?;
        if height < self.height {
            return None;
        }
        if height > self.height {
            if height.0 > self.height.0 + MAX_HEIGHTS_AHEAD {
                return None;
            }
            let waiting = self.future.entry(height).or_default();
            if waiting.len() < 16 {
                waiting.push(assembled);
            }
            return None;
        }
        self.accept(assembled).await
    }

    /// Checks a complete proposal of the current height; remembers and returns its value.
    async fn accept(&mut self, assembled: Assembled) -> Option<ProposedValue<AgoraContext>> {
        let value = self.check_proposal(assembled).await?;
        self.seen
            .entry(value.round)
            .or_default()
            .push(value.clone());
        Some(value)
    }

    async fn check_proposal(
        &mut self,
        assembled: Assembled,
    ) -> Option<ProposedValue<AgoraContext>> {
        let (height, round, proposer, pol_round, signature) =
            match (assembled.parts.first(), assembled.parts.last()) {
                (
                    Some(ProposalPart::Init {
                        height,
                        round,
                        proposer,
                        pol_round,
                    }),
                    Some(ProposalPart::Fin { signature }),
                ) => (*height, *round, *proposer, *pol_round, *signature),
                _ => {
                    debug!("proposal stream without Init and Fin: ignored");
                    return None;
                }
            };
        let set = match Self::validator_set(&self.node) {
            Ok(set) => set,
            Err(e) => {
                warn!(error = %e, "no validator set to check a proposal against");
                return None;
            }
        };
        let expected = self.ctx.select_proposer(&set, height, round);
        if expected.address != proposer {
            debug!(%height, %round, %proposer, "proposal parts from a validator that is not the proposer: ignored");
            return None;
        }
        let mut data = Vec::new();
        for part in &assembled.parts[1..assembled.parts.len() - 1] {
            match part {
                ProposalPart::Data(d) => data.extend_from_slice(d),
                _ => return None,
            }
        }
        let block: Block = match borsh::from_slice(&data) {
            Ok(b) => b,
            Err(e) => {
                debug!(error = %e, "proposal parts that do not decode to a block: ignored");
                return None;
            }
        };
        let hash = block.hash();
        let bytes = parts_sign_bytes(self.node.chain_id(), height, round, pol_round, &hash);
        if expected.public_key.verify(&bytes, &signature).is_err() {
            debug!(%height, %round, "proposal parts with a bad signature: ignored");
            return None;
        }
        // A block re-proposed from its proof-of-lock round names that round's proposer.
        let mut allowed = vec![proposer.0];
        if let Some(r) = pol_round.as_u32() {
            allowed.push(
                self.ctx
                    .select_proposer(&set, height, Round::new(r))
                    .address
                    .0,
            );
        }
        let validity = self.check_block(height, &allowed, block).await;
        Some(ProposedValue {
            height,
            round,
            valid_round: pol_round,
            proposer,
            value: BlockId(hash),
            validity,
        })
    }

    /// Checks a block for the current height whose header must name one of `allowed` as its
    /// proposer, remembering the result.
    async fn check_block(
        &mut self,
        height: Height,
        allowed: &[agora_types::Address],
        block: Block,
    ) -> Validity {
        let hash = block.hash();
        // Before the cache: a proposer may not re-propose another round's block (and its seed)
        // as its own.
        if !allowed.contains(&block.header.proposer) {
            warn!(%height, block = %hash, proposer = %block.header.proposer, "the block names a proposer it may not");
            return Validity::Invalid;
        }
        if let Some(c) = self.candidates.get(&hash) {
            return Validity::from_bool(c.checked.is_some());
        }
        let block = Arc::new(block);
        let mut problem = None;
        if block.header.height != height.0 {
            problem = Some(format!(
                "block height {} in a proposal for {height}",
                block.header.height
            ));
        } else if block.header.time_ms > now_ms().saturating_add(MAX_CLOCK_DRIFT_MS) {
            problem = Some(format!(
                "block time {} ms is ahead of this node's clock",
                block.header.time_ms
            ));
        }
        let checked = match problem {
            Some(p) => {
                warn!(%height, block = %hash, problem = %p, "invalid proposal");
                None
            }
            None => {
                let node = self.node.clone();
                let b = (*block).clone();
                match tokio::task::spawn_blocking(move || node.check_block(b)).await {
                    Ok(Ok(checked)) => Some(checked),
                    Ok(Err(e)) => {
                        warn!(%height, block = %hash, error = %e, "invalid proposal");
                        None
                    }
                    Err(e) => {
                        warn!(error = %e, "block check task failed");
                        None
                    }
                }
            }
        };
        let validity = Validity::from_bool(checked.is_some());
        if checked.is_some() {
            self.keep_block(&block);
        }
        self.candidates.insert(hash, Candidate { block, checked });
        validity
    }

    /// Commits the decided block with its certificate.
    async fn commit(
        &mut self,
        certificate: CommitCertificate<AgoraContext>,
    ) -> Result<(), AppError> {
        let height = certificate.height;
        if self.committed_height()? >= height.0 {
            return Ok(());
        }
        // Taken out: a failed commit forgets the block, and the restarted height gets it again.
        let checked = match self
            .candidates
            .remove(&certificate.value_id)
            .and_then(|c| c.checked)
        {
            Some(checked) => checked,
            // Voted for before a restart: the block was kept on disk.
            None => match self.kept_block(&certificate.value_id) {
                Some(block) if block.hash() == certificate.value_id => {
                    info!(%height, block = %certificate.value_id, "committing a block kept across a restart");
                    let node = self.node.clone();
                    tokio::task::spawn_blocking(move || node.check_block(block))
                        .await
                        .map_err(|e| AppError::Task(e.to_string()))??
                }
                _ => {
                    return Err(AppError::Task(format!(
                        "decided block {} of height {height} is not known here",
                        certificate.value_id
                    )));
                }
            },
        };
        let cert = AgoraCodec
            .encode(&certificate)
            .map_err(|e| AppError::Task(e.to_string()))?
            .to_vec();
        let node = self.node.clone();
        let committed = tokio::task::spawn_blocking(move || node.commit_block(checked, Some(cert)))
            .await
            .map_err(|e| AppError::Task(e.to_string()))??;
        self.clear_kept_blocks();
        info!(
            height = committed.block.header.height,
            txs = committed.block.txs.len(),
            block = %committed.hash,
            round = %certificate.round,
            signatures = certificate.commit_signatures.len(),
            "committed"
        );
        Ok(())
    }

    fn decided_values(
        &self,
        from: Height,
        to: Height,
    ) -> Result<Vec<RawDecidedValue<AgoraContext>>, AppError> {
        let snap = self.node.snapshot()?;
        let mut out = Vec::new();
        let to = to.0.min(from.0.saturating_add(MAX_SYNC_BATCH - 1));
        let mut bytes = 0;
        for h in from.0.max(1)..=to {
            let (Some(block), Some(cert)) = (snap.block(h)?, snap.certificate(h)?) else {
                break;
            };
            // One response is one message: at least one block, and never more than fit.
            bytes += borsh::object_length(&block).unwrap_or(usize::MAX) + cert.len();
            if !out.is_empty() && bytes > MAX_SYNC_BYTES {
                break;
            }
            let Ok(cert) =
                Codec::<CommitCertificate<AgoraContext>>::decode(&AgoraCodec, Bytes::from(cert))
            else {
                warn!(height = h, "stored certificate does not decode");
                break;
            };
            out.push(RawDecidedValue::new(
                Bytes::from(borsh::to_vec(&block).expect("borsh into a Vec")),
                ExtendedCommitCertificate::from_commit_certificate_and_extensions(
                    cert,
                    VoteExtensions::default(),
                ),
            ));
        }
        Ok(out)
    }

    async fn synced(
        &mut self,
        height: Height,
        round: Round,
        proposer: ValidatorAddress,
        value_bytes: Bytes,
    ) -> SyncedValueOutcome<AgoraContext> {
        let Ok(block) = borsh::from_slice::<Block>(&value_bytes) else {
            return SyncedValueOutcome::PeerFault;
        };
        match self.committed_height() {
            Ok(h) if h + 1 == height.0 => {}
            Ok(_) => return SyncedValueOutcome::LocalTransientError,
            Err(e) => {
                warn!(error = %e, "store error while syncing");
                return SyncedValueOutcome::LocalTransientError;
            }
        }
        self.enter(height);
        let hash = block.hash();
        // The commit certificate proves the decision: the block may name any validator (one
        // re-proposed from its proof-of-lock round names that round's proposer, not the
        // certificate's round's). Its seed is still checked against the key it names.
        let allowed: Vec<agora_types::Address> = match Self::validator_set(&self.node) {
            Ok(set) => set.validators().iter().map(|v| v.address.0).collect(),
            Err(e) => {
                warn!(error = %e, "no validator set to check a synced block against");
                return SyncedValueOutcome::LocalTransientError;
            }
        };
        let validity = self.check_block(height, &allowed, block).await;
        SyncedValueOutcome::Verdict(ProposedValue {
            height,
            round,
            valid_round: Round::Nil,
            proposer,
            value: BlockId(hash),
            validity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_chain::NodeConfig;
    use agora_state::{Genesis, GenesisAccount, GenesisValidator};
    use agora_types::{AGR, Keypair};

    fn node(dir: &std::path::Path, key: &Keypair) -> Arc<Node> {
        let genesis = Genesis::new("kept")
            .with_time(1)
            .with_accounts(vec![GenesisAccount {
                address: key.address(),
                balance: AGR,
                bonded: AGR,
            }])
            .with_validators(vec![GenesisValidator {
                public_key: key.public(),
            }]);
        Arc::new(
            Node::open(
                &dir.join("chain.redb"),
                &genesis,
                (*key).clone(),
                NodeConfig::default(),
            )
            .unwrap(),
        )
    }

    /// A proposer cannot pass off a block it has seen (and its seed) as its own: the header
    /// must name a proposer the proposal allows, checked before the cache of checked blocks.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_known_valid_block_naming_another_proposer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(Keypair::from_seed_label("kept-validator"));
        let node = node(dir.path(), &key);
        let address = ValidatorAddress(key.address());
        let signer = Ed25519Signer::new(key.clone(), "kept");
        let mut app = ConsensusApp::new(node.clone(), signer, address, AppConfig::default());
        app.enter(Height(1));
        app.build(Height(1)).await.unwrap().expect("at height 1");
        let block = node.build_block(now_ms()).unwrap().block;
        assert_eq!(
            app.check_block(Height(1), &[key.address()], block.clone())
                .await,
            Validity::Valid
        );
        let other = Keypair::from_seed_label("another-validator").address();
        assert_eq!(
            app.check_block(Height(1), &[other], block).await,
            Validity::Invalid
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_block_voted_for_before_a_restart_is_committed_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(Keypair::from_seed_label("kept-validator"));
        let node = node(dir.path(), &key);
        let address = ValidatorAddress(key.address());
        let signer = Ed25519Signer::new(key.clone(), "kept");
        let blocks = dir.path().join("blocks");
        let mut before =
            ConsensusApp::new(node.clone(), signer.clone(), address, AppConfig::default())
                .with_block_dir(blocks.clone())
                .unwrap();
        before.enter(Height(1));
        let hash = before.build(Height(1)).await.unwrap().expect("at height 1");
        // The process dies here: everything in memory is gone, the block file stays.
        drop(before);
        assert_eq!(std::fs::read_dir(&blocks).unwrap().count(), 1);
        let mut after = ConsensusApp::new(node.clone(), signer, address, AppConfig::default())
            .with_block_dir(blocks.clone())
            .unwrap();
        after.enter(Height(1));
        let cert = CommitCertificate::<AgoraContext> {
            height: Height(1),
            round: Round::new(0),
            value_id: hash,
            commit_signatures: Vec::new(),
        };
        after.commit(cert.clone()).await.unwrap();
        let snap = node.snapshot().unwrap();
        assert_eq!(snap.height().unwrap(), Some(1));
        assert_eq!(snap.block(1).unwrap().unwrap().hash(), hash);
        let stored = snap.certificate(1).unwrap().expect("certificate kept");
        let back: CommitCertificate<AgoraContext> = AgoraCodec.decode(Bytes::from(stored)).unwrap();
        assert_eq!(back, cert);
        assert_eq!(
            std::fs::read_dir(&blocks).unwrap().count(),
            0,
            "kept blocks cleared"
        );
        // An unknown decided block is an error, not a commit.
        let unknown = CommitCertificate::<AgoraContext> {
            height: Height(2),
            round: Round::new(0),
            value_id: Hash::digest(b"never seen"),
            commit_signatures: Vec::new(),
        };
        assert!(after.commit(unknown).await.is_err());
        assert_eq!(node.snapshot().unwrap().height().unwrap(), Some(1));
    }
}
