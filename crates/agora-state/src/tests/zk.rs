//! Zero-knowledge proofs on chain: provable models, attestations bound to their sender and
//! number, and jobs of level `zk` settled only with a proof the state machine verifies.

use super::*;
use agora_types::{
    EncryptionKey, Hash, JobParams, JobReceipt, JobRequest, ModelKind, ProviderInfo, SettledJob,
    Verification, ZkClaim, commitment_hash, job_fee,
};
use agora_zk::{ProvingKey, ZkModel};
use std::sync::OnceLock;

const PROVIDER: usize = 0;
const CLIENT: usize = 1;
const OTHER: usize = 2;
const CERTIFIER: usize = 3;

/// A small provable scorer: 6 features, 4 hidden neurons, 2 outputs.
fn prover() -> &'static ProvingKey {
    static PK: OnceLock<ProvingKey> = OnceLock::new();
    PK.get_or_init(|| {
        ProvingKey::new(ZkModel::synthetic("risk-test", &[6, 4, 2], 3).unwrap()).unwrap()
    })
}

fn model_id() -> Hash {
    Hash(prover().verifying_key().model_id())
}

const FEATURES: [i8; 6] = [12, -3, 100, 0, 7, -128];
const SALT: [u32; 8] = [11, 22, 33, 44, 55, 66, 77, 88];

fn register(s: &mut MemState, height: u64, nonce: u64) {
    let out = run_block(
        s,
        height,
        &[tx(
            PROVIDER,
            nonce,
            10,
            vec![Message::RegisterZkModel {
                name: "risk-test".into(),
                model: prover().model().to_bytes(),
            }],
        )],
    );
    assert!(out.receipts[0].success, "{:?}", out.receipts[0].failure);
}

fn failure(out: &Executed) -> String {
    out.receipts[0]
        .failure
        .as_ref()
        .map(|f| f.code.clone())
        .unwrap_or_default()
}

/// A claim and its proof about `FEATURES`, bound to `context`.
fn prove(context: &agora_zk::Context, t: i64, hide: bool) -> (ZkClaim, Vec<u8>) {
    let (st, proof) = prover().prove(&FEATURES, &SALT, t, hide, context).unwrap();
    let claim = ZkClaim {
        model: model_id(),
        input_commitment: commitment_hash(&st.input_commitment),
        threshold: st.t,
        below: st.below,
        outputs: st.outputs,
    };
    (claim, proof)
}

#[test]
fn a_provable_model_registers_by_its_key_only() {
    let mut s = state(4);
    register(&mut s, 1, 0);
    let record: ZkModelRecord =
        borsh::from_slice(&s.get(&zk_model_key(&model_id())).unwrap().unwrap()).unwrap();
    assert_eq!(record.key, prover().verifying_key().to_bytes());
    assert!(
        s.get(&model_key(&model_id())).unwrap().is_some(),
        "in the model registry too"
    );
    // Twice, garbage, or a provable model under an id of one's choosing: refused.
    let out = run_block(
        &mut s,
        2,
        &[tx(
            PROVIDER,
            1,
            10,
            vec![Message::RegisterZkModel {
                name: "again".into(),
                model: prover().model().to_bytes(),
            }],
        )],
    );
    assert_eq!(failure(&out), "zk_model_exists");
    let out = run_block(
        &mut s,
        3,
        &[tx(
            PROVIDER,
            2,
            10,
            vec![Message::RegisterZkModel {
                name: "junk".into(),
                model: vec![7; 40],
            }],
        )],
    );
    assert_eq!(failure(&out), "invalid_zk");
    let out = run_block(
        &mut s,
        4,
        &[tx(
            PROVIDER,
            3,
            10,
            vec![Message::RegisterModel {
                id: Hash([1; 32]),
                name: "fake".into(),
                kind: ModelKind::Provable,
            }],
        )],
    );
    assert_eq!(failure(&out), "invalid_model");
    // Few weights but tall traces (a narrow, deep model): the setup would cost too much.
    let tall = ZkModel::synthetic("tall", &[1, 4096, 1], 1).unwrap();
    assert!(tall.params() < 10_000);
    let out = run_block(
        &mut s,
        5,
        &[tx(
            PROVIDER,
            4,
            10,
            vec![Message::RegisterZkModel {
                name: "tall".into(),
                model: tall.to_bytes(),
            }],
        )],
    );
    assert_eq!(failure(&out), "invalid_zk");
    assert!(
        out.receipts[0]
            .failure
            .as_ref()
            .unwrap()
            .message
            .contains("activations"),
        "{:?}",
        out.receipts[0].failure
    );
}

#[test]
fn an_attestation_counts_once_for_its_sender_and_names_its_certifier() {
    let mut s = state(4);
    register(&mut s, 1, 0);
    let client = key(CLIENT).address();
    let context = zk_attest_context(CHAIN, &client, 0);
    let (claim, proof) = prove(&context, 1_000, true);
    assert!(claim.outputs.is_none());
    let attest = |nonce, certifier: Option<Address>| {
        tx(
            CLIENT,
            nonce,
            10,
            vec![Message::ZkAttest {
                claim: claim.clone(),
                certifier,
                proof: proof.clone(),
            }],
        )
    };
    // Another account cannot use it: the proof is bound to its sender.
    let stolen = tx(
        OTHER,
        0,
        10,
        vec![Message::ZkAttest {
            claim: claim.clone(),
            certifier: None,
            proof: proof.clone(),
        }],
    );
    let out = run_block(&mut s, 2, &[stolen]);
    assert_eq!(failure(&out), "zk_proof_rejected");
    // Naming a certifier that has not certified the commitment: refused.
    let certifier = key(CERTIFIER).address();
    let out = run_block(&mut s, 3, &[attest(0, Some(certifier))]);
    assert_eq!(failure(&out), "zk_uncertified");
    // Certified, then attested: recorded, and the number advances.
    let certify = tx(
        CERTIFIER,
        0,
        10,
        vec![Message::CertifyZkInput {
            subject: client,
            commitment: claim.input_commitment,
        }],
    );
    let out = run_block(&mut s, 4, &[certify, attest(1, Some(certifier))]);
    assert!(out.receipts.iter().all(|r| r.success), "{:?}", out.receipts);
    let record: ZkAttestation = borsh::from_slice(
        &s.get(&zk_attestation_key(&client, &model_id()))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record.claim, claim);
    assert_eq!(record.certifier, Some(certifier));
    assert_eq!(record.certified_height, Some(4));
    assert_eq!(record.seq, 0);
    let seq: u64 = borsh::from_slice(&s.get(&zk_seq_key(&client)).unwrap().unwrap()).unwrap();
    assert_eq!(seq, 1);
    // A claim the circuit cannot hold is refused before any verification, never a panic.
    let extreme = tx(
        CLIENT,
        2,
        10,
        vec![Message::ZkAttest {
            claim: ZkClaim {
                threshold: i64::MIN,
                ..claim.clone()
            },
            certifier: None,
            proof: proof.clone(),
        }],
    );
    let out = run_block(&mut s, 5, &[extreme]);
    assert_eq!(failure(&out), "invalid_zk");
    // The same proof again: bound to number 0, which is spent.
    let out = run_block(&mut s, 6, &[attest(3, None)]);
    assert_eq!(failure(&out), "zk_proof_rejected");
    // A claim that changes the result is refused.
    let (mut lie, proof1) = prove(&zk_attest_context(CHAIN, &client, 1), 1_000, true);
    lie.below = !lie.below;
    let out = run_block(
        &mut s,
        7,
        &[tx(
            CLIENT,
            4,
            10,
            vec![Message::ZkAttest {
                claim: lie,
                certifier: None,
                proof: proof1,
            }],
        )],
    );
    assert_eq!(failure(&out), "zk_proof_rejected");
}

fn zk_info() -> ProviderInfo {
    ProviderInfo {
        models: vec![model_id()],
        price_input_per_1k: 1_000,
        price_output_per_1k: 1_000,
        endpoint: "http://127.0.0.1:9000".into(),
        encryption_key: EncryptionKey([5; 32]),
    }
}

/// A chain with the model registered, provider 0 serving it and client 1's escrow funded.
fn zk_market() -> MemState {
    let mut g = genesis(4);
    g.market = MarketParams {
        min_provider_stake: 10 * AGR,
        challenge_window: 5,
        protocol_share_bps: 500,
        ..MarketParams::default()
    };
    let mut s = MemState::default();
    s.apply(&g.initial_writes().unwrap());
    register(&mut s, 1, 0);
    let out = run_block(
        &mut s,
        2,
        &[
            tx(
                PROVIDER,
                1,
                10,
                vec![Message::RegisterProvider {
                    stake: 10 * AGR,
                    info: zk_info(),
                }],
            ),
            tx(CLIENT, 0, 10, vec![Message::EscrowDeposit { amount: AGR }]),
        ],
    );
    assert!(out.receipts.iter().all(|r| r.success), "{:?}", out.receipts);
    s
}

/// The client's request for a proved run of the model on its committed features, and the
/// provider's receipt naming the claim.
fn zk_job(claim: &ZkClaim, proof: &[u8], level: Verification) -> SettledJob {
    let req = JobRequest {
        chain_id: CHAIN.into(),
        client: key(CLIENT).public(),
        provider: key(PROVIDER).address(),
        model: model_id(),
        input_hash: claim.input_commitment,
        params: JobParams {
            verification: level,
            ..JobParams::default()
        },
        max_fee: AGR,
        nonce: Hash([9; 32]),
        expiry_height: 50,
    };
    let rec = JobReceipt {
        request_hash: req.hash(),
        output_hash: claim.output_hash(proof),
        input_tokens: 6,
        output_tokens: 2,
        // The tokens' price, and the settlement's chain fee (this chain's minimum fee is 10).
        fee: job_fee(1_000, 1_000, 6, 2).unwrap() + agora_types::zk_proof_fee(10),
    };
    SettledJob {
        request: req.sign(&key(CLIENT)),
        receipt: rec.sign(&key(PROVIDER)),
    }
}

#[test]
fn a_zk_job_settles_only_with_its_proof_and_its_fee_is_final_at_once() {
    let mut s = zk_market();
    // The job id depends only on the request, which names the commitment: compute it first.
    let commitment = commitment_hash(&agora_zk::input_commitment(&FEATURES, &SALT));
    let probe = ZkClaim {
        model: model_id(),
        input_commitment: commitment,
        threshold: 0,
        below: false,
        outputs: None,
    };
    let job_id = zk_job(&probe, &[], Verification::Zk).request.request.id();
    let (claim, proof) = prove(&zk_job_context(CHAIN, &job_id), 0, false);
    let job = zk_job(&claim, &proof, Verification::Zk);
    assert_eq!(job.request.request.id(), job_id);
    // Without the proof: refused (the settlement is recorded as a rejected job).
    let out = run_block(
        &mut s,
        3,
        &[tx(
            PROVIDER,
            2,
            10,
            vec![Message::SettleJobs {
                jobs: vec![job.clone()],
            }],
        )],
    );
    let rejected = out.receipts[0]
        .events
        .iter()
        .find(|e| e.kind == "job_rejected")
        .unwrap();
    assert!(
        rejected
            .attributes
            .iter()
            .any(|(k, v)| k == "code" && v == "zk_proof_required")
    );
    // A changed output, or the proof of another job: refused.
    let mut changed = claim.clone();
    changed.outputs.as_mut().unwrap()[0] += 1;
    let bad = tx(
        PROVIDER,
        3,
        10,
        vec![Message::SettleZkJob {
            job: zk_job(&changed, &proof, Verification::Zk),
            claim: changed,
            proof: proof.clone(),
        }],
    );

    // A valid proof of the same claim, but not the one the receipt names (the one the client
    // received): refused.
    let (_, other) = prove(&zk_job_context(CHAIN, &job_id), 0, false);
    assert_ne!(other, proof, "proofs are randomized");
    let swapped = tx(
        PROVIDER,
        4,
        10,
        vec![Message::SettleZkJob {
            job: job.clone(),
            claim: claim.clone(),
            proof: other,
        }],
    );
    let out = run_block(&mut s, 4, &[bad, swapped]);
    assert_eq!(failure(&out), "zk_proof_rejected");
    let code = |i: usize| out.receipts[i].failure.as_ref().map(|f| f.code.clone());
    assert_eq!(code(1).as_deref(), Some("invalid_zk"));
    // With it: settled and paid in the same block, with no protocol share.
    let before = account(&s, &key(PROVIDER).address()).balance;
    let settle = |nonce| {
        tx(
            PROVIDER,
            nonce,
            10,
            vec![Message::SettleZkJob {
                job: job.clone(),
                claim: claim.clone(),
                proof: proof.clone(),
            }],
        )
    };
    let out = run_block(&mut s, 5, &[settle(5)]);
    assert!(out.receipts[0].success, "{:?}", out.receipts[0].failure);
    let fee = job.receipt.receipt.fee;
    let paid = out.receipts[0].fee_paid;
    let after = account(&s, &key(PROVIDER).address()).balance;
    assert_eq!(
        after + paid,
        before + fee,
        "the fee is the provider's at the end of the block"
    );
    let record: JobRecord = borsh::from_slice(&s.get(&job_key(&job_id)).unwrap().unwrap()).unwrap();
    assert_eq!(record.fee_state, FeeState::Released);
    assert_eq!(record.level, Verification::Zk);
    // Never drawn for a check.
    for h in 6..9 {
        run_block(&mut s, h, &[]);
    }
    assert!(s.get(&check_key(&job_id)).unwrap().is_none());
    // Once only.
    let out = run_block(&mut s, 9, &[settle(6)]);
    assert_eq!(failure(&out), "already_settled");
    // A sampled job cannot borrow the zk path.
    let sampled = zk_job(&claim, &proof, Verification::Sampled);
    let out = run_block(
        &mut s,
        10,
        &[tx(
            PROVIDER,
            7,
            10,
            vec![Message::SettleZkJob {
                job: sampled,
                claim: claim.clone(),
                proof: proof.clone(),
            }],
        )],
    );
    assert_eq!(failure(&out), "invalid_zk");
}
