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
