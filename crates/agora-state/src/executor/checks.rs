//! Verification in the state machine (DESIGN.md §6; the states are in [`crate::verify`]):
//! verifier registration, drawing checks from block randomness, reveals, verdicts, disputes,
//! deadlines, and the outcomes that pay, refund and slash.

use super::{Executor, Scratch, decode, encode, read};
use crate::{
    Account, Check, Error, Escrow, FeeState, JobRecord, Outcome, Provider, Result, Role, Seat,
    TxError, UnbondingEntry, Verifier, VerifyParams, check_key, committee_queue_key,
    deadline_queue_key, draw_queue_key, escrow_key, job_key, open_check_key, provider_key,
    reveal_key, verification_fund_key, verifier_key, verifier_pool_key, verifier_set_key,
};
use agora_types::{
    Address, Amount, Event, Hash, MAX_REVEAL_PART_BYTES, MAX_REVEAL_PARTS, Verdict, Verification,
    VerifierInfo,
};

type TxResult = Result<std::result::Result<(), TxError>>;

const DRAW_DOMAIN: &[u8] = b"agora/check-draw/v1";

fn overflow(what: &str) -> Error {
    Error::Corrupt {
        key: what.into(),
        reason: "amount exceeds total supply".into(),
    }
}

/// The verifiers whose verdict `agrees` (or not) with the outcome, not yet counted that way; they
/// are marked counted.
fn sides(check: &mut Check, agrees: bool, verdict: impl Fn(&Seat) -> bool) -> Vec<Address> {
    let mut out = Vec::new();
    for seat in check.seats.iter_mut() {
        if verdict(seat) && seat.sided != Some(agrees) {
            seat.sided = Some(agrees);
            out.push(seat.verifier);
        }
    }
    out
}

/// Addresses for an event attribute, comma-separated.
fn address_list(addresses: &[Address]) -> String {
    addresses
        .iter()
        .map(Address::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn verdict_code(v: &Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail { fault } => fault.code(),
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Open => "open",
        Outcome::Passed => "passed",
        Outcome::Fraud => "fraud",
        Outcome::NoReveal => "no_reveal",
        Outcome::NoVerifier => "no_verifier",
    }
}

impl Executor<'_> {
    /// A number drawn from this block's seed, the job and a salt: the same on every node, known
    /// to nobody but this block's proposer before the parent block was proposed (see
    /// [`agora_types::BlockHeader::seed_input`]).
    fn draw_u64(&self, job: &Hash, salt: u32) -> u64 {
        let h = self.draw_hash(job, salt);
        u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes"))
    }

    /// [`Self::draw_u64`], 128 bits wide.
    fn draw_u128(&self, job: &Hash, salt: u32) -> u128 {
        let h = self.draw_hash(job, salt);
        u128::from_le_bytes(h.0[..16].try_into().expect("16 bytes"))
    }

    fn draw_hash(&self, job: &Hash, salt: u32) -> Hash {
        let mut bytes = DRAW_DOMAIN.to_vec();
        bytes.extend_from_slice(&self.ctx.seed.0);
        bytes.extend_from_slice(&job.0);
        bytes.extend_from_slice(&salt.to_le_bytes());
        Hash::digest(&bytes)
    }

    /// Puts `amount` of `address`'s stake into the unbonding queue; returns the release height.
    /// The caller adds `amount` to the account's `unbonding`.
    pub(super) fn queue_unbonding(
        &self,
        scratch: &mut Scratch,
        address: Address,
        amount: Amount,
    ) -> u64 {
        let release = self.ctx.height.saturating_add(self.params.unbonding_period);
        scratch
            .unbondings
            .push((release, UnbondingEntry { address, amount }));
        release
    }

    /// The verifiers' pool as of `scratch`: what checks of no provider in particular left
    /// (slashed stakes nobody won, verifiers' slashes, lost bonds nobody judged).
    pub(super) fn pool(&self, scratch: &Scratch) -> Result<Amount> {
        Ok(self.get(scratch, &verifier_pool_key())?.unwrap_or(0))
    }

    /// Adds `amount` to the verifiers' pool.
    pub(super) fn add_to_pool(&self, scratch: &mut Scratch, amount: Amount) -> Result<()> {
        if amount == 0 {
            return Ok(());
        }
        let pool = self
            .pool(scratch)?
            .checked_add(amount)
            .ok_or_else(|| overflow("pool"))?;
        scratch
            .writes
            .insert(verifier_pool_key(), Some(encode(&pool)));
        Ok(())
    }

    /// Returns `amount` to `client`'s escrow balance.
    fn refund_to_escrow(
        &self,
        scratch: &mut Scratch,
        client: &Address,
        amount: Amount,
    ) -> Result<()> {
        let ekey = escrow_key(client);
        let mut escrow: Escrow = self.get(scratch, &ekey)?.unwrap_or_default();
        escrow.balance = escrow
            .balance
            .checked_add(amount)
            .ok_or_else(|| overflow("escrow"))?;
        scratch.writes.insert(ekey, Some(encode(&escrow)));
        Ok(())
    }

    /// `provider`'s verification fund as of `scratch`.
    pub(super) fn fund(&self, scratch: &Scratch, provider: &Address) -> Result<Amount> {
        Ok(self
            .get(scratch, &verification_fund_key(provider))?
            .unwrap_or(0))
    }

    /// Adds `amount` to `provider`'s verification fund.
    pub(super) fn add_to_fund(
        &self,
        scratch: &mut Scratch,
        provider: &Address,
        amount: Amount,
    ) -> Result<()> {
        if amount == 0 {
            return Ok(());
        }
        let fund = self
            .fund(scratch, provider)?
            .checked_add(amount)
            .ok_or_else(|| overflow("verification fund"))?;
        scratch
            .writes
            .insert(verification_fund_key(provider), Some(encode(&fund)));
        Ok(())
    }

    /// What a check of `record`'s job may take out of its provider's verification fund, at most
    /// (never another provider's money: a provider that settles jobs with itself, or a proposer
    /// that grinds the draw for it, only moves its own fund); a redundant job's check is paid by
    /// the surcharge its own record holds instead (see [`Self::open_budget`]):
    /// - a sampled job drawn by the chain: the protocol share of its fee divided by the chance it
    ///   had of being drawn (capped at the fee), so that over its jobs a provider's fund pays out
    ///   what their shares paid in;
    /// - a sampled job opened by its client's challenge: nothing (the challenge bond pays the
    ///   committee if the challenge fails).
    fn check_budget(&self, record: &JobRecord, drawn: bool) -> Amount {
        match record.level {
            Verification::None | Verification::Redundant(_) => 0,
            Verification::Sampled if !drawn => 0,
            Verification::Sampled => {
                let bps = self.verify.sample_bps_for(&record.model);
                if bps == 0 {
                    return 0;
                }
                let share = self.market.protocol_share(record.fee);
                (share.saturating_mul(10_000) / Amount::from(bps)).min(record.fee)
            }
        }
    }

    /// The budget of a check of `record`'s job as it opens: the surcharge its record held (a
    /// redundant job; the record is written by the caller) and what its provider's fund pays
    /// (see [`Self::check_budget`]).
    fn open_budget(
        &self,
        scratch: &mut Scratch,
        record: &mut JobRecord,
        drawn: bool,
    ) -> Result<Amount> {
        let own = std::mem::take(&mut record.surcharge);
        let want = self.check_budget(record, drawn);
        let funded = self.take_from_fund(scratch, &record.provider, want)?;
        own.checked_add(funded).ok_or_else(|| overflow("budget"))
    }

    /// Takes up to `want` out of `provider`'s verification fund; returns what it took.
    fn take_from_fund(
        &self,
        scratch: &mut Scratch,
        provider: &Address,
        want: Amount,
    ) -> Result<Amount> {
        if want == 0 {
            return Ok(0);
        }
        let fund = self.fund(scratch, provider)?;
        let take = want.min(fund);
        scratch.writes.insert(
            verification_fund_key(provider),
            Some(encode(&(fund - take))),
        );
        Ok(take)
    }

    pub(super) fn register_verifier(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        stake: Amount,
        info: &VerifierInfo,
        events: &mut Vec<Event>,
    ) -> TxResult {
        if self
            .get::<Verifier>(scratch, &verifier_key(sender))?
            .is_some()
        {
            return Ok(Err(TxError::VerifierExists { address: *sender }));
        }
        if stake < self.verify.min_verifier_stake {
            return Ok(Err(TxError::StakeTooLow {
                min: self.verify.min_verifier_stake,
                got: stake,
            }));
        }
        if let Err(why) = info.check() {
            return Ok(Err(TxError::InvalidVerifier(why)));
        }
        if let Err(e) = self.models_registered(scratch, &info.models)? {
            return Ok(Err(e));
        }
        if from.balance < stake {
            return Ok(Err(TxError::InsufficientFunds {
                need: stake,
                have: from.balance,
            }));
        }
        from.balance -= stake;
        scratch.accounts.insert(*sender, from);
        let verifier = Verifier {
            info: info.clone(),
            stake,
            registered_height: self.ctx.height,
            open_seats: 0,
            held_until: 0,
            verdicts: 0,
            overturned: 0,
            missed: 0,
        };
        scratch
            .writes
            .insert(verifier_key(sender), Some(encode(&verifier)));
        let mut set: Vec<Address> = self.get(scratch, &verifier_set_key())?.unwrap_or_default();
        if let Err(i) = set.binary_search(sender) {
            set.insert(i, *sender);
        }
        scratch
            .writes
            .insert(verifier_set_key(), Some(encode(&set)));
        events.push(Event::new(
            "verifier_registered",
            &[
                ("verifier", sender.to_string()),
                ("stake", stake.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    pub(super) fn unregister_verifier(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let Some(verifier) = self.get::<Verifier>(scratch, &verifier_key(sender))? else {
            return Ok(Err(TxError::NotVerifier { address: *sender }));
        };
        if verifier.open_seats > 0 || self.ctx.height <= verifier.held_until {
            return Ok(Err(TxError::VerifierBusy {
                seats: verifier.open_seats,
                until: verifier.held_until,
            }));
        }
        let Some(unbonding) = from.unbonding.checked_add(verifier.stake) else {
            return Ok(Err(TxError::AmountOverflow("unbonding total exceeds u128")));
        };
        from.unbonding = unbonding;
        let release = self.queue_unbonding(scratch, *sender, verifier.stake);
        scratch.accounts.insert(*sender, from);
        scratch.writes.insert(verifier_key(sender), None);
        let mut set: Vec<Address> = self.get(scratch, &verifier_set_key())?.unwrap_or_default();
        set.retain(|a| a != sender);
        scratch
            .writes
            .insert(verifier_set_key(), Some(encode(&set)));
        events.push(Event::new(
            "verifier_unregistered",
            &[
                ("verifier", sender.to_string()),
                ("stake", verifier.stake.to_string()),
                ("release_height", release.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn reveal(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        job_id: &Hash,
        verifier: &Address,
        part: u16,
        parts: u16,
        data: &[u8],
        events: &mut Vec<Event>,
    ) -> TxResult {
        let ckey = check_key(job_id);
        let Some(mut check) = self.open_check(scratch, &ckey)? else {
            return Ok(Err(TxError::NoOpenCheck {
                job_id: job_id.to_hex(),
            }));
        };
        if check.provider != *sender {
            return Ok(Err(TxError::NotJobProvider {
                job_id: job_id.to_hex(),
            }));
        }
        let Some(i) = check
            .seat_of(verifier)
            .filter(|&i| check.seats[i].verdict.is_none())
        else {
            return Ok(Err(TxError::NotSeated {
                verifier: *verifier,
            }));
        };
        let seat = &mut check.seats[i];
        let invalid = |why: String| Ok(Err(TxError::InvalidReveal(why)));
        if seat.revealed() {
            return invalid("the reveal to this verifier is complete".into());
        }
        if parts == 0 || parts > MAX_REVEAL_PARTS || part >= parts {
            return invalid(format!(
                "part {part} of {parts}: a reveal has 1 to {MAX_REVEAL_PARTS} parts"
            ));
        }
        if data.is_empty() || data.len() > MAX_REVEAL_PART_BYTES {
            return invalid(format!(
                "a part holds 1 to {MAX_REVEAL_PART_BYTES} bytes, not {}",
                data.len()
            ));
        }
        if seat.parts != 0 && seat.parts != parts {
            return invalid(format!("this reveal was announced in {} parts", seat.parts));
        }
        let rkey = reveal_key(job_id, verifier, part);
        if read(self.base, &[&self.writes, &scratch.writes], &rkey)?.is_some() {
            return invalid(format!("part {part} was sent already"));
        }
        scratch.writes.insert(rkey, Some(data.to_vec()));
        seat.parts = parts;
        seat.received += 1;
        if seat.received == parts {
            seat.revealed_height = Some(self.ctx.height);
            events.push(Event::new(
                "job_revealed",
                &[
                    ("job_id", job_id.to_hex()),
                    ("verifier", verifier.to_string()),
                ],
            ));
        }
        scratch.writes.insert(ckey, Some(encode(&check)));
        Ok(Ok(()))
    }

    /// The client disputes its job while the fee is pending: a committee is drawn (the job's
    /// check, if it had one, reopens; its verdicts are judged again with the committee's).
    pub(super) fn challenge(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        job_id: &Hash,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let refuse = |why: String| Ok(Err(TxError::InvalidChallenge(why)));
        let jkey = job_key(job_id);
        let Some(mut record) = self.get::<JobRecord>(scratch, &jkey)? else {
            return refuse(format!("job {job_id} is not settled"));
        };
        if record.client != *sender {
            return refuse("only the job's client challenges it".into());
        }
        match record.fee_state {
            FeeState::Pending => {}
            FeeState::Held => return refuse("the job is under check already".into()),
            FeeState::Refunded => {
                return refuse("the job was found wrong and refunded already".into());
            }
            FeeState::Released => {
                return refuse(format!(
                    "the fee was released at height {}: the challenge window is over",
                    record.release_height
                ));
            }
        }
        if self.ctx.height >= record.release_height {
            return refuse(format!(
                "the fee is released at height {}: the challenge window is over",
                record.release_height
            ));
        }
        let ckey = check_key(job_id);
        let existing = self.get::<Check>(scratch, &ckey)?;
        if existing
            .as_ref()
            .is_some_and(|c| c.outcome == Outcome::Open)
        {
            return Err(Error::Corrupt {
                key: format!("chk/{job_id}"),
                reason: "an open check whose job's fee is not held".into(),
            });
        }
        let reopened = existing.is_some();
        let mut check = match existing {
            // A decided check reopens: a new committee decides, and the verdicts given before are
            // rewarded or slashed by its outcome. Their verifiers are still registered: none can
            // leave before the job's release height.
            Some(mut c) => {
                c.outcome = Outcome::Open;
                c.decided_height = None;
                for seat in &mut c.seats {
                    seat.role = Role::Earlier;
                    let vkey = verifier_key(&seat.verifier);
                    if let Some(mut v) = self.get::<Verifier>(scratch, &vkey)? {
                        v.open_seats += 1;
                        scratch.writes.insert(vkey, Some(encode(&v)));
                    }
                }
                c
            }
            None => Check {
                job_id: *job_id,
                provider: record.provider,
                client: record.client,
                model: record.model,
                fee: record.fee,
                level: record.level,
                release_height: record.release_height,
                opened_height: self.ctx.height,
                drawn: false,
                dispute: true,
                seats: Vec::new(),
                dismissed: Vec::new(),
                outcome: Outcome::Open,
                decided_height: None,
                challenger: None,
                budget: 0,
            },
        };
        check.dispute = true;
        let bond = self.verify.challenge_bond;
        if from.balance < bond {
            return Ok(Err(TxError::InsufficientFunds {
                need: bond,
                have: from.balance,
            }));
        }
        if self
            .draw(scratch, &check, usize::from(self.verify.committee))?
            .is_empty()
        {
            return refuse("no verifier can be drawn for this model".into());
        }
        from.balance -= bond;
        scratch.accounts.insert(*sender, from);
        check.challenger = Some((*sender, bond));
        if !reopened {
            // A redundant job challenged before its draw: the surcharge its client paid is
            // this check's (the draw then finds the fee held and opens nothing).
            check.budget = self.open_budget(scratch, &mut record, false)?;
        }
        self.open_for_provider(scratch, *job_id, &mut record)?;
        let at = self.schedule_committee(scratch, *job_id);
        events.push(Event::new(
            "job_challenged",
            &[
                ("job_id", job_id.to_hex()),
                ("client", sender.to_string()),
                ("bond", bond.to_string()),
                ("committee_drawn_at", at.to_string()),
            ],
        ));
        scratch.writes.insert(ckey, Some(encode(&check)));
        Ok(Ok(()))
    }

    pub(super) fn post_verdict(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        job_id: &Hash,
        verdict: Verdict,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let ckey = check_key(job_id);
        let Some(mut check) = self.open_check(scratch, &ckey)? else {
            return Ok(Err(TxError::NoOpenCheck {
                job_id: job_id.to_hex(),
            }));
        };
        let Some(i) = check
            .seat_of(sender)
            .filter(|&i| check.seats[i].verdict.is_none())
        else {
            return Ok(Err(TxError::NotSeated { verifier: *sender }));
        };
        if !check.seats[i].revealed() {
            return Ok(Err(TxError::NotRevealed));
        }
        check.seats[i].verdict = Some(verdict);
        self.seat_judged(scratch, &check, i)?;
        events.push(Event::new(
            "verdict_posted",
            &[
                ("job_id", job_id.to_hex()),
                ("verifier", sender.to_string()),
                ("verdict", verdict_code(&verdict).into()),
            ],
        ));
        self.evaluate(scratch, &mut check, events)?;
        scratch.writes.insert(ckey, Some(encode(&check)));
        Ok(Ok(()))
    }

    /// The check under `ckey` if it is open.
    fn open_check(&self, scratch: &Scratch, ckey: &[u8]) -> Result<Option<Check>> {
        Ok(self
            .get::<Check>(scratch, ckey)?
            .filter(|c| c.outcome == Outcome::Open))
    }

    /// A seat's verdict is in: the verifier has nothing more to do (its index entry and the
    /// reveal go), but the seat stays counted until the check is decided.
    fn seat_judged(&self, scratch: &mut Scratch, check: &Check, i: usize) -> Result<()> {
        self.update_seat(scratch, check, i, |v| v.verdicts += 1)
    }

    /// A seat's verifier leaves the check (decided, or dismissed): its count of open seats goes
    /// down (with `update` applied), its index entry and reveal go.
    fn close_seat(
        &self,
        scratch: &mut Scratch,
        check: &Check,
        i: usize,
        update: impl FnOnce(&mut Verifier),
    ) -> Result<()> {
        self.update_seat(scratch, check, i, |v| {
            v.open_seats = v.open_seats.saturating_sub(1);
            update(v);
        })
    }

    /// Applies `update` to seat `i`'s verifier and drops the seat's index entry and reveal.
    fn update_seat(
        &self,
        scratch: &mut Scratch,
        check: &Check,
        i: usize,
        update: impl FnOnce(&mut Verifier),
    ) -> Result<()> {
        let seat = &check.seats[i];
        let vkey = verifier_key(&seat.verifier);
        if let Some(mut v) = self.get::<Verifier>(scratch, &vkey)? {
            update(&mut v);
            scratch.writes.insert(vkey, Some(encode(&v)));
        }
        scratch
            .writes
            .insert(open_check_key(&seat.verifier, &check.job_id), None);
        for part in 0..seat.parts {
            scratch
                .writes
                .insert(reveal_key(&check.job_id, &seat.verifier, part), None);
        }
        Ok(())
    }

    /// Draws up to `n` verifiers for `check`: registered, checking its model, neither its provider
    /// nor its client, not seated or dismissed on it before. Each draw picks one with a chance
    /// proportional to its stake (so splitting a stake over many verifiers gains nothing), seeded
    /// by this block's seed.
    ///
    /// The candidates and their stakes are those of the parent state: this block's proposer
    /// knows the seed before it chooses the block's transactions, so nothing in them (a verifier
    /// registering with a ground address or stake, one leaving) may move the draw. One drawn but
    /// gone in this block (left, or slashed to nothing) is passed over for the next salt.
    fn draw(&self, scratch: &Scratch, check: &Check, n: usize) -> Result<Vec<Address>> {
        let parent = |key: Vec<u8>| -> Result<Option<Vec<u8>>> { self.base.get(&key) };
        let set: Vec<Address> = parent(verifier_set_key())?
            .map(|b| decode(&verifier_set_key(), &b))
            .transpose()?
            .unwrap_or_default();
        let mut eligible: Vec<(Address, Amount)> = Vec::new();
        for a in set {
            if a == check.provider
                || a == check.client
                || check.seat_of(&a).is_some()
                || check.dismissed.contains(&a)
            {
                continue;
            }
            let key = verifier_key(&a);
            if let Some(v) = parent(key.clone())?
                .map(|b| decode::<Verifier>(&key, &b))
                .transpose()?
                && v.info.models.contains(&check.model)
                && v.stake > 0
            {
                eligible.push((a, v.stake));
            }
        }
        let still_here = |a: &Address| -> Result<bool> {
            Ok(self
                .get::<Verifier>(scratch, &verifier_key(a))?
                .is_some_and(|v| v.stake > 0 && v.info.models.contains(&check.model)))
        };
        let mut salt = u32::try_from(check.seats.len() + check.dismissed.len()).unwrap_or(u32::MAX);
        let mut out = Vec::new();
        while out.len() < n && !eligible.is_empty() {
            salt = salt.wrapping_add(1);
            // Stakes sum to at most the supply (< 2^128); a 128-bit draw keeps the modulo bias
            // below total / 2^128.
            let total = eligible
                .iter()
                .try_fold(0 as Amount, |t, (_, s)| t.checked_add(*s))
                .ok_or_else(|| overflow("verifier stakes"))?;
            let mut point = self.draw_u128(&check.job_id, salt) % total;
            let i = eligible
                .iter()
                .position(|(_, s)| {
                    if point < *s {
                        true
                    } else {
                        point -= s;
                        false
                    }
                })
                .expect("point < total");
            let (drawn, _) = eligible.remove(i);
            if still_here(&drawn)? {
                out.push(drawn);
            }
        }
        Ok(out)
    }

    /// Seats `verifier` on `check` from this height: the provider has `reveal_window` blocks to
    /// reveal to it, then it has `verdict_window` blocks to judge.
    fn seat(&self, scratch: &mut Scratch, check: &mut Check, verifier: Address, role: Role) {
        let h = self.ctx.height;
        let reveal_deadline = h.saturating_add(self.verify.reveal_window);
        let verdict_deadline = reveal_deadline.saturating_add(self.verify.verdict_window);
        check.seats.push(Seat {
            verifier,
            role,
            drawn_height: h,
            reveal_deadline,
            verdict_deadline,
            parts: 0,
            received: 0,
            revealed_height: None,
            verdict: None,
            sided: None,
        });
        scratch
            .writes
            .insert(open_check_key(&verifier, &check.job_id), Some(Vec::new()));
        scratch.deadlines.push((reveal_deadline, check.job_id));
        scratch.deadlines.push((verdict_deadline, check.job_id));
    }

    /// A check of `record`'s job opens: it holds the job's fee until decided, counts against the
    /// provider (which cannot leave meanwhile) and is listed among the provider's open checks.
    /// Writes the record.
    fn open_for_provider(
        &self,
        scratch: &mut Scratch,
        job_id: Hash,
        record: &mut JobRecord,
    ) -> Result<()> {
        record.fee_state = FeeState::Held;
        scratch
            .writes
            .insert(job_key(&job_id), Some(encode(&*record)));
        let pkey = provider_key(&record.provider);
        if let Some(mut p) = self.get::<Provider>(scratch, &pkey)? {
            p.open_checks += 1;
            scratch.writes.insert(pkey, Some(encode(&p)));
        }
        scratch
            .writes
            .insert(open_check_key(&record.provider, &job_id), Some(Vec::new()));
        Ok(())
    }

    /// Seats the verifiers drawn and counts the seat on each.
    fn seat_all(
        &self,
        scratch: &mut Scratch,
        check: &mut Check,
        drawn: &[Address],
        role: Role,
    ) -> Result<()> {
        for v in drawn {
            let vkey = verifier_key(v);
            let mut rec: Verifier = self.get(scratch, &vkey)?.ok_or_else(|| Error::Corrupt {
                key: format!("vrfr/{v}"),
                reason: "in the verifier set but not registered".into(),
            })?;
            rec.open_seats += 1;
            rec.held_until = rec.held_until.max(check.release_height);
            scratch.writes.insert(vkey, Some(encode(&rec)));
            self.seat(scratch, check, *v, role);
        }
        Ok(())
    }

    /// End of block: draws which of the jobs settled in the previous block are checked, and by
    /// whom.
    pub(super) fn draw_checks(&mut self, events: &mut Vec<Event>) -> Result<()> {
        let Some(queue) = self.take_queue(draw_queue_key(self.ctx.height))? else {
            return Ok(());
        };
        let mut scratch = Scratch::default();
        for job_id in queue {
            let Some(mut record) = self.get::<JobRecord>(&scratch, &job_key(&job_id))? else {
                continue;
            };
            // Its client challenged it before the draw: a committee checks it already.
            if record.fee_state != FeeState::Pending
                || self.get::<Check>(&scratch, &check_key(&job_id))?.is_some()
            {
                continue;
            }
            let n = match record.level {
                Verification::None => continue,
                Verification::Sampled => {
                    let bps = u64::from(self.verify.sample_bps_for(&record.model));
                    if self.draw_u64(&job_id, 0) % 10_000 >= bps {
                        continue;
                    }
                    1
                }
                Verification::Redundant(k) => usize::from(k),
            };
            let mut check = Check {
                job_id,
                provider: record.provider,
                client: record.client,
                model: record.model,
                fee: record.fee,
                level: record.level,
                release_height: record.release_height,
                opened_height: self.ctx.height,
                drawn: true,
                dispute: false,
                seats: Vec::new(),
                dismissed: Vec::new(),
                outcome: Outcome::Open,
                decided_height: None,
                challenger: None,
                budget: 0,
            };
            let drawn = self.draw(&scratch, &check, n)?;
            if drawn.is_empty() {
                check.outcome = Outcome::NoVerifier;
                check.decided_height = Some(self.ctx.height);
                scratch
                    .writes
                    .insert(check_key(&job_id), Some(encode(&check)));
                events.push(Event::new(
                    "check_decided",
                    &[
                        ("job_id", job_id.to_hex()),
                        ("outcome", "no_verifier".into()),
                    ],
                ));
                // Nobody can check it: the client has back what it paid for the check.
                let surcharge = std::mem::take(&mut record.surcharge);
                if surcharge > 0 {
                    self.refund_to_escrow(&mut scratch, &record.client, surcharge)?;
                    scratch
                        .writes
                        .insert(job_key(&job_id), Some(encode(&record)));
                }
                continue;
            }
            let role = match record.level {
                Verification::Sampled => Role::First,
                _ => Role::Committee,
            };
            self.seat_all(&mut scratch, &mut check, &drawn, role)?;
            check.budget = self.open_budget(&mut scratch, &mut record, true)?;
            self.open_for_provider(&mut scratch, job_id, &mut record)?;
            events.push(Event::new(
                "job_sampled",
                &[
                    ("job_id", job_id.to_hex()),
                    ("provider", record.provider.to_string()),
                    ("verifiers", address_list(&drawn)),
                    (
                        "reveal_deadline",
                        check.seats[0].reveal_deadline.to_string(),
                    ),
                ],
            ));
            scratch
                .writes
                .insert(check_key(&job_id), Some(encode(&check)));
        }
        self.commit_scratch(scratch);
        Ok(())
    }

    /// A dispute's committee is drawn at the end of the next block, from that block's hash:
    /// whoever opens the dispute (a challenging client, an accusing verifier) cannot know, when
    /// it sends its transaction, who will judge. Returns the height of the draw.
    fn schedule_committee(&self, scratch: &mut Scratch, job_id: Hash) -> u64 {
        let at = self.ctx.height.saturating_add(1);
        scratch.committee_draws.push((at, job_id));
        at
    }

    /// End of block: seats the committees of the disputes opened in the previous block. With no
    /// verifier to draw, nobody checked it (`NoVerifier`: one accusation never convicts).
    pub(super) fn draw_committees(&mut self, events: &mut Vec<Event>) -> Result<()> {
        let Some(queue) = self.take_queue(committee_queue_key(self.ctx.height))? else {
            return Ok(());
        };
        let mut scratch = Scratch::default();
        for job_id in queue {
            let ckey = check_key(&job_id);
            let Some(mut check) = self.open_check(&scratch, &ckey)? else {
                continue;
            };
            let drawn = self.draw(&scratch, &check, usize::from(self.verify.committee))?;
            events.push(Event::new(
                "committee_drawn",
                &[
                    ("job_id", job_id.to_hex()),
                    ("committee", address_list(&drawn)),
                ],
            ));
            if drawn.is_empty() {
                self.evaluate(&mut scratch, &mut check, events)?;
            } else {
                self.seat_all(&mut scratch, &mut check, &drawn, Role::Committee)?;
            }
            scratch.writes.insert(ckey, Some(encode(&check)));
        }
        self.commit_scratch(scratch);
        Ok(())
    }

    /// End of block: a reveal missing at its deadline convicts the provider; a verdict missing at
    /// its deadline dismisses the verifier, and another is drawn in its place.
    pub(super) fn enforce_deadlines(&mut self, events: &mut Vec<Event>) -> Result<()> {
        let h = self.ctx.height;
        let Some(queue) = self.take_queue(deadline_queue_key(h))? else {
            return Ok(());
        };
        let mut scratch = Scratch::default();
        for job_id in queue {
            let ckey = check_key(&job_id);
            let Some(mut check) = self
                .get::<Check>(&scratch, &ckey)?
                .filter(|c| c.outcome == Outcome::Open)
            else {
                continue;
            };
            let unrevealed = check
                .seats
                .iter()
                .any(|s| s.verdict.is_none() && !s.revealed() && h >= s.reveal_deadline);
            if unrevealed {
                self.resolve(&mut scratch, &mut check, Outcome::NoReveal, events)?;
            } else {
                let late: Vec<usize> = (0..check.seats.len())
                    .filter(|&i| {
                        let s = &check.seats[i];
                        s.verdict.is_none() && h >= s.verdict_deadline
                    })
                    .collect();
                for &i in late.iter().rev() {
                    if check.outcome != Outcome::Open {
                        break;
                    }
                    self.dismiss(&mut scratch, &mut check, i, events)?;
                }
                if check.outcome == Outcome::Open && !late.is_empty() {
                    self.evaluate(&mut scratch, &mut check, events)?;
                }
            }
            scratch.writes.insert(ckey, Some(encode(&check)));
        }
        self.commit_scratch(scratch);
        Ok(())
    }

    /// Replaces the verifier of seat `i`, who did not answer in time, with a newly drawn one (the
    /// provider reveals to it afresh); with none left, the seat goes (and a check that loses its
    /// only first seat ends unchecked).
    fn dismiss(
        &self,
        scratch: &mut Scratch,
        check: &mut Check,
        i: usize,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        self.close_seat(scratch, check, i, |v| v.missed += 1)?;
        let old = check.seats.remove(i);
        check.dismissed.push(old.verifier);
        // Silence is not free: a seat that could choose between judging and being replaced
        // (whose replacement a known seed may already tell) would otherwise re-roll
        // its check, or stall it, at no cost.
        let cut = self.slash_verifier(scratch, check, old.verifier, false, events)?;
        self.add_to_pool(scratch, cut)?;
        let drawn = self.draw(scratch, check, 1)?;
        events.push(Event::new(
            "verifier_dismissed",
            &[
                ("job_id", check.job_id.to_hex()),
                ("verifier", old.verifier.to_string()),
                (
                    "replacement",
                    drawn.first().map(Address::to_string).unwrap_or_default(),
                ),
            ],
        ));
        if drawn.is_empty() {
            if old.role == Role::First {
                self.resolve(scratch, check, Outcome::NoVerifier, events)?;
            }
            return Ok(());
        }
        self.seat_all(scratch, check, &drawn, old.role)?;
        // Keep the seat's place: the replacement was pushed last.
        let new = check.seats.pop().expect("just seated");
        check.seats.insert(i, new);
        Ok(())
    }

    /// Decides the check if its verdicts allow: a first verdict passes it or opens a dispute; a
    /// committee's majority decides (a tie passes).
    fn evaluate(
        &self,
        scratch: &mut Scratch,
        check: &mut Check,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        if check.outcome != Outcome::Open {
            return Ok(());
        }
        let first = check.seats.iter().find(|s| s.role == Role::First).cloned();
        if !check.dispute
            && let Some(first) = &first
        {
            match first.verdict {
                None => {}
                Some(Verdict::Pass) => self.resolve(scratch, check, Outcome::Passed, events)?,
                Some(Verdict::Fail { .. }) => {
                    check.dispute = true;
                    let at = self.schedule_committee(scratch, check.job_id);
                    events.push(Event::new(
                        "dispute_opened",
                        &[
                            ("job_id", check.job_id.to_hex()),
                            ("accuser", first.verifier.to_string()),
                            ("committee_drawn_at", at.to_string()),
                        ],
                    ));
                }
            }
            return Ok(());
        }
        let committee: Vec<&Seat> = check
            .seats
            .iter()
            .filter(|s| s.role == Role::Committee)
            .collect();
        let n = committee.len();
        if n == 0 {
            // No committee could be drawn, or every member was dismissed with no replacement:
            // one accusation alone never convicts (a lone verifier could otherwise slash any
            // provider of its model), so nobody checked it.
            return self.resolve(scratch, check, Outcome::NoVerifier, events);
        }
        let pass = committee
            .iter()
            .filter(|s| s.verdict == Some(Verdict::Pass))
            .count();
        let fail = committee
            .iter()
            .filter(|s| matches!(s.verdict, Some(Verdict::Fail { .. })))
            .count();
        let majority = n / 2 + 1;
        if fail >= majority {
            self.resolve(scratch, check, Outcome::Fraud, events)
        } else if pass >= majority || pass + fail == n {
            self.resolve(scratch, check, Outcome::Passed, events)
        } else {
            Ok(())
        }
    }

    /// Ends the check: closes the seats still open, then pays, refunds and slashes as the
    /// outcome says.
    fn resolve(
        &self,
        scratch: &mut Scratch,
        check: &mut Check,
        outcome: Outcome,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let h = self.ctx.height;
        check.outcome = outcome;
        check.decided_height = Some(h);
        for i in 0..check.seats.len() {
            self.close_seat(scratch, check, i, |_| {})?;
        }
        // A seat that never judged is not part of the check any more: a challenge that reopens
        // it seats a new committee and judges only the verdicts given.
        let (judged, unjudged): (Vec<Seat>, Vec<Seat>) = std::mem::take(&mut check.seats)
            .into_iter()
            .partition(|s| s.verdict.is_some());
        check.seats = judged;
        check
            .dismissed
            .extend(unjudged.into_iter().map(|s| s.verifier));
        scratch
            .writes
            .insert(open_check_key(&check.provider, &check.job_id), None);
        let pkey = provider_key(&check.provider);
        let mut provider = self.get::<Provider>(scratch, &pkey)?;
        if let Some(p) = &mut provider {
            p.open_checks = p.open_checks.saturating_sub(1);
        }
        let jkey = job_key(&check.job_id);
        let mut record: JobRecord = self.get(scratch, &jkey)?.ok_or_else(|| Error::Corrupt {
            key: format!("job/{}", check.job_id),
            reason: "a check of a job never settled".into(),
        })?;
        events.push(Event::new(
            "check_decided",
            &[
                ("job_id", check.job_id.to_hex()),
                ("outcome", outcome_name(outcome).into()),
            ],
        ));
        let is_fail = |s: &Seat| matches!(s.verdict, Some(Verdict::Fail { .. }));
        let is_pass = |s: &Seat| s.verdict == Some(Verdict::Pass);
        // What the verifiers on the right side share: the check's budget, plus the bond of a
        // challenge that found nothing, or the stake of a provider found cheating.
        let budget = std::mem::take(&mut check.budget);
        let mut rewards = budget;
        let (winners, losers) = match outcome {
            Outcome::Open => (Vec::new(), Vec::new()),
            Outcome::Passed | Outcome::NoVerifier => {
                // The check held the fee: it waits out the rest of its window, or is paid now if
                // the window has passed.
                if record.fee_state == FeeState::Held {
                    if h < record.release_height {
                        record.fee_state = FeeState::Pending;
                    } else {
                        self.pay_fee(scratch, &check.job_id, &mut record, events)?;
                    }
                }
                if let Some((challenger, bond)) = check.challenger.take() {
                    if outcome == Outcome::Passed {
                        // A challenge that found nothing: its bond pays the committee that judged.
                        rewards = rewards.checked_add(bond).ok_or_else(|| overflow("bond"))?;
                        events.push(Event::new(
                            "challenge_lost",
                            &[
                                ("job_id", check.job_id.to_hex()),
                                ("bond", bond.to_string()),
                            ],
                        ));
                    } else {
                        // Nobody could judge it: the client has its bond back.
                        self.credit(scratch, challenger, bond)?;
                    }
                }
                if outcome == Outcome::Passed {
                    (sides(check, true, is_pass), sides(check, false, is_fail))
                } else {
                    (Vec::new(), Vec::new())
                }
            }
            Outcome::Fraud | Outcome::NoReveal => {
                // The client gets its fee back.
                if record.fee_state == FeeState::Held {
                    self.refund_to_escrow(scratch, &check.client, record.fee)?;
                    record.fee_state = FeeState::Refunded;
                    events.push(Event::new(
                        "job_refunded",
                        &[
                            ("job_id", check.job_id.to_hex()),
                            ("client", check.client.to_string()),
                            ("amount", record.fee.to_string()),
                        ],
                    ));
                }
                if let Some((challenger, bond)) = check.challenger.take() {
                    self.credit(scratch, challenger, bond)?;
                }
                // The provider loses a share of its stake and serves no more; the rest stays
                // within reach of its other checks until it unregisters.
                if let Some(p) = &mut provider {
                    let slashed = VerifyParams::share(p.stake, self.verify.slash_provider_bps);
                    p.stake -= slashed;
                    p.frauds += 1;
                    p.retired_height.get_or_insert(h);
                    rewards = rewards
                        .checked_add(slashed)
                        .ok_or_else(|| overflow("rewards"))?;
                    events.push(Event::new(
                        "provider_slashed",
                        &[
                            ("provider", check.provider.to_string()),
                            ("job_id", check.job_id.to_hex()),
                            ("slashed", slashed.to_string()),
                            ("stake_left", p.stake.to_string()),
                        ],
                    ));
                }
                // A missing reveal says nothing about a verdict of pass given on an earlier
                // reveal: only fraud proves those who passed it wrong.
                let losers = if outcome == Outcome::Fraud {
                    sides(check, false, is_pass)
                } else {
                    Vec::new()
                };
                (sides(check, true, is_fail), losers)
            }
        };
        let mut pool = self.pool(scratch)?;
        if winners.is_empty() {
            // Nobody judged it right: the budget goes back to the provider's fund, the rest to
            // the pool.
            self.add_to_fund(scratch, &check.provider, budget)?;
            pool = pool
                .checked_add(rewards - budget)
                .ok_or_else(|| overflow("pool"))?;
        } else {
            let n = winners.len() as Amount;
            let each = rewards / n;
            pool = pool
                .checked_add(rewards - each * n)
                .ok_or_else(|| overflow("pool"))?;
            for v in winners {
                self.reward(scratch, check, v, each, events)?;
            }
        }
        // Those who judged against the outcome are slashed, into the pool.
        for v in losers {
            pool = pool
                .checked_add(self.slash_verifier(scratch, check, v, true, events)?)
                .ok_or_else(|| overflow("pool"))?;
        }
        if let Some(p) = provider {
            scratch.writes.insert(pkey, Some(encode(&p)));
        }
        scratch.writes.insert(jkey, Some(encode(&record)));
        scratch
            .writes
            .insert(verifier_pool_key(), Some(encode(&pool)));
        Ok(())
    }

    /// An account as of `scratch`, without keeping it in the block's cache.
    pub(super) fn scratch_account_ro(
        &self,
        scratch: &Scratch,
        address: &Address,
    ) -> Result<Account> {
        match scratch.accounts.get(address) {
            Some(acc) => Ok(acc.clone()),
            None => Ok(self.peek_account(address)?.unwrap_or_default()),
        }
    }

    fn credit(&self, scratch: &mut Scratch, to: Address, amount: Amount) -> Result<()> {
        if amount == 0 {
            return Ok(());
        }
        let mut acc = self.scratch_account_ro(scratch, &to)?;
        acc.balance = acc
            .balance
            .checked_add(amount)
            .ok_or_else(|| overflow("balance"))?;
        scratch.accounts.insert(to, acc);
        Ok(())
    }

    /// Pays verifier `v` for its verdict on `check`.
    fn reward(
        &self,
        scratch: &mut Scratch,
        check: &Check,
        v: Address,
        amount: Amount,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        self.credit(scratch, v, amount)?;
        events.push(Event::new(
            "verifier_rewarded",
            &[
                ("job_id", check.job_id.to_hex()),
                ("verifier", v.to_string()),
                ("amount", amount.to_string()),
            ],
        ));
        Ok(())
    }

    /// Takes the verifier-slash share of `v`'s stake (returned, for the pool): for a verdict
    /// against the outcome (`overturned`), or for a verdict never given.
    fn slash_verifier(
        &self,
        scratch: &mut Scratch,
        check: &Check,
        v: Address,
        overturned: bool,
        events: &mut Vec<Event>,
    ) -> Result<Amount> {
        let vkey = verifier_key(&v);
        let Some(mut rec) = self.get::<Verifier>(scratch, &vkey)? else {
            return Ok(0);
        };
        let cut = VerifyParams::share(rec.stake, self.verify.slash_verifier_bps);
        rec.stake -= cut;
        if overturned {
            rec.overturned += 1;
        }
        scratch.writes.insert(vkey, Some(encode(&rec)));
        events.push(Event::new(
            "verifier_slashed",
            &[
                ("job_id", check.job_id.to_hex()),
                ("verifier", v.to_string()),
                ("slashed", cut.to_string()),
                (
                    "reason",
                    if overturned { "overturned" } else { "missed" }.into(),
                ),
            ],
        ));
        Ok(cut)
    }
}
