//! The compute market: providers, models, escrow, settlement, and the release and pruning of
//! what was settled (DESIGN.md §5).

use super::*;
use agora_types::ModelKind;

type TxResult = Result<std::result::Result<(), TxError>>;

impl Executor<'_> {
    /// `Message::RegisterProvider`.
    pub(super) fn register_provider(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        stake: &Amount,
        info: &ProviderInfo,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let stake = *stake;
        match self.get::<Provider>(scratch, &provider_key(sender))? {
            Some(Provider {
                retired_height: Some(height),
                ..
            }) => {
                return Ok(Err(TxError::ProviderRetired {
                    address: *sender,
                    height,
                }));
            }
            Some(_) => return Ok(Err(TxError::ProviderExists { address: *sender })),
            None => {}
        }
        if stake < self.market.min_provider_stake {
            return Ok(Err(TxError::StakeTooLow {
                min: self.market.min_provider_stake,
                got: stake,
            }));
        }
        if let Err(e) = self.check_provider_info(scratch, info)? {
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
        let provider = Provider {
            info: info.clone(),
            stake,
            registered_height: self.ctx.height,
            jobs_settled: 0,
            fees_settled: 0,
            held_until: 0,
            open_checks: 0,
            frauds: 0,
            retired_height: None,
        };
        scratch
            .writes
            .insert(provider_key(sender), Some(encode(&provider)));
        events.push(Event::new(
            "provider_registered",
            &[
                ("provider", sender.to_string()),
                ("stake", stake.to_string()),
                ("endpoint", info.endpoint.clone()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::UpdateProvider`.
    pub(super) fn update_provider(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        info: &ProviderInfo,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let Some(mut provider) = self.get::<Provider>(scratch, &provider_key(sender))? else {
            return Ok(Err(TxError::NotProvider { address: *sender }));
        };
        if let Some(height) = provider.retired_height {
            return Ok(Err(TxError::ProviderRetired {
                address: *sender,
                height,
            }));
        }
        if let Err(e) = self.check_provider_info(scratch, info)? {
            return Ok(Err(e));
        }
        provider.info = info.clone();
        scratch
            .writes
            .insert(provider_key(sender), Some(encode(&provider)));
        events.push(Event::new(
            "provider_updated",
            &[
                ("provider", sender.to_string()),
                ("endpoint", info.endpoint.clone()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::UnregisterProvider`.
    pub(super) fn unregister_provider(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let Some(provider) = self.get::<Provider>(scratch, &provider_key(sender))? else {
            return Ok(Err(TxError::NotProvider { address: *sender }));
        };
        // A convicted provider that left already: only its record is left.
        if provider.retired_height.is_some() && provider.stake == 0 {
            return Ok(Err(TxError::NotProvider { address: *sender }));
        }
        // Its stake must stay within reach while any of its fees can still be disputed.
        if provider.open_checks > 0 || self.ctx.height <= provider.held_until {
            return Ok(Err(TxError::ProviderBusy {
                until: provider.held_until,
                open_checks: provider.open_checks,
            }));
        }
        // The stake unbonds like validator stake; fees still pending are paid later.
        let Some(unbonding) = from.unbonding.checked_add(provider.stake) else {
            return Ok(Err(TxError::AmountOverflow("unbonding total exceeds u128")));
        };
        from.unbonding = unbonding;
        let release = self.queue_unbonding(scratch, *sender, provider.stake);
        if provider.retired_height.is_some() {
            // A convicted provider's record stays, without stake, so that its address
            // cannot register again.
            let tombstone = Provider {
                stake: 0,
                ..provider.clone()
            };
            scratch
                .writes
                .insert(provider_key(sender), Some(encode(&tombstone)));
        } else {
            scratch.writes.insert(provider_key(sender), None);
        }
        // What its fund holds no longer pays for its checks (it has none left).
        let fund = self.fund(scratch, sender)?;
        if fund > 0 {
            self.add_to_pool(scratch, fund)?;
            scratch.writes.insert(verification_fund_key(sender), None);
        }
        scratch.accounts.insert(*sender, from);
        events.push(Event::new(
            "provider_unregistered",
            &[
                ("provider", sender.to_string()),
                ("stake", provider.stake.to_string()),
                ("release_height", release.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::RegisterModel`.
    pub(super) fn register_model(
        &mut self,
        scratch: &mut Scratch,
        id: &Hash,
        name: &str,
        kind: &ModelKind,
        events: &mut Vec<Event>,
    ) -> TxResult {
        if let Err(why) = agora_types::check_model_name(name) {
            return Ok(Err(TxError::InvalidModel(why)));
        }
        if self.get::<ModelInfo>(scratch, &model_key(id))?.is_some() {
            return Ok(Err(TxError::ModelExists { id: id.to_hex() }));
        }
        // Names are unique: a second model under a popular name would make the name say
        // nothing (and a gateway refuse it as ambiguous).
        if let Some(other) = self.get::<Hash>(scratch, &model_name_key(name))? {
            return Ok(Err(TxError::InvalidModel(format!(
                "the name {name:?} is taken by model {other}"
            ))));
        }
        let info = ModelInfo {
            name: name.to_string(),
            kind: *kind,
        };
        scratch.writes.insert(model_key(id), Some(encode(&info)));
        scratch
            .writes
            .insert(model_name_key(name), Some(encode(id)));
        events.push(Event::new(
            "model_registered",
            &[("model", id.to_hex()), ("name", name.to_string())],
        ));
        Ok(Ok(()))
    }

    /// `Message::PublishModelSource`: the model's registrant says, once, where its weights are.
    pub(super) fn publish_model_source(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        id: &Hash,
        source: &agora_types::ModelSource,
        events: &mut Vec<Event>,
    ) -> TxResult {
        if let Err(why) = source.check() {
            return Ok(Err(TxError::InvalidModel(why)));
        }
        let Some(info) = self.get::<ModelInfo>(scratch, &model_key(id))? else {
            return Ok(Err(TxError::InvalidModel(format!(
                "no model {id} is registered"
            ))));
        };
        if info.kind == ModelKind::Provable {
            return Ok(Err(TxError::InvalidModel(
                "a provable model's file is registered with it (RegisterZkModel)".into(),
            )));
        }
        // A chat model's weights are one GGUF file: a source that says otherwise could never be
        // fetched, and a source is published once.
        if info.kind == ModelKind::Chat
            && (source.file.ends_with('/') || !source.file.ends_with(".gguf"))
        {
            return Ok(Err(TxError::InvalidModel(format!(
                "{}: a chat model's source is one .gguf file",
                source.file
            ))));
        }
        // Only its registrant: anyone else could point a model's users at other files (which
        // every fetcher would refuse, as their hash is not the id, but the model would have no
        // source left to give).
        let owner = self.get::<crate::ModelOwner>(scratch, &model_owner_key(id))?;
        if owner.is_none_or(|o| o.owner != *sender) {
            return Ok(Err(TxError::InvalidModel(
                "only the account that registered the model may publish its source".into(),
            )));
        }
        if self
            .get::<agora_types::ModelSource>(scratch, &model_source_key(id))?
            .is_some()
        {
            return Ok(Err(TxError::InvalidModel(format!(
                "model {id} has its source already (a model's files never change)"
            ))));
        }
        scratch
            .writes
            .insert(model_source_key(id), Some(encode(source)));
        events.push(Event::new(
            "model_source_published",
            &[
                ("model", id.to_hex()),
                ("package", format!("{}=={}", source.package, source.version)),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::EscrowDeposit`.
    pub(super) fn escrow_deposit(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        amount: &Amount,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let amount = *amount;
        if let Err(e) = check_spend(from.balance, amount) {
            return Ok(Err(e));
        }
        let key = escrow_key(sender);
        let mut escrow: Escrow = self.get(scratch, &key)?.unwrap_or_default();
        let Some(balance) = escrow.balance.checked_add(amount) else {
            return Ok(Err(TxError::AmountOverflow("escrow exceeds u128")));
        };
        escrow.balance = balance;
        from.balance -= amount;
        scratch.accounts.insert(*sender, from);
        scratch.writes.insert(key, Some(encode(&escrow)));
        events.push(Event::new(
            "escrow_deposit",
            &[
                ("client", sender.to_string()),
                ("amount", amount.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::EscrowWithdraw`.
    pub(super) fn escrow_withdraw(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        amount: &Amount,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let amount = *amount;
        if amount == 0 {
            return Ok(Err(TxError::ZeroAmount));
        }
        let key = escrow_key(sender);
        let mut escrow: Escrow = self.get(scratch, &key)?.unwrap_or_default();
        if escrow.balance < amount {
            return Ok(Err(TxError::InsufficientEscrow {
                need: amount,
                have: escrow.balance,
            }));
        }
        escrow.balance -= amount;
        let Some(unlocking) = escrow.unlocking.checked_add(amount) else {
            return Ok(Err(TxError::AmountOverflow("escrow exceeds u128")));
        };
        escrow.unlocking = unlocking;
        let release = self
            .ctx
            .height
            .saturating_add(self.market.escrow_unlock_period);
        scratch.writes.insert(key, Some(encode(&escrow)));
        scratch.escrow_releases.push((
            release,
            EscrowRelease {
                client: *sender,
                amount,
            },
        ));
        events.push(Event::new(
            "escrow_withdraw",
            &[
                ("client", sender.to_string()),
                ("amount", amount.to_string()),
                ("release_height", release.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::SettleJobs`.
    pub(super) fn settle_jobs(
        &mut self,
        scratch: &mut Scratch,
        jobs: &[SettledJob],
        events: &mut Vec<Event>,
    ) -> TxResult {
        if jobs.len() > MAX_SETTLE_JOBS {
            return Ok(Err(TxError::TooManyJobs {
                max: MAX_SETTLE_JOBS,
                got: jobs.len(),
            }));
        }
        for job in jobs {
            let id = job.request.request.id();
            match self.settle(scratch, job, false)? {
                Ok(event) => events.push(event),
                Err(why) => events.push(Event::new(
                    "job_rejected",
                    &[
                        ("job_id", id.to_hex()),
                        ("code", why.code().to_string()),
                        ("reason", why.to_string()),
                    ],
                )),
            }
        }
        Ok(Ok(()))
    }

    /// Checks a provider description against the registry of models.
    pub(super) fn check_provider_info(
        &self,
        scratch: &Scratch,
        info: &ProviderInfo,
    ) -> Result<std::result::Result<(), TxError>> {
        if let Err(why) = info.check() {
            return Ok(Err(TxError::InvalidProvider(why)));
        }
        self.models_registered(scratch, &info.models)
    }

    /// Every model in the registry, or the first that is not.
    pub(super) fn models_registered(
        &self,
        scratch: &Scratch,
        models: &[Hash],
    ) -> Result<std::result::Result<(), TxError>> {
        for model in models {
            if self.get::<ModelInfo>(scratch, &model_key(model))?.is_none() {
                return Ok(Err(TxError::UnknownModel { id: model.to_hex() }));
            }
        }
        Ok(Ok(()))
    }

    /// Settles one job into `scratch`, or says why not (and changes nothing). `proved`: the job's
    /// zero-knowledge proof was verified (`SettleZkJob`), which a job of level `zk` needs and
    /// which makes its fee final at once.
    pub(super) fn settle(
        &mut self,
        scratch: &mut Scratch,
        job: &SettledJob,
        proved: bool,
    ) -> Result<std::result::Result<Event, JobRejection>> {
        let (req, rec) = (&job.request.request, &job.receipt.receipt);
        if req.chain_id != self.ctx.chain_id {
            return Ok(Err(JobRejection::WrongChain {
                got: req.chain_id.clone(),
            }));
        }
        let signer = job.receipt.provider.address();
        if signer != req.provider {
            return Ok(Err(JobRejection::WrongProvider {
                named: req.provider,
                signer,
            }));
        }
        if rec.request_hash != req.hash() {
            return Ok(Err(JobRejection::RequestMismatch));
        }
        if self.ctx.height > req.expiry_height {
            return Ok(Err(JobRejection::Expired {
                expiry: req.expiry_height,
            }));
        }
        // A request valid for ever could never be forgotten: its id must stay refused.
        let max = self.market.max_request_lifetime;
        if req.expiry_height - self.ctx.height > max {
            return Ok(Err(JobRejection::ExpiryTooFar {
                expiry: req.expiry_height,
                max,
            }));
        }
        // The request's hash, which the receipt names (checked above).
        let job_id = rec.request_hash;
        let jkey = job_key(&job_id);
        if read(self.base, &[&self.writes, &scratch.writes], &jkey)?.is_some() {
            return Ok(Err(JobRejection::AlreadySettled { job_id }));
        }
        let pkey = provider_key(&req.provider);
        let Some(mut provider) = self.get::<Provider>(scratch, &pkey)? else {
            return Ok(Err(JobRejection::UnknownProvider {
                address: req.provider,
            }));
        };
        if let Some(height) = provider.retired_height {
            return Ok(Err(JobRejection::ProviderRetired {
                address: req.provider,
                height,
            }));
        }
        if !provider.info.models.contains(&req.model) {
            return Ok(Err(JobRejection::ModelNotServed { model: req.model }));
        }
        let level = req.params.verification;
        if (level == Verification::Zk) != proved {
            return Ok(Err(JobRejection::ZkProofRequired));
        }
        let checkers = match level {
            Verification::Redundant(k) if k == 0 || k > MAX_REDUNDANCY => {
                return Ok(Err(JobRejection::BadVerification {
                    max: MAX_REDUNDANCY,
                    got: k,
                }));
            }
            Verification::Redundant(k) => Amount::from(k),
            _ => 0,
        };
        if rec.fee > req.max_fee {
            return Ok(Err(JobRejection::FeeAboveMax {
                fee: rec.fee,
                max: req.max_fee,
            }));
        }
        let expected = job_fee(
            provider.info.price_input_per_1k,
            provider.info.price_output_per_1k,
            rec.input_tokens,
            rec.output_tokens,
        )
        // A proved job also pays for its settlement, which its provider sends alone.
        .and_then(|f| {
            if proved {
                f.checked_add(agora_types::zk_proof_fee(self.params.min_fee))
            } else {
                Some(f)
            }
        });
        if expected != Some(rec.fee) {
            return Ok(Err(JobRejection::WrongFee {
                fee: rec.fee,
                expected: expected.unwrap_or(Amount::MAX),
            }));
        }
        // Signatures last: the checks above are cheaper.
        if job.request.verify().is_err() {
            return Ok(Err(JobRejection::BadClientSignature));
        }
        if job.receipt.verify().is_err() {
            return Ok(Err(JobRejection::BadProviderSignature));
        }
        let client = req.client.address();
        let ekey = escrow_key(&client);
        let mut escrow: Escrow = self.get(scratch, &ekey)?.unwrap_or_default();
        // A redundant job also pays each of its verifiers the fee: held by its record for its check.
        let surcharge = rec.fee.checked_mul(checkers).unwrap_or(Amount::MAX);
        let need = rec.fee.saturating_add(surcharge);
        if escrow.claimable() < need {
            return Ok(Err(JobRejection::InsufficientEscrow {
                need,
                have: escrow.claimable(),
            }));
        }
        // From the balance first, then from what is being withdrawn.
        let from_balance = need.min(escrow.balance);
        escrow.balance -= from_balance;
        escrow.unlocking -= need - from_balance;
        scratch.writes.insert(ekey, Some(encode(&escrow)));
        // The surcharge waits in the job's record for the job's own check.

        // A proved job has nothing to challenge: its fee is paid at the end of this block.
        let release = if proved {
            self.ctx.height
        } else {
            self.ctx.height.saturating_add(self.market.challenge_window)
        };
        provider.jobs_settled += 1;
        provider.fees_settled = provider.fees_settled.saturating_add(rec.fee);
        provider.held_until = provider.held_until.max(release);
        scratch.writes.insert(pkey, Some(encode(&provider)));
        let record = JobRecord {
            client,
            provider: req.provider,
            model: req.model,
            request_hash: rec.request_hash,
            input_hash: req.input_hash,
            output_hash: rec.output_hash,
            input_tokens: rec.input_tokens,
            output_tokens: rec.output_tokens,
            fee: rec.fee,
            settled_height: self.ctx.height,
            release_height: release,
            level,
            fee_state: FeeState::Pending,
            surcharge,
        };
        scratch.writes.insert(jkey, Some(encode(&record)));
        scratch.pending.push((release, job_id));
        // Forgotten once nobody can settle its request again and its fee is final (kept a while
        // for readers): see `prune_jobs`. Queued by the settling height, not by the expiry the
        // client chose, so one prune queue holds one block's settlements, never a pile-up of
        // jobs that all name the same expiry.
        let unsettleable = self
            .ctx
            .height
            .saturating_add(self.market.max_request_lifetime)
            .max(release);
        scratch
            .prunes
            .push((self.prune_height(unsettleable), job_id));
        if !matches!(level, Verification::None | Verification::Zk) {
            // Whether it is checked, and by whom, is drawn in the next block, from that block's
            // seed (its proposer's VRF output): unknown when the provider settles.
            scratch
                .draws
                .push((self.ctx.height.saturating_add(1), job_id));
        }
        Ok(Ok(Event::new(
            "job_settled",
            &[
                ("job_id", job_id.to_hex()),
                ("client", client.to_string()),
                ("provider", req.provider.to_string()),
                ("model", req.model.to_hex()),
                ("fee", rec.fee.to_string()),
                ("release_height", release.to_string()),
            ],
        )))
    }

    /// Returns to their owners the escrow withdrawals that unlock at this height (less what
    /// settlements drew from them meanwhile).
    pub(super) fn release_escrow(&mut self, events: &mut Vec<Event>) -> Result<()> {
        let qkey = escrow_queue_key(self.ctx.height);
        let Some(bytes) = read(self.base, &[&self.writes], &qkey)? else {
            return Ok(());
        };
        let queue: Vec<EscrowRelease> = decode(&qkey, &bytes)?;
        for entry in queue {
            let ekey = escrow_key(&entry.client);
            let mut escrow: Escrow = read(self.base, &[&self.writes], &ekey)?
                .map(|b| decode(&ekey, &b))
                .transpose()?
                .unwrap_or_default();
            let amount = entry.amount.min(escrow.unlocking);
            escrow.unlocking -= amount;
            self.writes.insert(ekey, Some(encode(&escrow)));
            let mut acc = self.load(&entry.client)?.unwrap_or_default();
            acc.balance = acc
                .balance
                .checked_add(amount)
                .ok_or_else(|| Error::Corrupt {
                    key: format!("acct/{}", entry.client),
                    reason: "balance exceeds total supply".into(),
                })?;
            self.store(entry.client, acc);
            events.push(Event::new(
                "escrow_released",
                &[
                    ("client", entry.client.to_string()),
                    ("amount", amount.to_string()),
                ],
            ));
        }
        self.writes.insert(qkey, None);
        Ok(())
    }

    /// Pays providers the fees whose challenge window ends at this height and that no check
    /// holds or refunded.
    pub(super) fn release_fees(&mut self, events: &mut Vec<Event>) -> Result<()> {
        let Some(queue) = self.take_queue(pending_key(self.ctx.height))? else {
            return Ok(());
        };
        let mut scratch = Scratch::default();
        for job_id in queue {
            let jkey = job_key(&job_id);
            let Some(mut record) = self.get::<JobRecord>(&scratch, &jkey)? else {
                continue;
            };
            if record.fee_state != FeeState::Pending {
                continue;
            }
            self.pay_fee(&mut scratch, &job_id, &mut record, events)?;
            scratch.writes.insert(jkey, Some(encode(&record)));
        }
        self.commit_scratch(scratch);
        Ok(())
    }

    /// The height at which a job record that can be forgotten after `after` is pruned.
    pub(super) fn prune_height(&self, after: u64) -> u64 {
        after
            .max(self.ctx.height)
            .saturating_add(self.market.job_retention)
            .saturating_add(1)
    }

    /// Forgets the records of jobs whose request has expired (so their id can never be settled
    /// again: settlement refuses an expired request before it looks for a record) and whose fee
    /// is final, with their decided check. A job still in play (a fee pending or held, a check
    /// open) is looked at again later.
    pub(super) fn prune_jobs(&mut self, events: &mut Vec<Event>) -> Result<()> {
        let Some(queue) = self.take_queue(prune_queue_key(self.ctx.height))? else {
            return Ok(());
        };
        let mut scratch = Scratch::default();
        for job_id in queue {
            let jkey = job_key(&job_id);
            let Some(record) = self.get::<JobRecord>(&scratch, &jkey)? else {
                continue;
            };
            let check: Option<crate::Check> = self.get(&scratch, &check_key(&job_id))?;
            let final_fee = matches!(record.fee_state, FeeState::Released | FeeState::Refunded);
            let open = check
                .as_ref()
                .is_some_and(|c| c.outcome == crate::Outcome::Open);
            if !final_fee || open {
                let later = self.prune_height(self.ctx.height);
                scratch.prunes.push((later, job_id));
                continue;
            }
            scratch.writes.insert(jkey, None);
            scratch.writes.insert(
                crate::citation_key(&agora_types::CiteTarget::Job { id: job_id }, &record.client),
                None,
            );
            if check.is_some() {
                scratch.writes.insert(check_key(&job_id), None);
            }
            if record.level == Verification::Zk {
                scratch.writes.insert(crate::zk_job_key(&job_id), None);
            }
            events.push(Event::new("job_pruned", &[("job_id", job_id.to_hex())]));
        }
        self.commit_scratch(scratch);
        Ok(())
    }
}
