//! Where a check's money comes from and goes: the verifiers' pool, each provider's verification
//! fund, refunds to escrow, rewards, slashes and unbonding.

use super::*;

impl Executor<'_> {
    /// Puts `amount` of `address`'s stake into the unbonding queue; returns the release height.
    /// The caller adds `amount` to the account's `unbonding`.
    pub(in crate::executor) fn queue_unbonding(
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
    pub(in crate::executor) fn pool(&self, scratch: &Scratch) -> Result<Amount> {
        Ok(self.get(scratch, &verifier_pool_key())?.unwrap_or(0))
    }

    /// Adds `amount` to the verifiers' pool.
    pub(in crate::executor) fn add_to_pool(
        &self,
        scratch: &mut Scratch,
        amount: Amount,
    ) -> Result<()> {
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
    pub(super) fn refund_to_escrow(
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
    pub(in crate::executor) fn fund(
        &self,
        scratch: &Scratch,
        provider: &Address,
    ) -> Result<Amount> {
        Ok(self
            .get(scratch, &verification_fund_key(provider))?
            .unwrap_or(0))
    }

    /// Adds `amount` to `provider`'s verification fund.
    pub(in crate::executor) fn add_to_fund(
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
    pub(super) fn check_budget(&self, record: &JobRecord, drawn: bool) -> Amount {
        match record.level {
            Verification::None | Verification::Redundant(_) | Verification::Zk => 0,
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
    pub(super) fn open_budget(
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
    pub(super) fn take_from_fund(
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

    /// An account as of `scratch`, without keeping it in the block's cache.
    pub(in crate::executor) fn scratch_account_ro(
        &self,
        scratch: &Scratch,
        address: &Address,
    ) -> Result<Account> {
        match scratch.accounts.get(address) {
            Some(acc) => Ok(acc.clone()),
            None => Ok(self.peek_account(address)?.unwrap_or_default()),
        }
    }

    pub(in crate::executor) fn credit(
        &self,
        scratch: &mut Scratch,
        to: Address,
        amount: Amount,
    ) -> Result<()> {
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
    pub(super) fn reward(
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
    pub(super) fn slash_verifier(
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
