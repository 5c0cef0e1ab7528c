//! Staking: bonding and unbonding a validator's stake.

use super::*;

type TxResult = Result<std::result::Result<(), TxError>>;

impl Executor<'_> {
    /// `Message::Bond`.
    pub(super) fn bond(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        sender_key: &PublicKey,
        mut from: Account,
        amount: &Amount,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let amount = *amount;
        if let Err(e) = check_spend(from.balance, amount) {
            return Ok(Err(e));
        }
        from.balance -= amount;
        from.bonded += amount;
        scratch.accounts.insert(*sender, from);
        self.record_validator_key(scratch, sender, sender_key)?;
        events.push(Event::new(
            "bond",
            &[
                ("account", sender.to_string()),
                ("amount", amount.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::Unbond`.
    pub(super) fn unbond(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        amount: &Amount,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let amount = *amount;
        if amount == 0 {
            return Ok(Err(TxError::ZeroAmount));
        }
        if from.bonded < amount {
            return Ok(Err(TxError::InsufficientBonded {
                need: amount,
                have: from.bonded,
            }));
        }
        from.bonded -= amount;
        from.unbonding += amount;
        let release = self.queue_unbonding(scratch, *sender, amount);
        scratch.accounts.insert(*sender, from);
        events.push(Event::new(
            "unbond",
            &[
                ("account", sender.to_string()),
                ("amount", amount.to_string()),
                ("release_height", release.to_string()),
            ],
        ));
        Ok(Ok(()))
    }
}
