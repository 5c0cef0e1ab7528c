//! Keys, proving and verification: Plonky3's batch-STARK over BabyBear with FRI, Poseidon2 Merkle
//! trees and hiding commitments (zero knowledge). The setup is transparent: a model's verifying key
//! is a Merkle commitment to its public columns, which anyone recomputes from the model file.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use chacha20::ChaCha20Rng;
use p3_air::symbolic::AirLayout;
use p3_baby_bear::{BabyBear, Poseidon2BabyBear, default_babybear_poseidon2_16};
use p3_batch_stark::common::{GlobalPreprocessed, PreprocessedInstanceMeta};
use p3_batch_stark::symbolic::get_log_num_quotient_chunks_for_domain;
use p3_batch_stark::{
    BatchProof, CommonData, ProverData, StarkGenericConfig, StarkInstance, prove_batch,
    verify_batch,
};
use p3_challenger::{CanObserve, DuplexChallenger};
use p3_commit::{ExtensionMmcs, Pcs, PolynomialSpace};
use p3_dft::Radix2DitParallel;
use p3_field::extension::BinomialExtensionField;
use p3_field::{Field, PrimeCharacteristicRing, PrimeField32};
use p3_fri::{FriParameters, HidingFriPcs};
use p3_lookup::{LogUpGadget, Lookups};
use p3_merkle_tree::MerkleTreeHidingMmcs;
use p3_symmetric::{MerkleCap, PaddingFreeSponge, TruncatedPermutation};
use p3_uni_stark::StarkConfig;
use rand::{SeedableRng, TryRng};

use crate::Error;
use crate::air::{Statement, ZkAir, com_height, com_trace, heights, input_commitment, main_traces};
use crate::model::{Architecture, MAX_OUTPUTS, VALUE_BITS, ZkModel};

type Val = BabyBear;
type Challenge = BinomialExtensionField<Val, 4>;
type Perm = Poseidon2BabyBear<16>;
type Hash = PaddingFreeSponge<Perm, 16, 8, 8>;
type Compress = TruncatedPermutation<Perm, 2, 8, 16>;
type ValMmcs = MerkleTreeHidingMmcs<
    <Val as Field>::Packing,
    <Val as Field>::Packing,
    Hash,
    Compress,
    ChaCha20Rng,
    2,
    8,
    4,
>;
type ChallengeMmcs = ExtensionMmcs<Val, Challenge, ValMmcs>;
type Challenger = DuplexChallenger<Val, Perm, 16, 8>;
type Dft = Radix2DitParallel<Val>;
type ZkPcs = HidingFriPcs<Val, Dft, ValMmcs, ChallengeMmcs, ChaCha20Rng>;
type Config = StarkConfig<ZkPcs, Challenge, Challenger>;
type Commitment = <ZkPcs as Pcs<Challenge, Challenger>>::Commitment;
type Proof = BatchProof<Config>;

// The field's order as the crate's users see it.
const _: () = assert!(crate::FIELD_ORDER == Val::ORDER_U32);

/// FRI's rate: each polynomial is evaluated on 16× its degree. A high rate makes each query worth
/// 4 bits, so few queries (fewer Merkle paths to check: verification is what every node pays).
pub(crate) const LOG_BLOWUP: usize = 4;
/// FRI queries: 25 × 4 bits, plus the grinding below: about 116 bits (conjectured soundness).
pub(crate) const NUM_QUERIES: usize = 25;
/// Proof of work before the queries are drawn.
pub(crate) const QUERY_POW_BITS: usize = 16;
/// FRI folds by up to 2^3 per round: fewer rounds, fewer Merkle paths to check.
pub(crate) const MAX_LOG_ARITY: usize = 3;
/// Height of the Merkle caps: each commitment is 2^4 roots, and every opening path 4 shorter.
pub(crate) const CAP_HEIGHT: usize = 4;
/// Random codewords the hiding commitment mixes in.
const RANDOM_CODEWORDS: usize = 4;
/// Largest proof accepted, in bytes.
pub const MAX_PROOF_BYTES: usize = 1 << 20;

/// What a proof is bound to besides the model: Fiat–Shamir starts from it, so a proof made for
/// another chain, job or account does not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub chain_id: [u8; 32],
    /// The job id, or for an attestation the prover's account and nonce, hashed.
    pub nonce: [u8; 32],
}

fn config(model_id: &[u8; 32], context: &Context, seed: [u8; 32]) -> Config {
    let perm = default_babybear_poseidon2_16();
    let hash = Hash::new(perm.clone());
    let compress = Compress::new(perm.clone());
    let val_mmcs = ValMmcs::new(hash, compress, CAP_HEIGHT, ChaCha20Rng::from_seed(seed));
    let challenge_mmcs = ChallengeMmcs::new(val_mmcs.clone());
    let fri = FriParameters {
        log_blowup: LOG_BLOWUP,
        log_final_poly_len: 0,
        max_log_arity: MAX_LOG_ARITY,
        num_queries: NUM_QUERIES,
        batch_proof_of_work_bits: 0,
        commit_proof_of_work_bits: 0,
        query_proof_of_work_bits: QUERY_POW_BITS,
        mmcs: challenge_mmcs,
    };
    let mut pcs_seed = seed;
    pcs_seed[0] ^= 1;
    let pcs = ZkPcs::new(
        Dft::default(),
        val_mmcs,
        fri,
        RANDOM_CODEWORDS,
        ChaCha20Rng::from_seed(pcs_seed),
    );
    let mut challenger = Challenger::new(perm);
    let mut bind = blake3::Hasher::new();
    bind.update(b"agora-zk/context/v1");
    bind.update(model_id);
    bind.update(&context.chain_id);
    bind.update(&context.nonce);
    for chunk in bind.finalize().as_bytes().chunks(4) {
        let word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        challenger.observe(Val::from_u32(word & 0x3fff_ffff));
    }
    Config::new(pcs, challenger)
}

/// The salts of a model's committed columns: public and fixed, so anyone can recompute the key.
fn setup_seed(arch: &Architecture) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"agora-zk/setup/v1");
    h.update(&borsh::to_vec(arch).unwrap_or_default());
    *h.finalize().as_bytes()
}

/// What the chain keeps of a provable model: its shape and the commitment to its weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyingKey {
    pub arch: Architecture,
    /// The Merkle root of the committed columns (weights, biases, wiring).
    pub commitment: Vec<u32>,
}

impl VerifyingKey {
    /// The model's id: a hash of its shape and its commitment.
    pub fn model_id(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"agora-zk/model/v1");
        h.update(&self.to_bytes());
        *h.finalize().as_bytes()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = borsh::to_vec(&self.arch).unwrap_or_default();
        for w in &self.commitment {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut slice = bytes;
        let arch = <Architecture as borsh::BorshDeserialize>::deserialize(&mut slice)
            .map_err(|_| Error::Key("not a verifying key"))?;
        arch.validate()?;
        if slice.len() != 32 << CAP_HEIGHT {
            return Err(Error::Key(
                "a verifying key's commitment is not this version's",
            ));
        }
        let commitment: Vec<u32> = slice
            .chunks(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if commitment.iter().any(|&w| w >= Val::ORDER_U32) {
            return Err(Error::Key("a commitment word is not a field element"));
        }
        Ok(Self { arch, commitment })
    }

    fn commitment(&self) -> Commitment {
        let roots = self
            .commitment
            .chunks(8)
            .map(|c| {
                let mut digest = [Val::ZERO; 8];
                for (d, &w) in digest.iter_mut().zip(c) {
                    *d = Val::from_u32(w);
                }
                digest
            })
            .collect();
        MerkleCap::new(roots)
    }

    /// Each instance's extended trace size (log2): its height, doubled for zero knowledge.
    fn degree_bits(&self) -> [usize; 3] {
        degree_bits(&self.arch)
    }
}

fn degree_bits(arch: &Architecture) -> [usize; 3] {
    let (mac, act) = heights(arch);
    [mac, act, com_height(arch)].map(|h| h.trailing_zeros() as usize + 1)
}

/// A model ready to prove: its committed columns, kept for every proof.
pub struct ProvingKey {
    model: Arc<ZkModel>,
    airs: [ZkAir; 3],
    data: ProverData<Config>,
    vk: VerifyingKey,
}

impl std::fmt::Debug for ProvingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvingKey")
            .field("vk", &self.vk)
            .finish_non_exhaustive()
    }
}

impl ProvingKey {
    /// Commits to the model's columns (the setup: deterministic and public).
    pub fn new(model: ZkModel) -> Result<Self, Error> {
        model.validate()?;
        // A last guard, as for verification: the chain runs the setup of models it registers.
        catch_unwind(AssertUnwindSafe(|| Self::setup(model)))
            .unwrap_or(Err(Error::Prove("the setup stopped on this model".into())))
    }

    fn setup(model: ZkModel) -> Result<Self, Error> {
        let arch = Arc::new(model.architecture());
        let model = Arc::new(model);
        let airs = ZkAir::all(arch.clone(), Some(model.clone()));
        let cfg = config(
            &[0; 32],
            &Context {
                chain_id: [0; 32],
                nonce: [0; 32],
            },
            setup_seed(&arch),
        );
        let data = ProverData::from_airs_and_degrees(&cfg, &airs, &degree_bits(&arch))
            .map_err(|e| Error::Prove(format!("setup: {e:?}")))?;
        let pre = data
            .common
            .preprocessed
            .as_ref()
            .ok_or(Error::Prove("no commitment".into()))?;
        let commitment = pre
            .commitment
            .roots()
            .iter()
            .flatten()
            .map(|v| v.as_canonical_u32())
            .collect();
        let vk = VerifyingKey {
            arch: (*arch).clone(),
            commitment,
        };
        Ok(Self {
            model,
            airs,
            data,
            vk,
        })
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.vk
    }

    pub fn model(&self) -> &ZkModel {
        &self.model
    }

    /// Proves that the model gives `statement` on the private `input` (committed with `salt`), for
    /// `context`.
    pub fn prove(
        &self,
        input: &[i8],
        salt: &[u32; 8],
        t: i64,
        hide: bool,
        context: &Context,
    ) -> Result<(Statement, Vec<u8>), Error> {
        if salt.iter().any(|&w| w >= Val::ORDER_U32) {
            return Err(Error::Input("a salt word is not a field element"));
        }
        if t.unsigned_abs() > 1 << VALUE_BITS {
            return Err(Error::Input("the threshold exceeds 2^27 in magnitude"));
        }
        let values = self.model.trace(input)?;
        let outputs = values.last().cloned().unwrap_or_default();
        let statement = Statement {
            input_commitment: input_commitment(input, salt),
            t,
            below: outputs[0] < t,
            outputs: if hide { None } else { Some(outputs) },
        };
        let traces = main_traces::<Val>(&self.model, &values, t);
        let mut seed = [0u8; 32];
        rand::rngs::SysRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| Error::Prove(format!("no randomness from the system: {e}")))?;
        let cfg = config(&self.vk.model_id(), context, seed);
        let com = com_trace(input, salt, com_height(&self.vk.arch));
        let refs = [&traces[0], &traces[1], &com];
        let pvs = [
            vec![],
            statement.public_values::<Val>(),
            statement.digest_values(),
        ];
        let instances = StarkInstance::new_multiple(&self.airs, &refs, &pvs);
        let proof = prove_batch(&cfg, &instances, &self.data)
            .map_err(|e| Error::Prove(format!("{e:?}")))?;
        let bytes = postcard::to_allocvec(&proof).map_err(|e| Error::Prove(e.to_string()))?;
        Ok((statement, bytes))
    }
}

/// The verifier's view of the lookups and committed columns, built from the key alone (the same
/// layout the prover's setup computes).
fn common_data(
    cfg: &Config,
    airs: &[ZkAir; 3],
    vk: &VerifyingKey,
) -> Result<CommonData<Config>, Error> {
    let degrees = vk.degree_bits();
    let pcs = cfg.pcs();
    let gadget = LogUpGadget::new();
    let mut lookups = Vec::new();
    for (air, &db) in airs.iter().zip(&degrees) {
        let domain =
            <ZkPcs as Pcs<Challenge, Challenger>>::natural_domain_for_degree(pcs, 1 << (db - 1));
        let unpacked = Lookups::<Val>::from_air::<Challenge, _>(air);
        let log_chunks = get_log_num_quotient_chunks_for_domain::<_, Challenge, _, _>(
            air,
            AirLayout::from_air::<Val>(air),
            domain,
            &unpacked,
            1,
            &gadget,
        );
        let budget = 1usize << log_chunks;
        let packed = unpacked.pack_same_bus_with_degree(budget, |lookup| {
            gadget.constraint_degree_with_transition(lookup, domain.transition_degree_multiple())
        });
        lookups.push(packed);
    }
    let instances = airs
        .iter()
        .zip(&degrees)
        .enumerate()
        .map(|(i, (air, &db))| {
            Some(PreprocessedInstanceMeta {
                matrix_index: i,
                width: <ZkAir as p3_air::BaseAir<Val>>::preprocessed_width(air),
                degree_bits: db,
            })
        })
        .collect();
    Ok(CommonData::new(
        Some(GlobalPreprocessed {
            commitment: vk.commitment(),
            instances,
            matrix_to_instance: vec![0, 1, 2],
        }),
        lookups,
    ))
}

/// The verifier's lookup layout of recent keys: deriving it evaluates every AIR symbolically
/// (about a millisecond), the same for every proof of a model.
fn cached_common(
    cfg: &Config,
    airs: &[ZkAir; 3],
    vk: &VerifyingKey,
) -> Result<Arc<CommonData<Config>>, Error> {
    type Cache = std::sync::Mutex<Vec<([u8; 32], Arc<CommonData<Config>>)>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    const KEEP: usize = 32;
    let id = vk.model_id();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache
        .lock()
        .ok()
        .and_then(|c| c.iter().find(|(k, _)| *k == id).map(|(_, v)| v.clone()))
    {
        return Ok(hit);
    }
    let common = Arc::new(common_data(cfg, airs, vk)?);
    if let Ok(mut c) = cache.lock() {
        if c.len() >= KEEP {
            c.remove(0);
        }
        c.push((id, common.clone()));
    }
    Ok(common)
}

/// Verifies `proof` that the model of `vk` gives `statement` for `context`. Bounded work: the
/// proof's shape must be the key's, and its size at most [`MAX_PROOF_BYTES`]. Never panics: the
/// proving library's verifier runs under `catch_unwind`, a last guard for bytes it did not expect.
pub fn verify(
    vk: &VerifyingKey,
    statement: &Statement,
    context: &Context,
    proof: &[u8],
) -> Result<(), Error> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(Error::Proof("larger than the limit"));
    }
    let bound = 1u64 << VALUE_BITS;
    if statement.t.unsigned_abs() > bound {
        return Err(Error::Statement("the threshold exceeds 2^27 in magnitude"));
    }
    if let Some(outputs) = &statement.outputs {
        if outputs.is_empty() || outputs.len() != vk.arch.outputs() || outputs.len() > MAX_OUTPUTS {
            return Err(Error::Statement("wrong number of outputs for this model"));
        }
        if outputs.iter().any(|y| y.unsigned_abs() >= bound) {
            return Err(Error::Statement("an output exceeds 2^27 in magnitude"));
        }
        if (outputs[0] < statement.t) != statement.below {
            return Err(Error::Statement("the outputs contradict the predicate"));
        }
    }
    if statement
        .input_commitment
        .iter()
        .any(|&w| w >= Val::ORDER_U32)
    {
        return Err(Error::Statement(
            "an input commitment word is not a field element",
        ));
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<(), Error> {
        let (proof, rest): (Proof, _) =
            postcard::take_from_bytes(proof).map_err(|_| Error::Proof("malformed"))?;
        if !rest.is_empty() {
            return Err(Error::Proof("trailing bytes"));
        }
        if proof.degree_bits != vk.degree_bits() {
            return Err(Error::Proof("its trace sizes are not this model's"));
        }
        let cfg = config(&vk.model_id(), context, [0; 32]);
        let airs = ZkAir::all(Arc::new(vk.arch.clone()), None);
        let common = cached_common(&cfg, &airs, vk)?;
        let pvs = [
            vec![],
            statement.public_values::<Val>(),
            statement.digest_values(),
        ];
        verify_batch(&cfg, &airs, &proof, &pvs, &common)
            .map_err(|e| Error::Rejected(format!("{e:?}").chars().take(200).collect()))
    }));
    outcome.unwrap_or(Err(Error::Proof("malformed (the verifier stopped on it)")))
}
