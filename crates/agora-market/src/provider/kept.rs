//! The jobs a provider keeps for its verifiers: each input sealed to the verifiers drawn, revealed
//! when a check opens, and deleted once no check can come.

use super::*;

impl Provider {
    /// The one-time key seed for sealing job `id` to `recipient`: the same every time (the same
    /// document gives the same bytes), different for every job and recipient, secret.
    pub(super) fn reveal_seed(&self, id: &Hash, recipient: &[u8; 32]) -> [u8; 32] {
        let mut material = self.secret.to_bytes().to_vec();
        material.extend_from_slice(&id.0);
        material.extend_from_slice(recipient);
        blake3::derive_key("agora/market/reveal-seed/v1", &material)
    }

    /// The file that keeps job `id` (sealed) for its verification window.
    pub(super) fn kept_path(&self, id: &Hash) -> Option<PathBuf> {
        self.config
            .jobs_dir
            .as_ref()
            .map(|dir| dir.join(format!("{id}.job")))
    }

    /// Job `id` as kept for the verification window (its request, input and output), opened
    /// with the provider's key and checked against the request's input hash; `None` if none is
    /// kept.
    pub fn kept_job(&self, id: &Hash) -> Result<Option<RevealDoc>, Error> {
        let Some(path) = self.kept_path(id) else {
            return Ok(None);
        };
        let sealed = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Io {
                    what: format!("reading {}", path.display()),
                    source: e,
                });
            }
        };
        let doc = open_reveal(&self.secret, id, &sealed)?;
        if Hash::digest(&doc.input) != doc.request.request.input_hash {
            return Err(Error::Malformed {
                what: "kept job",
                reason: "its input is not the request's".into(),
            });
        }
        Ok(Some(doc))
    }

    /// The input of job `id` as the client sent it (see [`Self::kept_job`]).
    pub fn kept_input(&self, id: &Hash) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.kept_job(id)?.map(|doc| doc.input))
    }

    /// Reveals, through the chain, every job of this provider drawn for checking to each seated
    /// verifier that has not received it: sealed to the verifier's key, in parts. Returns the
    /// reveals sent.
    pub fn reveal_pending(&self) -> Result<usize, Error> {
        let me = self.address();
        let mut sent = 0;
        let open = self.chain.open_checks(&me)?;
        let height = self.chain.height()?;
        // Remember only reveals to checks still open (the set stays small).
        self.books()
            .revealed
            .retain(|(job, _), _| open.iter().any(|c| c.job_id == *job));
        for check in open {
            if check.provider != me || check.outcome != agora_state::Outcome::Open {
                continue;
            }
            for seat in &check.seats {
                // Not yet (or only partly, e.g. before a crash) revealed: the parts are sealed
                // the same way every time, so a resend completes a partial reveal.
                let due = seat.verdict.is_none() && seat.revealed_height.is_none();
                let pair = (check.job_id, seat.verifier);
                let sent_at = self.books().revealed.get(&pair).copied();
                if !due || sent_at.is_some_and(|h| height < h + REVEAL_RESEND_BLOCKS) {
                    continue;
                }
                let Some(doc) = self.kept_job(&check.job_id)? else {
                    tracing::warn!(
                        "job {} is drawn for checking but not kept here",
                        check.job_id
                    );
                    continue;
                };
                let Some(key) = self.chain.verifier_key(&seat.verifier)? else {
                    continue;
                };
                let seed = self.reveal_seed(&check.job_id, &key);
                let sealed = seal_reveal(&key, &check.job_id, &doc, seed);
                let parts: Vec<&[u8]> = sealed.chunks(MAX_REVEAL_PART_BYTES).collect();
                let Ok(n) = u16::try_from(parts.len()) else {
                    continue;
                };
                if n > MAX_REVEAL_PARTS {
                    tracing::warn!(
                        "job {} is too large to reveal ({} bytes)",
                        check.job_id,
                        sealed.len()
                    );
                    continue;
                }
                for (i, data) in parts.iter().enumerate() {
                    self.submit(vec![Message::RevealJob {
                        job_id: check.job_id,
                        verifier: seat.verifier,
                        part: i as u16,
                        parts: n,
                        data: data.to_vec(),
                    }])?;
                }
                self.books().revealed.insert(pair, height);
                tracing::info!(
                    "revealed job {} to verifier {}",
                    check.job_id,
                    seat.verifier
                );
                sent += 1;
            }
        }
        let due = self
            .books()
            .last_sweep
            .is_none_or(|t| t.elapsed() >= KEPT_SWEEP_INTERVAL);
        if due {
            self.books().last_sweep = Some(std::time::Instant::now());
            self.sweep_kept()?;
        }
        Ok(sent)
    }

    /// Deletes kept jobs that can no longer be checked (their check decided, or not drawn) or
    /// settled (expired unsettled). Looks at [`KEPT_SWEEP_LIMIT`] files at most; returns how many
    /// it deleted.
    pub fn sweep_kept(&self) -> Result<usize, Error> {
        let Some(dir) = &self.config.jobs_dir else {
            return Ok(0);
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(0);
        };
        let height = self.chain.height()?;
        let mut deleted = 0;
        let kept = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "job"))
            .take(KEPT_SWEEP_LIMIT);
        for path in kept {
            let Some(id) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<Hash>().ok())
            else {
                continue;
            };
            let done = match self.chain.verification_over(&id)? {
                Some(over) => over,
                // Not settled: done once the request can no longer be settled.
                None => self
                    .kept_job(&id)
                    .ok()
                    .flatten()
                    .is_none_or(|doc| height > doc.request.request.expiry_height),
            };
            if done && std::fs::remove_file(&path).is_ok() {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
