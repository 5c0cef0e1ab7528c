//! Agora's types for the Malachite engine: heights, validators, the proposed value (a block hash),
//! proposals, proposal parts and votes, and the ed25519 signing scheme.

use agora_types::{Address, Hash, PublicKey, Signature};
use borsh::{BorshDeserialize, BorshSerialize};
use malachitebft_app::types::core::{
    self as mc, LinearTimeouts, NilOrVal, Round, SignedExtension, VoteType, VotingPower,
};
use std::{fmt, sync::Arc};

/// A block height (consensus decides height `h` once, then starts `h + 1`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl mc::Height for Height {
    const ZERO: Self = Height(0);
    // Block 0 is genesis, committed without consensus.
    const INITIAL: Self = Height(1);

    fn increment_by(&self, n: u64) -> Self {
        Height(self.0.saturating_add(n))
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// A validator's address: its account address (blake3 of its ed25519 key, first 20 bytes).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct ValidatorAddress(pub Address);

impl fmt::Display for ValidatorAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl mc::Address for ValidatorAddress {}

/// One validator: address, consensus key, voting power.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    /// Its address.
    pub address: ValidatorAddress,
    /// Its ed25519 key.
    pub public_key: PublicKey,
    /// Its voting power.
    pub power: VotingPower,
}

impl mc::Validator<AgoraContext> for Validator {
    fn address(&self) -> &ValidatorAddress {
        &self.address
    }

    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    fn voting_power(&self) -> VotingPower {
        self.power
    }
}

/// The validators of a height, sorted by address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Arc<Vec<Validator>>,
    total: VotingPower,
}

impl ValidatorSet {
    /// The set of the chain state's validators.
    pub fn from_state(set: &agora_state::ValidatorSet) -> Self {
        let mut validators: Vec<Validator> = set
            .validators
            .iter()
            .map(|v| Validator {
                address: ValidatorAddress(v.address),
                public_key: v.public_key,
                power: v.power,
            })
            .collect();
        validators.sort_by_key(|v| v.address);
        validators.dedup_by_key(|v| v.address);
        let total = validators
            .iter()
            .fold(0u64, |t, v| t.saturating_add(v.power));
        ValidatorSet {
            validators: Arc::new(validators),
            total,
        }
    }

    /// The validators, sorted by address.
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }
}

impl mc::ValidatorSet<AgoraContext> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }

    fn total_voting_power(&self) -> VotingPower {
        self.total
    }

    fn get_by_address(&self, address: &ValidatorAddress) -> Option<&Validator> {
        self.validators
            .binary_search_by(|v| v.address.cmp(address))
            .ok()
            .map(|i| &self.validators[i])
    }

    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

/// The value consensus decides: the hash of a block. The block itself travels in proposal parts
/// and is kept by each node until decided.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct BlockId(pub Hash);

impl mc::Value for BlockId {
    type Id = Hash;

    fn id(&self) -> Hash {
        self.0
    }
}

/// A proposal: this block at this height and round, by this proposer.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The proposed block's hash.
    pub value: BlockId,
    /// The round of the proof of lock, or nil.
    pub pol_round: Round,
    /// The proposer.
    pub proposer: ValidatorAddress,
}

impl mc::Proposal<AgoraContext> for Proposal {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &BlockId {
        &self.value
    }

    fn take_value(self) -> BlockId {
        self.value
    }

    fn pol_round(&self) -> Round {
        self.pol_round
    }

    fn validator_address(&self) -> &ValidatorAddress {
        &self.proposer
    }
}

/// A piece of a streamed proposal: the header of the stream, chunks of the encoded block, and the
/// proposer's signature over all of it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ProposalPart {
    /// First part: what is proposed, by whom.
    Init {
        /// Height.
        height: Height,
        /// Round.
        round: Round,
        /// Proposer.
        proposer: ValidatorAddress,
        /// Proof-of-lock round, or nil.
        pol_round: Round,
    },
    /// A chunk of the borsh-encoded block, in order.
    Data(Vec<u8>),
    /// Last part: the proposer's signature over (height, round, pol round, block hash).
    Fin {
        /// ed25519 signature by the proposer's consensus key.
        signature: Signature,
    },
}

impl mc::ProposalPart<AgoraContext> for ProposalPart {
    fn is_first(&self) -> bool {
        matches!(self, ProposalPart::Init { .. })
    }

    fn is_last(&self) -> bool {
        matches!(self, ProposalPart::Fin { .. })
    }
}

/// A prevote or precommit. Agora uses no vote extensions.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    /// Prevote or precommit.
    pub vote_type: VoteType,
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The block voted for, or nil.
    pub value: NilOrVal<Hash>,
    /// The voter.
    pub validator: ValidatorAddress,
}

impl mc::Vote<AgoraContext> for Vote {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &NilOrVal<Hash> {
        &self.value
    }

    fn take_value(self) -> NilOrVal<Hash> {
        self.value
    }

    fn vote_type(&self) -> VoteType {
        self.vote_type
    }

    fn validator_address(&self) -> &ValidatorAddress {
        &self.validator
    }

    fn extension(&self) -> Option<&SignedExtension<AgoraContext>> {
        None
    }

    fn take_extension(&mut self) -> Option<SignedExtension<AgoraContext>> {
        None
    }

    fn extend(self, _extension: SignedExtension<AgoraContext>) -> Self {
        // Vote extensions are disabled on Agora's chains (the policy is never `Required`).
        self
    }
}

/// ed25519, with Agora's key and signature types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ed25519;

/// A key or signature of the wrong length.
#[derive(Clone, Debug)]
pub struct DecodingError(pub String);

impl fmt::Display for DecodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A consensus secret key (shared, never printed).
#[derive(Clone)]
pub struct SecretKey(pub Arc<agora_types::Keypair>);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.0.public().to_hex())
    }
}

impl mc::SigningScheme for Ed25519 {
    type DecodingError = DecodingError;
    type Signature = Signature;
    type PublicKey = PublicKey;
    type PrivateKey = SecretKey;

    fn decode_signature(bytes: &[u8]) -> Result<Signature, DecodingError> {
        let bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|_| DecodingError(format!("a signature is 64 bytes, not {}", bytes.len())))?;
        Ok(Signature(bytes))
    }

    fn encode_signature(signature: &Signature) -> Vec<u8> {
        signature.0.to_vec()
    }

    fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, DecodingError> {
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| DecodingError(format!("a public key is 32 bytes, not {}", bytes.len())))?;
        Ok(PublicKey(bytes))
    }

    fn encode_public_key(public_key: &PublicKey) -> Vec<u8> {
        public_key.0.to_vec()
    }
}

/// Agora's Malachite context.
#[derive(Clone, Debug, Default)]
pub struct AgoraContext;

impl mc::Context for AgoraContext {
    type Address = ValidatorAddress;
    type Height = Height;
    type ProposalPart = ProposalPart;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Timeouts = LinearTimeouts;
    type Value = BlockId;
    type Vote = Vote;
    type Extension = Vec<u8>;
    type SigningScheme = Ed25519;

    /// Proposers take turns in address order, shifted by one each height and each round, so a
    /// round whose proposer is down is followed by one with another proposer.
    fn select_proposer<'a>(
        &self,
        validator_set: &'a ValidatorSet,
        height: Height,
        round: Round,
    ) -> &'a Validator {
        let n = validator_set.validators.len() as u64;
        assert!(n > 0, "a height needs at least one validator");
        let round = round.as_u32().map_or(0, u64::from);
        let index = height.0.wrapping_add(round) % n;
        &validator_set.validators[index as usize]
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockId,
        pol_round: Round,
        address: ValidatorAddress,
    ) -> Proposal {
        Proposal {
            height,
            round,
            value,
            pol_round,
            proposer: address,
        }
    }

    fn new_prevote(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<Hash>,
        address: ValidatorAddress,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Prevote,
            height,
            round,
            value: value_id,
            validator: address,
        }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value_id: NilOrVal<Hash>,
        address: ValidatorAddress,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Precommit,
            height,
            round,
            value: value_id,
            validator: address,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mc::Context as _;

    #[test]
    fn proposers_rotate_by_height_and_round_over_every_validator() {
        let set = agora_state::ValidatorSet {
            validators: (0..4u8)
                .map(|i| agora_state::ValidatorEntry {
                    address: Address([i; 20]),
                    public_key: PublicKey([i; 32]),
                    power: 10,
                })
                .collect(),
        };
        let set = ValidatorSet::from_state(&set);
        let ctx = AgoraContext;
        let pick = |h: u64, r: u32| ctx.select_proposer(&set, Height(h), Round::new(r)).address;
        let by_height: std::collections::BTreeSet<_> = (1..=4).map(|h| pick(h, 0)).collect();
        assert_eq!(
            by_height.len(),
            4,
            "each validator proposes once in 4 heights"
        );
        for h in 1..10 {
            assert_ne!(pick(h, 0), pick(h, 1), "a new round has another proposer");
        }
        assert_eq!(mc::ValidatorSet::total_voting_power(&set), 40);
    }
}
