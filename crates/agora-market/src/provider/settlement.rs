//! Settlement: receipts kept on disk until the chain has them, taken back after a restart, and
//! sent in batches.

use super::*;

impl Provider {
    /// Whether job `id` was served by this provider before (by a run that may have ended since):
    /// its receipt or kept copy is on disk, or the chain has settled it.
    pub(super) fn served_before(&self, id: &Hash) -> Result<bool, Error> {
        let on_disk = [self.receipt_path(id), self.kept_path(id), self.zk_path(id)]
            .into_iter()
            .flatten()
            .any(|p| p.exists());
        Ok(on_disk || self.chain.is_settled(id)?)
    }

    /// The file that keeps job `id`'s receipt until the chain has settled it.
    pub(super) fn receipt_path(&self, id: &Hash) -> Option<PathBuf> {
        self.config
            .jobs_dir
            .as_ref()
            .map(|dir| dir.join(format!("{id}.receipt")))
    }

    /// The file that keeps proved job `id`'s receipt, claim and proof until the chain has
    /// settled it.
    pub(super) fn zk_path(&self, id: &Hash) -> Option<PathBuf> {
        self.config
            .jobs_dir
            .as_ref()
            .map(|dir| dir.join(format!("{id}.zkjob")))
    }

    /// Takes back the receipts a previous run left unsettled (a crash, a failed settlement), and
    /// forgets those the chain has settled since.
    pub(super) fn recover(&self) -> Result<(), Error> {
        let Some(dir) = &self.config.jobs_dir else {
            return Ok(());
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "receipt" || x == "zkjob")
            })
            .collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).ok();
            let (job, proved) = if path.extension().is_some_and(|x| x == "zkjob") {
                match bytes.and_then(|b| ZkSettlement::try_from_slice(&b).ok()) {
                    Some(z) => (z.job.clone(), Some(z)),
                    None => {
                        tracing::warn!("ignoring unreadable proved job {}", path.display());
                        continue;
                    }
                }
            } else {
                match bytes.and_then(|b| SettledJob::try_from_slice(&b).ok()) {
                    Some(job) => (job, None),
                    None => {
                        tracing::warn!("ignoring unreadable receipt file {}", path.display());
                        continue;
                    }
                }
            };
            let id = job.request.request.id();
            if job.receipt.provider != self.key.public() {
                continue;
            }
            // Settled since, or too late to settle: nothing left to claim.
            if self.chain.is_settled(&id)?
                || self.chain.height()? > job.request.request.expiry_height
            {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let mut books = self.books();
            books.seen.insert(id);
            *books
                .unsettled_fees
                .entry(job.request.request.client.address())
                .or_default() += job.receipt.receipt.fee;
            match proved {
                Some(z) => books.unsettled_zk.push((z, 0)),
                None => books.unsettled.push(job),
            }
        }
        Ok(())
    }

    /// Receipts waiting for settlement (proved jobs' included).
    pub fn unsettled(&self) -> usize {
        let books = self.books();
        books.unsettled.len() + books.unsettled_zk.len()
    }

    /// Submits up to [`MAX_SETTLE_JOBS`] waiting receipts in one `SettleJobs`, or when none
    /// waits, a proved job in its own `SettleZkJob` (while fewer than [`ZK_IN_FLIGHT`] wait in
    /// the mempool). Returns the transaction hash and the number of jobs, or `None` when nothing
    /// waits (or may be sent yet). On failure the receipts stay queued.
    pub fn settle(&self) -> Result<Option<(Hash, usize)>, Error> {
        self.forget_settled()?;
        let jobs: Vec<SettledJob> = {
            let mut books = self.books();
            let n = books.unsettled.len().min(MAX_SETTLE_JOBS);
            books.unsettled.drain(..n).collect()
        };
        if jobs.is_empty() {
            return self.settle_proved();
        }
        let n = jobs.len();
        match self.submit(vec![Message::SettleJobs { jobs: jobs.clone() }]) {
            Ok(hash) => {
                let mut books = self.books();
                for job in &jobs {
                    let client = job.request.request.client.address();
                    if let Some(f) = books.unsettled_fees.get_mut(&client) {
                        *f = f.saturating_sub(job.receipt.receipt.fee);
                    }
                    let req = &job.request.request;
                    books.submitted.push((req.id(), req.expiry_height));
                }
                Ok(Some((hash, n)))
            }
            Err(e) => {
                let mut books = self.books();
                let rest = std::mem::take(&mut books.unsettled);
                books.unsettled = jobs;
                books.unsettled.extend(rest);
                Err(e)
            }
        }
    }

    /// Sends the oldest proved job's `SettleZkJob` (one proof per transaction).
    fn settle_proved(&self) -> Result<Option<(Hash, usize)>, Error> {
        let height = self.chain.height()?;
        let (pending, tries) = loop {
            let next = {
                let mut books = self.books();
                if books.unsettled_zk.is_empty() || books.submitted_zk.len() >= ZK_IN_FLIGHT {
                    return Ok(None);
                }
                books.unsettled_zk.remove(0)
            };
            // One that can no longer settle (expired, or settled already) is not sent.
            let req = &next.0.job.request.request;
            if height <= req.expiry_height && !self.chain.is_settled(&req.id())? {
                break next;
            }
            self.drop_proved(&next.0);
        };
        let message = Message::SettleZkJob {
            job: pending.job.clone(),
            claim: pending.claim.clone(),
            proof: pending.proof.clone(),
        };
        // At the chain's minimum fee: what the job's fee includes for it (`zk_proof_fee`).
        match self.submit_at(vec![message], self.min_fee) {
            Ok(hash) => {
                self.books().submitted_zk.push(InFlight {
                    pending,
                    sent: height,
                    tries: tries + 1,
                });
                Ok(Some((hash, 1)))
            }
            // Refused (a mempool full of proofs, a node down): it waits its turn again, and
            // counts as a try, so that one the chain always refuses cannot jam the queue.
            Err(e) => {
                if tries + 1 >= ZK_MAX_TRIES {
                    tracing::warn!(
                        "proved job {}: its settlement was refused {} times: {e}",
                        pending.job.request.request.id(),
                        tries + 1
                    );
                    self.drop_proved(&pending);
                } else {
                    self.books().unsettled_zk.push((pending, tries + 1));
                }
                Err(e)
            }
        }
    }

    /// Forgets a proved job (settled, expired or given up): its fee is no longer owed, its file
    /// goes.
    fn drop_proved(&self, pending: &ZkSettlement) {
        let req = &pending.job.request.request;
        let fee = pending.job.receipt.receipt.fee;
        if let Some(f) = self.books().unsettled_fees.get_mut(&req.client.address()) {
            *f = f.saturating_sub(fee);
        }
        if let Some(path) = self.zk_path(&req.id()) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Deletes the receipt files of submitted jobs the chain has settled (or that can no longer
    /// be settled).
    pub(super) fn forget_settled(&self) -> Result<(), Error> {
        let height = self.chain.height()?;
        let (submitted, submitted_zk) = {
            let mut books = self.books();
            (
                std::mem::take(&mut books.submitted),
                std::mem::take(&mut books.submitted_zk),
            )
        };
        // A node that does not answer now: the job keeps waiting.
        let settled = |id: &Hash| self.chain.is_settled(id).unwrap_or(false);
        let mut waiting = Vec::new();
        for (id, expiry) in submitted {
            if settled(&id) || height > expiry {
                if let Some(path) = self.receipt_path(&id) {
                    let _ = std::fs::remove_file(path);
                }
            } else {
                waiting.push((id, expiry));
            }
        }
        // A proved job: settled (or expired) is done; unapplied long after it was sent, it goes
        // back in the queue, until it was sent too often.
        let (mut waiting_zk, mut again) = (Vec::new(), Vec::new());
        for flight in submitted_zk {
            let req = &flight.pending.job.request.request;
            let id = req.id();
            let over = settled(&id) || height > req.expiry_height;
            if !over && height <= flight.sent + ZK_RESEND_BLOCKS {
                waiting_zk.push(flight);
                continue;
            }
            if !over && flight.tries < ZK_MAX_TRIES {
                again.push((flight.pending, flight.tries));
                continue;
            }
            if !over {
                tracing::warn!(
                    "proved job {id}: the chain did not apply its settlement, sent {} times",
                    flight.tries
                );
            }
            self.drop_proved(&flight.pending);
        }
        let mut books = self.books();
        books.submitted.extend(waiting);
        books.submitted_zk.extend(waiting_zk);
        books.unsettled_zk.extend(again);
        Ok(())
    }

    /// Receipt files still waiting for the chain (for tests and status).
    pub fn receipts_kept(&self) -> usize {
        let Some(dir) = &self.config.jobs_dir else {
            return 0;
        };
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "receipt"))
                .count()
        })
    }
}
