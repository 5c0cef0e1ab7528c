//! The model market's messages, per-block emission and subnet epochs (DESIGN.md §7; the state
//! is described in [`crate::subnet`], the consensus in [`crate::yuma`]).
//!
//! Who could abuse what, and what stops them:
//! - *Minting*: only [`Executor::emit`] mints, bounded by the emission schedule and its cap;
//!   every epoch pays out exactly what accrued ([`yuma::split`] is exact), and supply =
//!   genesis + minted − burned is an invariant.
//! - *Stake moved in just before an epoch*: counts only from the epoch after a whole tempo.
//! - *Copying weights*: commitments bind the hotkey; reveals open a full epoch later.
//! - *A UID's next owner inheriting*: weights count only on UIDs registered before their
//!   commitment, bonds only on UIDs registered before the last epoch, and a pruned UID's own
//!   weights, bonds and commitment are deleted.
//! - *Sybil registrations*: each burns the burn, which rises with demand; at most three times
//!   the target per epoch; a full subnet prunes the lowest earner outside immunity.

use super::*;
use crate::subnet::{
    EmissionParams, EmissionState, EpochRecord, HISTORY_EPOCHS, HotkeyStake, MIN_DELEGATION,
    Neuron, Prediction, Subnet, SubnetHyperparams, SubnetIndex, SubnetParams, SubnetSlot,
    WeightCommit, WeightRow, forecast_score,
};
use crate::yuma;
use crate::{
    bonds_key, commits_key, emission_key, hotkey_stake_key, hotkey_uid_key, neuron_key,
    predictions_key, subnet_history_key, subnet_index_key, subnet_key, supply_key, weights_key,
};
use agora_types::{MAX_ENDPOINT_BYTES, MAX_SUBNET_NAME_BYTES, NetUid, SubnetParam, SubnetTask};

type TxResult = Result<std::result::Result<(), TxError>>;

fn corrupt(key: &[u8], reason: &str) -> Error {
    Error::Corrupt {
        key: String::from_utf8_lossy(key).into(),
        reason: reason.into(),
    }
}

/// Checks an endpoint: an `http(s)://` URL of bounded size.
fn check_endpoint(endpoint: &str) -> std::result::Result<(), TxError> {
    if endpoint.len() > MAX_ENDPOINT_BYTES {
        return Err(TxError::InvalidNeuron(format!(
            "endpoint is {} bytes, at most {MAX_ENDPOINT_BYTES}",
            endpoint.len()
        )));
    }
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(TxError::InvalidNeuron(format!(
            "endpoint {endpoint:?} is not an http(s) URL"
        ))),
    }
}

fn check_name(what: &str, name: &str) -> std::result::Result<(), TxError> {
    if name.trim().is_empty() || name.len() > MAX_SUBNET_NAME_BYTES {
        return Err(TxError::InvalidSubnet(format!(
            "{what} must be 1 to {MAX_SUBNET_NAME_BYTES} bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(TxError::InvalidSubnet(format!(
            "{what} has control characters"
        )));
    }
    Ok(())
}

impl Executor<'_> {
    fn subnet_index(&self, scratch: &Scratch) -> Result<SubnetIndex> {
        Ok(self.get(scratch, &subnet_index_key())?.unwrap_or_default())
    }

    fn subnet(&self, scratch: &Scratch, netuid: NetUid) -> Result<Option<Subnet>> {
        self.get(scratch, &subnet_key(netuid))
    }

    fn put<T: BorshSerialize>(scratch: &mut Scratch, key: Vec<u8>, value: &T) {
        scratch.writes.insert(key, Some(encode(value)));
    }

    /// Writes a list, or deletes its key when it is empty.
    fn put_or_delete<T: BorshSerialize>(scratch: &mut Scratch, key: Vec<u8>, list: &[T]) {
        if list.is_empty() {
            scratch.writes.insert(key, None);
        } else {
            scratch.writes.insert(key, Some(encode(&list)));
        }
    }

    /// A weights message on a forecast subnet: the chain sets its weights itself.
    fn chain_scored(subnet: &Subnet) -> Option<TxError> {
        (subnet.task == SubnetTask::Forecast).then_some(TxError::WrongTask {
            netuid: subnet.netuid,
            reason: "a forecast subnet's miners are scored by the chain itself; validators set no weights",
        })
    }

    /// Minted and burned so far. A state from before emission existed has none: it starts from
    /// the current supply, the same on every node.
    fn emission_state(&self, scratch: &Scratch) -> Result<EmissionState> {
        if let Some(e) = self.get(scratch, &emission_key())? {
            return Ok(e);
        }
        let supply: Amount = self
            .get(scratch, &supply_key())?
            .ok_or_else(|| corrupt(&supply_key(), "missing"))?;
        Ok(EmissionState {
            genesis_supply: supply,
            minted: 0,
            burned: 0,
        })
    }

    /// Takes `amount` out of the supply for good.
    pub(super) fn burn(&self, scratch: &mut Scratch, amount: Amount) -> Result<()> {
        if amount == 0 {
            return Ok(());
        }
        let mut emission = self.emission_state(scratch)?;
        emission.burned = emission
            .burned
            .checked_add(amount)
            .ok_or_else(|| corrupt(&emission_key(), "burned overflows"))?;
        let supply: Amount = self
            .get(scratch, &supply_key())?
            .ok_or_else(|| corrupt(&supply_key(), "missing"))?;
        let supply = supply
            .checked_sub(amount)
            .ok_or_else(|| corrupt(&supply_key(), "burning more than the supply"))?;
        Self::put(scratch, emission_key(), &emission);
        Self::put(scratch, supply_key(), &supply);
        Ok(())
    }

    /// `Message::CreateSubnet`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_subnet(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        name: &str,
        task: &SubnetTask,
        max_lock: Amount,
        events: &mut Vec<Event>,
    ) -> TxResult {
        if let Err(e) = check_name("the subnet's name", name) {
            return Ok(Err(e));
        }
        if let SubnetTask::Custom { name, .. } = task
            && let Err(e) = check_name("the task's name", name)
        {
            return Ok(Err(e));
        }
        let mut index = self.subnet_index(scratch)?;
        let globals = self.subnet_params.clone();
        if index.subnets.len() >= usize::from(globals.max_subnets) {
            return Ok(Err(TxError::SubnetLimit {
                max: globals.max_subnets,
            }));
        }
        if index.next_netuid == NetUid::MAX {
            return Ok(Err(TxError::InvalidSubnet("no netuid is left".into())));
        }
        let height = self.ctx.height;
        let cost = globals.lock_cost(index.last_lock, index.last_lock_height, height);
        if cost > max_lock {
            return Ok(Err(TxError::LockCostExceeded {
                cost,
                max: max_lock,
            }));
        }
        if from.balance < cost {
            return Ok(Err(TxError::InsufficientFunds {
                need: cost,
                have: from.balance,
            }));
        }
        from.balance -= cost;
        scratch.accounts.insert(*sender, from);
        self.burn(scratch, cost)?;
        let netuid = index.next_netuid;
        index.next_netuid += 1;
        index.last_lock = cost;
        index.last_lock_height = height;
        let params = SubnetHyperparams::default();
        index.subnets.push(SubnetSlot {
            netuid,
            next_epoch: height + params.tempo,
            stake: 0,
            registered_stake: 0,
            pending: 0,
            observed: 0,
        });
        let subnet = Subnet {
            netuid,
            name: name.to_string(),
            owner: *sender,
            task: task.clone(),
            burn: params.min_burn,
            params,
            pending: None,
            created_at: height,
            lock: cost,
            n: 0,
            registrations: 0,
            last_epoch: height,
            epochs: 0,
        };
        Self::put(scratch, subnet_key(netuid), &subnet);
        Self::put(scratch, subnet_index_key(), &index);
        events.push(Event::new(
            "subnet_created",
            &[
                ("netuid", netuid.to_string()),
                ("owner", sender.to_string()),
                ("task", task.label().to_string()),
                ("lock", cost.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::SetSubnetParam`.
    pub(super) fn set_subnet_param(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        netuid: NetUid,
        param: &SubnetParam,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let Some(mut subnet) = self.subnet(scratch, netuid)? else {
            return Ok(Err(TxError::UnknownSubnet { netuid }));
        };
        if subnet.owner != *sender {
            return Ok(Err(TxError::NotSubnetOwner { netuid }));
        }
        // Changes pile up on the pending set, which takes effect at the next epoch, so an owner
        // can neither move an epoch nor change the rules in the middle of one; before anyone
        // has registered there is nothing to protect, and they apply at once.
        let mut next = subnet
            .pending
            .clone()
            .unwrap_or_else(|| subnet.params.clone());
        if let Err(e) = next.set(param, subnet.n).and_then(|()| next.check()) {
            return Ok(Err(TxError::ParamOutOfBounds(e)));
        }
        if subnet.n == 0 {
            if next.tempo != subnet.params.tempo {
                let mut index = self.subnet_index(scratch)?;
                Self::slot_mut(&mut index, netuid)?.next_epoch = self.ctx.height + next.tempo;
                Self::put(scratch, subnet_index_key(), &index);
            }
            subnet.params = next;
            subnet.burn = subnet
                .burn
                .clamp(subnet.params.min_burn, subnet.params.max_burn);
        } else {
            subnet.pending = Some(next);
        }
        Self::put(scratch, subnet_key(netuid), &subnet);
        events.push(Event::new(
            "subnet_param",
            &[
                ("netuid", netuid.to_string()),
                (
                    "param",
                    serde_json::to_string(param).unwrap_or_else(|_| format!("{param:?}")),
                ),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::RegisterNeuron`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn register_neuron(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        netuid: NetUid,
        endpoint: &str,
        max_burn: Amount,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let Some(mut subnet) = self.subnet(scratch, netuid)? else {
            return Ok(Err(TxError::UnknownSubnet { netuid }));
        };
        if let Err(e) = check_endpoint(endpoint) {
            return Ok(Err(e));
        }
        if self
            .get::<u16>(scratch, &hotkey_uid_key(netuid, sender))?
            .is_some()
        {
            return Ok(Err(TxError::AlreadyRegistered {
                netuid,
                hotkey: *sender,
            }));
        }
        let max = subnet.params.max_registrations();
        if subnet.registrations >= max {
            return Ok(Err(TxError::RegistrationsFull { netuid, max }));
        }
        let burn = subnet.burn;
        if burn > max_burn {
            return Ok(Err(TxError::BurnExceeded {
                burn,
                max: max_burn,
            }));
        }
        if from.balance < burn {
            return Ok(Err(TxError::InsufficientFunds {
                need: burn,
                have: from.balance,
            }));
        }
        let height = self.ctx.height;
        let mut pruned = None;
        let uid = if subnet.n < subnet.params.max_uids {
            subnet.n += 1;
            subnet.n - 1
        } else {
            match self.prune_candidate(scratch, &subnet)? {
                Some((uid, old)) => {
                    self.forget_neuron(scratch, netuid, uid, &old.hotkey)?;
                    pruned = Some(old.hotkey);
                    events.push(Event::new(
                        "neuron_pruned",
                        &[
                            ("netuid", netuid.to_string()),
                            ("uid", uid.to_string()),
                            ("hotkey", old.hotkey.to_string()),
                            ("emission", old.emission.to_string()),
                        ],
                    ));
                    uid
                }
                None => return Ok(Err(TxError::SubnetFull { netuid })),
            }
        };
        from.balance -= burn;
        scratch.accounts.insert(*sender, from);
        self.burn(scratch, burn)?;
        subnet.registrations += 1;
        let neuron = Neuron {
            hotkey: *sender,
            endpoint: endpoint.to_string(),
            registered_at: height,
            ..Neuron::default()
        };
        Self::put(scratch, neuron_key(netuid, uid), &neuron);
        Self::put(scratch, hotkey_uid_key(netuid, sender), &uid);
        Self::put(scratch, subnet_key(netuid), &subnet);
        // Stake already on the new hotkey (from an earlier registration) counts again; the
        // pruned hotkey's no longer does.
        let joined: HotkeyStake = self
            .get(scratch, &hotkey_stake_key(netuid, sender))?
            .unwrap_or_default();
        let left: HotkeyStake = match &pruned {
            Some(h) => self
                .get(scratch, &hotkey_stake_key(netuid, h))?
                .unwrap_or_default(),
            None => HotkeyStake::default(),
        };
        if joined.total() > 0 || left.total() > 0 {
            let mut index = self.subnet_index(scratch)?;
            let slot = Self::slot_mut(&mut index, netuid)?;
            slot.registered_stake = slot
                .registered_stake
                .checked_add(joined.total())
                .and_then(|s| s.checked_sub(left.total()))
                .ok_or_else(|| corrupt(&subnet_index_key(), "registered stake out of range"))?;
            Self::put(scratch, subnet_index_key(), &index);
        }
        events.push(Event::new(
            "neuron_registered",
            &[
                ("netuid", netuid.to_string()),
                ("uid", uid.to_string()),
                ("hotkey", sender.to_string()),
                ("burn", burn.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// In a full subnet, the neuron that loses its UID: the lowest pruning score (its last
    /// epoch's emission) among those past their immunity, the oldest first on a tie.
    fn prune_candidate(&self, scratch: &Scratch, subnet: &Subnet) -> Result<Option<(u16, Neuron)>> {
        let height = self.ctx.height;
        let mut best: Option<(u16, Neuron)> = None;
        for uid in 0..subnet.n {
            let key = neuron_key(subnet.netuid, uid);
            let neuron: Neuron = self
                .get(scratch, &key)?
                .ok_or_else(|| corrupt(&key, "a UID below n without a neuron"))?;
            if height.saturating_sub(neuron.registered_at) < subnet.params.immunity_period {
                continue;
            }
            let better = match &best {
                None => true,
                Some((_, b)) => {
                    (neuron.emission, neuron.registered_at) < (b.emission, b.registered_at)
                }
            };
            if better {
                best = Some((uid, neuron));
            }
        }
        Ok(best)
    }

    /// Deletes what a pruned neuron held under its UID: its hotkey's UID, its weights, its
    /// bonds and its commitment. (Its delegated stake stays, for its delegators to take back.)
    fn forget_neuron(
        &self,
        scratch: &mut Scratch,
        netuid: NetUid,
        uid: u16,
        hotkey: &Address,
    ) -> Result<()> {
        scratch.writes.insert(hotkey_uid_key(netuid, hotkey), None);
        scratch
            .writes
            .insert(crate::neuron_citation_key(netuid, hotkey), None);
        scratch.writes.insert(weights_key(netuid, uid), None);
        scratch.writes.insert(bonds_key(netuid, uid), None);
        let key = commits_key(netuid);
        let mut commits: Vec<WeightCommit> = self.get(scratch, &key)?.unwrap_or_default();
        let before = commits.len();
        commits.retain(|c| c.hotkey != *hotkey);
        if commits.len() != before {
            Self::put_or_delete(scratch, key, &commits);
        }
        let key = predictions_key(netuid);
        let mut predictions: Vec<Prediction> = self.get(scratch, &key)?.unwrap_or_default();
        let before = predictions.len();
        predictions.retain(|p| p.hotkey != *hotkey);
        if predictions.len() != before {
            Self::put_or_delete(scratch, key, &predictions);
        }
        Ok(())
    }

    /// The index slot of `netuid` (it must exist: every subnet has one).
    fn slot_mut(index: &mut SubnetIndex, netuid: NetUid) -> Result<&mut SubnetSlot> {
        index
            .subnets
            .iter_mut()
            .find(|s| s.netuid == netuid)
            .ok_or_else(|| corrupt(&subnet_index_key(), "a subnet missing from the index"))
    }

    /// `Message::AddSubnetStake`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_subnet_stake(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        netuid: NetUid,
        hotkey: &Address,
        amount: Amount,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let Some(subnet) = self.subnet(scratch, netuid)? else {
            return Ok(Err(TxError::UnknownSubnet { netuid }));
        };
        if self
            .get::<u16>(scratch, &hotkey_uid_key(netuid, hotkey))?
            .is_none()
        {
            return Ok(Err(TxError::NotRegistered {
                netuid,
                hotkey: *hotkey,
            }));
        }
        if let Err(e) = check_spend(from.balance, amount) {
            return Ok(Err(e));
        }
        let key = hotkey_stake_key(netuid, hotkey);
        let mut stake: HotkeyStake = self.get(scratch, &key)?.unwrap_or_default();
        let mut evicted = 0;
        let at = match stake
            .delegations
            .binary_search_by_key(sender, |d| d.delegator)
        {
            Ok(i) => i,
            Err(_) => {
                if amount < MIN_DELEGATION {
                    return Ok(Err(TxError::DelegationTooSmall {
                        min: MIN_DELEGATION,
                        got: amount,
                    }));
                }
                let max = self.subnet_params.max_delegators;
                if stake.delegations.len() >= usize::from(max) {
                    // A full list takes a larger delegation in place of its smallest, whose stake
                    // unbonds to its owner: slots cannot be squatted with small stakes.
                    // Never the hotkey's own stake; and only by a tenth more, so evicting is not
                    // a cheap way to grief.
                    let Some((i, smallest)) = stake
                        .delegations
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| d.delegator != *hotkey)
                        .min_by_key(|(_, d)| (d.total(), d.delegator))
                        .map(|(i, d)| (i, d.clone()))
                    else {
                        return Ok(Err(TxError::TooManyDelegators { max }));
                    };
                    if amount <= smallest.total().saturating_add(smallest.total() / 10) {
                        return Ok(Err(TxError::TooManyDelegators { max }));
                    }
                    stake.delegations.remove(i);
                    evicted = smallest.total();
                    let mut owner = self.scratch_account(scratch, &smallest.delegator)?;
                    owner.unbonding = owner
                        .unbonding
                        .checked_add(evicted)
                        .ok_or_else(|| corrupt(&key, "unbonding overflows"))?;
                    let release = self.queue_unbonding(scratch, smallest.delegator, evicted);
                    scratch.accounts.insert(smallest.delegator, owner);
                    events.push(Event::new(
                        "subnet_stake_evicted",
                        &[
                            ("netuid", netuid.to_string()),
                            ("hotkey", hotkey.to_string()),
                            ("delegator", smallest.delegator.to_string()),
                            ("amount", evicted.to_string()),
                            ("release_height", release.to_string()),
                        ],
                    ));
                }
                let i = stake
                    .delegations
                    .binary_search_by_key(sender, |d| d.delegator)
                    .unwrap_or_else(|i| i);
                stake.delegations.insert(
                    i,
                    crate::Delegation {
                        delegator: *sender,
                        ..Default::default()
                    },
                );
                i
            }
        };
        let d = &mut stake.delegations[at];
        d.settle(subnet.last_epoch);
        // Cannot overflow: it comes out of the supply.
        d.fresh += amount;
        d.fresh_height = self.ctx.height;
        from.balance -= amount;
        scratch.accounts.insert(*sender, from);
        let mut index = self.subnet_index(scratch)?;
        let slot = Self::slot_mut(&mut index, netuid)?;
        slot.stake = slot
            .stake
            .checked_add(amount)
            .and_then(|s| s.checked_sub(evicted))
            .ok_or_else(|| corrupt(&subnet_index_key(), "subnet stake out of range"))?;
        // The hotkey holds a UID (checked above).
        slot.registered_stake = slot
            .registered_stake
            .checked_add(amount)
            .and_then(|s| s.checked_sub(evicted))
            .ok_or_else(|| corrupt(&subnet_index_key(), "registered stake out of range"))?;
        Self::put(scratch, subnet_index_key(), &index);
        Self::put(scratch, key, &stake);
        events.push(Event::new(
            "subnet_stake_added",
            &[
                ("netuid", netuid.to_string()),
                ("hotkey", hotkey.to_string()),
                ("delegator", sender.to_string()),
                ("amount", amount.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::RemoveSubnetStake`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn remove_subnet_stake(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        netuid: NetUid,
        hotkey: &Address,
        amount: Amount,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let Some(subnet) = self.subnet(scratch, netuid)? else {
            return Ok(Err(TxError::UnknownSubnet { netuid }));
        };
        if amount == 0 {
            return Ok(Err(TxError::ZeroAmount));
        }
        let key = hotkey_stake_key(netuid, hotkey);
        let mut stake: HotkeyStake = self.get(scratch, &key)?.unwrap_or_default();
        let Ok(at) = stake
            .delegations
            .binary_search_by_key(sender, |d| d.delegator)
        else {
            return Ok(Err(TxError::InsufficientStake {
                need: amount,
                have: 0,
            }));
        };
        let d = &mut stake.delegations[at];
        d.settle(subnet.last_epoch);
        if d.total() < amount {
            return Ok(Err(TxError::InsufficientStake {
                need: amount,
                have: d.total(),
            }));
        }
        let left = d.total() - amount;
        if left > 0 && left < MIN_DELEGATION {
            return Ok(Err(TxError::DelegationTooSmall {
                min: MIN_DELEGATION,
                got: left,
            }));
        }
        // Fresh stake leaves first: it has earned nothing yet.
        let from_fresh = d.fresh.min(amount);
        d.fresh -= from_fresh;
        d.active -= amount - from_fresh;
        if d.total() == 0 {
            stake.delegations.remove(at);
        }
        if stake.delegations.is_empty() {
            scratch.writes.insert(key, None);
        } else {
            Self::put(scratch, key, &stake);
        }
        let holds_uid = self
            .get::<u16>(scratch, &hotkey_uid_key(netuid, hotkey))?
            .is_some();
        let mut index = self.subnet_index(scratch)?;
        let slot = Self::slot_mut(&mut index, netuid)?;
        slot.stake = slot
            .stake
            .checked_sub(amount)
            .ok_or_else(|| corrupt(&subnet_index_key(), "subnet stake below a delegation"))?;
        if holds_uid {
            slot.registered_stake = slot.registered_stake.checked_sub(amount).ok_or_else(|| {
                corrupt(&subnet_index_key(), "registered stake below a delegation")
            })?;
        }
        Self::put(scratch, subnet_index_key(), &index);
        from.unbonding += amount;
        let release = self.queue_unbonding(scratch, *sender, amount);
        scratch.accounts.insert(*sender, from);
        events.push(Event::new(
            "subnet_stake_removed",
            &[
                ("netuid", netuid.to_string()),
                ("hotkey", hotkey.to_string()),
                ("delegator", sender.to_string()),
                ("amount", amount.to_string()),
                ("release_height", release.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// The UID and neuron of `hotkey` on a subnet.
    fn neuron_of(
        &self,
        scratch: &Scratch,
        netuid: NetUid,
        hotkey: &Address,
    ) -> Result<Option<(u16, Neuron)>> {
        let Some(uid) = self.get::<u16>(scratch, &hotkey_uid_key(netuid, hotkey))? else {
            return Ok(None);
        };
        let key = neuron_key(netuid, uid);
        let neuron = self
            .get(scratch, &key)?
            .ok_or_else(|| corrupt(&key, "a hotkey's UID without a neuron"))?;
        Ok(Some((uid, neuron)))
    }

    /// `Message::CommitWeights`.
    pub(super) fn commit_weights(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        netuid: NetUid,
        commitment: &Hash,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let Some(subnet) = self.subnet(scratch, netuid)? else {
            return Ok(Err(TxError::UnknownSubnet { netuid }));
        };
        if let Some(e) = Self::chain_scored(&subnet) {
            return Ok(Err(e));
        }
        let Some((uid, mut neuron)) = self.neuron_of(scratch, netuid, sender)? else {
            return Ok(Err(TxError::NotRegistered {
                netuid,
                hotkey: *sender,
            }));
        };
        let height = self.ctx.height;
        if neuron.last_commit > 0 {
            let next = neuron
                .last_commit
                .saturating_add(subnet.params.weights_rate_limit);
            if height < next {
                return Ok(Err(TxError::WeightsRateLimited {
                    last: neuron.last_commit,
                    next,
                }));
            }
        }
        let key = commits_key(netuid);
        let mut commits: Vec<WeightCommit> = self.get(scratch, &key)?.unwrap_or_default();
        // A new commitment replaces one not yet revealed: a validator is never stuck behind a
        // commitment made under a commit-reveal period since changed.
        commits.retain(|c| c.hotkey != *sender);
        commits.push(WeightCommit {
            hotkey: *sender,
            commitment: *commitment,
            height,
            reveal_epoch: subnet.epochs + subnet.params.commit_reveal_period,
        });
        neuron.last_commit = height;
        Self::put(scratch, key, &commits);
        Self::put(scratch, neuron_key(netuid, uid), &neuron);
        events.push(Event::new(
            "weights_committed",
            &[
                ("netuid", netuid.to_string()),
                ("uid", uid.to_string()),
                ("hotkey", sender.to_string()),
                ("commitment", commitment.to_hex()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::RevealWeights`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reveal_weights(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        netuid: NetUid,
        uids: &[u16],
        weights: &[u16],
        salt: &Hash,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let Some(subnet) = self.subnet(scratch, netuid)? else {
            return Ok(Err(TxError::UnknownSubnet { netuid }));
        };
        if let Some(e) = Self::chain_scored(&subnet) {
            return Ok(Err(e));
        }
        let Some((uid, _)) = self.neuron_of(scratch, netuid, sender)? else {
            return Ok(Err(TxError::NotRegistered {
                netuid,
                hotkey: *sender,
            }));
        };
        let key = commits_key(netuid);
        let mut commits: Vec<WeightCommit> = self.get(scratch, &key)?.unwrap_or_default();
        let Some(at) = commits.iter().position(|c| c.hotkey == *sender) else {
            return Ok(Err(TxError::NoCommit { netuid }));
        };
        let commit = commits[at].clone();
        if agora_types::weights_commitment(netuid, sender, uids, weights, salt) != commit.commitment
        {
            return Ok(Err(TxError::RevealMismatch));
        }
        let due = commit.reveal_epoch;
        if subnet.epochs < due {
            return Ok(Err(TxError::RevealTooEarly {
                epoch: due,
                now: subnet.epochs,
            }));
        }
        if subnet.epochs > due {
            return Ok(Err(TxError::RevealTooLate { closed: due }));
        }
        let entries = match normalize_weights(uids, weights, subnet.n) {
            Ok(e) => e,
            Err(e) => return Ok(Err(TxError::InvalidWeights(e))),
        };
        commits.remove(at);
        Self::put_or_delete(scratch, key, &commits);
        let count = entries.len();
        Self::put(
            scratch,
            weights_key(netuid, uid),
            &WeightRow {
                set_at: commit.height,
                revealed_at: self.ctx.height,
                entries,
            },
        );
        events.push(Event::new(
            "weights_revealed",
            &[
                ("netuid", netuid.to_string()),
                ("uid", uid.to_string()),
                ("hotkey", sender.to_string()),
                ("weights", count.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// End of block: mints this block's emission into the subnets' pending amounts (by their
    /// stake), then runs the epochs due.
    pub(super) fn emit(&mut self, events: &mut Vec<Event>) -> Result<()> {
        let mut scratch = Scratch::default();
        let ikey = subnet_index_key();
        let Some(mut index) = self.get::<SubnetIndex>(&scratch, &ikey)? else {
            return Ok(());
        };
        if index.subnets.is_empty() {
            return Ok(());
        }
        let height = self.ctx.height;
        let mut emission = self.emission_state(&scratch)?;
        let mint = self.emission.at(height, emission.minted);
        let total: Amount = index
            .subnets
            .iter()
            .fold(0u128, |a, s| a.saturating_add(s.registered_stake));
        let mut minted = 0;
        if mint > 0 && total > 0 {
            for slot in &mut index.subnets {
                let share = yuma::mul_amount(mint, yuma::ratio(slot.registered_stake, total))
                    .min(mint - minted);
                slot.pending = slot
                    .pending
                    .checked_add(share)
                    .ok_or_else(|| corrupt(&ikey, "pending emission overflows"))?;
                minted += share;
            }
        }
        if minted > 0 {
            emission.minted = emission
                .minted
                .checked_add(minted)
                .ok_or_else(|| corrupt(&emission_key(), "minted overflows"))?;
            let supply: Amount = self
                .get(&scratch, &supply_key())?
                .ok_or_else(|| corrupt(&supply_key(), "missing"))?;
            let supply = supply
                .checked_add(minted)
                .ok_or_else(|| corrupt(&supply_key(), "supply overflows"))?;
            Self::put(&mut scratch, supply_key(), &supply);
            Self::put(&mut scratch, emission_key(), &emission);
        }
        // Fees, not transactions, each counted up to the minimum its work requires: pushing
        // the quantity a forecast predicts costs what it adds. Not the proposer's own, which come
        // back to it.
        let fees = self.fees_from_others;
        for slot in &mut index.subnets {
            slot.observed = slot.observed.saturating_add(fees);
        }
        let due: Vec<(NetUid, Amount, Amount)> = index
            .subnets
            .iter_mut()
            .filter(|s| s.epoch_due(height))
            .map(|s| {
                (
                    s.netuid,
                    std::mem::take(&mut s.pending),
                    std::mem::take(&mut s.observed),
                )
            })
            .collect();
        Self::put(&mut scratch, ikey, &index);
        for (netuid, pending, observed) in due {
            let tempo = self.run_epoch(&mut scratch, netuid, pending, observed, events)?;
            let mut index = self.subnet_index(&scratch)?;
            Self::slot_mut(&mut index, netuid)?.next_epoch = height + tempo;
            Self::put(&mut scratch, subnet_index_key(), &index);
        }
        self.commit_scratch(scratch);
        Ok(())
    }

    /// One subnet's epoch: Yuma Consensus over its weights, then `emission` paid out.
    /// Returns the tempo in force after it (the owner's pending changes apply at its end).
    fn run_epoch(
        &mut self,
        scratch: &mut Scratch,
        netuid: NetUid,
        emission: Amount,
        observed: Amount,
        events: &mut Vec<Event>,
    ) -> Result<u64> {
        let skey = subnet_key(netuid);
        let mut subnet: Subnet = self
            .get(scratch, &skey)?
            .ok_or_else(|| corrupt(&skey, "an indexed subnet is missing"))?;
        let height = self.ctx.height;
        let n = usize::from(subnet.n);
        let p = subnet.params.clone();
        let mut neurons = Vec::with_capacity(n);
        let mut stakes = Vec::with_capacity(n);
        for uid in 0..subnet.n {
            let key = neuron_key(netuid, uid);
            let neuron: Neuron = self
                .get(scratch, &key)?
                .ok_or_else(|| corrupt(&key, "a UID below n without a neuron"))?;
            let stake: HotkeyStake = self
                .get(scratch, &hotkey_stake_key(netuid, &neuron.hotkey))?
                .unwrap_or_default();
            stakes.push(stake);
            neurons.push(neuron);
        }
        let counted: Vec<Amount> = stakes
            .iter()
            .map(|s| s.counted(subnet.last_epoch))
            .collect();
        // Validator permits: the most staked UIDs (the lower UID first on a tie).
        let mut order: Vec<usize> = (0..n).filter(|&i| counted[i] > 0).collect();
        order.sort_by(|&a, &b| counted[b].cmp(&counted[a]).then(a.cmp(&b)));
        let mut permit = vec![false; n];
        for &i in order.iter().take(usize::from(p.max_validators)) {
            permit[i] = true;
        }
        let mut input = yuma::EpochInput {
            stake: vec![0; n],
            weights: vec![Vec::new(); n],
            bonds: vec![Vec::new(); n],
            kappa: yuma::from_u16(p.kappa),
            alpha: yuma::ONE - yuma::from_ppm(p.bonds_moving_average),
            bond_penalty: yuma::from_u16(p.bond_penalty),
        };
        let mut had_bonds = vec![false; n];
        for i in 0..n {
            let uid = i as u16;
            let bonds: Option<Vec<(u16, u64)>> = self.get(scratch, &bonds_key(netuid, uid))?;
            had_bonds[i] = bonds.is_some();
            if !permit[i] {
                continue;
            }
            let Some(row) = self.get::<WeightRow>(scratch, &weights_key(netuid, uid))? else {
                continue;
            };
            // Active: revealed within the cutoff (a reveal's delay is the commit-reveal
            // period's, not the validator's doing).
            if row.revealed_at.saturating_add(p.activity_cutoff) < height {
                continue;
            }
            input.stake[i] = counted[i];
            // Not on itself, and only on UIDs whose owner was there when it committed.
            input.weights[i] = row
                .entries
                .iter()
                .copied()
                .filter(|&(j, _)| {
                    usize::from(j) != i
                        && neurons
                            .get(usize::from(j))
                            .is_some_and(|nj| nj.registered_at < row.set_at)
                })
                .collect();
            // Bonds only on UIDs whose owner was there at the last epoch.
            input.bonds[i] = bonds
                .unwrap_or_default()
                .into_iter()
                .filter(|&(j, _)| {
                    neurons
                        .get(usize::from(j))
                        .is_some_and(|nj| nj.registered_at <= subnet.last_epoch)
                })
                .map(|(j, b)| (j, u128::from(b)))
                .collect();
        }
        let out = if subnet.task == SubnetTask::Forecast {
            self.score_forecasts(scratch, &subnet, &neurons, &counted, observed, events)?
        } else {
            yuma::epoch(&input)
        };
        let split = yuma::split(
            emission,
            self.subnet_params.owner_cut_ppm,
            &out.incentive,
            &out.dividends,
        );
        self.credit(scratch, subnet.owner, split.owner)?;
        self.burn(scratch, split.recycled)?;
        let mut per_uid = Vec::with_capacity(n);
        for i in 0..n {
            let hotkey = neurons[i].hotkey;
            // The datasets the neuron cites take their royalties out of its incentive.
            let royalty = self.pay_royalties(
                scratch,
                &crate::neuron_citation_key(netuid, &hotkey),
                split.miners[i],
                &hotkey,
                events,
            )?;
            self.credit(scratch, hotkey, split.miners[i] - royalty)?;
            let dividends = split.validators[i];
            if dividends > 0 {
                self.pay_delegators(
                    scratch,
                    &hotkey,
                    dividends,
                    &stakes[i],
                    subnet.last_epoch,
                    p.validator_take,
                )?;
            }
            let earned = split.miners[i] + dividends;
            per_uid.push(u64::try_from(earned).unwrap_or(u64::MAX));
            let nr = &mut neurons[i];
            nr.validator_permit = permit[i];
            nr.rank = Neuron::fx(out.rank[i]);
            nr.trust = Neuron::fx(out.trust[i]);
            nr.consensus = Neuron::fx(out.consensus[i]);
            nr.incentive = Neuron::fx(out.incentive[i]);
            nr.dividends = Neuron::fx(out.dividends[i]);
            nr.validator_trust = Neuron::fx(out.validator_trust[i]);
            nr.emission = earned;
            nr.stake = counted[i];
            Self::put(scratch, neuron_key(netuid, i as u16), nr);
            let bonds: Vec<(u16, u64)> = out.bonds[i]
                .iter()
                .map(|&(j, b)| (j, Neuron::fx(b)))
                .collect();
            if !bonds.is_empty() {
                Self::put(scratch, bonds_key(netuid, i as u16), &bonds);
            } else if had_bonds[i] {
                scratch.writes.insert(bonds_key(netuid, i as u16), None);
            }
        }
        let hkey = subnet_history_key(netuid);
        let mut history: Vec<EpochRecord> = self.get(scratch, &hkey)?.unwrap_or_default();
        if history.len() >= HISTORY_EPOCHS {
            history.drain(..=history.len() - HISTORY_EPOCHS);
        }
        history.push(EpochRecord {
            height,
            emission,
            recycled: split.recycled,
            per_uid,
            incentive: out.incentive.iter().map(|x| Neuron::fx(*x)).collect(),
            observed,
        });
        Self::put(scratch, hkey, &history);
        subnet.burn = p.next_burn(subnet.burn, subnet.registrations);
        subnet.registrations = 0;
        subnet.last_epoch = height;
        subnet.epochs += 1;
        if let Some(mut next) = subnet.pending.take() {
            // UIDs registered since the change was asked for stay.
            next.max_uids = next.max_uids.max(subnet.n);
            subnet.burn = subnet.burn.clamp(next.min_burn, next.max_burn);
            subnet.params = next;
            events.push(Event::new(
                "subnet_params_applied",
                &[("netuid", netuid.to_string())],
            ));
        }
        let tempo = subnet.params.tempo;
        // Commitments whose reveal window just closed can never be revealed: forget them.
        let ckey = commits_key(netuid);
        if let Some(mut commits) = self.get::<Vec<WeightCommit>>(scratch, &ckey)? {
            commits.retain(|c| c.reveal_epoch >= subnet.epochs);
            Self::put_or_delete(scratch, ckey, &commits);
        }
        Self::put(scratch, skey, &subnet);
        events.push(Event::new(
            "subnet_epoch",
            &[
                ("netuid", netuid.to_string()),
                ("epoch", subnet.epochs.to_string()),
                ("emission", emission.to_string()),
                ("owner", split.owner.to_string()),
                ("recycled", split.recycled.to_string()),
            ],
        ));
        Ok(tempo)
    }

    /// A forecast subnet's epoch: the chain scores the predictions revealed for the window
    /// that just ended against what it recorded (`observed`), and those scores are the
    /// incentive; the validators' half goes to stake, since the chain did the validating.
    /// Forecasts whose window is over are forgotten.
    fn score_forecasts(
        &self,
        scratch: &mut Scratch,
        subnet: &Subnet,
        neurons: &[Neuron],
        counted: &[Amount],
        observed: Amount,
        events: &mut Vec<Event>,
    ) -> Result<yuma::EpochOutput> {
        let n = neurons.len();
        let key = predictions_key(subnet.netuid);
        let mut predictions: Vec<Prediction> = self.get(scratch, &key)?.unwrap_or_default();
        let mut score = vec![0 as yuma::Fx; n];
        for p in &predictions {
            let (Some(value), true) = (p.value, p.epoch + 1 == subnet.epochs) else {
                continue;
            };
            if let Some(uid) = neurons.iter().position(|nr| nr.hotkey == p.hotkey) {
                score[uid] = forecast_score(value, observed);
                events.push(Event::new(
                    "forecast_scored",
                    &[
                        ("netuid", subnet.netuid.to_string()),
                        ("uid", uid.to_string()),
                        ("predicted", value.to_string()),
                        ("observed", observed.to_string()),
                        ("score", Neuron::fx(score[uid]).to_string()),
                    ],
                ));
            }
        }
        // Only the forecasts committed in the window that just ended stay: they predict the
        // next one.
        predictions.retain(|p| p.epoch >= subnet.epochs);
        Self::put_or_delete(scratch, key, &predictions);
        let score_sum: yuma::Fx = score.iter().sum();
        let stake_sum: Amount = counted.iter().fold(0, |a, s| a.saturating_add(*s));
        let incentive: Vec<yuma::Fx> = score.iter().map(|s| yuma::ratio(*s, score_sum)).collect();
        Ok(yuma::EpochOutput {
            consensus: score.clone(),
            rank: score.clone(),
            trust: score
                .iter()
                .map(|s| if *s > 0 { yuma::ONE } else { 0 })
                .collect(),
            incentive,
            validator_trust: vec![0; n],
            dividends: counted.iter().map(|s| yuma::ratio(*s, stake_sum)).collect(),
            bonds: vec![Vec::new(); n],
        })
    }

    /// `Message::CommitPrediction`.
    pub(super) fn commit_prediction(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        netuid: NetUid,
        commitment: &Hash,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let Some(subnet) = self.subnet(scratch, netuid)? else {
            return Ok(Err(TxError::UnknownSubnet { netuid }));
        };
        if subnet.task != SubnetTask::Forecast {
            return Ok(Err(TxError::WrongTask {
                netuid,
                reason: "not a forecast subnet: only forecast subnets take predictions",
            }));
        }
        let Some((uid, _)) = self.neuron_of(scratch, netuid, sender)? else {
            return Ok(Err(TxError::NotRegistered {
                netuid,
                hotkey: *sender,
            }));
        };
        let key = predictions_key(netuid);
        let mut predictions: Vec<Prediction> = self.get(scratch, &key)?.unwrap_or_default();
        if predictions
            .iter()
            .any(|p| p.hotkey == *sender && p.epoch == subnet.epochs)
        {
            return Ok(Err(TxError::CommitPending {
                height: self.ctx.height,
            }));
        }
        predictions.push(Prediction {
            hotkey: *sender,
            commitment: *commitment,
            epoch: subnet.epochs,
            value: None,
        });
        Self::put(scratch, key, &predictions);
        events.push(Event::new(
            "prediction_committed",
            &[
                ("netuid", netuid.to_string()),
                ("uid", uid.to_string()),
                ("hotkey", sender.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::RevealPrediction`.
    pub(super) fn reveal_prediction(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        netuid: NetUid,
        value: u64,
        salt: &Hash,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let Some(subnet) = self.subnet(scratch, netuid)? else {
            return Ok(Err(TxError::UnknownSubnet { netuid }));
        };
        let key = predictions_key(netuid);
        let mut predictions: Vec<Prediction> = self.get(scratch, &key)?.unwrap_or_default();
        // The forecast of the window now running: committed in the one before.
        let Some(at) = predictions
            .iter()
            .position(|p| p.hotkey == *sender && p.epoch + 1 == subnet.epochs && p.value.is_none())
        else {
            if predictions
                .iter()
                .any(|p| p.hotkey == *sender && p.epoch == subnet.epochs)
            {
                return Ok(Err(TxError::RevealTooEarly {
                    epoch: subnet.epochs + 1,
                    now: subnet.epochs,
                }));
            }
            return Ok(Err(TxError::NoCommit { netuid }));
        };
        if agora_types::prediction_commitment(netuid, sender, value, salt)
            != predictions[at].commitment
        {
            return Ok(Err(TxError::RevealMismatch));
        }
        predictions[at].value = Some(value);
        Self::put(scratch, key, &predictions);
        events.push(Event::new(
            "prediction_revealed",
            &[
                ("netuid", netuid.to_string()),
                ("hotkey", sender.to_string()),
                ("value", value.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// A validator's dividends: its take to the hotkey, the rest to every delegator (the hotkey
    /// itself included, if it staked) pro rata to the stake that counted; rounding to the
    /// hotkey.
    fn pay_delegators(
        &self,
        scratch: &mut Scratch,
        hotkey: &Address,
        dividends: Amount,
        stake: &HotkeyStake,
        last_epoch: u64,
        take_ppm: u32,
    ) -> Result<()> {
        let ppm = u128::from(take_ppm.min(1_000_000));
        let take = dividends / 1_000_000 * ppm + dividends % 1_000_000 * ppm / 1_000_000;
        let rest = dividends - take;
        let total = stake.counted(last_epoch);
        let mut paid = 0;
        if total > 0 {
            for d in &stake.delegations {
                let share = yuma::mul_amount(rest, yuma::ratio(d.counted(last_epoch), total))
                    .min(rest - paid);
                self.credit(scratch, d.delegator, share)?;
                paid += share;
            }
        }
        self.credit(scratch, *hotkey, dividends - paid)
    }
}

/// Checks revealed weights and normalizes them so the largest is `u16::MAX` (as Bittensor
/// stores them), sorted by UID, zeros dropped.
fn normalize_weights(
    uids: &[u16],
    weights: &[u16],
    n: u16,
) -> std::result::Result<Vec<(u16, u16)>, String> {
    if uids.len() != weights.len() {
        return Err(format!("{} UIDs but {} weights", uids.len(), weights.len()));
    }
    if uids.is_empty() {
        return Err("no weights".into());
    }
    if uids.len() > usize::from(n) {
        return Err(format!("{} weights for {n} UIDs", uids.len()));
    }
    let mut entries: Vec<(u16, u16)> = uids.iter().copied().zip(weights.iter().copied()).collect();
    entries.sort_unstable();
    if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("UID {} is weighted twice", w[0].0));
    }
    if let Some(&(u, _)) = entries.iter().find(|e| e.0 >= n) {
        return Err(format!("UID {u} is out of range (the subnet has {n})"));
    }
    let max = entries.iter().map(|e| e.1).max().unwrap_or(0);
    if max == 0 {
        return Err("every weight is zero".into());
    }
    Ok(entries
        .into_iter()
        .map(|(u, w)| {
            (
                u,
                (u32::from(w) * u32::from(u16::MAX) / u32::from(max)) as u16,
            )
        })
        .filter(|e| e.1 > 0)
        .collect())
}

/// The genesis writes of the model market: its parameters, and where supply starts.
pub(crate) fn genesis_writes(
    writes: &mut WriteSet,
    emission: &EmissionParams,
    subnets: &SubnetParams,
    supply: Amount,
) {
    writes.insert(crate::emission_params_key(), Some(encode(emission)));
    writes.insert(crate::subnet_params_key(), Some(encode(subnets)));
    writes.insert(
        emission_key(),
        Some(encode(&EmissionState {
            genesis_supply: supply,
            minted: 0,
            burned: 0,
        })),
    );
}
