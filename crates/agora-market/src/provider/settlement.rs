//! Settlement: receipts kept on disk until the chain has them, taken back after a restart, and
//! sent in batches.

use super::*;

impl Provider {
    /// Whether job `id` was served by this provider before (by a run that may have ended since):
    /// its receipt or kept copy is on disk, or the chain has settled it.
    pub(super) fn served_before(&self, id: &Hash) -> Result<bool, Error> {
        let on_disk = [self.receipt_path(id), self.kept_path(id)]
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
            .filter(|p| p.extension().is_some_and(|x| x == "receipt"))
            .collect();
        paths.sort();
        for path in paths {
            let job: SettledJob = match std::fs::read(&path)
                .ok()
                .and_then(|b| borsh::from_slice(&b).ok())
            {
                Some(job) => job,
                None => {
                    tracing::warn!("ignoring unreadable receipt file {}", path.display());
                    continue;
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
            books.unsettled.push(job);
        }
        Ok(())
    }

    /// Receipts waiting for settlement.
    pub fn unsettled(&self) -> usize {
        self.books().unsettled.len()
    }

    /// Submits up to [`MAX_SETTLE_JOBS`] waiting receipts in one `SettleJobs`. Returns the
    /// transaction hash and the number of jobs, or `None` when nothing waits. On failure the
    /// receipts stay queued.
    pub fn settle(&self) -> Result<Option<(Hash, usize)>, Error> {
        self.forget_settled()?;
        let jobs: Vec<SettledJob> = {
            let mut books = self.books();
            let n = books.unsettled.len().min(MAX_SETTLE_JOBS);
            books.unsettled.drain(..n).collect()
        };
        if jobs.is_empty() {
            return Ok(None);
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

    /// Deletes the receipt files of submitted jobs the chain has settled (or that can no longer
    /// be settled).
    pub(super) fn forget_settled(&self) -> Result<(), Error> {
        let submitted = std::mem::take(&mut self.books().submitted);
        if submitted.is_empty() {
            return Ok(());
        }
        let height = self.chain.height()?;
        let mut waiting = Vec::new();
        for (id, expiry) in submitted {
            if self.chain.is_settled(&id)? || height > expiry {
                if let Some(path) = self.receipt_path(&id) {
                    let _ = std::fs::remove_file(path);
                }
            } else {
                waiting.push((id, expiry));
            }
        }
        self.books().submitted.extend(waiting);
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
