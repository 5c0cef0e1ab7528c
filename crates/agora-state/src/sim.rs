//! Adversarial runs of the whole state machine: random blocks of random transactions from a
//! handful of actors who play every role at once (clients, providers, verifiers, challengers,
//! squatters) and every message type, honest and malicious — several messages of one
//! transaction and several transactions of one block on the same job included. After every
//! block every invariant of [`crate::invariants`] must hold; the same blocks run twice must
//! leave the same state.
//!
//! Actions are abstract (indices, choices) and are turned into signed transactions against the
//! state as it is when their block is built, so a shrunk failing case stays meaningful.
//! `cargo test` runs a short campaign; `agora bench invariants` a long one.

use crate::{
    BlockContext, Check, DataParams, Executor, Genesis, GenesisAccount, GenesisModel, Item,
    MarketParams, MemState, Outcome, Params, Provider, Stage, VerifyParams, invariants,
    provider_key,
};
use agora_types::{
    AGR, Address, Amount, EncryptionKey, Fault, Hash, JobParams, JobReceipt, JobRequest, Keypair,
    Message, ModelKind, ProviderInfo, SettledJob, SignedTransaction, SubnetParam, SubnetTask,
    Transaction, Verdict, Verification, VerifierInfo, ZkClaim, job_fee, prediction_commitment,
    weights_commitment,
};
use agora_types::{BountySpec, CiteTarget, RejectReason, ScreenVerdict, vote_commitment};
use proptest::prelude::*;
use std::collections::BTreeMap;

const CHAIN: &str = "agora-sim";
/// Actors; each may be a client, a provider and a verifier.
pub const ACTORS: usize = 8;
/// Actors `0..PROVIDERS` register as providers in the opening block, the next `VERIFIERS` as
/// verifiers; every actor funds its escrow. The random blocks may undo any of it.
const PROVIDERS: usize = 3;
const VERIFIERS: usize = 4;
const MODEL: Hash = Hash([0xAB; 32]);

/// Amounts chosen to hit edges: zero, dust, the minimums, more than anyone holds, `u128::MAX`.
const AMOUNTS: [Amount; 8] = [
    0,
    1,
    1_000_000,
    AGR,
    5 * AGR,
    20 * AGR,
    900 * AGR,
    Amount::MAX,
];

/// One abstract action; turned into a message by [`World::message`].
#[derive(Clone, Debug)]
pub enum Action {
    /// Moves an amount to an actor.
    Transfer { to: u8, amount: u8 },
    /// Bonds.
    Bond { amount: u8 },
    /// Unbonds.
    Unbond { amount: u8 },
    /// Registers as a provider with a price.
    RegisterProvider { stake: u8, price: u8 },
    /// Changes its price.
    UpdateProvider { price: u8 },
    /// Leaves the provider registry.
    UnregisterProvider,
    /// Registers a model (one of a few ids).
    RegisterModel { id: u8 },
    /// Publishes a model's source (one of a few ids; sometimes with a path out of the package).
    PublishModelSource { id: u8, unsafe_path: bool },
    /// Deposits into its escrow.
    EscrowDeposit { amount: u8 },
    /// Starts a withdrawal.
    EscrowWithdraw { amount: u8 },
    /// Settles a job of `client` served by `provider` (signed by both), maybe malformed.
    Settle {
        client: u8,
        provider: u8,
        nonce: u8,
        tokens: u16,
        level: u8,
        flaw: u8,
    },
    /// Registers as a verifier.
    RegisterVerifier { stake: u8 },
    /// Leaves the verifier registry.
    UnregisterVerifier,
    /// Reveals (one of the parts of) an open check's job to one of its seats.
    Reveal {
        check: u8,
        seat: u8,
        parts: u8,
        part: u8,
    },
    /// Challenges a settled job.
    Challenge { job: u8 },
    /// Posts a verdict on an open check.
    Verdict { check: u8, pass: bool },
    /// Creates a subnet (a chat or a forecast one), burning at most an amount.
    CreateSubnet { max_lock: u8, forecast: bool },
    /// Changes a hyperparameter (its owner or not, within bounds or not).
    SetSubnetParam { netuid: u8, which: u8, value: u8 },
    /// Registers as a neuron.
    RegisterNeuron { netuid: u8 },
    /// Delegates stake to an actor's hotkey.
    SubnetStake { netuid: u8, hotkey: u8, amount: u8 },
    /// Takes delegated stake back.
    SubnetUnstake { netuid: u8, hotkey: u8, amount: u8 },
    /// Commits to weights drawn from a seed.
    CommitWeights { netuid: u8, seed: u8 },
    /// Reveals the last commitment (or something else, or tampered).
    RevealWeights { netuid: u8, tamper: u8 },
    /// Commits to a forecast.
    CommitPrediction { netuid: u8, value: u8 },
    /// Reveals the last forecast (or tampered).
    RevealPrediction { netuid: u8, tamper: u8 },
    /// Posts a data bounty: a quorum, a budget, and whether items need a bond.
    CreateBounty { quorum: u8, budget: u8, bond: bool },
    /// Submits one of a few contents (so duplicates happen) to a bounty, sized in or out.
    SubmitItem { bounty: u8, content: u8, size: u8 },
    /// Screens an item: pass, reject as spam, or as a duplicate of an earlier one.
    ScreenItem { item: u8, verdict: u8 },
    /// Appeals an item.
    AppealItem { item: u8 },
    /// Commits a vote on an item (remembered to reveal).
    CommitVote { item: u8, accept: bool },
    /// Reveals the vote committed on an item (or tampered).
    RevealVote { item: u8, tamper: u8 },
    /// Adds review stake.
    JoinReviewers { amount: u8 },
    /// Takes review stake back.
    LeaveReviewers { amount: u8 },
    /// Cites a dataset for a model (registering it in the same message list or not), the
    /// sender's neuron or a job.
    Cite { target: u8, dataset: u8 },
    /// Claims royalties from a dataset.
    ClaimRoyalties { dataset: u8 },
    /// A zero-knowledge message: registers a provable model (a valid key or junk), certifies an
    /// input commitment, attests, or settles a zk job, the last two with proofs that are junk,
    /// truncated or missing (real proofs are the zk tests' business: they take seconds).
    Zk { kind: u8, pick: u8 },
}

/// A transaction: its messages, and whether it is sent by the natural sender of its first
/// message (the job's client for a challenge, the check's provider for a reveal, a seated
/// verifier for a verdict) or by actor `by`.
#[derive(Clone, Debug)]
pub struct TxPlan {
    /// Who sends it when `natural` is false.
    pub by: u8,
    /// Send as the natural sender of the first message.
    pub natural: bool,
    /// Its messages.
    pub actions: Vec<Action>,
}

fn key(i: usize) -> Keypair {
    Keypair::from_seed_label(&format!("sim-actor{i}"))
}

fn amount(i: u8) -> Amount {
    AMOUNTS[usize::from(i) % AMOUNTS.len()]
}

/// Mostly subnet 0 (the opening block's), sometimes one created later or none.
fn subnet(i: u8) -> u16 {
    u16::from(i % 4).saturating_sub(1)
}

/// Mostly the sender's own hotkey, else any actor's.
fn hotkey_of(sender: usize, pick: u8) -> Address {
    if pick < 160 {
        key(sender).address()
    } else {
        key(usize::from(pick) % ACTORS).address()
    }
}

/// One of two small provable models: its file and its id (the id needs the setup: made once).
fn zk_model(which: u8) -> (Vec<u8>, Hash) {
    static MODELS: std::sync::OnceLock<Vec<(Vec<u8>, Hash)>> = std::sync::OnceLock::new();
    let models = MODELS.get_or_init(|| {
        (0..2u32)
            .filter_map(|i| {
                let m = agora_zk::ZkModel::synthetic("sim", &[4, 2 + i], u64::from(i)).ok()?;
                let file = m.to_bytes();
                let pk = agora_zk::ProvingKey::new(m).ok()?;
                Some((file, Hash(pk.verifying_key().model_id())))
            })
            .collect()
    });
    models
        .get(usize::from(which) % models.len().max(1))
        .cloned()
        .unwrap_or_default()
}

fn model_id(i: u8) -> Hash {
    if i.is_multiple_of(3) {
        MODEL
    } else {
        Hash([i; 32])
    }
}

/// The genesis of a run: every actor funded, short windows so that every deadline comes.
pub fn genesis() -> Genesis {
    Genesis::new(CHAIN)
        .with_params(Params {
            min_fee: 10,
            unbonding_period: 3,
        })
        .with_market(MarketParams {
            min_provider_stake: 5 * AGR,
            escrow_unlock_period: 3,
            challenge_window: 6,
            protocol_share_bps: 500,
            max_request_lifetime: 9,
            job_retention: 2,
        })
        .with_verify(VerifyParams {
            sample_bps: 5_000,
            model_sample_bps: Vec::new(),
            reveal_window: 3,
            verdict_window: 3,
            committee: 3,
            slash_provider_bps: 1_000,
            slash_verifier_bps: 500,
            min_verifier_stake: 5 * AGR,
            challenge_bond: AGR,
        })
        .with_accounts((0..ACTORS).map(|i| GenesisAccount {
            address: key(i).address(),
            balance: 1_000 * AGR,
            bonded: 0,
        }))
        .with_data(DataParams {
            min_reviewer_stake: 5 * AGR,
            max_quorum: 5,
            screen_window: 2,
            appeal_window: 2,
            commit_window: 2,
            reveal_window: 2,
            max_bounty_blocks: 50,
            max_item_bytes: 100,
            ..DataParams::default()
        })
        .with_models(vec![GenesisModel {
            id: MODEL,
            name: "sim-model".into(),
            kind: ModelKind::Chat,
        }])
}

/// Weights an actor committed to: uids, weights, salt.
type Committed = (Vec<u16>, Vec<u16>, Hash);

/// The chain as a run sees it.
#[derive(Clone, Debug)]
pub struct World {
    /// The state after the last block.
    pub state: MemState,
    /// The last block's height.
    pub height: u64,
    /// Jobs settlements were built for (settled or not): (id, client).
    jobs: Vec<(Hash, usize)>,
    /// The last settlement built, to replay.
    last: Option<SettledJob>,
    /// Blocks executed.
    pub blocks: u64,
    /// Events seen, by kind (successful transactions' and blocks' own), to show what a run
    /// reached.
    pub events: BTreeMap<String, u64>,
    /// The weights each actor last committed to, by subnet: (uids, weights, salt).
    commits: BTreeMap<(usize, u16), Committed>,
    /// The forecast each actor last committed to, by subnet.
    forecasts: BTreeMap<(usize, u16), u64>,
    /// The vote each actor committed on an item: (accept, salt).
    votes: BTreeMap<(usize, u64, u32), (bool, Hash)>,
    /// The last block executed and its results (for tools that read blocks, e.g. analytics).
    pub last_block: Option<SimBlock>,
}

/// A block a run executed, with its results.
#[derive(Clone, Debug)]
pub struct SimBlock {
    /// Its height.
    pub height: u64,
    /// Its time.
    pub time_ms: u64,
    /// Its proposer.
    pub proposer: Address,
    /// Its transactions.
    pub txs: Vec<SignedTransaction>,
    /// One per transaction.
    pub receipts: Vec<agora_types::Receipt>,
    /// The block's own events.
    pub block_events: Vec<agora_types::Event>,
}

impl Default for World {
    fn default() -> Self {
        let mut state = MemState::default();
        state.apply(
            &genesis()
                .initial_writes()
                .expect("the sim genesis is valid"),
        );
        World {
            state,
            height: 0,
            jobs: Vec::new(),
            last: None,
            blocks: 0,
            events: BTreeMap::new(),
            commits: BTreeMap::new(),
            forecasts: BTreeMap::new(),
            votes: BTreeMap::new(),
            last_block: None,
        }
    }
}

impl World {
    fn decoded<T: borsh::BorshDeserialize>(&self, key: &[u8]) -> Option<T> {
        self.state
            .0
            .get(key)
            .and_then(|b| borsh::from_slice(b).ok())
    }

    fn nonce(&self, i: usize) -> u64 {
        crate::read_account(&self.state, &key(i).address())
            .ok()
            .flatten()
            .map_or(0, |a| a.nonce)
    }

    /// A job a settlement was built for: mostly the latest (a challenge in the same transaction
    /// or block as its settlement), else any.
    fn job(&self, pick: u8) -> Option<(Hash, usize)> {
        if pick < 160 {
            self.jobs.last().copied()
        } else {
            self.jobs
                .get(usize::from(pick) % self.jobs.len().max(1))
                .copied()
        }
    }

    fn open_checks(&self) -> Vec<Check> {
        self.state
            .0
            .range(b"chk/".to_vec()..b"chk0".to_vec())
            .filter_map(|(_, v)| borsh::from_slice::<Check>(v).ok())
            .filter(|c| c.outcome == Outcome::Open)
            .collect()
    }

    /// The data market's items not yet decided, by (bounty, index).
    fn open_items(&self) -> Vec<(u64, u32, Item)> {
        self.state
            .0
            .range(b"dmi/".to_vec()..b"dmi0".to_vec())
            .filter_map(|(k, v)| {
                let b = u64::from_be_bytes(k.get(4..12)?.try_into().ok()?);
                let i = u32::from_be_bytes(k.get(12..16)?.try_into().ok()?);
                let it: Item = borsh::from_slice(v).ok()?;
                (!it.decided()).then_some((b, i, it))
            })
            .collect()
    }

    fn item(&self, pick: u8) -> Option<(u64, u32, Item)> {
        let open = self.open_items();
        open.get(usize::from(pick) % open.len().max(1)).cloned()
    }

    /// Datasets' roots.
    fn datasets(&self) -> Vec<Hash> {
        self.state
            .0
            .range(b"dmd/".to_vec()..b"dmd0".to_vec())
            .filter_map(|(k, _)| Some(Hash(k.get(4..36)?.try_into().ok()?)))
            .collect()
    }

    fn dataset(&self, pick: u8) -> Hash {
        let all = self.datasets();
        all.get(usize::from(pick) % all.len().max(1))
            .copied()
            .unwrap_or(Hash([pick; 32]))
    }

    fn actor(address: &Address) -> usize {
        (0..ACTORS)
            .find(|i| key(*i).address() == *address)
            .unwrap_or(0)
    }

    fn info(price: u8) -> ProviderInfo {
        ProviderInfo {
            models: vec![MODEL],
            price_input_per_1k: Amount::from(price) * 1_000,
            price_output_per_1k: Amount::from(price) * 3_000,
            endpoint: "http://127.0.0.1:1".into(),
            encryption_key: EncryptionKey([1; 32]),
        }
    }

    /// A model registered during the run (one with an owner), picked by `pick`; with none, the
    /// genesis model (which has no owner).
    fn owned_model(&self, pick: u8) -> Hash {
        let owned: Vec<Hash> = self
            .state
            .0
            .range(b"dmo/".to_vec()..b"dmo0".to_vec())
            .filter_map(|(k, _)| Some(Hash(k.get(4..36)?.try_into().ok()?)))
            .collect();
        owned
            .get(usize::from(pick) % owned.len().max(1))
            .copied()
            .unwrap_or(MODEL)
    }

    /// The natural sender of `action`, if it has one.
    fn natural_sender(&self, action: &Action) -> Option<usize> {
        match action {
            // A client may submit its own job's settlement (and challenge it in the same
            // transaction).
            Action::Settle { client, .. } => Some(usize::from(*client) % ACTORS),
            Action::Challenge { job } => self.job(*job).map(|(_, client)| client),
            Action::Reveal { check, .. } => {
                let open = self.open_checks();
                open.get(usize::from(*check) % open.len().max(1))
                    .map(|c| Self::actor(&c.provider))
            }
            Action::Verdict { check, .. } => {
                let open = self.open_checks();
                let c = open.get(usize::from(*check) % open.len().max(1))?;
                // A seat that can judge now, else any still owing a verdict.
                c.seats
                    .iter()
                    .find(|s| s.verdict.is_none() && s.revealed())
                    .or_else(|| c.seats.iter().find(|s| s.verdict.is_none()))
                    .map(|s| Self::actor(&s.verifier))
            }
            Action::ScreenItem { item, .. } => match self.item(*item)?.2.stage {
                Stage::Screening { screener, .. } => Some(Self::actor(&screener)),
                _ => None,
            },
            Action::AppealItem { item } => Some(Self::actor(&self.item(*item)?.2.contributor)),
            // The model's registrant.
            Action::PublishModelSource { id, .. } => {
                let owner = self
                    .state
                    .0
                    .get(&crate::model_owner_key(&self.owned_model(*id)))?;
                let owner: crate::ModelOwner = borsh::from_slice(owner).ok()?;
                Some(Self::actor(&owner.owner))
            }
            Action::CommitVote { item, .. } | Action::RevealVote { item, .. } => {
                match self.item(*item)?.2.stage {
                    Stage::Voting { seats, .. } => seats
                        .get(usize::from(*item / 16) % seats.len().max(1))
                        .map(|s| Self::actor(&s.reviewer)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The message for `action` sent by actor `sender`, against the current state.
    fn message(&mut self, sender: usize, action: &Action) -> Message {
        match action {
            Action::Transfer { to, amount: a } => Message::Transfer {
                to: key(usize::from(*to) % ACTORS).address(),
                amount: amount(*a),
            },
            Action::Bond { amount: a } => Message::Bond { amount: amount(*a) },
            Action::Unbond { amount: a } => Message::Unbond { amount: amount(*a) },
            Action::RegisterProvider { stake, price } => Message::RegisterProvider {
                stake: amount(*stake),
                info: Self::info(*price),
            },
            Action::UpdateProvider { price } => Message::UpdateProvider {
                info: Self::info(*price),
            },
            Action::UnregisterProvider => Message::UnregisterProvider,
            Action::RegisterModel { id } => Message::RegisterModel {
                id: model_id(*id),
                name: format!("model-{id}"),
                kind: ModelKind::Chat,
            },
            Action::PublishModelSource { id, unsafe_path } => Message::PublishModelSource {
                id: self.owned_model(*id),
                source: agora_types::ModelSource {
                    package: format!("llm-model-{id}"),
                    version: "1.0".into(),
                    wheel_sha256: Hash([*id; 32]),
                    file: if *unsafe_path {
                        "../weights.gguf".into()
                    } else {
                        format!("model_{id}/weights.gguf")
                    },
                    quantization: "Q4_K_M".into(),
                },
            },
            Action::EscrowDeposit { amount: a } => Message::EscrowDeposit { amount: amount(*a) },
            Action::EscrowWithdraw { amount: a } => Message::EscrowWithdraw { amount: amount(*a) },
            Action::Settle {
                client,
                provider,
                nonce,
                tokens,
                level,
                flaw,
            } => self.settle(
                usize::from(*client) % ACTORS,
                // Mostly the providers of the opening block.
                usize::from(*provider) % (PROVIDERS + 1),
                *nonce,
                *tokens,
                *level,
                *flaw,
            ),
            Action::RegisterVerifier { stake } => Message::RegisterVerifier {
                stake: amount(*stake),
                info: VerifierInfo {
                    models: vec![MODEL],
                    encryption_key: EncryptionKey([2; 32]),
                },
            },
            Action::UnregisterVerifier => Message::UnregisterVerifier,
            Action::Reveal {
                check,
                seat,
                parts,
                part,
            } => {
                let open = self.open_checks();
                let (job_id, verifier) = match open.get(usize::from(*check) % open.len().max(1)) {
                    Some(c) if !c.seats.is_empty() => (
                        c.job_id,
                        c.seats[usize::from(*seat) % c.seats.len()].verifier,
                    ),
                    _ => (Hash::digest(&[*check]), key(sender).address()),
                };
                // Mostly whole one-part reveals; sometimes parts that do not fit.
                let parts = if *parts < 192 {
                    1
                } else {
                    u16::from(*parts % 3) + 1
                };
                let part = if *part < 192 {
                    0
                } else {
                    u16::from(*part) % (parts + 1)
                };
                Message::RevealJob {
                    job_id,
                    verifier,
                    part,
                    parts,
                    data: vec![part as u8; 16],
                }
            }
            Action::Challenge { job } => Message::ChallengeJob {
                job_id: self.job(*job).map_or(Hash::digest(&[*job]), |(id, _)| id),
            },
            Action::Verdict { check, pass } => {
                let open = self.open_checks();
                let job_id = open
                    .get(usize::from(*check) % open.len().max(1))
                    .map_or(Hash::digest(&[*check]), |c| c.job_id);
                let verdict = if *pass {
                    Verdict::Pass
                } else {
                    Verdict::Fail {
                        fault: Fault::WrongToken { position: 0 },
                    }
                };
                Message::PostVerdict { job_id, verdict }
            }
            Action::CreateSubnet { max_lock, forecast } => Message::CreateSubnet {
                name: format!("subnet of {sender}"),
                task: if *forecast {
                    SubnetTask::Forecast
                } else {
                    SubnetTask::Chat
                },
                max_lock: amount(*max_lock),
            },
            Action::CommitPrediction { netuid, value } => {
                let netuid = subnet(*netuid);
                let value = u64::from(*value);
                self.forecasts.insert((sender, netuid), value);
                Message::CommitPrediction {
                    netuid,
                    commitment: prediction_commitment(
                        netuid,
                        &key(sender).address(),
                        value,
                        &Hash::digest(&[sender as u8]),
                    ),
                }
            }
            Action::RevealPrediction { netuid, tamper } => {
                let netuid = subnet(*netuid);
                let value = self.forecasts.get(&(sender, netuid)).copied().unwrap_or(0);
                Message::RevealPrediction {
                    netuid,
                    value: if tamper % 5 == 0 { value + 1 } else { value },
                    salt: Hash::digest(&[sender as u8]),
                }
            }
            Action::SetSubnetParam {
                netuid,
                which,
                value,
            } => {
                let v = *value;
                let param = match which % 8 {
                    // Some below the least tempo (10): refused.
                    0 => SubnetParam::Tempo(u64::from(v % 12) + 5),
                    1 => SubnetParam::MaxUids(u16::from(v % 10) + 1),
                    2 => SubnetParam::ImmunityPeriod(u64::from(v % 20)),
                    3 => SubnetParam::CommitRevealPeriod(u64::from(v % 3)),
                    4 => SubnetParam::Kappa(u16::from(v) * 257),
                    5 => SubnetParam::MinBurn(amount(v)),
                    6 => SubnetParam::TargetRegistrations(u16::from(v % 5)),
                    _ => SubnetParam::ActivityCutoff(u64::from(v)),
                };
                Message::SetSubnetParam {
                    netuid: subnet(*netuid),
                    param,
                }
            }
            Action::RegisterNeuron { netuid } => Message::RegisterNeuron {
                netuid: subnet(*netuid),
                endpoint: "http://127.0.0.1:2".into(),
                max_burn: Amount::MAX,
            },
            Action::SubnetStake {
                netuid,
                hotkey,
                amount: a,
            } => Message::AddSubnetStake {
                netuid: subnet(*netuid),
                hotkey: hotkey_of(sender, *hotkey),
                amount: amount(*a),
            },
            Action::SubnetUnstake {
                netuid,
                hotkey,
                amount: a,
            } => Message::RemoveSubnetStake {
                netuid: subnet(*netuid),
                hotkey: hotkey_of(sender, *hotkey),
                amount: amount(*a),
            },
            Action::CommitWeights { netuid, seed } => {
                let netuid = subnet(*netuid);
                let n = usize::from(seed % 4) + 1;
                let uids: Vec<u16> = (0..n)
                    .map(|k| ((usize::from(*seed) + 3 * k) % ACTORS) as u16)
                    .collect();
                let weights: Vec<u16> = (0..n).map(|k| u16::from(*seed) * (k as u16 + 1)).collect();
                let salt = Hash::digest(&[sender as u8, *seed]);
                let commitment =
                    weights_commitment(netuid, &key(sender).address(), &uids, &weights, &salt);
                self.commits.insert((sender, netuid), (uids, weights, salt));
                Message::CommitWeights { netuid, commitment }
            }
            Action::CreateBounty { .. }
            | Action::SubmitItem { .. }
            | Action::ScreenItem { .. }
            | Action::AppealItem { .. }
            | Action::CommitVote { .. }
            | Action::RevealVote { .. }
            | Action::JoinReviewers { .. }
            | Action::LeaveReviewers { .. }
            | Action::Cite { .. }
            | Action::ClaimRoyalties { .. } => self.data_message(sender, action),
            Action::Zk { kind, pick } => self.zk_message(*kind, *pick),
            Action::RevealWeights { netuid, tamper } => {
                let netuid = subnet(*netuid);
                let (uids, mut weights, salt) = self
                    .commits
                    .get(&(sender, netuid))
                    .cloned()
                    .unwrap_or_else(|| (vec![0], vec![1], Hash::digest(&[*tamper])));
                if tamper % 5 == 0
                    && let Some(w) = weights.first_mut()
                {
                    *w = w.wrapping_add(1);
                }
                Message::RevealWeights {
                    netuid,
                    uids,
                    weights,
                    salt,
                }
            }
        }
    }

    /// The data market's messages.
    fn data_message(&mut self, sender: usize, action: &Action) -> Message {
        match action {
            Action::CreateBounty {
                quorum,
                budget,
                bond,
            } => Message::CreateBounty {
                spec: BountySpec {
                    description: format!("bounty of {sender}"),
                    schema: if *quorum == 255 {
                        "not json".into()
                    } else {
                        r#"{"type":"object"}"#.into()
                    },
                    reward_per_item: AGR,
                    review_fee: AGR / 10,
                    budget: amount(*budget),
                    quorum: quorum % 6,
                    review_stake: 5 * AGR,
                    item_bond: if *bond { AGR / 2 } else { AGR / 1_000 },
                    deadline: self.height + 2 + u64::from(quorum / 8) % 16,
                    max_item_bytes: 64,
                    duplicate_bps: 9_000,
                    royalty_bps: u16::from(*budget) * 4,
                },
            },
            Action::SubmitItem {
                bounty,
                content,
                size,
            } => Message::SubmitItem {
                bounty: u64::from(bounty % 4),
                hash: Hash::digest(&[content % 6]),
                size: if *size < 240 {
                    u32::from(size % 64) + 1
                } else {
                    100
                },
            },
            Action::ScreenItem { item, verdict } => {
                let (bounty, index) = self.item(*item).map_or((0, 0), |(b, i, _)| (b, i));
                let verdict = match verdict % 4 {
                    0 | 1 => ScreenVerdict::Pass,
                    2 => ScreenVerdict::Reject {
                        reason: RejectReason::Spam,
                        duplicate_of: None,
                        detail: "filler".into(),
                    },
                    _ => ScreenVerdict::Reject {
                        reason: RejectReason::Duplicate,
                        duplicate_of: Some(u32::from(*verdict / 4) % (index + 1)),
                        detail: String::new(),
                    },
                };
                Message::ScreenItem {
                    bounty,
                    item: index,
                    verdict,
                }
            }
            Action::AppealItem { item } => {
                let (bounty, index) = self.item(*item).map_or((0, 0), |(b, i, _)| (b, i));
                Message::AppealItem {
                    bounty,
                    item: index,
                }
            }
            Action::CommitVote { item, accept } => {
                let (bounty, index) = self.item(*item).map_or((0, 0), |(b, i, _)| (b, i));
                let salt = Hash::digest(&[sender as u8, *item]);
                self.votes.insert((sender, bounty, index), (*accept, salt));
                Message::CommitVote {
                    bounty,
                    item: index,
                    commitment: vote_commitment(
                        bounty,
                        index,
                        &key(sender).address(),
                        *accept,
                        &salt,
                    ),
                }
            }
            Action::RevealVote { item, tamper } => {
                let (bounty, index) = self.item(*item).map_or((0, 0), |(b, i, _)| (b, i));
                let (accept, salt) = self
                    .votes
                    .get(&(sender, bounty, index))
                    .copied()
                    .unwrap_or((true, Hash::ZERO));
                Message::RevealVote {
                    bounty,
                    item: index,
                    accept: if tamper % 7 == 0 { !accept } else { accept },
                    salt,
                }
            }
            Action::JoinReviewers { amount: a } => Message::JoinReviewers { amount: amount(*a) },
            Action::LeaveReviewers { amount: a } => Message::LeaveReviewers { amount: amount(*a) },
            Action::Cite { target, dataset } => {
                let target = match target % 3 {
                    0 => CiteTarget::Model {
                        id: model_id(*target / 3),
                    },
                    1 => CiteTarget::Neuron {
                        netuid: subnet(*target / 3),
                    },
                    _ => CiteTarget::Job {
                        id: self.job(*target).map_or(Hash::ZERO, |(id, _)| id),
                    },
                };
                Message::CiteDatasets {
                    target,
                    datasets: vec![self.dataset(*dataset)],
                }
            }
            Action::ClaimRoyalties { dataset } => Message::ClaimRoyalties {
                dataset: self.dataset(*dataset),
            },
            _ => Message::Transfer {
                to: key(sender).address(),
                amount: 0,
            },
        }
    }

    /// One of the zero-knowledge messages (see [`Action::Zk`]).
    fn zk_message(&mut self, kind: u8, pick: u8) -> Message {
        let (file, model) = zk_model(pick % 2);
        let commitment = Hash([pick % 3; 32]);
        let claim = ZkClaim {
            model: if pick.is_multiple_of(5) { MODEL } else { model },
            input_commitment: commitment,
            threshold: i64::from(pick),
            below: pick.is_multiple_of(2),
            outputs: (pick.is_multiple_of(3)).then(|| vec![i64::from(pick)]),
        };
        let proof = match pick % 4 {
            0 => Vec::new(),
            1 => vec![pick; 64],
            2 => vec![0; 3000],
            _ => (0..=255).collect(),
        };
        match kind % 4 {
            0 => Message::RegisterZkModel {
                name: format!("zk-{}", pick % 2),
                model: if pick.is_multiple_of(7) {
                    vec![pick; 40]
                } else {
                    file
                },
            },
            1 => Message::CertifyZkInput {
                subject: key(usize::from(pick) % ACTORS).address(),
                commitment,
            },
            2 => Message::ZkAttest {
                claim,
                certifier: (pick % 2 == 1).then(|| key(usize::from(pick / 2) % ACTORS).address()),
                proof,
            },
            _ => {
                let Message::SettleJobs { mut jobs } = self.settle(
                    usize::from(pick) % ACTORS,
                    usize::from(pick / 8) % (PROVIDERS + 1),
                    pick,
                    u16::from(pick),
                    0,
                    0,
                ) else {
                    return Message::UnregisterVerifier;
                };
                let Some(mut job) = jobs.pop() else {
                    return Message::UnregisterVerifier;
                };
                if pick.is_multiple_of(2) {
                    // A zk job settled without its proof.
                    let mut request = job.request.request.clone();
                    request.params.verification = Verification::Zk;
                    job.receipt.receipt.request_hash = request.hash();
                    let provider = usize::from(pick / 8) % (PROVIDERS + 1);
                    job.receipt = job.receipt.receipt.clone().sign(&key(provider));
                    job.request = request.sign(&key(usize::from(pick) % ACTORS));
                    return Message::SettleJobs { jobs: vec![job] };
                }
                Message::SettleZkJob { job, claim, proof }
            }
        }
    }

    /// A settlement of one job; `flaw` picks an honest one or one of the ways to cheat.
    fn settle(
        &mut self,
        client: usize,
        provider: usize,
        nonce: u8,
        tokens: u16,
        level: u8,
        flaw: u8,
    ) -> Message {
        let listed: Option<Provider> = self.decoded(&provider_key(&key(provider).address()));
        let info = listed.map_or_else(|| Self::info(1), |p| p.info);
        let out = u32::from(tokens);
        let fee = job_fee(info.price_input_per_1k, info.price_output_per_1k, 10, out)
            .unwrap_or(Amount::MAX);
        let level = match level % 4 {
            0 => Verification::None,
            1 | 2 => Verification::Sampled,
            _ => Verification::Redundant(level % 9),
        };
        let mut request = JobRequest {
            chain_id: CHAIN.into(),
            client: key(client).public(),
            provider: key(provider).address(),
            model: MODEL,
            input_hash: Hash::digest(&[nonce]),
            params: JobParams {
                max_tokens: 64,
                verification: level,
                ..JobParams::default()
            },
            max_fee: fee.saturating_mul(2),
            nonce: Hash([nonce; 32]),
            expiry_height: self.height + 8,
        };
        let mut receipt_fee = fee;
        let mut signer = provider;
        match flaw % 12 {
            1 => receipt_fee = fee.saturating_add(1),
            2 => signer = (provider + 1) % ACTORS,
            3 => request.expiry_height = self.height,
            6 => request.expiry_height = self.height + 100,
            4 => request.max_fee = fee.saturating_sub(1),
            5 => {
                // The last settlement again, word for word.
                if let Some(job) = self.last.clone() {
                    return Message::SettleJobs { jobs: vec![job] };
                }
            }
            _ => {}
        }
        let receipt = JobReceipt {
            request_hash: request.hash(),
            output_hash: Hash::digest(&[nonce, 1]),
            input_tokens: 10,
            output_tokens: out,
            fee: receipt_fee,
        };
        self.jobs.push((request.id(), client));
        let job = SettledJob {
            request: request.sign(&key(client)),
            receipt: receipt.sign(&key(signer)),
        };
        self.last = Some(job.clone());
        Message::SettleJobs { jobs: vec![job] }
    }

    /// Builds block `height + 1` from `plans`, runs it and checks every invariant.
    pub fn step(&mut self, plans: &[TxPlan]) -> Result<(), String> {
        let height = self.height + 1;
        let mut next: BTreeMap<usize, u64> = BTreeMap::new();
        let mut txs: Vec<SignedTransaction> = Vec::new();
        for plan in plans {
            let Some(first) = plan.actions.first() else {
                continue;
            };
            let sender = if plan.natural {
                self.natural_sender(first)
                    .unwrap_or(usize::from(plan.by) % ACTORS)
            } else {
                usize::from(plan.by) % ACTORS
            };
            let messages: Vec<Message> = plan
                .actions
                .iter()
                .map(|a| self.message(sender, a))
                .collect();
            let nonce = *next.entry(sender).or_insert_with(|| self.nonce(sender));
            let tx = Transaction {
                chain_id: CHAIN.into(),
                sender: key(sender).public(),
                nonce,
                fee: 10 * u128::from(agora_types::work_units(&messages)),
                messages,
            }
            .sign(&key(sender));
            // A transaction admission refuses never enters a block.
            let mut probe =
                Executor::new(&self.state, self.ctx(height)).map_err(|e| e.to_string())?;
            for t in &txs {
                probe.apply_tx(t, t.hash()).map_err(|e| e.to_string())?;
            }
            if probe.check_tx(&tx).is_ok() {
                next.insert(sender, nonce + 1);
                txs.push(tx);
            }
        }
        let out = Executor::execute_block(&self.state, self.ctx(height), &txs)
            .map_err(|e| format!("block {height}: {e}"))?;
        self.state.apply(&out.writes);
        self.height = height;
        self.blocks += 1;
        let ctx = self.ctx(height);
        self.last_block = Some(SimBlock {
            height,
            time_ms: ctx.time_ms,
            proposer: ctx.proposer,
            txs: txs.clone(),
            receipts: out.receipts.clone(),
            block_events: out.block_events.clone(),
        });
        let receipts = out.receipts.iter().flat_map(|r| &r.events);
        for e in receipts.chain(&out.block_events) {
            let kind = if e.kind == "check_decided" {
                let outcome = e.attributes.iter().find(|(k, _)| k == "outcome");
                format!("check_decided:{}", outcome.map_or("", |(_, v)| v.as_str()))
            } else {
                e.kind.clone()
            };
            *self.events.entry(kind).or_default() += 1;
        }
        let entries = self
            .state
            .0
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()));
        invariants::check(height, entries).map_err(|v| format!("after block {height}: {v}"))?;
        Ok(())
    }

    fn ctx(&self, height: u64) -> BlockContext {
        BlockContext {
            chain_id: CHAIN.into(),
            height,
            time_ms: height * 500,
            proposer: key(height as usize % ACTORS).address(),
            seed: Hash::digest(&height.to_le_bytes()),
        }
    }
}

/// Any action, weighted towards the ones that move money in the market.
pub fn arb_action() -> impl Strategy<Value = Action> {
    let b = any::<u8>;
    prop_oneof![
        1 => (b(), b()).prop_map(|(to, amount)| Action::Transfer { to, amount }),
        1 => b().prop_map(|amount| Action::Bond { amount }),
        1 => b().prop_map(|amount| Action::Unbond { amount }),
        2 => (b(), b()).prop_map(|(stake, price)| Action::RegisterProvider { stake, price }),
        1 => b().prop_map(|price| Action::UpdateProvider { price }),
        1 => Just(Action::UnregisterProvider),
        1 => b().prop_map(|id| Action::RegisterModel { id }),
        1 => (b(), any::<bool>())
            .prop_map(|(id, unsafe_path)| Action::PublishModelSource { id, unsafe_path }),
        2 => b().prop_map(|amount| Action::EscrowDeposit { amount }),
        1 => b().prop_map(|amount| Action::EscrowWithdraw { amount }),
        6 => (b(), b(), b(), 0u16..2_000, b(), b()).prop_map(
            |(client, provider, nonce, tokens, level, flaw)| Action::Settle {
                client,
                provider,
                nonce,
                tokens,
                level,
                flaw,
            }
        ),
        2 => b().prop_map(|stake| Action::RegisterVerifier { stake }),
        1 => Just(Action::UnregisterVerifier),
        10 => (b(), b(), b(), b()).prop_map(|(check, seat, parts, part)| Action::Reveal {
            check,
            seat,
            parts,
            part,
        }),
        3 => b().prop_map(|job| Action::Challenge { job }),
        10 => (b(), any::<bool>()).prop_map(|(check, pass)| Action::Verdict { check, pass }),
        1 => (b(), any::<bool>()).prop_map(|(max_lock, forecast)| Action::CreateSubnet {
            max_lock,
            forecast
        }),
        3 => (b(), b()).prop_map(|(netuid, value)| Action::CommitPrediction { netuid, value }),
        3 => (b(), b()).prop_map(|(netuid, tamper)| Action::RevealPrediction { netuid, tamper }),
        1 => (b(), b(), b()).prop_map(|(netuid, which, value)| Action::SetSubnetParam {
            netuid,
            which,
            value,
        }),
        2 => b().prop_map(|netuid| Action::RegisterNeuron { netuid }),
        2 => (b(), b(), b()).prop_map(|(netuid, hotkey, amount)| Action::SubnetStake {
            netuid,
            hotkey,
            amount,
        }),
        1 => (b(), b(), b()).prop_map(|(netuid, hotkey, amount)| Action::SubnetUnstake {
            netuid,
            hotkey,
            amount,
        }),
        4 => (b(), b()).prop_map(|(netuid, seed)| Action::CommitWeights { netuid, seed }),
        4 => (b(), b()).prop_map(|(netuid, tamper)| Action::RevealWeights { netuid, tamper }),
        2 => (b(), b(), any::<bool>()).prop_map(|(quorum, budget, bond)| Action::CreateBounty {
            quorum,
            budget,
            bond
        }),
        5 => (b(), b(), b()).prop_map(|(bounty, content, size)| Action::SubmitItem {
            bounty,
            content,
            size,
        }),
        4 => (b(), b()).prop_map(|(item, verdict)| Action::ScreenItem { item, verdict }),
        1 => b().prop_map(|item| Action::AppealItem { item }),
        5 => (b(), any::<bool>()).prop_map(|(item, accept)| Action::CommitVote { item, accept }),
        5 => (b(), b()).prop_map(|(item, tamper)| Action::RevealVote { item, tamper }),
        1 => b().prop_map(|amount| Action::JoinReviewers { amount }),
        1 => b().prop_map(|amount| Action::LeaveReviewers { amount }),
        2 => (b(), b()).prop_map(|(target, dataset)| Action::Cite { target, dataset }),
        2 => b().prop_map(|dataset| Action::ClaimRoyalties { dataset }),
        1 => (b(), b()).prop_map(|(kind, pick)| Action::Zk { kind, pick }),
    ]
}

/// A transaction of 1 to 3 actions.
pub fn arb_tx() -> impl Strategy<Value = TxPlan> {
    (
        any::<u8>(),
        prop::bool::weighted(0.7),
        prop::collection::vec(arb_action(), 1..4),
    )
        .prop_map(|(by, natural, actions)| TxPlan {
            by,
            natural,
            actions,
        })
}

/// A run: up to `blocks` blocks of up to 7 transactions each.
pub fn arb_run(blocks: usize) -> impl Strategy<Value = Vec<Vec<TxPlan>>> {
    prop::collection::vec(prop::collection::vec(arb_tx(), 0..8), 1..=blocks)
}

/// Runs the opening block, then `blocks`, then a few empty blocks so every window closes;
/// checks the invariants after each. Returns the final world.
pub fn run(blocks: &[Vec<TxPlan>]) -> Result<World, String> {
    run_with(blocks, |_| {})
}

/// [`run`], calling `on_block` after each block (with [`World::last_block`] set).
pub fn run_with(blocks: &[Vec<TxPlan>], mut on_block: impl FnMut(&World)) -> Result<World, String> {
    let mut world = World::default();
    let mut step = |world: &mut World, plans: &[TxPlan]| -> Result<(), String> {
        world.step(plans)?;
        on_block(world);
        Ok(())
    };
    let opening: Vec<TxPlan> = (0..ACTORS)
        .map(|i| {
            let mut actions = vec![Action::EscrowDeposit { amount: 5 }];
            // Everyone but the first reviews data with 20 AGR; the first posts a bounty.
            if i == 0 {
                actions.push(Action::CreateBounty {
                    quorum: 123,
                    budget: 5,
                    bond: true,
                });
            } else {
                actions.push(Action::JoinReviewers { amount: 5 });
            }
            if i < PROVIDERS {
                actions.push(Action::RegisterProvider { stake: 5, price: 1 });
            } else if i < PROVIDERS + VERIFIERS {
                actions.push(Action::RegisterVerifier { stake: 5 });
            }
            TxPlan {
                by: i as u8,
                natural: false,
                actions,
            }
        })
        .collect();
    step(&mut world, &opening)?;
    // The model market: the last actor creates subnet 0 with a short tempo and no immunity,
    // every actor registers on it, the verifiers stake on themselves.
    step(
        &mut world,
        &[TxPlan {
            by: (ACTORS - 1) as u8,
            natural: false,
            actions: vec![
                Action::CreateSubnet {
                    max_lock: 7,
                    forecast: false,
                },
                // Tempo 10, room for all actors but one, no immunity: the last actor's
                // registration prunes someone.
                Action::SetSubnetParam {
                    netuid: 1,
                    which: 0,
                    value: 5,
                },
                Action::SetSubnetParam {
                    netuid: 1,
                    which: 1,
                    value: (ACTORS - 2) as u8,
                },
                // Up to 12 registrations an epoch.
                Action::SetSubnetParam {
                    netuid: 1,
                    which: 6,
                    value: 4,
                },
                Action::SetSubnetParam {
                    netuid: 1,
                    which: 2,
                    value: 10,
                },
            ],
        }],
    )?;
    // And the one before it a forecast subnet 1, with the same hyperparameters.
    step(
        &mut world,
        &[TxPlan {
            by: (ACTORS - 2) as u8,
            natural: false,
            actions: vec![
                Action::CreateSubnet {
                    max_lock: 7,
                    forecast: true,
                },
                Action::SetSubnetParam {
                    netuid: 2,
                    which: 0,
                    value: 5,
                },
                Action::SetSubnetParam {
                    netuid: 2,
                    which: 6,
                    value: 4,
                },
            ],
        }],
    )?;
    let market: Vec<TxPlan> = (0..ACTORS - 1)
        .map(|i| {
            let mut actions = vec![
                Action::RegisterNeuron { netuid: 1 },
                Action::RegisterNeuron { netuid: 2 },
            ];
            if (PROVIDERS..PROVIDERS + VERIFIERS).contains(&i) {
                actions.push(Action::SubnetStake {
                    netuid: 1,
                    hotkey: i as u8,
                    amount: 5,
                });
            }
            TxPlan {
                by: i as u8,
                natural: false,
                actions,
            }
        })
        .collect();
    step(&mut world, &market)?;
    for plans in blocks {
        step(&mut world, plans)?;
    }
    // Closing: providers reveal to every seat, seats judge (some pass, some fail), until every
    // window is over.
    for round in 0..20u8 {
        let plans = world.closing(round);
        step(&mut world, &plans)?;
    }
    Ok(world)
}

impl World {
    /// The reveals and verdicts the open checks wait for; whether a seat passes depends on the
    /// job and the round, so that disputes are won and lost both ways.
    fn closing(&self, round: u8) -> Vec<TxPlan> {
        let mut plans = Vec::new();
        // Miners reveal their forecasts, validators what they committed to (refused but in
        // their windows).
        for (actor, netuid) in self.forecasts.keys() {
            plans.push(TxPlan {
                by: *actor as u8,
                natural: false,
                actions: vec![Action::RevealPrediction {
                    netuid: (*netuid as u8) + 1,
                    tamper: 1,
                }],
            });
        }
        for (actor, netuid) in self.commits.keys() {
            plans.push(TxPlan {
                by: *actor as u8,
                natural: false,
                actions: vec![Action::RevealWeights {
                    netuid: (*netuid as u8) + 1,
                    tamper: 1,
                }],
            });
        }
        // The verifiers take back some of the stake they delegated to themselves.
        if round == 5 {
            for actor in PROVIDERS..PROVIDERS + VERIFIERS {
                plans.push(TxPlan {
                    by: actor as u8,
                    natural: false,
                    actions: vec![Action::SubnetUnstake {
                        netuid: 1,
                        hotkey: 0,
                        amount: 3,
                    }],
                });
            }
        }
        // Neurons cite the datasets there are; contributors claim what they earned.
        for (d, _) in self.datasets().iter().enumerate() {
            for actor in 0..ACTORS - 1 {
                let action = if round.is_multiple_of(4) {
                    // Target 1: the sender's neuron on subnet 0.
                    Action::Cite {
                        target: 1,
                        dataset: d as u8,
                    }
                } else if round % 4 == 2 {
                    Action::ClaimRoyalties { dataset: d as u8 }
                } else {
                    continue;
                };
                plans.push(TxPlan {
                    by: actor as u8,
                    natural: false,
                    actions: vec![action],
                });
            }
        }
        // Screeners judge, contributors appeal, panels commit and reveal (some of them).
        for (k, (_, _, it)) in self.open_items().iter().enumerate() {
            let pick = k as u8;
            match &it.stage {
                Stage::Screening { screener, .. } => plans.push(TxPlan {
                    by: Self::actor(screener) as u8,
                    natural: false,
                    actions: vec![Action::ScreenItem {
                        item: pick,
                        verdict: round.wrapping_add(pick),
                    }],
                }),
                Stage::Screened { .. } if round.is_multiple_of(2) => plans.push(TxPlan {
                    by: Self::actor(&it.contributor) as u8,
                    natural: false,
                    actions: vec![Action::AppealItem { item: pick }],
                }),
                Stage::Voting { seats, .. } => {
                    for (j, seat) in seats.iter().enumerate() {
                        let by = Self::actor(&seat.reviewer) as u8;
                        let action = if seat.commitment.is_none() {
                            Action::CommitVote {
                                item: pick,
                                accept: (j + usize::from(round)) % 3 != 2,
                            }
                        } else {
                            Action::RevealVote {
                                item: pick,
                                tamper: 1,
                            }
                        };
                        plans.push(TxPlan {
                            by,
                            natural: false,
                            actions: vec![action],
                        });
                    }
                }
                _ => {}
            }
        }
        let open = self.open_checks();
        for (i, c) in open.iter().enumerate() {
            let i = i as u8;
            for (j, seat) in c.seats.iter().enumerate() {
                if seat.verdict.is_some() {
                    continue;
                }
                let action = if seat.revealed() {
                    // A quarter of the jobs are judged frauds; one seat in three dissents
                    // every other round, so majorities win and lose both ways.
                    let fraud = c.job_id.0[0].is_multiple_of(4);
                    let dissent = j % 3 == 2 && round % 2 == 1;
                    let pass = fraud == dissent;
                    Action::Verdict { check: i, pass }
                } else {
                    Action::Reveal {
                        check: i,
                        seat: j as u8,
                        parts: 0,
                        part: 0,
                    }
                };
                let by = if seat.revealed() {
                    Self::actor(&seat.verifier)
                } else {
                    Self::actor(&c.provider)
                };
                plans.push(TxPlan {
                    by: by as u8,
                    natural: false,
                    actions: vec![action],
                });
            }
        }
        plans
    }
}

/// Runs each case twice: every invariant after every block, and the same final state.
/// Returns the blocks executed.
pub fn check_run(blocks: &[Vec<TxPlan>]) -> Result<u64, TestCaseError> {
    let a = run(blocks).map_err(TestCaseError::fail)?;
    let b = run(blocks).map_err(TestCaseError::fail)?;
    prop_assert_eq!(a.state.0, b.state.0, "the same blocks gave two states");
    Ok(a.blocks + b.blocks)
}

/// What a campaign did.
#[derive(Clone, Debug, Default)]
pub struct CampaignStats {
    /// Random runs.
    pub cases: u64,
    /// Blocks executed (each run twice).
    pub blocks: u64,
}

/// Runs random cases for `seconds` (at least one batch) from `seed`. `Err` carries the
/// shrunk failing case.
pub fn campaign(seconds: u64, seed: u64) -> Result<CampaignStats, String> {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let start = std::time::Instant::now();
    let mut stats = CampaignStats::default();
    let mut batch = seed;
    loop {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&batch.to_le_bytes());
        let config = Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
        let executed = std::sync::atomic::AtomicU64::new(0);
        runner
            .run(&arb_run(24), |b| {
                let n = check_run(&b)?;
                executed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            })
            .map_err(|e| format!("seed {batch}: {e}"))?;
        stats.cases += 64;
        stats.blocks += executed.into_inner();
        batch = batch.wrapping_add(1);
        if start.elapsed().as_secs() >= seconds {
            return Ok(stats);
        }
    }
}
