//! Accounts: transfers.

use super::*;

type TxResult = Result<std::result::Result<(), TxError>>;

impl Executor<'_> {
    /// `Message::Transfer`.
    pub(super) fn transfer(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        mut from: Account,
        to: &Address,
        amount: &Amount,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let amount = *amount;
        if let Err(e) = check_spend(from.balance, amount) {
            return Ok(Err(e));
        }
        if to == sender {
            events.push(transfer_event(sender, to, amount));
            return Ok(Ok(()));
        }
        let mut dest = self.scratch_account(scratch, to)?;
        if dest.total().and_then(|t| t.checked_add(amount)).is_none() {
            return Ok(Err(TxError::AmountOverflow(
                "recipient total would exceed u128",
            )));
        }
        from.balance -= amount;
        dest.balance += amount;
        scratch.accounts.insert(*sender, from);
        scratch.accounts.insert(*to, dest);
        events.push(transfer_event(sender, to, amount));
        Ok(Ok(()))
    }
}
