//! Signing and verification of consensus messages with the validator's ed25519 key.
//!
//! Every signed byte string starts with a domain tag and the chain id, so that a signature made
//! for one kind of message, or for another chain, is never valid as another.

use crate::context::{AgoraContext, Height, Proposal, Vote};
use agora_types::{Hash, Keypair, PublicKey, Signature};
use async_trait::async_trait;
use malachitebft_app::types::core::{Round, SignedMessage, ValidatorProof, VoteExtensionScope};
use malachitebft_app_channel::{Signer, Verifier};
use malachitebft_signing::{Error, VerificationResult};
use std::sync::Arc;

const VOTE: &[u8] = b"agora/consensus/vote/v1";
const PROPOSAL: &[u8] = b"agora/consensus/proposal/v1";
const EXTENSION: &[u8] = b"agora/consensus/extension/v1";
const PARTS: &[u8] = b"agora/consensus/parts/v1";
const PROOF: &[u8] = b"agora/consensus/validator-proof/v1";

fn tagged(tag: &[u8], chain_id: &str, body: &impl borsh::BorshSerialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(tag);
    borsh::to_writer(&mut out, &(chain_id, body)).expect("borsh into a Vec");
    out
}

/// What the proposer signs at the end of a proposal's parts.
pub fn parts_sign_bytes(
    chain_id: &str,
    height: Height,
    round: Round,
    pol_round: Round,
    block: &Hash,
) -> Vec<u8> {
    tagged(PARTS, chain_id, &(height, round, pol_round, block))
}

fn proof_bytes(chain_id: &str, public_key: &[u8], peer_id: &[u8]) -> Vec<u8> {
    let mut out = PROOF.to_vec();
    out.extend_from_slice(&ValidatorProof::<AgoraContext>::signing_bytes(
        public_key, peer_id,
    ));
    out.extend_from_slice(chain_id.as_bytes());
    out
}

/// Checks consensus signatures of a chain.
#[derive(Clone, Debug)]
pub struct Ed25519Verifier {
    chain_id: Arc<str>,
}

impl Ed25519Verifier {
    /// A verifier for `chain_id`.
    pub fn new(chain_id: &str) -> Self {
        Ed25519Verifier {
            chain_id: chain_id.into(),
        }
    }

    fn check(&self, bytes: &[u8], signature: &Signature, key: &PublicKey) -> VerificationResult {
        VerificationResult::from_bool(key.verify(bytes, signature).is_ok())
    }
}

#[async_trait]
impl Verifier<AgoraContext> for Ed25519Verifier {
    async fn verify_signed_vote(
        &self,
        vote: &Vote,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, Error> {
        Ok(self.check(&tagged(VOTE, &self.chain_id, vote), signature, public_key))
    }

    async fn verify_signed_proposal(
        &self,
        proposal: &Proposal,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, Error> {
        Ok(self.check(
            &tagged(PROPOSAL, &self.chain_id, proposal),
            signature,
            public_key,
        ))
    }

    async fn verify_signed_vote_extension(
        &self,
        scope: &VoteExtensionScope<AgoraContext>,
        extension: &Vec<u8>,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, Error> {
        let body = (
            scope.height,
            scope.round,
            scope.value_id,
            scope.validator_address,
            extension,
        );
        Ok(self.check(
            &tagged(EXTENSION, &self.chain_id, &body),
            signature,
            public_key,
        ))
    }

    async fn verify_validator_proof(
        &self,
        proof: &ValidatorProof<AgoraContext>,
    ) -> Result<VerificationResult, Error> {
        let Ok(key) = <[u8; 32]>::try_from(proof.public_key.as_slice()) else {
            return Ok(VerificationResult::Invalid);
        };
        let bytes = proof_bytes(&self.chain_id, &proof.public_key, &proof.peer_id);
        Ok(self.check(&bytes, &proof.signature, &PublicKey(key)))
    }
}

/// Signs consensus messages with a validator's key.
#[derive(Clone, Debug)]
pub struct Ed25519Signer {
    key: Arc<Keypair>,
    chain_id: Arc<str>,
}

impl Ed25519Signer {
    /// A signer for `chain_id` with `key`.
    pub fn new(key: Arc<Keypair>, chain_id: &str) -> Self {
        Ed25519Signer {
            key,
            chain_id: chain_id.into(),
        }
    }

    /// Signs the end of a proposal's parts.
    pub fn sign_parts(
        &self,
        height: Height,
        round: Round,
        pol_round: Round,
        block: &Hash,
    ) -> Signature {
        self.key.sign(&parts_sign_bytes(
            &self.chain_id,
            height,
            round,
            pol_round,
            block,
        ))
    }
}

#[async_trait]
impl Signer<AgoraContext> for Ed25519Signer {
    async fn sign_vote(&self, vote: Vote) -> Result<SignedMessage<AgoraContext, Vote>, Error> {
        let signature = self.key.sign(&tagged(VOTE, &self.chain_id, &vote));
        Ok(SignedMessage::new(vote, signature))
    }

    async fn sign_proposal(
        &self,
        proposal: Proposal,
    ) -> Result<SignedMessage<AgoraContext, Proposal>, Error> {
        let signature = self.key.sign(&tagged(PROPOSAL, &self.chain_id, &proposal));
        Ok(SignedMessage::new(proposal, signature))
    }

    async fn sign_vote_extension(
        &self,
        scope: VoteExtensionScope<AgoraContext>,
        extension: Vec<u8>,
    ) -> Result<SignedMessage<AgoraContext, Vec<u8>>, Error> {
        let body = (
            scope.height,
            scope.round,
            scope.value_id,
            scope.validator_address,
            &extension,
        );
        let signature = self.key.sign(&tagged(EXTENSION, &self.chain_id, &body));
        Ok(SignedMessage::new(extension, signature))
    }

    async fn sign_validator_proof(
        &self,
        public_key: Vec<u8>,
        peer_id: Vec<u8>,
    ) -> Result<ValidatorProof<AgoraContext>, Error> {
        let signature = self
            .key
            .sign(&proof_bytes(&self.chain_id, &public_key, &peer_id));
        Ok(ValidatorProof::new(public_key, peer_id, signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{BlockId, ValidatorAddress};
    use malachitebft_app::types::core::{NilOrVal, VoteType};

    #[tokio::test]
    async fn a_signature_is_valid_only_for_its_message_kind_and_chain() {
        let key = Arc::new(Keypair::from_seed_label("signing"));
        let signer = Ed25519Signer::new(key.clone(), "chain-a");
        let verifier = Ed25519Verifier::new("chain-a");
        let vote = Vote {
            vote_type: VoteType::Prevote,
            height: Height(3),
            round: Round::new(0),
            value: NilOrVal::Val(Hash::digest(b"b")),
            validator: ValidatorAddress(key.address()),
        };
        let signed = signer.sign_vote(vote.clone()).await.unwrap();
        let pk = key.public();
        assert!(
            verifier
                .verify_signed_vote(&vote, &signed.signature, &pk)
                .await
                .unwrap()
                .is_valid()
        );
        // The same vote for nil, or as a precommit: invalid.
        let mut nil = vote.clone();
        nil.value = NilOrVal::Nil;
        assert!(
            verifier
                .verify_signed_vote(&nil, &signed.signature, &pk)
                .await
                .unwrap()
                .is_invalid()
        );
        let mut pre = vote.clone();
        pre.vote_type = VoteType::Precommit;
        assert!(
            verifier
                .verify_signed_vote(&pre, &signed.signature, &pk)
                .await
                .unwrap()
                .is_invalid()
        );
        // Another chain's verifier refuses it.
        assert!(
            Ed25519Verifier::new("chain-b")
                .verify_signed_vote(&vote, &signed.signature, &pk)
                .await
                .unwrap()
                .is_invalid()
        );
        // A proposal signature is no vote signature.
        let proposal = Proposal {
            height: Height(3),
            round: Round::new(0),
            value: BlockId(Hash::digest(b"b")),
            pol_round: Round::Nil,
            proposer: ValidatorAddress(key.address()),
        };
        let sp = signer.sign_proposal(proposal.clone()).await.unwrap();
        assert!(
            verifier
                .verify_signed_proposal(&proposal, &sp.signature, &pk)
                .await
                .unwrap()
                .is_valid()
        );
        assert!(
            verifier
                .verify_signed_vote(&vote, &sp.signature, &pk)
                .await
                .unwrap()
                .is_invalid()
        );
        // The parts' signature binds height, round, pol round and block.
        let parts = signer.sign_parts(Height(3), Round::new(0), Round::Nil, &Hash::digest(b"b"));
        let bytes = parts_sign_bytes(
            "chain-a",
            Height(3),
            Round::new(1),
            Round::Nil,
            &Hash::digest(b"b"),
        );
        assert!(pk.verify(&bytes, &parts).is_err());
        let bytes = parts_sign_bytes(
            "chain-a",
            Height(3),
            Round::new(0),
            Round::Nil,
            &Hash::digest(b"b"),
        );
        assert!(pk.verify(&bytes, &parts).is_ok());
    }
}
