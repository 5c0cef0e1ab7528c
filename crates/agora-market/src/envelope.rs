//! Sealing job inputs to a provider's X25519 key, and the output stream back.

use crate::Error;
use agora_types::Hash;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use x25519_dalek::{EphemeralSecret, PublicKey, StaticSecret};

const INPUT_CONTEXT: &str = "agora/market/input/v1";
const OUTPUT_CONTEXT: &str = "agora/market/output/v1";

/// A provider's long-lived X25519 secret; its public half goes on-chain.
#[derive(Clone)]
pub struct ProviderSecret(StaticSecret);

impl std::fmt::Debug for ProviderSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProviderSecret({})", hex::encode(self.public()))
    }
}

impl ProviderSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        ProviderSecret(StaticSecret::random_from_rng(OsRng))
    }

    /// From stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ProviderSecret(StaticSecret::from(bytes))
    }

    /// The bytes to store (keep them private).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key clients encrypt to.
    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.0).to_bytes()
    }
}

/// A sealed input: the sender's ephemeral public key and the ciphertext (with its tag).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Hex of the sender's one-time X25519 public key.
    pub ephemeral: String,
    /// Hex of the ciphertext and tag.
    pub ciphertext: String,
}

/// The two symmetric keys a shared secret gives: one for the input, one for the output.
fn keys(shared: &[u8; 32], ephemeral: &[u8; 32], recipient: &[u8; 32]) -> (Key, Key) {
    let mut material = Vec::with_capacity(96);
    material.extend_from_slice(shared);
    material.extend_from_slice(ephemeral);
    material.extend_from_slice(recipient);
    let input = blake3::derive_key(INPUT_CONTEXT, &material);
    let output = blake3::derive_key(OUTPUT_CONTEXT, &material);
    (Key::from(input), Key::from(output))
}

/// The nonce of piece `n` (the input is piece 0 under its own key).
fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_be_bytes());
    Nonce::from(bytes)
}

/// Seals `input` to the provider key `recipient` for the request `request_hash`. Returns the
/// envelope and the writer's counterpart that reads the provider's sealed output.
pub fn seal(recipient: &[u8; 32], request_hash: &Hash, input: &[u8]) -> (Envelope, OutputReader) {
    let secret = EphemeralSecret::random_from_rng(OsRng);
    let ephemeral = PublicKey::from(&secret).to_bytes();
    let shared = secret.diffie_hellman(&PublicKey::from(*recipient));
    seal_shared(shared.as_bytes(), ephemeral, recipient, request_hash, input)
}

/// As [`seal`], with a one-time key derived from `seed` instead of a random one: the same seed
/// and input give the same envelope (a reveal resent after a crash matches the parts already
/// sent). Each seed must seal one message only.
pub(crate) fn seal_seeded(
    seed: [u8; 32],
    recipient: &[u8; 32],
    request_hash: &Hash,
    input: &[u8],
) -> Envelope {
    let secret = StaticSecret::from(seed);
    let ephemeral = PublicKey::from(&secret).to_bytes();
    let shared = secret.diffie_hellman(&PublicKey::from(*recipient));
    seal_shared(shared.as_bytes(), ephemeral, recipient, request_hash, input).0
}

fn seal_shared(
    shared: &[u8; 32],
    ephemeral: [u8; 32],
    recipient: &[u8; 32],
    request_hash: &Hash,
    input: &[u8],
) -> (Envelope, OutputReader) {
    let (input_key, output_key) = keys(shared, &ephemeral, recipient);
    let ciphertext = ChaCha20Poly1305::new(&input_key)
        .encrypt(
            &nonce(0),
            Payload {
                msg: input,
                aad: &request_hash.0,
            },
        )
        .expect("encryption into a Vec cannot fail");
    (
        Envelope {
            ephemeral: hex::encode(ephemeral),
            ciphertext: hex::encode(ciphertext),
        },
        OutputReader {
            cipher: ChaCha20Poly1305::new(&output_key),
            aad: request_hash.0,
            next: 0,
        },
    )
}

/// Opens an envelope with the provider's secret. Returns the input and the writer that seals the
/// output for the same client.
pub fn open(
    secret: &ProviderSecret,
    request_hash: &Hash,
    envelope: &Envelope,
) -> Result<(Vec<u8>, OutputWriter), Error> {
    let malformed = |reason: &str| Error::Malformed {
        what: "envelope",
        reason: reason.into(),
    };
    let mut ephemeral = [0u8; 32];
    hex::decode_to_slice(&envelope.ephemeral, &mut ephemeral)
        .map_err(|_| malformed("the ephemeral key is not 32 bytes of hex"))?;
    let ciphertext =
        hex::decode(&envelope.ciphertext).map_err(|_| malformed("the ciphertext is not hex"))?;
    let shared = secret.0.diffie_hellman(&PublicKey::from(ephemeral));
    let (input_key, output_key) = keys(shared.as_bytes(), &ephemeral, &secret.public());
    let input = ChaCha20Poly1305::new(&input_key)
        .decrypt(
            &nonce(0),
            Payload {
                msg: &ciphertext,
                aad: &request_hash.0,
            },
        )
        .map_err(|_| Error::Decrypt)?;
    Ok((
        input,
        OutputWriter {
            cipher: ChaCha20Poly1305::new(&output_key),
            aad: request_hash.0,
            next: 0,
        },
    ))
}

/// Seals the provider's output pieces, numbered from 0.
#[derive(Clone)]
pub struct OutputWriter {
    cipher: ChaCha20Poly1305,
    aad: [u8; 32],
    next: u64,
}

impl std::fmt::Debug for OutputWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputWriter(next {})", self.next)
    }
}

impl OutputWriter {
    /// The next piece, sealed: `(number, hex ciphertext)`.
    pub fn seal(&mut self, piece: &[u8]) -> (u64, String) {
        let n = self.next;
        self.next += 1;
        let ct = self
            .cipher
            .encrypt(
                &nonce(n),
                Payload {
                    msg: piece,
                    aad: &self.aad,
                },
            )
            .expect("encryption into a Vec cannot fail");
        (n, hex::encode(ct))
    }
}

/// Opens the provider's output pieces, which must come in order.
#[derive(Clone)]
pub struct OutputReader {
    cipher: ChaCha20Poly1305,
    aad: [u8; 32],
    next: u64,
}

impl std::fmt::Debug for OutputReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputReader(next {})", self.next)
    }
}

impl OutputReader {
    /// Opens piece `n` (hex ciphertext).
    pub fn open(&mut self, n: u64, sealed: &str) -> Result<Vec<u8>, Error> {
        if n != self.next {
            return Err(Error::OutOfOrder {
                expected: self.next,
                got: n,
            });
        }
        let ct = hex::decode(sealed).map_err(|_| Error::Malformed {
            what: "output piece",
            reason: "not hex".into(),
        })?;
        let piece = self
            .cipher
            .decrypt(
                &nonce(n),
                Payload {
                    msg: &ct,
                    aad: &self.aad,
                },
            )
            .map_err(|_| Error::Decrypt)?;
        self.next += 1;
        Ok(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_provider_opens_the_input_and_only_the_client_reads_the_output() {
        let provider = ProviderSecret::generate();
        let request = Hash::digest(b"request");
        let (envelope, mut reader) = seal(&provider.public(), &request, b"secret prompt");
        assert!(!envelope.ciphertext.contains(&hex::encode(b"secret prompt")));

        let (input, mut writer) = open(&provider, &request, &envelope).unwrap();
        assert_eq!(input, b"secret prompt");
        let (n0, c0) = writer.seal(b"Hel");
        let (n1, c1) = writer.seal(b"lo");
        assert_eq!(reader.open(n0, &c0).unwrap(), b"Hel");
        // Pieces cannot be replayed or skipped.
        assert!(matches!(
            reader.open(n0, &c0),
            Err(Error::OutOfOrder {
                expected: 1,
                got: 0
            })
        ));
        assert_eq!(reader.open(n1, &c1).unwrap(), b"lo");

        // Another provider's key, or the envelope moved to another request, does not open.
        let other = ProviderSecret::generate();
        assert!(matches!(
            open(&other, &request, &envelope),
            Err(Error::Decrypt)
        ));
        let moved = Hash::digest(b"another request");
        assert!(matches!(
            open(&provider, &moved, &envelope),
            Err(Error::Decrypt)
        ));
        // A flipped bit is caught.
        let mut tampered = envelope.clone();
        let mut ct = hex::decode(&tampered.ciphertext).unwrap();
        ct[0] ^= 1;
        tampered.ciphertext = hex::encode(ct);
        assert!(matches!(
            open(&provider, &request, &tampered),
            Err(Error::Decrypt)
        ));
        // Garbage is a clear error, not a panic.
        let garbage = Envelope {
            ephemeral: "zz".into(),
            ciphertext: "00".into(),
        };
        assert!(matches!(
            open(&provider, &request, &garbage),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn the_secret_round_trips_through_its_bytes() {
        let s = ProviderSecret::generate();
        assert_eq!(
            ProviderSecret::from_bytes(s.to_bytes()).public(),
            s.public()
        );
    }
}
