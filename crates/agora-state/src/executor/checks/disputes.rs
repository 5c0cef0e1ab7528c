//! Disputes: a client's challenge within the window, and the committee drawn for it a block
//! later.

use super::*;

impl Executor<'_> {
    /// The client disputes its job while the fee is pending: a committee is drawn (the job's
    /// check, if it had one, reopens; its verdicts are judged again with the committee's).
    pub(in crate::executor) fn challenge(
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

    /// A check of `record`'s job opens: it holds the job's fee until decided, counts against the
    /// provider (which cannot leave meanwhile) and is listed among the provider's open checks.
    /// Writes the record.
    pub(super) fn open_for_provider(
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
    pub(super) fn seat_all(
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

    /// A dispute's committee is drawn at the end of the next block, from that block's hash:
    /// whoever opens the dispute (a challenging client, an accusing verifier) cannot know, when
    /// it sends its transaction, who will judge. Returns the height of the draw.
    pub(super) fn schedule_committee(&self, scratch: &mut Scratch, job_id: Hash) -> u64 {
        let at = self.ctx.height.saturating_add(1);
        scratch.committee_draws.push((at, job_id));
        at
    }

    /// End of block: seats the committees of the disputes opened in the previous block. With no
    /// verifier to draw, nobody checked it (`NoVerifier`: one accusation never convicts).
    pub(in crate::executor) fn draw_committees(&mut self, events: &mut Vec<Event>) -> Result<()> {
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
}
