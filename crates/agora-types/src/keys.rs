use crate::{Address, Error, Result};
use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use std::{collections::BTreeMap, fmt, sync::Mutex};

/// An ed25519 public key (32 bytes, compressed Edwards point).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The account address of this key.
    pub fn address(&self) -> Address {
        Address::from_public_key(self)
    }

    /// Checks `signature` over `message`. Strict: rejects small-order keys and non-canonical
    /// signatures so that a signature has exactly one valid encoding.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<()> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| Error::InvalidPublicKey)?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig)
            .map_err(|_| Error::InvalidSignature)
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(PublicKey(out))
    }
}

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl serde::Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

/// An ed25519 signing key with its public half.
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Self {
        Keypair {
            signing: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    /// The key with this 32-byte secret seed.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Keypair {
            signing: SigningKey::from_bytes(&secret),
        }
    }

    /// A deterministic key derived from a label: for tests, benchmarks and dev networks only.
    pub fn from_seed_label(label: &str) -> Self {
        Self::from_secret(*blake3::hash(label.as_bytes()).as_bytes())
    }

    /// The 32-byte secret seed. Handle with care.
    pub fn secret(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// The account address.
    pub fn address(&self) -> Address {
        self.public().address()
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// Decompressed keys of recent signers. Decompressing a key costs a field square root, a good
/// part of a batched verification, and active accounts sign again and again.
static KEY_CACHE: Mutex<BTreeMap<[u8; 32], VerifyingKey>> = Mutex::new(BTreeMap::new());
const KEY_CACHE_CAPACITY: usize = 1 << 16;

/// Decompresses keys, through the cache.
fn verifying_keys(keys: &[PublicKey]) -> Result<Vec<VerifyingKey>> {
    let mut out: Vec<Option<VerifyingKey>> = {
        let cache = KEY_CACHE.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter().map(|k| cache.get(&k.0).copied()).collect()
    };
    let mut fresh = Vec::new();
    for (slot, key) in out.iter_mut().zip(keys) {
        if slot.is_none() {
            let vk = VerifyingKey::from_bytes(&key.0).map_err(|_| Error::InvalidPublicKey)?;
            fresh.push((key.0, vk));
            *slot = Some(vk);
        }
    }
    if !fresh.is_empty() {
        let mut cache = KEY_CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() + fresh.len() > KEY_CACHE_CAPACITY {
            cache.clear();
        }
        cache.extend(fresh);
    }
    Ok(out
        .into_iter()
        .map(|k| k.expect("every slot filled"))
        .collect())
}

/// Verifies many `(message, signature, key)` triples at once; several times faster per signature
/// than one-by-one checks for batches of hundreds. Fails if any one fails (then check them one by
/// one to find it).
pub fn verify_batch(
    messages: &[&[u8]],
    signatures: &[Signature],
    keys: &[PublicKey],
) -> Result<()> {
    let keys = verifying_keys(keys)?;
    let sigs: Vec<_> = signatures
        .iter()
        .map(|s| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    ed25519_dalek::verify_batch(messages, &sigs, &keys).map_err(|_| Error::InvalidSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let key = Keypair::from_seed_label("alice");
        let sig = key.sign(b"hello");
        key.public().verify(b"hello", &sig).unwrap();
        assert_eq!(
            key.public().verify(b"hellO", &sig),
            Err(Error::InvalidSignature)
        );
        let other = Keypair::from_seed_label("bob");
        assert_eq!(
            other.public().verify(b"hello", &sig),
            Err(Error::InvalidSignature)
        );
    }

    #[test]
    fn batch_catches_one_bad_signature() {
        let keys: Vec<_> = (0..8)
            .map(|i| Keypair::from_seed_label(&format!("k{i}")))
            .collect();
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10]).collect();
        let mut sigs: Vec<_> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let pubs: Vec<_> = keys.iter().map(Keypair::public).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        verify_batch(&refs, &sigs, &pubs).unwrap();
        sigs.swap(2, 3);
        assert!(verify_batch(&refs, &sigs, &pubs).is_err());
    }
}
