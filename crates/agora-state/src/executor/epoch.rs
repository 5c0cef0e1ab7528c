//! Epoch work of the state machine: consensus keys recorded on bond, and the validator set
//! recomputed from the bonds at the end of each epoch (see [`crate::validators`]).

use super::{Executor, Scratch, decode, encode, read};
use crate::{Result, ValidatorSet, validator_candidates_key, validator_key_key, validator_set_key};
use agora_types::{Address, Event, PublicKey};

impl Executor<'_> {
    /// Remembers the consensus key of an account that bonds (its own key) and makes it a
    /// candidate for the next epochs' validator sets.
    pub(super) fn record_validator_key(
        &self,
        scratch: &mut Scratch,
        address: &Address,
        key: &PublicKey,
    ) -> Result<()> {
        let kkey = validator_key_key(address);
        if read(self.base, &[&self.writes, &scratch.writes], &kkey)?.is_some() {
            return Ok(());
        }
        scratch.writes.insert(kkey, Some(encode(key)));
        let ckey = validator_candidates_key();
        let mut candidates: Vec<Address> = self.get(scratch, &ckey)?.unwrap_or_default();
        if let Err(i) = candidates.binary_search(address) {
            candidates.insert(i, *address);
        }
        scratch.writes.insert(ckey, Some(encode(&candidates)));
        Ok(())
    }

    /// End of an epoch: the set becomes the candidates with enough stake bonded now. A chain
    /// without a set (dev mode) keeps none, and a set never becomes empty (with no candidate left
    /// above the minimum, the old set stays, so the chain can still make blocks).
    pub(super) fn rotate_validators(&mut self, events: &mut Vec<Event>) -> Result<()> {
        let skey = validator_set_key();
        let Some(bytes) = read(self.base, &[&self.writes], &skey)? else {
            return Ok(());
        };
        let old: ValidatorSet = decode(&skey, &bytes)?;
        let ckey = validator_candidates_key();
        let candidates: Vec<Address> = read(self.base, &[&self.writes], &ckey)?
            .map(|b| decode(&ckey, &b))
            .transpose()?
            .unwrap_or_default();
        let mut bonds = Vec::with_capacity(candidates.len());
        for address in candidates {
            let kkey = validator_key_key(&address);
            let Some(kbytes) = read(self.base, &[&self.writes], &kkey)? else {
                continue;
            };
            let key: PublicKey = decode(&kkey, &kbytes)?;
            let bonded = self.peek_account(&address)?.map_or(0, |a| a.bonded);
            bonds.push((address, key, bonded));
        }
        let new = ValidatorSet::from_bonds(&self.consensus, bonds);
        if new.validators.is_empty() || new == old {
            return Ok(());
        }
        self.writes.insert(skey, Some(encode(&new)));
        events.push(Event::new(
            "validator_set",
            &[
                ("height", self.ctx.height.to_string()),
                ("validators", new.validators.len().to_string()),
                ("total_power", new.total_power().to_string()),
            ],
        ));
        Ok(())
    }
}
