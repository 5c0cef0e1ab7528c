use crate::{Error, PublicKey, Result};
use bech32::{Bech32, Hrp};
use borsh::{BorshDeserialize, BorshSerialize};
use std::{fmt, str::FromStr};

/// The human-readable part of every Agora address.
pub const ADDRESS_HRP: &str = "agora";

/// An account address: the first 20 bytes of `blake3(public key)`, shown as bech32 `agora1…`.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// The address that belongs to `key`.
    pub fn from_public_key(key: &PublicKey) -> Self {
        let digest = blake3::hash(&key.0);
        let mut out = [0u8; 20];
        out.copy_from_slice(&digest.as_bytes()[..20]);
        Address(out)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = Hrp::parse_unchecked(ADDRESS_HRP);
        match bech32::encode::<Bech32>(hrp, &self.0) {
            Ok(s) => f.write_str(&s),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidAddress {
            input: s.to_string(),
            reason,
        };
        let (hrp, data) = bech32::decode(s).map_err(|e| invalid(e.to_string()))?;
        if hrp.as_str() != ADDRESS_HRP {
            return Err(invalid(format!(
                "prefix is {:?}, expected {ADDRESS_HRP:?}",
                hrp.as_str()
            )));
        }
        let bytes: [u8; 20] = data
            .try_into()
            .map_err(|d: Vec<u8>| invalid(format!("{} bytes, expected 20", d.len())))?;
        Ok(Address(bytes))
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bech32_round_trip_and_prefix() {
        let addr = Address([7u8; 20]);
        let text = addr.to_string();
        assert!(text.starts_with("agora1"), "{text}");
        assert_eq!(text.parse::<Address>().unwrap(), addr);
    }

    #[test]
    fn rejects_wrong_prefix_length_and_checksum() {
        let other = bech32::encode::<Bech32>(Hrp::parse("cosmos").unwrap(), &[1u8; 20]).unwrap();
        assert!(matches!(
            other.parse::<Address>(),
            Err(Error::InvalidAddress { .. })
        ));
        let short = bech32::encode::<Bech32>(Hrp::parse("agora").unwrap(), &[1u8; 19]).unwrap();
        assert!(short.parse::<Address>().is_err());
        let mut text = Address([9u8; 20]).to_string();
        let last = text.pop().unwrap();
        text.push(if last == 'q' { 'p' } else { 'q' });
        assert!(text.parse::<Address>().is_err());
    }

    #[test]
    fn known_answer_address_of_public_key() {
        // Computed outside this code (Python's `blake3` and the bech32 reference
        // implementation): the RFC 8032 test 1 public key, and the all-zero key.
        let mut key = [0u8; 32];
        hex::decode_to_slice(
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            &mut key,
        )
        .unwrap();
        assert_eq!(
            Address::from_public_key(&PublicKey(key)).to_string(),
            "agora1dscsgyng73ckp8re7hedhnpcujj2kt6dsvyn2u"
        );
        assert_eq!(
            hex::encode(Address::from_public_key(&PublicKey(key)).0),
            "6c31041268f471609c79f5f2dbcc38e4a4ab2f4d"
        );
        assert_eq!(
            Address::from_public_key(&PublicKey([0u8; 32])).to_string(),
            "agora19tdg8svpnffh9khpyw8urhk3y0ypqn76a0aamd"
        );
    }
}
