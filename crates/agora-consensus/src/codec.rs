//! Wire and WAL encoding of consensus messages: borsh, like the rest of Agora. Malachite's own
//! types come with borsh encodings; the two that do not (validator proofs and the extended commit
//! certificates inside sync responses) are written here through local mirror types.

use crate::context::{AgoraContext, Height, ProposalPart, ValidatorAddress};
use agora_types::{Hash, Signature};
use borsh::{BorshDeserialize, BorshSerialize};
use bytes::Bytes;
use malachitebft_app::consensus::LivenessMsg;
use malachitebft_app::types::{
    ProposedValue, SignedConsensusMsg,
    codec::{Codec, HasEncodedLen},
    core::{
        CommitCertificate, ExtendedCommitCertificate, ExtendedCommitSignature, PolkaCertificate,
        Round, SignedMessage, ValidatorProof,
    },
    streaming::StreamMessage,
    sync::{RawDecidedValue, Request, Response, Status},
};
use malachitebft_sync::ValueResponse;

/// Largest encoded message accepted (a block's parts are chunked well below it).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// A message that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("consensus codec: {0}")]
pub struct CodecError(pub String);

/// Agora's consensus codec (borsh).
#[derive(Clone, Copy, Debug, Default)]
pub struct AgoraCodec;

fn decode<T: BorshDeserialize>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(CodecError(format!(
            "{} bytes, more than the {MAX_MESSAGE_BYTES} allowed",
            bytes.len()
        )));
    }
    borsh::from_slice(bytes).map_err(|e| CodecError(e.to_string()))
}

fn encode<T: BorshSerialize>(value: &T) -> Result<Bytes, CodecError> {
    borsh::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| CodecError(e.to_string()))
}

macro_rules! borsh_codec {
    ($($ty:ty),* $(,)?) => {$(
        impl Codec<$ty> for AgoraCodec {
            type Error = CodecError;

            fn decode(&self, bytes: Bytes) -> Result<$ty, CodecError> {
                decode(&bytes)
            }

            fn encode(&self, msg: &$ty) -> Result<Bytes, CodecError> {
                encode(msg)
            }
        }
    )*};
}

borsh_codec!(
    ProposalPart,
    SignedConsensusMsg<AgoraContext>,
    LivenessMsg<AgoraContext>,
    StreamMessage<ProposalPart>,
    Status<AgoraContext>,
    Request<AgoraContext>,
    ProposedValue<AgoraContext>,
    PolkaCertificate<AgoraContext>,
    CommitCertificate<AgoraContext>,
);

#[derive(BorshSerialize, BorshDeserialize)]
struct WireProof {
    public_key: Vec<u8>,
    peer_id: Vec<u8>,
    signature: Signature,
}

impl Codec<ValidatorProof<AgoraContext>> for AgoraCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<ValidatorProof<AgoraContext>, CodecError> {
        let w: WireProof = decode(&bytes)?;
        Ok(ValidatorProof::new(w.public_key, w.peer_id, w.signature))
    }

    fn encode(&self, proof: &ValidatorProof<AgoraContext>) -> Result<Bytes, CodecError> {
        encode(&WireProof {
            public_key: proof.public_key.clone(),
            peer_id: proof.peer_id.clone(),
            signature: proof.signature,
        })
    }
}

type WireSignature = (
    ValidatorAddress,
    Signature,
    Option<SignedMessage<AgoraContext, Vec<u8>>>,
);

#[derive(BorshSerialize, BorshDeserialize)]
struct WireCertificate {
    height: Height,
    round: Round,
    value_id: Hash,
    signatures: Vec<WireSignature>,
}

impl WireCertificate {
    fn from_cert(c: &ExtendedCommitCertificate<AgoraContext>) -> Self {
        WireCertificate {
            height: c.height,
            round: c.round,
            value_id: c.value_id,
            signatures: c
                .commit_signatures
                .iter()
                .map(|s| (s.address, s.signature, s.extension.clone()))
                .collect(),
        }
    }

    fn into_cert(self) -> ExtendedCommitCertificate<AgoraContext> {
        ExtendedCommitCertificate {
            height: self.height,
            round: self.round,
            value_id: self.value_id,
            commit_signatures: self
                .signatures
                .into_iter()
                .map(|(a, s, e)| ExtendedCommitSignature::new(a, s, e))
                .collect(),
        }
    }
}

#[derive(BorshSerialize, BorshDeserialize)]
struct WireResponse {
    start_height: Height,
    values: Vec<(Vec<u8>, WireCertificate)>,
}

fn wire_response(r: &Response<AgoraContext>) -> WireResponse {
    let Response::ValueResponse(r) = r;
    WireResponse {
        start_height: r.start_height,
        values: r
            .values
            .iter()
            .map(|v| {
                (
                    v.value_bytes.to_vec(),
                    WireCertificate::from_cert(&v.certificate),
                )
            })
            .collect(),
    }
}

impl Codec<Response<AgoraContext>> for AgoraCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<Response<AgoraContext>, CodecError> {
        let w: WireResponse = decode(&bytes)?;
        Ok(Response::ValueResponse(ValueResponse {
            start_height: w.start_height,
            values: w
                .values
                .into_iter()
                .map(|(bytes, cert)| RawDecidedValue::new(bytes.into(), cert.into_cert()))
                .collect(),
        }))
    }

    fn encode(&self, msg: &Response<AgoraContext>) -> Result<Bytes, CodecError> {
        encode(&wire_response(msg))
    }
}

impl HasEncodedLen<Response<AgoraContext>> for AgoraCodec {
    fn encoded_len(&self, msg: &Response<AgoraContext>) -> Result<usize, CodecError> {
        borsh::object_length(&wire_response(msg)).map_err(|e| CodecError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{BlockId, Vote};
    use crate::signing::{Ed25519Signer, Ed25519Verifier};
    use agora_types::{Address, Keypair};
    use malachitebft_app::types::core::{CommitSignature, NilOrVal, VoteType};
    use malachitebft_app_channel::{Signer, Verifier};
    use std::sync::Arc;

    /// A sync response carrying one decided block with `cert`.
    fn sync_response(cert: &CommitCertificate<AgoraContext>) -> Response<AgoraContext> {
        Response::ValueResponse(ValueResponse {
            start_height: cert.height,
            values: vec![RawDecidedValue::new(
                Bytes::from_static(b"block bytes"),
                ExtendedCommitCertificate::from_commit_certificate_and_extensions(
                    cert.clone(),
                    Default::default(),
                ),
            )],
        })
    }

    #[tokio::test]
    async fn sync_responses_and_validator_proofs_round_trip() {
        let key = Arc::new(Keypair::from_seed_label("codec"));
        let signer = Ed25519Signer::new(key.clone(), "c");
        let vote = Vote {
            vote_type: VoteType::Precommit,
            height: Height(7),
            round: Round::new(1),
            value: NilOrVal::Val(Hash::digest(b"block")),
            validator: ValidatorAddress(key.address()),
        };
        let signed = signer.sign_vote(vote.clone()).await.unwrap();
        let cert = CommitCertificate::<AgoraContext> {
            height: Height(7),
            round: Round::new(1),
            value_id: Hash::digest(b"block"),
            commit_signatures: vec![CommitSignature::new(vote.validator, signed.signature)],
        };
        let response = sync_response(&cert);
        let bytes = AgoraCodec.encode(&response).unwrap();
        assert_eq!(AgoraCodec.encoded_len(&response).unwrap(), bytes.len());
        let back: Response<AgoraContext> = AgoraCodec.decode(bytes).unwrap();
        assert_eq!(back, response);
        let back: CommitCertificate<AgoraContext> = AgoraCodec
            .decode(AgoraCodec.encode(&cert).unwrap())
            .unwrap();
        assert_eq!(back, cert);

        let proof = signer
            .sign_validator_proof(key.public().0.to_vec(), b"peer".to_vec())
            .await
            .unwrap();
        let back: ValidatorProof<AgoraContext> = AgoraCodec
            .decode(AgoraCodec.encode(&proof).unwrap())
            .unwrap();
        assert_eq!(back, proof);
        let verifier = Ed25519Verifier::new("c");
        assert!(
            verifier
                .verify_validator_proof(&back)
                .await
                .unwrap()
                .is_valid()
        );
        // Another peer id, or another chain: not valid.
        let mut other = back.clone();
        other.peer_id = b"other".to_vec();
        assert!(
            verifier
                .verify_validator_proof(&other)
                .await
                .unwrap()
                .is_invalid()
        );
        let elsewhere = Ed25519Verifier::new("d");
        assert!(
            elsewhere
                .verify_validator_proof(&back)
                .await
                .unwrap()
                .is_invalid()
        );
        let _ = BlockId(Hash::ZERO);
        let _ = Address::default();
    }

    /// What a peer sends is decoded before anything checks it: whatever the bytes, decoding
    /// returns a value or an error, never panics; and a value that decodes encodes back to the
    /// same bytes' meaning (decode ∘ encode is the identity on it).
    fn survives<T>(bytes: &[u8])
    where
        AgoraCodec: Codec<T>,
        T: PartialEq + std::fmt::Debug,
    {
        if let Ok(value) = Codec::<T>::decode(&AgoraCodec, Bytes::copy_from_slice(bytes)) {
            let again = Codec::<T>::encode(&AgoraCodec, &value).expect("a decoded value encodes");
            let back = Codec::<T>::decode(&AgoraCodec, again).expect("its encoding decodes");
            assert_eq!(back, value);
        }
    }

    fn every_message(bytes: &[u8]) {
        survives::<ProposalPart>(bytes);
        survives::<SignedConsensusMsg<AgoraContext>>(bytes);
        survives::<LivenessMsg<AgoraContext>>(bytes);
        survives::<StreamMessage<ProposalPart>>(bytes);
        survives::<Status<AgoraContext>>(bytes);
        survives::<Request<AgoraContext>>(bytes);
        survives::<ProposedValue<AgoraContext>>(bytes);
        survives::<PolkaCertificate<AgoraContext>>(bytes);
        survives::<CommitCertificate<AgoraContext>>(bytes);
        survives::<ValidatorProof<AgoraContext>>(bytes);
        survives::<Response<AgoraContext>>(bytes);
    }

    /// Valid encodings to mutate: a proposal's parts, a certificate, a sync response.
    fn samples() -> Vec<Vec<u8>> {
        let validator = ValidatorAddress(Address([3; 20]));
        let cert = CommitCertificate::<AgoraContext> {
            height: Height(7),
            round: Round::new(1),
            value_id: Hash::digest(b"block"),
            commit_signatures: vec![CommitSignature::new(validator, Signature([7; 64]))],
        };
        let response = sync_response(&cert);
        let parts = [
            ProposalPart::Init {
                height: Height(7),
                round: Round::new(0),
                proposer: validator,
                pol_round: Round::Nil,
            },
            ProposalPart::Data(vec![1, 2, 3, 4, 5]),
            ProposalPart::Fin {
                signature: Signature([9; 64]),
            },
        ];
        let mut out: Vec<Vec<u8>> = parts
            .iter()
            .map(|p| AgoraCodec.encode(p).unwrap().to_vec())
            .collect();
        out.push(AgoraCodec.encode(&cert).unwrap().to_vec());
        out.push(AgoraCodec.encode(&response).unwrap().to_vec());
        out
    }

    #[test]
    fn the_samples_the_fuzz_mutates_decode() {
        let s = samples();
        for part in &s[..3] {
            let r: Result<ProposalPart, _> = AgoraCodec.decode(Bytes::copy_from_slice(part));
            assert!(r.is_ok());
        }
        let r: Result<CommitCertificate<AgoraContext>, _> =
            AgoraCodec.decode(Bytes::copy_from_slice(&s[3]));
        assert!(r.is_ok());
        let r: Result<Response<AgoraContext>, _> = AgoraCodec.decode(Bytes::copy_from_slice(&s[4]));
        assert!(r.is_ok());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                every_message(&bytes);
            }

            #[test]
            fn mutated_messages_never_panic(
                which in 0usize..5,
                flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
                cut in any::<usize>(),
            ) {
                let mut bytes = samples()[which].clone();
                for (at, byte) in flips {
                    let i = at % bytes.len();
                    bytes[i] ^= byte | 1;
                }
                every_message(&bytes);
                every_message(&bytes[..cut % (bytes.len() + 1)]);
            }
        }
    }

    #[test]
    fn garbage_and_oversized_messages_are_refused() {
        let r: Result<ProposalPart, _> = AgoraCodec.decode(Bytes::from_static(&[9, 9, 9]));
        assert!(r.is_err());
        let r: Result<Response<AgoraContext>, _> = AgoraCodec.decode(Bytes::from_static(&[1]));
        assert!(r.is_err());
        let big = Bytes::from(vec![0u8; MAX_MESSAGE_BYTES + 1]);
        let err = Codec::<ProposalPart>::decode(&AgoraCodec, big).unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
    }
}
