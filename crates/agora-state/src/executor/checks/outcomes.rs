//! Deadlines and outcomes: silent seats dismissed, verdicts counted, and a decided check's
//! payments, refunds and slashes.

use super::*;

impl Executor<'_> {
    /// End of block: a reveal missing at its deadline convicts the provider; a verdict missing at
    /// its deadline dismisses the verifier, and another is drawn in its place.
    pub(in crate::executor) fn enforce_deadlines(&mut self, events: &mut Vec<Event>) -> Result<()> {
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
    pub(super) fn dismiss(
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
    pub(super) fn evaluate(
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
    pub(super) fn resolve(
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
}
