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

mod disputes;
mod funds;
mod outcomes;

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
    pub(in crate::executor) fn draw_u128(&self, job: &Hash, salt: u32) -> u128 {
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
                // A proved job has nothing to check.
                Verification::None | Verification::Zk => continue,
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
}
