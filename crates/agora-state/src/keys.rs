//! The key layout of the state. Every key starts with a short module prefix.

use agora_types::Address;

/// `acct/` + address → [`crate::Account`].
pub fn account_key(address: &Address) -> Vec<u8> {
    let mut key = b"acct/".to_vec();
    key.extend_from_slice(&address.0);
    key
}

/// `params` → [`crate::Params`].
pub fn params_key() -> Vec<u8> {
    b"params".to_vec()
}

/// `supply` → total supply (u128): conserved by every transaction.
pub fn supply_key() -> Vec<u8> {
    b"supply".to_vec()
}

/// `unbq/` + big-endian height → the unbonding entries released at that height.
pub fn unbonding_key(height: u64) -> Vec<u8> {
    let mut key = b"unbq/".to_vec();
    key.extend_from_slice(&height.to_be_bytes());
    key
}
