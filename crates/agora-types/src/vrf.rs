//! A verifiable random function over the validators' own ed25519 keys:
//! ECVRF-EDWARDS25519-SHA512-TAI of RFC 9381 (suite 0x03), built on `curve25519-dalek`.
//!
//! `prove(key, alpha)` gives an output `beta` and a proof `pi`; anyone holding the public key
//! checks `pi` and gets the same `beta`. For a key and an input there is exactly one output the
//! proof accepts (uniqueness), and nobody without the secret key can tell it in advance
//! (pseudorandomness). That is what makes a block's seed unbiasable: its proposer cannot try
//! seeds, it can only publish the one its key gives, or nothing.
//!
//! ```text
//!  H     = encode_to_curve(Y, alpha)           try-and-increment, times the cofactor
//!  Gamma = x·H                                  the output point
//!  k     = SHA512(prefix ‖ H) mod q             deterministic nonce (as in RFC 8032)
//!  c     = SHA512(0x03 ‖ 0x02 ‖ Y ‖ H ‖ Gamma ‖ k·B ‖ k·H ‖ 0x00)[..16]
//!  s     = k + c·x mod q                        pi = Gamma ‖ c ‖ s   (80 bytes)
//!  beta  = SHA512(0x03 ‖ 0x03 ‖ 8·Gamma ‖ 0x00)
//! ```
//!
//! Points are decoded as RFC 8032 §5.1.3 says (a non-canonical encoding is refused), keys of
//! small order are refused (`validate_key`), and `s` must be below the group order. The module's
//! tests reproduce RFC 9381 Appendix B.3's three examples byte for byte.

use crate::{Error, Keypair, PublicKey, Result};
use borsh::{BorshDeserialize, BorshSerialize};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use sha2::{Digest, Sha512};
use std::fmt;

/// RFC 9381's suite string of ECVRF-EDWARDS25519-SHA512-TAI.
const SUITE: u8 = 0x03;

/// Bytes of a proof: Gamma (32), c (16), s (32).
pub const PROOF_BYTES: usize = 80;

/// A VRF proof.
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct VrfProof(pub [u8; PROOF_BYTES]);

/// A VRF output (`beta`, 64 bytes).
pub type VrfOutput = [u8; 64];

impl VrfProof {
    /// All zeros: the genesis block's (which has no proposer), never a valid proof.
    pub const ZERO: VrfProof = VrfProof([0; PROOF_BYTES]);
}

impl fmt::Debug for VrfProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VrfProof({})", hex::encode(self.0))
    }
}

impl serde::Serialize for VrfProof {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for VrfProof {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        let mut out = [0u8; PROOF_BYTES];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(VrfProof(out))
    }
}

/// The VRF output of `key` on `alpha`, and its proof.
pub fn prove(key: &Keypair, alpha: &[u8]) -> Result<(VrfOutput, VrfProof)> {
    let hashed: [u8; 64] = Sha512::digest(key.secret()).into();
    let x = Scalar::from_bytes_mod_order(clamp_integer(hashed[..32].try_into().expect("32 bytes")));
    let public = key.public().0;
    let h = encode_to_curve(&public, alpha)?;
    let h_bytes = h.compress().to_bytes();
    let gamma = h * x;
    let nonce: [u8; 64] = Sha512::new()
        .chain_update(&hashed[32..])
        .chain_update(h_bytes)
        .finalize()
        .into();
    let k = Scalar::from_bytes_mod_order_wide(&nonce);
    let gamma_bytes = gamma.compress().to_bytes();
    let c = challenge([
        &public,
        &h_bytes,
        &gamma_bytes,
        &EdwardsPoint::mul_base(&k).compress().to_bytes(),
        &(h * k).compress().to_bytes(),
    ]);
    let s = k + scalar_of(&c) * x;
    let mut pi = [0u8; PROOF_BYTES];
    pi[..32].copy_from_slice(&gamma_bytes);
    pi[32..48].copy_from_slice(&c);
    pi[48..].copy_from_slice(s.as_bytes());
    Ok((output_of(&gamma), VrfProof(pi)))
}

/// Checks `proof` of `public`'s VRF on `alpha`; returns the output it proves.
pub fn verify(public: &PublicKey, alpha: &[u8], proof: &VrfProof) -> Result<VrfOutput> {
    let y = decode_point(&public.0).ok_or(Error::InvalidPublicKey)?;
    if y.is_small_order() {
        return Err(Error::InvalidPublicKey);
    }
    let pi = &proof.0;
    let gamma =
        decode_point(pi[..32].try_into().expect("32 bytes")).ok_or(Error::InvalidVrfProof)?;
    let c: [u8; 16] = pi[32..48].try_into().expect("16 bytes");
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(
        pi[48..].try_into().expect("32 bytes"),
    ))
    .ok_or(Error::InvalidVrfProof)?;
    let h = encode_to_curve(&public.0, alpha)?;
    let c_scalar = scalar_of(&c);
    // U = s·B − c·Y, V = s·H − c·Gamma.
    let u = EdwardsPoint::vartime_double_scalar_mul_basepoint(&-c_scalar, &y, &s);
    let v = h * s - gamma * c_scalar;
    let expected = challenge([
        &public.0,
        &h.compress().to_bytes(),
        pi[..32].try_into().expect("32 bytes"),
        &u.compress().to_bytes(),
        &v.compress().to_bytes(),
    ]);
    if expected != c {
        return Err(Error::InvalidVrfProof);
    }
    Ok(output_of(&gamma))
}

/// RFC 8032 §5.1.3 decoding: only the canonical encoding of a point is accepted.
fn decode_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    let point = CompressedEdwardsY(*bytes).decompress()?;
    (point.compress().as_bytes() == bytes).then_some(point)
}

/// ECVRF_encode_to_curve_try_and_increment (RFC 9381 §5.4.1.1).
fn encode_to_curve(public: &[u8; 32], alpha: &[u8]) -> Result<EdwardsPoint> {
    for ctr in 0..=u8::MAX {
        let hash = Sha512::new()
            .chain_update([SUITE, 0x01])
            .chain_update(public)
            .chain_update(alpha)
            .chain_update([ctr, 0x00])
            .finalize();
        if let Some(point) = decode_point(hash[..32].try_into().expect("32 bytes")) {
            return Ok(point.mul_by_cofactor());
        }
    }
    // Each try succeeds with probability about 1/2: 256 failures do not happen.
    Err(Error::InvalidVrfProof)
}

/// ECVRF_challenge_generation (RFC 9381 §5.4.3): the first 16 bytes of the hash.
fn challenge(points: [&[u8; 32]; 5]) -> [u8; 16] {
    let mut hasher = Sha512::new();
    hasher.update([SUITE, 0x02]);
    for p in points {
        hasher.update(p);
    }
    hasher.update([0x00]);
    hasher.finalize()[..16].try_into().expect("16 bytes")
}

/// A 16-byte challenge as a scalar (little-endian, below 2^128, so already reduced).
fn scalar_of(c: &[u8; 16]) -> Scalar {
    let mut wide = [0u8; 32];
    wide[..16].copy_from_slice(c);
    Scalar::from_bytes_mod_order(wide)
}

/// ECVRF_proof_to_hash (RFC 9381 §5.2).
fn output_of(gamma: &EdwardsPoint) -> VrfOutput {
    Sha512::new()
        .chain_update([SUITE, 0x03])
        .chain_update(gamma.mul_by_cofactor().compress().as_bytes())
        .chain_update([0x00])
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    /// RFC 9381 Appendix B.3, Examples 16–18: (SK, PK, alpha, pi, beta).
    const EXAMPLES: [(&str, &str, &str, &str, &str); 3] = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "8657106690b5526245a92b003bb079ccd1a92130477671f6fc01ad16f26f723f26f8a57ccaed74ee1b190bed1f479d9727d2d0f9b005a6e456a35d4fb0daab1268a1b0db10836d9826a528ca76567805",
            "90cf1df3b703cce59e2a35b925d411164068269d7b2d29f3301c03dd757876ff66b71dda49d2de59d03450451af026798e8f81cd2e333de5cdf4f3e140fdd8ae",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "f3141cd382dc42909d19ec5110469e4feae18300e94f304590abdced48aed5933bf0864a62558b3ed7f2fea45c92a465301b3bbf5e3e54ddf2d935be3b67926da3ef39226bbc355bdc9850112c8f4b02",
            "eb4440665d3891d668e7e0fcaf587f1b4bd7fbfe99d0eb2211ccec90496310eb5e33821bc613efb94db5e5b54c70a848a0bef4553a41befc57663b56373a5031",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "9bc0f79119cc5604bf02d23b4caede71393cedfbb191434dd016d30177ccbf8096bb474e53895c362d8628ee9f9ea3c0e52c7a5c691b6c18c9979866568add7a2d41b00b05081ed0f58ee5e31b3a970e",
            "645427e5d00c62a23fb703732fa5d892940935942101e456ecca7bb217c61c452118fec1219202a0edcf038bb6373241578be7217ba85a2687f7a0310b2df19f",
        ),
    ];

    #[test]
    fn the_rfc_9381_examples_prove_and_verify_byte_for_byte() {
        for (sk, pk, alpha, pi, beta) in EXAMPLES {
            let key = Keypair::from_secret(bytes(sk));
            assert_eq!(key.public().0, bytes::<32>(pk));
            let alpha = hex::decode(alpha).unwrap();
            let (output, proof) = prove(&key, &alpha).unwrap();
            assert_eq!(proof.0, bytes::<80>(pi), "pi of {pk}");
            assert_eq!(output, bytes::<64>(beta), "beta of {pk}");
            assert_eq!(verify(&key.public(), &alpha, &proof).unwrap(), output);
        }
    }

    #[test]
    fn a_proof_is_refused_for_another_input_key_or_any_changed_bit() {
        let (sk, pk, _, pi, _) = EXAMPLES[0];
        let public = PublicKey(bytes(pk));
        let proof = VrfProof(bytes(pi));
        assert_eq!(
            verify(&public, b"\x00", &proof),
            Err(Error::InvalidVrfProof)
        );
        let other = PublicKey(bytes(EXAMPLES[1].1));
        assert_eq!(verify(&other, b"", &proof), Err(Error::InvalidVrfProof));
        for bit in 0..PROOF_BYTES * 8 {
            let mut bent = proof;
            bent.0[bit / 8] ^= 1 << (bit % 8);
            assert!(verify(&public, b"", &bent).is_err(), "bit {bit} flipped");
        }
        // s not below the group order.
        let mut big_s = proof;
        big_s.0[48..].fill(0xff);
        assert_eq!(verify(&public, b"", &big_s), Err(Error::InvalidVrfProof));
        // Gamma encoding x = 0 with the sign bit set: not canonical.
        let mut minus_zero = proof;
        minus_zero.0[..32].copy_from_slice(&bytes::<32>(
            "0100000000000000000000000000000000000000000000000000000000000080",
        ));
        assert_eq!(
            verify(&public, b"", &minus_zero),
            Err(Error::InvalidVrfProof)
        );
        // Keys of small order (the identity; an order-4 point) and non-canonical keys.
        for bad in [
            "0100000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000080",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ] {
            assert_eq!(
                verify(&PublicKey(bytes(bad)), b"", &proof),
                Err(Error::InvalidPublicKey),
                "{bad}"
            );
        }
        let _ = sk;
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Every key's proof verifies to its output; no other key's does, and the output is
        /// the same however often it is proven (one output per key and input).
        #[test]
        fn proofs_verify_only_under_their_key(
            secret in any::<[u8; 32]>(),
            other in any::<[u8; 32]>(),
            alpha in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let key = Keypair::from_secret(secret);
            let (output, proof) = prove(&key, &alpha).unwrap();
            prop_assert_eq!(verify(&key.public(), &alpha, &proof).unwrap(), output);
            prop_assert_eq!(prove(&key, &alpha).unwrap().0, output);
            if other != secret {
                let stranger = Keypair::from_secret(other);
                prop_assert!(verify(&stranger.public(), &alpha, &proof).is_err());
                prop_assert_ne!(prove(&stranger, &alpha).unwrap().0, output);
            }
        }
    }
}
