use crate::{Address, Error, Result};
use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_zebra::{SigningKey, VerificationKey, VerificationKeyBytes, batch};
use rand_core::RngCore;
use std::fmt;

/// An ed25519 public key (32 bytes, compressed Edwards point).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The account address of this key.
    pub fn address(&self) -> Address {
        Address::from_public_key(self)
    }

    /// Checks `signature` over `message` under the ZIP-215 rules, which single and batch
    /// verification share exactly: every node accepts the same signatures however it batches
    /// them, which consensus needs (plain RFC 8032 leaves that open).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<()> {
        let key = VerificationKey::try_from(self.0).map_err(|_| Error::InvalidPublicKey)?;
        key.verify(&ed25519_zebra::Signature::from_bytes(&signature.0), message)
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
        hex_array(d).map(PublicKey)
    }
}

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
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

impl<'de> serde::Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        hex_array(d).map(Signature)
    }
}

/// `N` bytes from a hex string (for serde).
pub(crate) fn hex_array<'de, D: serde::Deserializer<'de>, const N: usize>(
    d: D,
) -> std::result::Result<[u8; N], D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    let mut out = [0u8; N];
    hex::decode_to_slice(s.trim_start_matches("0x"), &mut out).map_err(serde::de::Error::custom)?;
    Ok(out)
}

/// An ed25519 signing key with its public half.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Self {
        Keypair {
            signing: SigningKey::new(rand_core::OsRng),
        }
    }

    /// The key with this 32-byte secret seed.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Keypair {
            signing: SigningKey::from(secret),
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
        PublicKey(VerificationKeyBytes::from(&self.signing).into())
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

/// Verifies many `(message, signature, key)` triples at once, several times faster per signature
/// than one by one. Accepts exactly what [`PublicKey::verify`] accepts one by one (ZIP-215), so the
/// outcome never depends on how signatures are grouped. Fails if any one fails (then check them
/// one by one to find it).
pub fn verify_batch(
    messages: &[&[u8]],
    signatures: &[Signature],
    keys: &[PublicKey],
) -> Result<()> {
    let mut verifier = batch::Verifier::new();
    for ((message, signature), key) in messages.iter().zip(signatures).zip(keys) {
        verifier.queue((
            VerificationKeyBytes::from(key.0),
            ed25519_zebra::Signature::from_bytes(&signature.0),
            message,
        ));
    }
    verifier
        .verify(BatchRng::new())
        .map_err(|_| Error::InvalidSignature)
}

/// The random coefficients of a batch check: a blake3 stream under a fresh OS-random key. One
/// system call per batch instead of two per signature.
struct BatchRng(blake3::OutputReader);

impl BatchRng {
    fn new() -> Self {
        let mut key = [0u8; 32];
        rand_core::OsRng.fill_bytes(&mut key);
        BatchRng(blake3::Hasher::new_keyed(&key).finalize_xof())
    }
}

impl rand_core::RngCore for BatchRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), rand_core::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for BatchRng {}

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

    /// Consensus needs one answer per signature, however signatures are batched: single and batch
    /// checks must agree, also on malformed signatures (bit flips in R or s, s not reduced).
    #[test]
    fn single_and_batch_verification_agree() {
        let key = Keypair::from_seed_label("agree");
        let msg = b"consensus";
        let good = key.sign(msg);
        let mut cases = vec![good];
        for i in [0usize, 5, 31, 32, 40, 63] {
            let mut bad = good;
            bad.0[i] ^= 0x40;
            cases.push(bad);
        }
        let mut unreduced = good;
        unreduced.0[32..].copy_from_slice(&[0xFF; 32]);
        cases.push(unreduced);
        for sig in cases {
            let single = key.public().verify(msg, &sig).is_ok();
            let batch = verify_batch(&[msg], &[sig], &[key.public()]).is_ok();
            assert_eq!(single, batch, "{sig:?}");
        }
    }

    #[test]
    fn known_answer_rfc8032_test_1() {
        // RFC 8032, section 7.1, TEST 1 (empty message).
        let secret: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let key = Keypair::from_secret(secret);
        assert_eq!(
            key.public().to_hex(),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        assert_eq!(
            hex::encode(key.sign(b"").0),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
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
