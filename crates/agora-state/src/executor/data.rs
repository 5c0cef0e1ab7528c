//! The data market's messages and end-of-block steps (DESIGN.md §8; the state, its windows and
//! who can abuse what are described in [`crate::data`]).

use super::*;
use crate::{
    Bounty, DataTask, Dataset, Item, ModelOwner, PanelSeat, RECENT_CITATIONS, Reviewer, ScreenNote,
    SettleProgress, Stage, bounty_key, citation_key, data_queue_key, dataset_contributors_key,
    dataset_key, hotkey_uid_key, item_hash_key, item_key, model_owner_key, next_bounty_key,
    provider_citation_key, provider_key, reviewer_key, reviewer_set_key, royalty_claim_key,
    seat_key, settle_progress_key,
};
use agora_types::{
    BountyId, BountySpec, CiteTarget, MAX_BOUNTY_DESCRIPTION_BYTES, MAX_BOUNTY_SCHEMA_BYTES,
    MAX_CITATIONS, MAX_SCREEN_DETAIL_BYTES, RejectReason, ScreenVerdict, dataset_leaf, merkle_root,
    vote_commitment,
};

type TxResult = Result<std::result::Result<(), TxError>>;

/// Domain of the draws of screeners and panels.
const DATA_DRAW_DOMAIN: &[u8] = b"agora/data-draw/v1";

fn put<T: BorshSerialize>(scratch: &mut Scratch, key: Vec<u8>, value: &T) {
    scratch.writes.insert(key, Some(encode(value)));
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt {
        key: "data market".into(),
        reason: what.into(),
    }
}

/// `*slot -= amount`, or a corrupt state.
fn take(slot: &mut Amount, amount: Amount, what: &str) -> Result<()> {
    *slot = slot
        .checked_sub(amount)
        .ok_or_else(|| corrupt(&format!("{what} would go below zero")))?;
    Ok(())
}

/// `*slot += amount`, or a corrupt state.
fn give(slot: &mut Amount, amount: Amount, what: &str) -> Result<()> {
    *slot = slot
        .checked_add(amount)
        .ok_or_else(|| corrupt(&format!("{what} overflows")))?;
    Ok(())
}

fn item_event(name: &str, bounty: BountyId, item: u32, extra: &[(&str, String)]) -> Event {
    let mut fields = vec![("bounty", bounty.to_string()), ("item", item.to_string())];
    fields.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
    Event::new(name, &fields)
}

/// How a panel's vote came out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tally {
    Accept,
    Reject,
    /// Fewer than half the votes revealed: nobody could judge the item.
    NoQuorum,
}

impl Executor<'_> {
    fn bounty(&self, scratch: &Scratch, id: BountyId) -> Result<Option<Bounty>> {
        self.get(scratch, &bounty_key(id))
    }

    /// The bounty and the item, or the message's error.
    fn bounty_item(
        &self,
        scratch: &Scratch,
        bounty: BountyId,
        item: u32,
    ) -> Result<std::result::Result<(Bounty, Item), TxError>> {
        let Some(b) = self.bounty(scratch, bounty)? else {
            return Ok(Err(TxError::UnknownBounty { id: bounty }));
        };
        match self.get::<Item>(scratch, &item_key(bounty, item))? {
            Some(it) => Ok(Ok((b, it))),
            None => Ok(Err(TxError::UnknownItem { bounty, item })),
        }
    }

    fn schedule(scratch: &mut Scratch, height: u64, task: DataTask) {
        scratch.data_tasks.push((height, task));
    }

    /// The terms' own checks (the budget against the balance is the caller's).
    fn check_spec(&self, spec: &BountySpec) -> std::result::Result<(), String> {
        let d = &self.data;
        if spec.description.trim().is_empty()
            || spec.description.len() > MAX_BOUNTY_DESCRIPTION_BYTES
        {
            return Err(format!(
                "the description must be 1 to {MAX_BOUNTY_DESCRIPTION_BYTES} bytes"
            ));
        }
        if spec.schema.len() > MAX_BOUNTY_SCHEMA_BYTES {
            return Err(format!(
                "the schema is {} bytes, at most {MAX_BOUNTY_SCHEMA_BYTES}",
                spec.schema.len()
            ));
        }
        match serde_json::from_str::<serde_json::Value>(&spec.schema) {
            Ok(serde_json::Value::Object(_)) => {}
            _ => return Err("the schema must be a JSON object (a JSON Schema document)".into()),
        }
        if spec.reward_per_item == 0 {
            return Err("a reward of zero per item pays nobody".into());
        }
        if spec.review_stake == 0 {
            return Err("the review stake must be above zero: votes must risk something".into());
        }
        if spec.review_stake > d.min_reviewer_stake {
            return Err(format!(
                "the review stake is at most {} base units (what every reviewer holds): a larger one would leave the panel to the few who can cover it",
                d.min_reviewer_stake
            ));
        }
        if spec.review_fee < d.min_review_fee {
            return Err(format!(
                "the review fee is at least {} base units: reviewers are paid for their work",
                d.min_review_fee
            ));
        }
        if spec.item_bond < d.min_item_bond {
            return Err(format!(
                "the item bond is at least {} base units: spam must cost something",
                d.min_item_bond
            ));
        }
        if spec.quorum == 0 || spec.quorum > d.max_quorum {
            return Err(format!("the quorum must be 1 to {} votes", d.max_quorum));
        }
        let h = self.ctx.height;
        if spec.deadline <= h || spec.deadline - h > d.max_bounty_blocks {
            return Err(format!(
                "the deadline must be after this block ({h}) and at most {} blocks ahead",
                d.max_bounty_blocks
            ));
        }
        if spec.max_item_bytes == 0 || spec.max_item_bytes > d.max_item_bytes {
            return Err(format!(
                "items must be allowed 1 to {} bytes",
                d.max_item_bytes
            ));
        }
        if spec.duplicate_bps == 0 || spec.duplicate_bps > 10_000 {
            return Err("the duplicate threshold is 1 to 10000 basis points".into());
        }
        if spec.royalty_bps > d.max_royalty_bps {
            return Err(format!(
                "the royalty is at most {} basis points",
                d.max_royalty_bps
            ));
        }
        let Some(cost) = Bounty::item_cost(spec) else {
            return Err("the reward and review fees overflow".into());
        };
        if spec.budget < cost {
            return Err(format!(
                "a budget of {} does not cover one item's reward and review fees ({cost})",
                spec.budget
            ));
        }
        Ok(())
    }

    /// `Message::CreateBounty`.
    pub(super) fn create_bounty(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        spec: &BountySpec,
        events: &mut Vec<Event>,
    ) -> TxResult {
        if let Err(e) = self.check_spec(spec) {
            return Ok(Err(TxError::InvalidBounty(e)));
        }
        if let Err(e) = check_spend(from.balance, spec.budget) {
            return Ok(Err(e));
        }
        let id: BountyId = self.get(scratch, &next_bounty_key())?.unwrap_or(0);
        from.balance -= spec.budget;
        scratch.accounts.insert(*sender, from);
        let settle_at = spec.deadline.saturating_add(self.data.settle_delay());
        let bounty = Bounty {
            id,
            requester: *sender,
            spec: spec.clone(),
            created: self.ctx.height,
            available: spec.budget,
            held: 0,
            paid: 0,
            refunded: 0,
            items: 0,
            open: 0,
            accepted: 0,
            settle_at,
            settled: false,
            dataset: None,
        };
        put(scratch, next_bounty_key(), &(id + 1));
        put(scratch, bounty_key(id), &bounty);
        Self::schedule(scratch, settle_at, DataTask::Settle(id));
        events.push(Event::new(
            "bounty_created",
            &[
                ("bounty", id.to_string()),
                ("requester", sender.to_string()),
                ("budget", spec.budget.to_string()),
                ("deadline", spec.deadline.to_string()),
                ("settle_at", settle_at.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::SubmitItem`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn submit_item(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        bounty: BountyId,
        hash: &Hash,
        size: u32,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let Some(mut b) = self.bounty(scratch, bounty)? else {
            return Ok(Err(TxError::UnknownBounty { id: bounty }));
        };
        if b.settled || self.ctx.height > b.spec.deadline {
            return Ok(Err(TxError::BountyClosed {
                id: bounty,
                deadline: b.spec.deadline,
            }));
        }
        if size == 0 || size > b.spec.max_item_bytes {
            return Ok(Err(TxError::ItemSize {
                size,
                limit: b.spec.max_item_bytes,
            }));
        }
        if let Some(of) = self.get::<u32>(scratch, &item_hash_key(bounty, hash))? {
            return Ok(Err(TxError::DuplicateItem { of }));
        }
        if b.items >= self.data.max_items {
            return Ok(Err(TxError::TooManyItems {
                max: self.data.max_items,
            }));
        }
        let cost = Bounty::item_cost(&b.spec).ok_or_else(|| corrupt("a bounty's item cost"))?;
        if b.available < cost {
            return Ok(Err(TxError::BountyExhausted {
                need: cost,
                available: b.available,
            }));
        }
        let bond = b.spec.item_bond;
        if from.balance < bond {
            return Ok(Err(TxError::InsufficientFunds {
                need: bond,
                have: from.balance,
            }));
        }
        from.balance -= bond;
        scratch.accounts.insert(*sender, from);
        let index = b.items;
        let item = Item {
            contributor: *sender,
            hash: *hash,
            size,
            submitted: self.ctx.height,
            bond,
            hold: cost,
            screener: None,
            screened_by: None,
            screen: None,
            appealed: false,
            stage: Stage::DrawScreener,
        };
        b.items += 1;
        b.open += 1;
        b.available -= cost;
        give(&mut b.held, cost, "a bounty's held budget")?;
        put(scratch, item_key(bounty, index), &item);
        put(scratch, item_hash_key(bounty, hash), &index);
        put(scratch, bounty_key(bounty), &b);
        Self::schedule(
            scratch,
            self.ctx.height + 1,
            DataTask::DrawScreener(bounty, index),
        );
        events.push(item_event(
            "item_submitted",
            bounty,
            index,
            &[
                ("contributor", sender.to_string()),
                ("hash", hash.to_hex()),
                ("size", size.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::ScreenItem`.
    pub(super) fn screen_item(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        bounty: BountyId,
        index: u32,
        verdict: &ScreenVerdict,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let (mut b, mut it) = match self.bounty_item(scratch, bounty, index)? {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        let Stage::Screening { screener, deadline } = it.stage else {
            return Ok(Err(TxError::WrongStage {
                bounty,
                item: index,
                reason: "it is not waiting for a screener's verdict",
            }));
        };
        if screener != *sender {
            return Ok(Err(TxError::NotDrawn {
                bounty,
                item: index,
                reason: "only its drawn screener judges it",
            }));
        }
        if self.ctx.height > deadline {
            return Ok(Err(TxError::OutsideWindow {
                what: "the screening",
                from: it.submitted + 1,
                until: deadline,
            }));
        }
        let note = match verdict {
            ScreenVerdict::Pass => None,
            ScreenVerdict::Reject {
                reason,
                duplicate_of,
                detail,
            } => {
                if detail.len() > MAX_SCREEN_DETAIL_BYTES {
                    return Ok(Err(TxError::InvalidScreen(format!(
                        "the detail is at most {MAX_SCREEN_DETAIL_BYTES} bytes"
                    ))));
                }
                match (reason, duplicate_of) {
                    (RejectReason::Duplicate, Some(of)) if *of < index => {}
                    (RejectReason::Duplicate, _) => {
                        return Ok(Err(TxError::InvalidScreen(
                            "a duplicate names the earlier item of the bounty it repeats".into(),
                        )));
                    }
                    (_, Some(_)) => {
                        return Ok(Err(TxError::InvalidScreen(
                            "only a duplicate names another item".into(),
                        )));
                    }
                    (_, None) => {}
                }
                Some(ScreenNote {
                    reason: *reason,
                    duplicate_of: *duplicate_of,
                    detail: detail.clone(),
                })
            }
        };
        // The screener is paid for its work whatever it finds; an overturned rejection costs it
        // more than the fee (see the tally).
        let fee = b.spec.review_fee;
        take(&mut it.hold, fee, "an item's hold")?;
        take(&mut b.held, fee, "a bounty's held budget")?;
        give(&mut b.paid, fee, "a bounty's payouts")?;
        self.credit(scratch, *sender, fee)?;
        let h = self.ctx.height;
        let (name, extra) = match note {
            None => {
                it.stage = Stage::DrawPanel;
                Self::schedule(scratch, h + 1, DataTask::DrawPanel(bounty, index));
                ("item_screened", vec![("verdict", "pass".to_string())])
            }
            Some(note) => {
                let appeal_deadline = h + self.data.appeal_window;
                let extra = vec![
                    ("verdict", "reject".to_string()),
                    ("reason", note.reason.code().to_string()),
                    ("appeal_until", appeal_deadline.to_string()),
                ];
                it.screen = Some(note);
                it.stage = Stage::Screened { appeal_deadline };
                Self::schedule(scratch, appeal_deadline, DataTask::AppealDue(bounty, index));
                ("item_screened", extra)
            }
        };
        put(scratch, item_key(bounty, index), &it);
        put(scratch, bounty_key(bounty), &b);
        events.push(item_event(name, bounty, index, &extra));
        Ok(Ok(()))
    }

    /// `Message::AppealItem`.
    pub(super) fn appeal_item(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        bounty: BountyId,
        index: u32,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let (_, mut it) = match self.bounty_item(scratch, bounty, index)? {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        let Stage::Screened { appeal_deadline } = it.stage else {
            return Ok(Err(TxError::WrongStage {
                bounty,
                item: index,
                reason: "only an item its screener rejected can be appealed",
            }));
        };
        if it.contributor != *sender {
            return Ok(Err(TxError::NotDrawn {
                bounty,
                item: index,
                reason: "only its contributor appeals",
            }));
        }
        if self.ctx.height > appeal_deadline {
            return Ok(Err(TxError::OutsideWindow {
                what: "the appeal",
                from: it.submitted + 1,
                until: appeal_deadline,
            }));
        }
        it.appealed = true;
        it.stage = Stage::DrawPanel;
        Self::schedule(
            scratch,
            self.ctx.height + 1,
            DataTask::DrawPanel(bounty, index),
        );
        put(scratch, item_key(bounty, index), &it);
        events.push(item_event("item_appealed", bounty, index, &[]));
        Ok(Ok(()))
    }

    /// The item's panel and the sender's seat on it, or the message's error.
    fn seat_of<'i>(
        it: &'i mut Item,
        bounty: BountyId,
        index: u32,
        sender: &Address,
    ) -> std::result::Result<(u64, u64, &'i mut PanelSeat), TxError> {
        let Stage::Voting {
            commit_deadline,
            reveal_deadline,
            seats,
        } = &mut it.stage
        else {
            return Err(TxError::WrongStage {
                bounty,
                item: index,
                reason: "it is not being voted on",
            });
        };
        let seat = seats
            .iter_mut()
            .find(|s| s.reviewer == *sender)
            .ok_or(TxError::NotDrawn {
                bounty,
                item: index,
                reason: "the sender holds no vote on its panel",
            })?;
        Ok((*commit_deadline, *reveal_deadline, seat))
    }

    /// `Message::CommitVote`.
    pub(super) fn commit_vote(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        bounty: BountyId,
        index: u32,
        commitment: &Hash,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let (_, mut it) = match self.bounty_item(scratch, bounty, index)? {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        let h = self.ctx.height;
        let commit_window = self.data.commit_window;
        let (commit_deadline, _, seat) = match Self::seat_of(&mut it, bounty, index, sender) {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        if h > commit_deadline {
            return Ok(Err(TxError::OutsideWindow {
                what: "the commit",
                from: commit_deadline.saturating_sub(commit_window) + 1,
                until: commit_deadline,
            }));
        }
        if seat.commitment.is_some() {
            return Ok(Err(TxError::WrongStage {
                bounty,
                item: index,
                reason: "the sender's vote is committed already",
            }));
        }
        seat.commitment = Some(*commitment);
        put(scratch, item_key(bounty, index), &it);
        events.push(item_event(
            "vote_committed",
            bounty,
            index,
            &[("reviewer", sender.to_string())],
        ));
        Ok(Ok(()))
    }

    /// `Message::RevealVote`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reveal_vote(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        bounty: BountyId,
        index: u32,
        accept: bool,
        salt: &Hash,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let (_, mut it) = match self.bounty_item(scratch, bounty, index)? {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        let h = self.ctx.height;
        let (commit_deadline, reveal_deadline, seat) =
            match Self::seat_of(&mut it, bounty, index, sender) {
                Ok(x) => x,
                Err(e) => return Ok(Err(e)),
            };
        if h <= commit_deadline || h > reveal_deadline {
            return Ok(Err(TxError::OutsideWindow {
                what: "the reveal",
                from: commit_deadline + 1,
                until: reveal_deadline,
            }));
        }
        let Some(commitment) = seat.commitment else {
            return Ok(Err(TxError::WrongStage {
                bounty,
                item: index,
                reason: "the sender committed no vote to reveal",
            }));
        };
        if seat.accept.is_some() {
            return Ok(Err(TxError::WrongStage {
                bounty,
                item: index,
                reason: "the sender's vote is revealed already",
            }));
        }
        if vote_commitment(bounty, index, sender, accept, salt) != commitment {
            return Ok(Err(TxError::VoteMismatch));
        }
        seat.accept = Some(accept);
        put(scratch, item_key(bounty, index), &it);
        events.push(item_event(
            "vote_revealed",
            bounty,
            index,
            &[
                ("reviewer", sender.to_string()),
                ("accept", accept.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    fn reviewer_set(&self, scratch: &Scratch) -> Result<Vec<Address>> {
        Ok(self.get(scratch, &reviewer_set_key())?.unwrap_or_default())
    }

    /// `Message::JoinReviewers`.
    pub(super) fn join_reviewers(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        amount: Amount,
        events: &mut Vec<Event>,
    ) -> TxResult {
        if let Err(e) = check_spend(from.balance, amount) {
            return Ok(Err(e));
        }
        let key = reviewer_key(sender);
        let existing: Option<Reviewer> = self.get(scratch, &key)?;
        let mut rec = existing.clone().unwrap_or_default();
        let Some(stake) = rec.stake.checked_add(amount) else {
            return Ok(Err(TxError::AmountOverflow("review stake")));
        };
        if stake < self.data.min_reviewer_stake {
            return Ok(Err(TxError::StakeTooLow {
                min: self.data.min_reviewer_stake,
                got: stake,
            }));
        }
        rec.stake = stake;
        if existing.is_none() {
            let mut set = self.reviewer_set(scratch)?;
            if set.len() >= self.data.max_reviewers as usize {
                // Full: the smallest reviewer with no open seat gives way to more stake.
                let mut smallest: Option<(Address, Reviewer)> = None;
                for a in &set {
                    let r: Reviewer = self
                        .get(scratch, &reviewer_key(a))?
                        .ok_or_else(|| corrupt("a listed reviewer has no stake"))?;
                    if r.seats == 0 && smallest.as_ref().is_none_or(|(_, s)| r.stake < s.stake) {
                        smallest = Some((*a, r));
                    }
                }
                match smallest {
                    Some((gone, r)) if r.stake < stake => {
                        let mut acc = self.scratch_account_ro(scratch, &gone)?;
                        acc.unbonding = acc
                            .unbonding
                            .checked_add(r.stake)
                            .ok_or_else(|| corrupt("unbonding overflows"))?;
                        scratch.accounts.insert(gone, acc);
                        self.queue_unbonding(scratch, gone, r.stake);
                        self.forget_reviewer(scratch, &gone)?;
                        set = self.reviewer_set(scratch)?;
                        events.push(Event::new(
                            "reviewer_evicted",
                            &[
                                ("reviewer", gone.to_string()),
                                ("stake", r.stake.to_string()),
                            ],
                        ));
                    }
                    _ => {
                        return Ok(Err(TxError::ReviewersFull {
                            max: self.data.max_reviewers,
                            offered: stake,
                        }));
                    }
                }
            }
            if let Err(i) = set.binary_search(sender) {
                set.insert(i, *sender);
            }
            put(scratch, reviewer_set_key(), &set);
        }
        from.balance -= amount;
        scratch.accounts.insert(*sender, from);
        put(scratch, key, &rec);
        events.push(Event::new(
            "reviewer_staked",
            &[
                ("reviewer", sender.to_string()),
                ("amount", amount.to_string()),
                ("stake", stake.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::LeaveReviewers`.
    pub(super) fn leave_reviewers(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        amount: Amount,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let key = reviewer_key(sender);
        let Some(mut rec) = self.get::<Reviewer>(scratch, &key)? else {
            return Ok(Err(TxError::NotReviewer { address: *sender }));
        };
        if amount == 0 {
            return Ok(Err(TxError::ZeroAmount));
        }
        if amount > rec.free() {
            return Ok(Err(TxError::ReviewStakeLocked {
                need: amount,
                free: rec.free(),
            }));
        }
        let left = rec.stake - amount;
        if left > 0 && left < self.data.min_reviewer_stake {
            return Ok(Err(TxError::StakeTooLow {
                min: self.data.min_reviewer_stake,
                got: left,
            }));
        }
        rec.stake = left;
        let Some(unbonding) = from.unbonding.checked_add(amount) else {
            return Ok(Err(TxError::AmountOverflow("unbonding")));
        };
        from.unbonding = unbonding;
        scratch.accounts.insert(*sender, from);
        let release = self.queue_unbonding(scratch, *sender, amount);
        if rec.stake == 0 {
            self.forget_reviewer(scratch, sender)?;
        } else {
            put(scratch, key, &rec);
        }
        events.push(Event::new(
            "reviewer_unstaked",
            &[
                ("reviewer", sender.to_string()),
                ("amount", amount.to_string()),
                ("release_height", release.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    fn forget_reviewer(&self, scratch: &mut Scratch, who: &Address) -> Result<()> {
        scratch.writes.insert(reviewer_key(who), None);
        let mut set = self.reviewer_set(scratch)?;
        if let Ok(i) = set.binary_search(who) {
            set.remove(i);
        }
        put(scratch, reviewer_set_key(), &set);
        Ok(())
    }

    /// Locks `amount` of `who`'s review stake for one seat.
    fn lock(
        &self,
        scratch: &mut Scratch,
        who: &Address,
        amount: Amount,
        seat: (BountyId, u32),
    ) -> Result<()> {
        scratch
            .writes
            .insert(seat_key(who, seat.0, seat.1), Some(Vec::new()));
        let key = reviewer_key(who);
        let mut rec: Reviewer = self
            .get(scratch, &key)?
            .ok_or_else(|| corrupt("a drawn reviewer has no stake"))?;
        give(&mut rec.locked, amount, "locked review stake")?;
        if rec.locked > rec.stake {
            return Err(corrupt("a reviewer locked beyond its stake"));
        }
        rec.seats += 1;
        put(scratch, key, &rec);
        Ok(())
    }

    /// Releases a seat's lock of `amount`, taking `cut` (at most the lock) from the stake;
    /// returns what was taken.
    #[allow(clippy::too_many_arguments)]
    fn release(
        &self,
        scratch: &mut Scratch,
        who: &Address,
        seat: (BountyId, u32),
        amount: Amount,
        cut: Amount,
    ) -> Result<Amount> {
        scratch.writes.insert(seat_key(who, seat.0, seat.1), None);
        let key = reviewer_key(who);
        let mut rec: Reviewer = self
            .get(scratch, &key)?
            .ok_or_else(|| corrupt("a seated reviewer has no stake"))?;
        take(&mut rec.locked, amount, "locked review stake")?;
        rec.seats = rec
            .seats
            .checked_sub(1)
            .ok_or_else(|| corrupt("a reviewer's seats"))?;
        let cut = cut.min(amount).min(rec.stake);
        rec.stake -= cut;
        if rec.stake == 0 {
            self.forget_reviewer(scratch, who)?;
        } else {
            put(scratch, key, &rec);
        }
        Ok(cut)
    }

    /// Draws `n` votes for an item, with replacement, in proportion to review stake as it was in
    /// the parent state (this block's proposer knew the seed when it chose the block's
    /// transactions, so nothing in them may move the draw); `exclude` are never drawn. A pick
    /// whose free stake now cannot cover the bounty's review stake is void (`None`) rather than
    /// drawn again: locking other reviewers' stake, or setting a review stake only one's own
    /// accounts can cover, empties seats instead of handing them to someone else, and an item
    /// with too few votes is not decided by them.
    fn draw_votes(
        &self,
        scratch: &Scratch,
        b: &Bounty,
        index: u32,
        tag: u8,
        n: usize,
        exclude: &[Address],
    ) -> Result<Vec<Option<Address>>> {
        let rs = b.spec.review_stake;
        let parent: Vec<Address> = self
            .base
            .get(&reviewer_set_key())?
            .map(|v| decode(&reviewer_set_key(), &v))
            .transpose()?
            .unwrap_or_default();
        let mut weights: Vec<(Address, Amount)> = Vec::new();
        for a in parent {
            if exclude.contains(&a) {
                continue;
            }
            let key = reviewer_key(&a);
            if let Some(r) = self
                .base
                .get(&key)?
                .map(|v| decode::<Reviewer>(&key, &v))
                .transpose()?
                && r.stake > 0
            {
                weights.push((a, r.stake));
            }
        }
        let total = weights
            .iter()
            .try_fold(0 as Amount, |t, (_, w)| t.checked_add(*w))
            .ok_or_else(|| corrupt("review stakes overflow"))?;
        let mut out = Vec::with_capacity(n);
        if total == 0 {
            return Ok(out);
        }
        let mut id = DATA_DRAW_DOMAIN.to_vec();
        id.extend_from_slice(&b.id.to_le_bytes());
        id.extend_from_slice(&index.to_le_bytes());
        id.push(tag);
        let id = Hash::digest(&id);
        // Free stake taken by this draw's earlier picks.
        let mut taken: BTreeMap<Address, Amount> = BTreeMap::new();
        for salt in 0..n {
            let mut point = self.draw_u128(&id, salt as u32) % total;
            let (who, _) = *weights
                .iter()
                .find(|(_, w)| {
                    if point < *w {
                        true
                    } else {
                        point -= w;
                        false
                    }
                })
                .ok_or_else(|| corrupt("a draw past the total"))?;
            let (free, seats) = self
                .get::<Reviewer>(scratch, &reviewer_key(&who))?
                .map_or((0, u32::MAX), |r| (r.free(), r.seats));
            let used = taken.entry(who).or_default();
            // One more seat (a reviewer's votes on one panel share a seat).
            let new_seat = u32::from(*used == 0);
            if free.saturating_sub(*used) >= rs
                && seats.saturating_add(new_seat) <= self.data.max_reviewer_seats
            {
                *used += rs;
                out.push(Some(who));
            } else {
                out.push(None);
            }
        }
        Ok(out)
    }

    /// End of block: the data market's steps due at this height.
    pub(super) fn run_data_tasks(&mut self, events: &mut Vec<Event>) -> Result<()> {
        let key = data_queue_key(self.ctx.height);
        let Some(bytes) = read(self.base, &[&self.writes], &key)? else {
            return Ok(());
        };
        let queue: Vec<DataTask> = decode(&key, &bytes)?;
        self.writes.insert(key, None);
        for task in queue {
            let mut scratch = Scratch::default();
            self.run_task(&mut scratch, task, events)?;
            self.commit_scratch(scratch);
        }
        Ok(())
    }

    fn run_task(
        &mut self,
        scratch: &mut Scratch,
        task: DataTask,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let h = self.ctx.height;
        let (bounty, index) = match task {
            DataTask::Settle(id) => return self.settle_bounty(scratch, id, events),
            DataTask::DrawScreener(b, i)
            | DataTask::ScreenDue(b, i)
            | DataTask::AppealDue(b, i)
            | DataTask::DrawPanel(b, i)
            | DataTask::Tally(b, i) => (b, i),
        };
        let (Some(mut b), Some(mut it)) = (
            self.bounty(scratch, bounty)?,
            self.get::<Item>(scratch, &item_key(bounty, index))?,
        ) else {
            return Err(corrupt("a task for an item that does not exist"));
        };
        let rs = b.spec.review_stake;
        match (task, &it.stage) {
            (DataTask::DrawScreener(..), Stage::DrawScreener) => {
                let exclude = [it.contributor, b.requester];
                match self
                    .draw_votes(scratch, &b, index, 0, 1, &exclude)?
                    .first()
                    .copied()
                    .flatten()
                {
                    Some(screener) => {
                        self.lock(scratch, &screener, rs, (bounty, index))?;
                        let deadline = h + self.data.screen_window;
                        it.screener = Some(screener);
                        it.screened_by = Some(screener);
                        it.stage = Stage::Screening { screener, deadline };
                        Self::schedule(scratch, deadline, DataTask::ScreenDue(bounty, index));
                        events.push(item_event(
                            "screener_drawn",
                            bounty,
                            index,
                            &[
                                ("screener", screener.to_string()),
                                ("deadline", deadline.to_string()),
                            ],
                        ));
                    }
                    None => {
                        it.stage = Stage::DrawPanel;
                        Self::schedule(scratch, h + 1, DataTask::DrawPanel(bounty, index));
                        events.push(item_event("screen_skipped", bounty, index, &[]));
                    }
                }
            }
            (DataTask::ScreenDue(..), &Stage::Screening { screener, .. }) => {
                // No verdict in time: the item goes on to its panel, the screener pays.
                let cut =
                    self.release(scratch, &screener, (bounty, index), rs, self.data.slash(rs))?;
                self.burn(scratch, cut)?;
                it.screener = None;
                it.stage = Stage::DrawPanel;
                Self::schedule(scratch, h + 1, DataTask::DrawPanel(bounty, index));
                events.push(item_event(
                    "screener_missed",
                    bounty,
                    index,
                    &[
                        ("screener", screener.to_string()),
                        ("slashed", cut.to_string()),
                    ],
                ));
            }
            (DataTask::AppealDue(..), Stage::Screened { .. }) => {
                let reason = it
                    .screen
                    .as_ref()
                    .map_or("screen", |n| n.reason.code())
                    .to_string();
                self.decide(scratch, &mut b, &mut it, index, None, &reason, events)?;
            }
            (DataTask::DrawPanel(..), Stage::DrawPanel) => {
                // Whoever screened it, even one that missed its window, judges it no more.
                let mut exclude = vec![it.contributor, b.requester];
                exclude.extend(it.screened_by);
                let picks =
                    self.draw_votes(scratch, &b, index, 1, usize::from(b.spec.quorum), &exclude)?;
                let voided = picks.iter().filter(|p| p.is_none()).count();
                let drawn: Vec<Address> = picks.into_iter().flatten().collect();
                if drawn.is_empty() {
                    // Nobody can judge it: not the contributor's fault.
                    self.decide(
                        scratch,
                        &mut b,
                        &mut it,
                        index,
                        None,
                        "no_reviewers",
                        events,
                    )?;
                } else {
                    let mut seats: Vec<PanelSeat> = Vec::new();
                    for r in drawn {
                        match seats.iter_mut().find(|s| s.reviewer == r) {
                            Some(s) => s.votes += 1,
                            None => seats.push(PanelSeat {
                                reviewer: r,
                                votes: 1,
                                commitment: None,
                                accept: None,
                            }),
                        }
                    }
                    for s in &seats {
                        self.lock(
                            scratch,
                            &s.reviewer,
                            rs * Amount::from(s.votes),
                            (bounty, index),
                        )?;
                    }
                    let commit_deadline = h + self.data.commit_window;
                    let reveal_deadline = commit_deadline + self.data.reveal_window;
                    let names = seats
                        .iter()
                        .map(|s| format!("{}×{}", s.reviewer, s.votes))
                        .collect::<Vec<_>>()
                        .join(",");
                    it.stage = Stage::Voting {
                        commit_deadline,
                        reveal_deadline,
                        seats,
                    };
                    Self::schedule(scratch, reveal_deadline, DataTask::Tally(bounty, index));
                    events.push(item_event(
                        "panel_drawn",
                        bounty,
                        index,
                        &[
                            ("reviewers", names),
                            ("void", voided.to_string()),
                            ("commit_until", commit_deadline.to_string()),
                            ("reveal_until", reveal_deadline.to_string()),
                        ],
                    ));
                }
            }
            (DataTask::Tally(..), Stage::Voting { seats, .. }) => {
                let seats = seats.clone();
                self.tally(scratch, &mut b, &mut it, index, &seats, events)?;
            }
            // A step overtaken by another (an appeal before its window ended): nothing to do.
            _ => return Ok(()),
        }
        put(scratch, item_key(bounty, index), &it);
        put(scratch, bounty_key(bounty), &b);
        Ok(())
    }

    /// Counts a panel's votes, pays and slashes its reviewers, and decides the item.
    fn tally(
        &mut self,
        scratch: &mut Scratch,
        b: &mut Bounty,
        it: &mut Item,
        index: u32,
        seats: &[PanelSeat],
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let rs = b.spec.review_stake;
        let votes = |f: &dyn Fn(&PanelSeat) -> bool| -> u32 {
            seats
                .iter()
                .filter(|s| f(s))
                .map(|s| u32::from(s.votes))
                .sum()
        };
        let revealed = votes(&|s| s.accept.is_some());
        let yes = votes(&|s| s.accept == Some(true));
        let no = votes(&|s| s.accept == Some(false));
        // Every vote counts with the same review stake behind it, so the stake-weighted
        // majority is the majority of votes. A side wins only with more than half of the
        // quorum: void or silent seats never let a minority of the panel decide.
        let quorum = u32::from(b.spec.quorum);
        let outcome = if yes * 2 > quorum {
            Tally::Accept
        } else if no * 2 > quorum {
            Tally::Reject
        } else {
            Tally::NoQuorum
        };
        let wins = |s: &PanelSeat| match outcome {
            Tally::Accept => s.accept == Some(true),
            Tally::Reject => s.accept == Some(false),
            Tally::NoQuorum => s.accept.is_some(),
        };
        let cut = self.data.slash(rs);
        let mut pot: Amount = 0;
        let mut winner_votes: u32 = 0;
        for s in seats {
            let lock = rs * Amount::from(s.votes);
            if wins(s) {
                self.release(scratch, &s.reviewer, (b.id, index), lock, 0)?;
                winner_votes += u32::from(s.votes);
                let fee = b.spec.review_fee * Amount::from(s.votes);
                take(&mut it.hold, fee, "an item's hold")?;
                take(&mut b.held, fee, "a bounty's held budget")?;
                give(&mut b.paid, fee, "a bounty's payouts")?;
                self.credit(scratch, s.reviewer, fee)?;
            } else {
                let taken = self.release(
                    scratch,
                    &s.reviewer,
                    (b.id, index),
                    lock,
                    cut * Amount::from(s.votes),
                )?;
                give(&mut pot, taken, "a panel's slashes")?;
                events.push(item_event(
                    "reviewer_slashed",
                    b.id,
                    index,
                    &[
                        ("reviewer", s.reviewer.to_string()),
                        ("slashed", taken.to_string()),
                        (
                            "reason",
                            if s.accept.is_some() {
                                "outvoted"
                            } else {
                                "not_revealed"
                            }
                            .into(),
                        ),
                    ],
                ));
            }
        }
        // The losers' stake goes to the winning votes; what does not divide evenly is burned. An
        // undecided item has no winning side: whoever revealed is paid its fee, but the silent
        // seats' stake is burned, so nobody gains by keeping others from revealing.
        let mut shared: Amount = 0;
        if winner_votes > 0 && outcome != Tally::NoQuorum {
            for s in seats.iter().filter(|s| wins(s)) {
                let part = pot / Amount::from(winner_votes) * Amount::from(s.votes);
                shared += part;
                self.credit(scratch, s.reviewer, part)?;
            }
        }
        self.burn(scratch, pot - shared)?;
        events.push(item_event(
            "votes_counted",
            b.id,
            index,
            &[
                ("accept", yes.to_string()),
                ("reject", no.to_string()),
                ("revealed", revealed.to_string()),
                ("quorum", b.spec.quorum.to_string()),
                ("slashed", pot.to_string()),
            ],
        ));
        match outcome {
            Tally::Accept => self.decide(scratch, b, it, index, Some(true), "accepted", events),
            Tally::Reject => self.decide(scratch, b, it, index, Some(false), "review", events),
            Tally::NoQuorum => self.decide(scratch, b, it, index, None, "no_quorum", events),
        }
    }

    /// Decides an item: `accepted` is `Some(true)` (paid), `Some(false)` (rejected, bond
    /// burned) or `None` — rejected by its screener unappealed (`reason` is the screen's: bond
    /// burned) or judged by nobody (`no_reviewers`, `no_quorum`: bond returned, and the same
    /// bytes may be submitted again).
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        scratch: &mut Scratch,
        b: &mut Bounty,
        it: &mut Item,
        index: u32,
        accepted: Option<bool>,
        reason: &str,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let rs = b.spec.review_stake;
        let unjudged = accepted.is_none() && matches!(reason, "no_reviewers" | "no_quorum");
        let mut screener_cut: Amount = 0;
        if accepted == Some(true) {
            let reward = b.spec.reward_per_item;
            take(&mut it.hold, reward, "an item's hold")?;
            take(&mut b.held, reward, "a bounty's held budget")?;
            give(&mut b.paid, reward, "a bounty's payouts")?;
            self.credit(scratch, it.contributor, reward)?;
            self.credit(scratch, it.contributor, it.bond)?;
            b.accepted += 1;
            it.stage = Stage::Accepted;
        } else {
            if unjudged {
                self.credit(scratch, it.contributor, it.bond)?;
                scratch.writes.insert(item_hash_key(b.id, &it.hash), None);
            } else {
                self.burn(scratch, it.bond)?;
            }
            it.stage = Stage::Rejected {
                reason: reason.to_string(),
            };
        }
        if let Some(screener) = it.screener.take() {
            // A rejection the panel overturned costs the screener, to the contributor.
            let cut = if it.appealed && accepted == Some(true) {
                self.data.slash(rs)
            } else {
                0
            };
            screener_cut = self.release(scratch, &screener, (b.id, index), rs, cut)?;
            self.credit(scratch, it.contributor, screener_cut)?;
        }
        let left = std::mem::take(&mut it.hold);
        take(&mut b.held, left, "a bounty's held budget")?;
        give(&mut b.available, left, "a bounty's budget")?;
        b.open = b
            .open
            .checked_sub(1)
            .ok_or_else(|| corrupt("a bounty's open items"))?;
        let mut extra = vec![
            (
                "outcome",
                if accepted == Some(true) {
                    "accepted"
                } else {
                    "rejected"
                }
                .to_string(),
            ),
            ("reason", reason.to_string()),
            ("contributor", it.contributor.to_string()),
        ];
        if screener_cut > 0 {
            extra.push(("screener_slashed", screener_cut.to_string()));
        }
        events.push(item_event("item_decided", b.id, index, &extra));
        Ok(())
    }

    /// End of a bounty: the unspent budget returns, the accepted items form the dataset, the
    /// rejected items' records go.
    fn settle_bounty(
        &mut self,
        scratch: &mut Scratch,
        id: BountyId,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let Some(mut b) = self.bounty(scratch, id)? else {
            return Err(corrupt("settling a bounty that does not exist"));
        };
        if b.settled {
            return Ok(());
        }
        if b.open > 0 {
            // Cannot happen (the windows end before), but an item is never cut off.
            let next = self.ctx.height + 1;
            b.settle_at = next;
            Self::schedule(scratch, next, DataTask::Settle(id));
            put(scratch, bounty_key(id), &b);
            return Ok(());
        }
        // Settlement reads every item: a block reads at most `settle_items_per_block` of them,
        // over all the bounties settling in it, and a bounty goes on where it stopped.
        let pkey = settle_progress_key(id);
        let mut progress: SettleProgress = self.get(scratch, &pkey)?.unwrap_or_default();
        let refund = std::mem::take(&mut b.available);
        give(&mut b.refunded, refund, "a bounty's refund")?;
        self.credit(scratch, b.requester, refund)?;
        while progress.next < b.items {
            if self.settle_budget == 0 {
                let next = self.ctx.height + 1;
                b.settle_at = next;
                Self::schedule(scratch, next, DataTask::Settle(id));
                put(scratch, pkey, &progress);
                put(scratch, bounty_key(id), &b);
                return Ok(());
            }
            self.settle_budget -= 1;
            let index = progress.next;
            let key = item_key(id, index);
            let it: Item = self
                .get(scratch, &key)?
                .ok_or_else(|| corrupt("a bounty's item is missing"))?;
            if it.stage == Stage::Accepted {
                progress
                    .leaves
                    .push(dataset_leaf(id, index, &it.contributor, &it.hash));
                match progress
                    .contributors
                    .binary_search_by(|(a, _)| a.cmp(&it.contributor))
                {
                    Ok(k) => progress.contributors[k].1 += 1,
                    Err(k) => progress.contributors.insert(k, (it.contributor, 1)),
                }
            } else {
                scratch.writes.insert(key, None);
                scratch.writes.insert(item_hash_key(id, &it.hash), None);
            }
            progress.next += 1;
        }
        scratch.writes.insert(pkey, None);
        let leaves = progress.leaves;
        let contributors = progress.contributors;
        if !leaves.is_empty() {
            let root = merkle_root(&leaves);
            let list: Vec<(Address, u32)> = contributors;
            put(scratch, dataset_contributors_key(&root), &list);
            let dataset = Dataset {
                root,
                bounty: id,
                items: leaves.len() as u32,
                contributors: list.len() as u32,
                royalty_bps: b.spec.royalty_bps,
                received: 0,
                claimed: 0,
                cited_by_models: 0,
                cited_by_providers: 0,
                cited_by_neurons: 0,
                cited_by_jobs: 0,
                recent: Vec::new(),
            };
            put(scratch, dataset_key(&root), &dataset);
            b.dataset = Some(root);
        }
        b.settled = true;
        put(scratch, bounty_key(id), &b);
        events.push(Event::new(
            "bounty_settled",
            &[
                ("bounty", id.to_string()),
                ("accepted", b.accepted.to_string()),
                ("refunded", b.refunded.to_string()),
                ("dataset", b.dataset.map(|r| r.to_hex()).unwrap_or_default()),
            ],
        ));
        Ok(())
    }

    /// Records who registered a model (only it may cite datasets for it, in that block).
    pub(super) fn record_model_owner(&self, scratch: &mut Scratch, id: &Hash, owner: &Address) {
        put(
            scratch,
            model_owner_key(id),
            &ModelOwner {
                owner: *owner,
                height: self.ctx.height,
            },
        );
    }

    /// `Message::CiteDatasets`.
    pub(super) fn cite_datasets(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        target: &CiteTarget,
        roots: &[Hash],
        events: &mut Vec<Event>,
    ) -> TxResult {
        let bad = |m: String| Ok(Err(TxError::InvalidCitation(m)));
        if roots.is_empty() || roots.len() > MAX_CITATIONS {
            return bad(format!("cite 1 to {MAX_CITATIONS} datasets"));
        }
        let mut sorted = roots.to_vec();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != roots.len() {
            return bad("a dataset is cited twice".into());
        }
        let mut datasets = Vec::with_capacity(roots.len());
        for root in roots {
            match self.get::<Dataset>(scratch, &dataset_key(root))? {
                Some(d) => datasets.push(d),
                None => {
                    return Ok(Err(TxError::UnknownDataset {
                        root: root.to_hex(),
                    }));
                }
            }
        }
        let mut key = citation_key(target, sender);
        let royalty: u32 = datasets.iter().map(|d| u32::from(d.royalty_bps)).sum();
        // Who pays royalties: a provider for its fees on a model, a neuron for its incentive.
        let mut pays = matches!(target, CiteTarget::Neuron { .. });
        match target {
            CiteTarget::Model { id } => {
                let owner = self.get::<ModelOwner>(scratch, &model_owner_key(id))?;
                let serves = self
                    .get::<Provider>(scratch, &provider_key(sender))?
                    .is_some_and(|p| p.info.models.contains(id));
                if let Some(o) = owner.filter(|o| o.owner == *sender && o.height == self.ctx.height)
                {
                    // The registrant's provenance, once, in the registration's block.
                    let _ = o;
                    if self.get::<Vec<Hash>>(scratch, &key)?.is_some() {
                        return bad("the model's provenance is cited already".into());
                    }
                } else if serves {
                    // A provider's own fees on the model pay these datasets' royalties; anyone
                    // registering a model id first cannot tax the others who serve it.
                    key = provider_citation_key(id, sender);
                    pays = true;
                } else {
                    return bad(format!(
                        "datasets are cited for model {id} by its registrant in the block that registers it, or by a provider serving it"
                    ));
                }
            }
            CiteTarget::Neuron { netuid } => {
                if self
                    .get::<u16>(scratch, &hotkey_uid_key(*netuid, sender))?
                    .is_none()
                {
                    return Ok(Err(TxError::NotRegistered {
                        netuid: *netuid,
                        hotkey: *sender,
                    }));
                }
            }
            CiteTarget::Job { id } => {
                let Some(job) = self.get::<JobRecord>(scratch, &job_key(id))? else {
                    return bad(format!("no settled job {id}"));
                };
                if job.client != *sender {
                    return bad("only the job's client cites datasets for it".into());
                }
                if self.get::<Vec<Hash>>(scratch, &key)?.is_some() {
                    return bad("the job cites its datasets already".into());
                }
            }
        }
        if pays && royalty > u32::from(self.data.max_royalty_total_bps) {
            return bad(format!(
                "these datasets' royalties add up to {royalty} basis points, more than the {} allowed",
                self.data.max_royalty_total_bps
            ));
        }
        let by_provider = key.starts_with(b"dmt/p/");
        for mut d in datasets {
            match target {
                CiteTarget::Model { .. } if by_provider => {
                    d.cited_by_providers = d.cited_by_providers.saturating_add(1)
                }
                CiteTarget::Model { .. } => d.cited_by_models = d.cited_by_models.saturating_add(1),
                CiteTarget::Neuron { .. } => {
                    d.cited_by_neurons = d.cited_by_neurons.saturating_add(1)
                }
                CiteTarget::Job { .. } => d.cited_by_jobs = d.cited_by_jobs.saturating_add(1),
            }
            if d.recent.len() >= RECENT_CITATIONS {
                d.recent.remove(0);
            }
            d.recent.push(*target);
            put(scratch, dataset_key(&d.root), &d);
        }
        put(scratch, key, &roots.to_vec());
        events.push(Event::new(
            "datasets_cited",
            &[
                ("by", sender.to_string()),
                ("target", serde_json::to_string(target).unwrap_or_default()),
                (
                    "datasets",
                    roots.iter().map(Hash::to_hex).collect::<Vec<_>>().join(","),
                ),
            ],
        ));
        Ok(Ok(()))
    }

    /// Takes the royalties of the datasets cited under `key` out of `earned` (paid by `payer`)
    /// into the datasets; returns what was taken (at most `earned`: the cited royalties add up
    /// to at most 100 %).
    pub(super) fn pay_royalties(
        &self,
        scratch: &mut Scratch,
        key: &[u8],
        earned: Amount,
        payer: &Address,
        events: &mut Vec<Event>,
    ) -> Result<Amount> {
        if earned == 0 {
            return Ok(0);
        }
        let Some(roots) = self.get::<Vec<Hash>>(scratch, key)? else {
            return Ok(0);
        };
        let mut total: Amount = 0;
        for root in roots {
            let Some(mut d) = self.get::<Dataset>(scratch, &dataset_key(&root))? else {
                continue;
            };
            let r = crate::VerifyParams::share(earned, u32::from(d.royalty_bps));
            if r == 0 || total.saturating_add(r) > earned {
                continue;
            }
            total += r;
            give(&mut d.received, r, "a dataset's royalties")?;
            put(scratch, dataset_key(&root), &d);
            events.push(Event::new(
                "royalty_paid",
                &[
                    ("dataset", root.to_hex()),
                    ("payer", payer.to_string()),
                    ("amount", r.to_string()),
                ],
            ));
        }
        Ok(total)
    }

    /// `Message::ClaimRoyalties`.
    pub(super) fn claim_royalties(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        root: &Hash,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let Some(mut d) = self.get::<Dataset>(scratch, &dataset_key(root))? else {
            return Ok(Err(TxError::UnknownDataset {
                root: root.to_hex(),
            }));
        };
        let ckey = royalty_claim_key(root, sender);
        let claimed: Amount = self.get(scratch, &ckey)?.unwrap_or(0);
        let list: Vec<(Address, u32)> = self
            .get(scratch, &dataset_contributors_key(root))?
            .unwrap_or_default();
        let owed = d.share_of(&list, sender).saturating_sub(claimed);
        if owed == 0 {
            return Ok(Err(TxError::NothingToClaim { address: *sender }));
        }
        give(&mut d.claimed, owed, "a dataset's claimed royalties")?;
        if d.claimed > d.received {
            return Err(corrupt("royalties claimed beyond those received"));
        }
        put(scratch, ckey, &(claimed + owed));
        put(scratch, dataset_key(root), &d);
        self.credit(scratch, *sender, owed)?;
        events.push(Event::new(
            "royalty_claimed",
            &[
                ("dataset", root.to_hex()),
                ("contributor", sender.to_string()),
                ("amount", owed.to_string()),
            ],
        ));
        Ok(Ok(()))
    }
}
