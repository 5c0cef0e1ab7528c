//! The model market's on-chain state (DESIGN.md §7): emission, subnets, neurons, delegated
//! stake, weight commitments, weights and bonds.
//!
//! Where the money is:
//! - **Emission** is minted every block and split between subnets by the stake delegated on
//!   each ([`SubnetSlot::pending`]); at a subnet's epoch Yuma Consensus pays it out: 18 % to the
//!   owner, half the rest to miners by incentive, half to validators by dividends (a validator
//!   keeps its take, its delegators share the rest pro rata). What nobody earned is burned.
//! - **Burns**: creating a subnet burns its lock cost; registering a neuron burns the burn.
//!   Supply = genesis + minted − burned, exactly ([`EmissionState`]).
//! - **Stake** delegated to a hotkey ([`HotkeyStake`]) counts from the epoch after it arrives,
//!   so stake moved in just before an epoch earns nothing from it.

use crate::yuma::Fx;
use agora_types::{
    AGR, Address, Amount, Hash, MAX_UIDS, NetUid, SubnetParam, SubnetTask, serde_u128,
};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Emission's genesis parameters.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct EmissionParams {
    /// Base units minted per block before the first halving.
    #[serde(with = "serde_u128")]
    pub per_block: Amount,
    /// Blocks between halvings.
    pub halving_interval: u64,
    /// Most base units ever minted.
    #[serde(with = "serde_u128")]
    pub cap: Amount,
}

impl Default for EmissionParams {
    fn default() -> Self {
        EmissionParams {
            per_block: AGR,
            // About four years of 500 ms blocks.
            halving_interval: 252_000_000,
            cap: 21_000_000 * AGR,
        }
    }
}

impl EmissionParams {
    /// What block `height` mints, given what was minted before it.
    pub fn at(&self, height: u64, minted: Amount) -> Amount {
        let halvings = height / self.halving_interval.max(1);
        let amount = if halvings >= 128 {
            0
        } else {
            self.per_block >> halvings
        };
        amount.min(self.cap.saturating_sub(minted))
    }

    /// Checks the values make sense.
    pub fn check(&self) -> Result<(), String> {
        if self.halving_interval == 0 {
            return Err("emission.halving_interval must be at least 1 block".into());
        }
        Ok(())
    }
}

/// The model market's genesis parameters (subnet creation and the owners' share).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SubnetParams {
    /// Least lock cost of a subnet.
    #[serde(with = "serde_u128")]
    pub min_lock: Amount,
    /// Blocks over which a doubled lock cost decays back by the last lock paid.
    pub lock_reduction_interval: u64,
    /// Most subnets at once.
    pub max_subnets: u16,
    /// The owner's share of its subnet's emission, parts per million.
    pub owner_cut_ppm: u32,
    /// Most delegators of one hotkey on one subnet.
    pub max_delegators: u16,
}

impl Default for SubnetParams {
    fn default() -> Self {
        SubnetParams {
            min_lock: 100 * AGR,
            // A day at 500 ms blocks.
            lock_reduction_interval: 172_800,
            max_subnets: 32,
            owner_cut_ppm: 180_000,
            max_delegators: 64,
        }
    }
}

impl SubnetParams {
    /// Checks the values make sense.
    pub fn check(&self) -> Result<(), String> {
        if self.lock_reduction_interval == 0 {
            return Err("subnets.lock_reduction_interval must be at least 1 block".into());
        }
        if self.owner_cut_ppm > 1_000_000 {
            return Err("subnets.owner_cut_ppm is at most 1,000,000".into());
        }
        if self.max_delegators == 0 {
            return Err("subnets.max_delegators must be at least 1".into());
        }
        Ok(())
    }

    /// The lock cost of a subnet created at `height`: twice the last one, decayed linearly
    /// since it was paid, never below the minimum (Bittensor's rule).
    pub fn lock_cost(&self, last_lock: Amount, last_height: u64, height: u64) -> Amount {
        let elapsed = u128::from(height.saturating_sub(last_height));
        let decay =
            last_lock.saturating_mul(elapsed) / u128::from(self.lock_reduction_interval.max(1));
        last_lock
            .saturating_mul(2)
            .saturating_sub(decay)
            .max(self.min_lock)
    }
}

/// A subnet's hyperparameters: Bittensor's defaults, block counts scaled from 12 s to 500 ms
/// blocks (× 24).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SubnetHyperparams {
    /// Blocks between epochs.
    pub tempo: u64,
    /// Most UIDs.
    pub max_uids: u16,
    /// Blocks a new neuron cannot be pruned.
    pub immunity_period: u64,
    /// κ as a fraction of `u16::MAX`.
    pub kappa: u16,
    /// Bonds moving average, parts per million (α = 1 − this).
    pub bonds_moving_average: u32,
    /// Bond penalty β as a fraction of `u16::MAX`.
    pub bond_penalty: u16,
    /// Least blocks between two commits of one validator.
    pub weights_rate_limit: u64,
    /// Epochs between a commit and its reveal window.
    pub commit_reveal_period: u64,
    /// Validator permits: the top this many UIDs by stake.
    pub max_validators: u16,
    /// Blocks after which a validator's weights stop counting.
    pub activity_cutoff: u64,
    /// Least registration burn.
    #[serde(with = "serde_u128")]
    pub min_burn: Amount,
    /// Largest registration burn.
    #[serde(with = "serde_u128")]
    pub max_burn: Amount,
    /// Registrations per epoch the burn steers toward (at most three times this are taken).
    pub target_registrations: u16,
    /// The share of its dividends a validator keeps, parts per million.
    pub validator_take: u32,
}

impl Default for SubnetHyperparams {
    fn default() -> Self {
        SubnetHyperparams {
            tempo: 360 * 24,
            max_uids: MAX_UIDS,
            immunity_period: 4_096 * 24,
            kappa: 32_768,
            bonds_moving_average: 900_000,
            bond_penalty: u16::MAX,
            weights_rate_limit: 100 * 24,
            commit_reveal_period: 1,
            max_validators: 128,
            activity_cutoff: 5_000 * 24,
            min_burn: AGR / 2,
            max_burn: 100 * AGR,
            target_registrations: 2,
            validator_take: 180_000,
        }
    }
}

impl SubnetHyperparams {
    /// Applies `param` if it is within its bounds (`n`: the UIDs in use, below which `max_uids`
    /// cannot go).
    pub fn set(&mut self, param: &SubnetParam, n: u16) -> Result<(), String> {
        fn within<T: PartialOrd + std::fmt::Display>(
            name: &str,
            v: T,
            lo: T,
            hi: T,
        ) -> Result<T, String> {
            if v < lo || v > hi {
                return Err(format!("{name} must be within {lo} and {hi}, not {v}"));
            }
            Ok(v)
        }
        match *param {
            SubnetParam::Tempo(v) => {
                self.tempo = within("tempo", v, 10, 100_000)?;
                // A validator must be able to commit every epoch.
                self.weights_rate_limit = self.weights_rate_limit.min(self.tempo);
            }
            SubnetParam::MaxUids(v) => self.max_uids = within("max_uids", v, n.max(2), MAX_UIDS)?,
            SubnetParam::ImmunityPeriod(v) => {
                self.immunity_period = within("immunity_period", v, 0, 1_000_000)?;
            }
            // Below one half, a minority could set consensus.
            // Above three quarters, any one validator could veto every miner.
            SubnetParam::Kappa(v) => self.kappa = within("kappa", v, 32_768, 49_151)?,
            SubnetParam::BondsMovingAverage(v) => {
                self.bonds_moving_average = within("bonds_moving_average", v, 0, 999_999)?;
            }
            SubnetParam::BondPenalty(v) => self.bond_penalty = v,
            SubnetParam::WeightsRateLimit(v) => {
                self.weights_rate_limit = within("weights_rate_limit", v, 0, 100_000)?;
            }
            SubnetParam::CommitRevealPeriod(v) => {
                self.commit_reveal_period = within("commit_reveal_period", v, 1, 10)?;
            }
            // Fewer permits would let the largest validator alone decide consensus.
            SubnetParam::MaxValidators(v) => {
                self.max_validators = within("max_validators", v, 8, MAX_UIDS)?;
            }
            SubnetParam::ActivityCutoff(v) => {
                self.activity_cutoff = within("activity_cutoff", v, 10, 10_000_000)?;
            }
            SubnetParam::MinBurn(v) => {
                self.min_burn = within("min_burn", v, MIN_BURN_FLOOR, self.max_burn)?;
            }
            SubnetParam::MaxBurn(v) => {
                self.max_burn = within("max_burn", v, self.min_burn, 1_000_000 * AGR)?;
            }
            SubnetParam::TargetRegistrations(v) => {
                self.target_registrations = within("target_registrations", v, 1, 64)?;
            }
            SubnetParam::ValidatorTake(v) => {
                self.validator_take = within("validator_take", v, 0, 180_000)?;
            }
        }
        Ok(())
    }

    /// The rules between hyperparameters, checked after every change: a validator's weights
    /// outlive its commit-reveal round trip (or honest rows would go stale), and a new neuron
    /// lives through at least one epoch before it can be pruned.
    pub fn check(&self) -> Result<(), String> {
        let round_trip = self
            .commit_reveal_period
            .saturating_add(2)
            .saturating_mul(self.tempo);
        if self.activity_cutoff < round_trip {
            return Err(format!(
                "activity_cutoff must be at least (commit_reveal_period + 2) × tempo = {round_trip}, not {}",
                self.activity_cutoff
            ));
        }
        if self.weights_rate_limit > self.tempo {
            return Err(format!(
                "weights_rate_limit must be at most the tempo ({}), not {}: a validator commits every epoch",
                self.tempo, self.weights_rate_limit
            ));
        }
        if self.immunity_period < self.tempo {
            return Err(format!(
                "immunity_period must be at least the tempo ({}), not {}",
                self.tempo, self.immunity_period
            ));
        }
        Ok(())
    }

    /// Most registrations in one epoch.
    pub fn max_registrations(&self) -> u16 {
        self.target_registrations.saturating_mul(3)
    }

    /// The next epoch's burn: raised when registrations ran above target, lowered when below,
    /// within the bounds.
    pub fn next_burn(&self, burn: Amount, registrations: u16) -> Amount {
        let target = u128::from(self.target_registrations.max(1));
        (burn.saturating_mul(u128::from(registrations) + target) / (2 * target))
            .clamp(self.min_burn, self.max_burn)
    }
}

/// The index of subnets: read every block to mint and to find the epochs due.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct SubnetIndex {
    /// Every subnet, by netuid.
    pub subnets: Vec<SubnetSlot>,
    /// The lock cost the last subnet paid.
    #[serde(with = "serde_u128")]
    pub last_lock: Amount,
    /// When it was paid.
    pub last_lock_height: u64,
    /// The netuid the next subnet gets (never reused).
    pub next_netuid: NetUid,
}

/// A subnet's line in the [`SubnetIndex`].
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct SubnetSlot {
    /// The subnet.
    pub netuid: NetUid,
    /// Stake delegated on it (all hotkeys, fresh included).
    #[serde(with = "serde_u128")]
    pub stake: Amount,
    /// The part of `stake` on hotkeys that hold a UID: what each block's emission is split by
    /// (stake left on a pruned hotkey draws nothing to the subnet).
    #[serde(with = "serde_u128")]
    pub registered_stake: Amount,
    /// Emission accrued since its last epoch.
    #[serde(with = "serde_u128")]
    pub pending: Amount,
    /// The block at whose end its next epoch runs: set at each epoch to that epoch's height
    /// plus the tempo, so changing the tempo never moves an epoch already scheduled.
    pub next_epoch: u64,
    /// Fees paid on the chain since its last epoch, but for each block's proposer's own: the
    /// quantity a forecast subnet predicts.
    #[serde(with = "serde_u128")]
    pub observed: Amount,
}

impl SubnetSlot {
    /// Whether the subnet's epoch runs at the end of block `height`.
    pub fn epoch_due(&self, height: u64) -> bool {
        height >= self.next_epoch
    }
}

/// Minted, burned and where supply started: supply = genesis + minted − burned.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct EmissionState {
    /// Supply at genesis.
    #[serde(with = "serde_u128")]
    pub genesis_supply: Amount,
    /// Minted since.
    #[serde(with = "serde_u128")]
    pub minted: Amount,
    /// Burned since (lock costs, registration burns, emission nobody earned).
    #[serde(with = "serde_u128")]
    pub burned: Amount,
}

/// A subnet.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Subnet {
    /// Its id.
    pub netuid: NetUid,
    /// Human name.
    pub name: String,
    /// Who created it: changes its hyperparameters, gets the owner's cut.
    pub owner: Address,
    /// What its miners do.
    pub task: SubnetTask,
    /// Its hyperparameters.
    pub params: SubnetHyperparams,
    /// Changes its owner made, applied at its next epoch (at once while it has no neuron).
    pub pending: Option<SubnetHyperparams>,
    /// Created at.
    pub created_at: u64,
    /// The lock cost it burned.
    #[serde(with = "serde_u128")]
    pub lock: Amount,
    /// UIDs in use (`0..n`).
    pub n: u16,
    /// The registration burn now.
    #[serde(with = "serde_u128")]
    pub burn: Amount,
    /// Registrations since the last epoch.
    pub registrations: u16,
    /// Height of the last epoch (0: none yet).
    pub last_epoch: u64,
    /// Epochs run.
    pub epochs: u64,
}

/// A neuron: a hotkey holding a UID, and what the last epoch said of it.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Neuron {
    /// Its hotkey (the account that registered it, signs its weights and is paid).
    pub hotkey: Address,
    /// Where it serves.
    pub endpoint: String,
    /// When it got this UID.
    pub registered_at: u64,
    /// Height of its last weight commit (0: none).
    pub last_commit: u64,
    /// Whether it held a validator permit in the last epoch.
    pub validator_permit: bool,
    /// Last epoch's rank, trust, consensus, incentive, dividends, validator trust ([`Fx`] as
    /// `u64`: all within `[0, 1]`).
    pub rank: u64,
    /// See `rank`.
    pub trust: u64,
    /// See `rank`.
    pub consensus: u64,
    /// See `rank`.
    pub incentive: u64,
    /// See `rank`.
    pub dividends: u64,
    /// See `rank`.
    pub validator_trust: u64,
    /// Base units it earned in the last epoch (miner's and validator's parts, before its
    /// delegators' share): its pruning score.
    #[serde(with = "serde_u128")]
    pub emission: Amount,
    /// Stake counted in the last epoch.
    #[serde(with = "serde_u128")]
    pub stake: Amount,
}

impl Neuron {
    /// Stores an epoch value.
    pub fn fx(x: Fx) -> u64 {
        u64::try_from(x).unwrap_or(u64::MAX)
    }
}

/// The weights a validator revealed.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct WeightRow {
    /// Height of the commitment they were revealed from: weights on a UID registered at or
    /// after it were meant for the UID's previous owner and do not count.
    pub set_at: u64,
    /// When they were revealed: weights older than the activity cutoff stop counting.
    pub revealed_at: u64,
    /// `(uid, weight)`, sorted by uid, the largest weight `u16::MAX`.
    pub entries: Vec<(u16, u16)>,
}

/// A commitment waiting for its reveal.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct WeightCommit {
    /// The validator.
    pub hotkey: Address,
    /// The commitment ([`agora_types::weights_commitment`]).
    pub commitment: Hash,
    /// Committed at.
    pub height: u64,
    /// The subnet's epoch count at which it is revealed (its count at the commitment plus the
    /// commit-reveal period then in force): a later change of the period does not move it.
    pub reveal_epoch: u64,
}

/// The stake delegated to one hotkey on one subnet.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct HotkeyStake {
    /// Every delegation, sorted by delegator.
    pub delegations: Vec<Delegation>,
}

/// One account's stake on one hotkey.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Delegation {
    /// Whose stake.
    pub delegator: Address,
    /// Stake that counts in epochs.
    #[serde(with = "serde_u128")]
    pub active: Amount,
    /// Stake added at `fresh_height`: it counts in the first epoch that runs a whole tempo
    /// after it arrived.
    #[serde(with = "serde_u128")]
    pub fresh: Amount,
    /// When `fresh` arrived (its last addition).
    pub fresh_height: u64,
}

impl Delegation {
    /// Stake that counts in an epoch whose previous epoch ran at `last_epoch`: stake that was
    /// there through the whole tempo.
    pub fn counted(&self, last_epoch: u64) -> Amount {
        if self.fresh_height <= last_epoch {
            self.active + self.fresh
        } else {
            self.active
        }
    }

    /// Everything delegated.
    pub fn total(&self) -> Amount {
        self.active + self.fresh
    }

    /// Moves fresh stake that now counts into `active`.
    pub fn settle(&mut self, last_epoch: u64) {
        if self.fresh_height <= last_epoch {
            self.active += std::mem::take(&mut self.fresh);
        }
    }
}

impl HotkeyStake {
    /// Stake that counts in an epoch whose previous epoch ran at `last_epoch`.
    pub fn counted(&self, last_epoch: u64) -> Amount {
        self.delegations
            .iter()
            .fold(0, |a, d| a.saturating_add(d.counted(last_epoch)))
    }

    /// Everything delegated.
    pub fn total(&self) -> Amount {
        self.delegations
            .iter()
            .fold(0, |a, d| a.saturating_add(d.total()))
    }
}

/// One epoch in a subnet's history: what it paid, to whom.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct EpochRecord {
    /// The block it ran at.
    pub height: u64,
    /// The emission it paid out.
    #[serde(with = "serde_u128")]
    pub emission: Amount,
    /// What nobody earned (burned).
    #[serde(with = "serde_u128")]
    pub recycled: Amount,
    /// Each UID's emission (saturating at `u64::MAX`).
    pub per_uid: Vec<u64>,
    /// Each UID's incentive ([`Fx`] as `u64`).
    pub incentive: Vec<u64>,
    /// Fees paid on the chain in the epoch's window (what forecasts predict).
    #[serde(with = "serde_u128")]
    pub observed: Amount,
}

/// A forecast: committed in one window, revealed in the next (the window it predicts), scored
/// by the chain when that window ends.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Prediction {
    /// The miner.
    pub hotkey: Address,
    /// The commitment ([`agora_types::prediction_commitment`]).
    pub commitment: Hash,
    /// The subnet's epoch count at the commitment: it predicts the window after.
    pub epoch: u64,
    /// The revealed value.
    pub value: Option<u64>,
}

/// Least registration burn an owner may set: registering must cost something, or pruning
/// neurons and filling state would be free.
pub const MIN_BURN_FLOOR: Amount = AGR / 10;

/// Least stake one delegation may hold: so a hotkey's delegator slots cannot be filled with
/// dust (and a full list takes a larger delegation by evicting its smallest).
pub const MIN_DELEGATION: Amount = AGR / 10;

/// The chain's score of a prediction `value` of `truth`: `1 − |value − truth| / t` with
/// `t = max(truth, 1)`, never below 0 — exact scores 1, an error as large as the truth scores
/// nothing (so guessing 0 earns nothing).
pub fn forecast_score(value: u64, truth: Amount) -> Fx {
    let t = truth.max(1);
    let error = u128::from(value).abs_diff(truth);
    crate::yuma::ONE.saturating_sub(crate::yuma::ratio(error, t).min(crate::yuma::ONE))
}

/// Epochs kept in a subnet's history.
pub const HISTORY_EPOCHS: usize = 32;
