//! Verification end to end over a real node and API, with the tiny model: jobs drawn for checking
//! are revealed by their provider through the chain, judged by a verifier, and decided.

use super::*;
use agora_market::{Cheat, CheatingBackend, Verifier};
use agora_state::VerifyParams;
use agora_types::{Fault, Verdict};

pub(crate) fn checked_net() -> Net {
    start_with(VerifyParams {
        sample_bps: 10_000,
        reveal_window: 5,
        verdict_window: 5,
        // A dispute needs one more verifier to confirm an accusation.
        committee: 1,
        min_verifier_stake: 10 * AGR,
        ..VerifyParams::default()
    })
}

pub(crate) fn tiny_backend(net: &Net, label: &str) -> (InferBackend, Arc<ChatModel>) {
    let path = net.t.dir.path().join(format!("{label}.gguf"));
    write_tiny_chat_model(&path, super::tiny_spec()).unwrap();
    let model = Arc::new(ChatModel::load(&path, 1).unwrap());
    let mut backend = InferBackend::default();
    backend.add_chat(MODEL, model.clone());
    backend.add_auditor();
    (backend, model)
}

/// A verifier funded by the client and registered.
pub(crate) fn verifier(net: &Net, nonce: u64) -> Verifier {
    verifier_named(net, nonce, "verifier")
}

/// A verifier of key `label`, funded by the client's transaction `nonce` and registered.
pub(crate) fn verifier_named(net: &Net, nonce: u64, label: &str) -> Verifier {
    verifier_on(
        net,
        nonce,
        label,
        net.chain.clone(),
        vec![MODEL, agora_market::auditor_id()],
    )
}

/// [`verifier_named`], reading the chain through `chain`, checking `models`.
fn verifier_on(
    net: &Net,
    nonce: u64,
    label: &str,
    chain: Arc<dyn Chain>,
    models: Vec<Hash>,
) -> Verifier {
    let key = Keypair::from_seed_label(label);
    net.node
        .submit(&tx(
            &net.client,
            nonce,
            vec![Message::Transfer {
                to: key.address(),
                amount: 20 * AGR,
            }],
        ))
        .unwrap();
    net.block();
    let (backend, _) = tiny_backend(net, label);
    let v = Verifier::new(
        key,
        ProviderSecret::generate(),
        models,
        chain,
        Arc::new(backend),
    )
    .unwrap()
    // This runtime gives the same logits bit for bit: no tolerance is needed.
    .with_tolerance(0.0);
    assert!(v.ensure_registered(10 * AGR).unwrap().is_some());
    net.block();
    assert!(v.ensure_registered(10 * AGR).unwrap().is_none());
    v
}

pub(crate) fn job_state(net: &Net, job: &Hash) -> serde_json::Value {
    let mut r = agent()
        .get(&format!("{}/v1/market/jobs/{job}", net.base))
        .call()
        .unwrap();
    r.body_mut().read_json().unwrap()
}

/// Drives job `job`'s check to its outcome, block by block: `provider` reveals to each seat,
/// `verifiers` judge (a dispute's committee is drawn a block after the accusation). Returns the
/// verdicts posted.
pub(crate) fn judge_until_decided(
    net: &Net,
    provider: &Provider,
    verifiers: &[&Verifier],
    job: &Hash,
) -> Vec<(Hash, Verdict)> {
    let mut verdicts = Vec::new();
    for _ in 0..8 {
        provider.reveal_pending().unwrap();
        net.block();
        for v in verifiers {
            verdicts.extend(v.step().unwrap());
        }
        net.block();
        if job_state(net, job)["check"]["outcome"] != "open" {
            break;
        }
    }
    verdicts
}

/// Serves job `id` on `provider` and settles it; the chain draws its check in the next block.
fn serve_and_settle(net: &Net, provider: &Provider, id: u8) -> Hash {
    let input = JobInput::Chat {
        messages: vec![agora_market::ChatMessage {
            role: "user".into(),
            content: "tell me something".into(),
        }],
        grammar: None,
    };
    serve_and_settle_input(net, provider, id, MODEL, &input)
}

/// Serves job `id` of `model` for `input` on `provider` and settles it.
pub(crate) fn serve_and_settle_input(
    net: &Net,
    provider: &Provider,
    id: u8,
    model: Hash,
    input: &JobInput,
) -> Hash {
    let bytes = input.to_bytes();
    let request = JobRequest {
        chain_id: CHAIN_ID.into(),
        client: net.client.public(),
        provider: provider.address(),
        model,
        input_hash: Hash::digest(&bytes),
        params: JobParams {
            max_tokens: 8,
            ..JobParams::default()
        },
        max_fee: 1_000_000,
        nonce: Hash([id; 32]),
        expiry_height: 1_000,
    };
    let (envelope, _) = seal(&provider.info().encryption_key.0, &request.hash(), &bytes);
    let submission = JobSubmission {
        request: hex::encode(borsh::to_vec(&request.clone().sign(&net.client)).unwrap()),
        input: envelope,
        stream: false,
    };
    let job = provider.admit(&submission).unwrap();
    provider
        .execute(job, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(provider.settle().unwrap().unwrap().1, 1);
    net.block(); // settled
    net.block(); // drawn
    request.id()
}

#[test]
fn an_honest_job_is_revealed_judged_and_passes() {
    let net = checked_net();
    let v = verifier(&net, 1);
    let job = serve_and_settle(&net, &net.provider, 1);
    assert_eq!(job_state(&net, &job)["state"], "held");
    assert_eq!(job_state(&net, &job)["sampled"], true);
    // The provider reveals once; the verifier judges what was revealed.
    assert_eq!(net.provider.reveal_pending().unwrap(), 1);
    assert_eq!(net.provider.reveal_pending().unwrap(), 0);
    assert!(
        v.step().unwrap().is_empty(),
        "nothing revealed on-chain yet"
    );
    net.block();
    assert_eq!(v.step().unwrap(), vec![(job, Verdict::Pass)]);
    net.block();
    let state = job_state(&net, &job);
    assert_eq!(state["check"]["outcome"], "passed", "{state}");
    assert!(v.step().unwrap().is_empty());
    // Decided: the provider no longer keeps the job.
    assert!(net.provider.kept_job(&job).unwrap().is_some());
    assert_eq!(net.provider.sweep_kept().unwrap(), 1);
    assert!(net.provider.kept_job(&job).unwrap().is_none());
}

/// A verifier whose chain is the node in this process, with no HTTP in between.
fn local_verifier(net: &Net, nonce: u64) -> Verifier {
    let local: Arc<dyn Chain> = Arc::new(agora_api::LocalNode::new(net.node.clone()));
    verifier_on(net, nonce, "local-verifier", local, vec![MODEL])
}

#[test]
fn the_in_process_chain_answers_as_the_http_api_does_and_serves_a_verifier() {
    let net = checked_net();
    let v = local_verifier(&net, 1);
    let job = serve_and_settle(&net, &net.provider, 1);
    assert_eq!(net.provider.reveal_pending().unwrap(), 1);
    net.block();
    // The same node, read both ways, mid-check (a reveal held, a verdict due).
    let local = agora_api::LocalNode::new(net.node.clone());
    let http = agora_market::HttpChain::new(&net.base);
    let (a, b): (&dyn Chain, &dyn Chain) = (&local, &http);
    let me = v.address();
    let provider = net.provider.address();
    let nobody = Address([0xEE; 20]);
    let unknown = Hash([0xEE; 32]);
    assert_eq!(a.chain_id().unwrap(), b.chain_id().unwrap());
    assert_eq!(a.height().unwrap(), b.height().unwrap());
    assert_eq!(
        a.escrow(&net.client.address()).unwrap(),
        b.escrow(&net.client.address()).unwrap()
    );
    assert_eq!(a.escrow(&nobody).unwrap(), b.escrow(&nobody).unwrap());
    for who in [provider, me, nobody] {
        assert_eq!(a.nonce(&who).unwrap(), b.nonce(&who).unwrap());
        assert_eq!(a.provider(&who).unwrap(), b.provider(&who).unwrap());
        assert_eq!(a.open_checks(&who).unwrap(), b.open_checks(&who).unwrap());
        assert_eq!(a.verifier_key(&who).unwrap(), b.verifier_key(&who).unwrap());
        assert_eq!(a.is_provider(&who).unwrap(), b.is_provider(&who).unwrap());
    }
    assert_eq!(a.providers().unwrap(), b.providers().unwrap());
    assert_eq!(a.models().unwrap(), b.models().unwrap());
    for id in [MODEL, unknown] {
        assert_eq!(a.model(&id).unwrap(), b.model(&id).unwrap());
    }
    for id in [job, unknown] {
        assert_eq!(a.job(&id).unwrap(), b.job(&id).unwrap());
        assert_eq!(
            a.verification_over(&id).unwrap(),
            b.verification_over(&id).unwrap()
        );
        assert_eq!(a.reveal(&id, &me).unwrap(), b.reveal(&id, &me).unwrap());
    }
    assert!(a.reveal(&job, &me).unwrap().is_some(), "the reveal is held");
    assert_eq!(a.open_checks(&me).unwrap().len(), 1);
    // A refusal reads the same too: a transaction with a stale nonce.
    let stale = agora_types::SignedTransaction::decode(&tx(
        &net.client,
        0,
        vec![Message::Bond { amount: 1 }],
    ))
    .unwrap();
    let (ea, eb) = (a.submit(&stale).unwrap_err(), b.submit(&stale).unwrap_err());
    assert_eq!(ea, eb);
    assert_eq!(ea.code(), Some("nonce_too_low"), "{ea}");

    // The verifier on the in-process chain judges and posts its verdict; the check passes.
    assert_eq!(v.step().unwrap(), vec![(job, Verdict::Pass)]);
    net.block();
    assert_eq!(job_state(&net, &job)["check"]["outcome"], "passed");
}

/// A provider that cheats with `cheat`: funded by the client (its transaction `nonce`) and
/// registered with 10 AGR like any provider.
fn cheating_provider(net: &Net, label: &str, nonce: u64, cheat: Cheat) -> Provider {
    let (inner, model) = tiny_backend(net, label);
    provider_with(
        net,
        label,
        nonce,
        Arc::new(CheatingBackend {
            inner,
            chat: model,
            cheat,
        }),
    )
}

/// A provider of `backend` (the tiny chat model and the auditor), funded by the client (its
/// transaction `nonce`) and registered with 10 AGR.
pub(crate) fn provider_with(
    net: &Net,
    label: &str,
    nonce: u64,
    backend: Arc<dyn agora_market::Backend>,
) -> Provider {
    let key = Keypair::from_seed_label(label);
    net.node
        .submit(&tx(
            &net.client,
            nonce,
            vec![Message::Transfer {
                to: key.address(),
                amount: 10 * AGR + AGR / 2,
            }],
        ))
        .unwrap();
    net.block();
    let secret = ProviderSecret::generate();
    let info = ProviderInfo {
        models: vec![MODEL, agora_market::auditor_id()],
        price_input_per_1k: 10_000,
        price_output_per_1k: 30_000,
        endpoint: "http://127.0.0.1:1".into(),
        encryption_key: EncryptionKey(secret.public()),
    };
    let cheater = Provider::new(
        key,
        secret,
        info,
        net.chain.clone(),
        backend,
        ProviderConfig {
            min_expiry_margin: 5,
            jobs_dir: Some(net.t.dir.path().join(format!("{label}-jobs"))),
            ..ProviderConfig::default()
        },
    )
    .unwrap();
    cheater.ensure_registered(10 * AGR).unwrap();
    net.block();
    cheater
}

#[test]
fn a_provider_that_changes_one_token_is_caught_slashed_and_the_client_refunded() {
    let net = checked_net();
    let v = verifier(&net, 1);
    let v2 = verifier_named(&net, 2, "verifier-2");
    let cheater = cheating_provider(&net, "cheater", 3, Cheat::OneTokenChanged);
    let escrow_before = net.chain.escrow(&net.client.address()).unwrap();

    let job = serve_and_settle(&net, &cheater, 7);
    // The verifier drawn accuses it; the other, drawn to the dispute's committee, confirms.
    let verdicts = judge_until_decided(&net, &cheater, &[&v, &v2], &job);
    assert!(
        matches!(
            verdicts.as_slice(),
            [
                (j, Verdict::Fail { fault: Fault::WrongToken { .. } }),
                (k, Verdict::Fail { fault: Fault::WrongToken { .. } })
            ] if *j == job && *k == job
        ),
        "{verdicts:?}"
    );
    let state = job_state(&net, &job);
    assert_eq!(state["check"]["outcome"], "fraud", "{state}");
    assert_eq!(state["state"], "refunded");
    assert!(!net.chain.is_provider(&cheater.address()).unwrap());
    assert_eq!(
        net.chain.escrow(&net.client.address()).unwrap(),
        escrow_before,
        "the fee came back"
    );
}

#[test]
fn a_provider_that_withholds_the_job_is_slashed_after_the_reveal_window() {
    let net = checked_net();
    let _v = verifier(&net, 1);
    let escrow_before = net.chain.escrow(&net.client.address()).unwrap();
    let job = serve_and_settle(&net, &net.provider, 3);
    assert_eq!(job_state(&net, &job)["state"], "held");
    // The provider never reveals: after the reveal window (5 blocks) it is convicted.
    for _ in 0..5 {
        net.block();
    }
    let state = job_state(&net, &job);
    assert_eq!(state["check"]["outcome"], "no_reveal", "{state}");
    assert!(!net.chain.is_provider(&net.provider.address()).unwrap());
    assert_eq!(
        net.chain.escrow(&net.client.address()).unwrap(),
        escrow_before
    );
}

#[test]
fn every_cheating_strategy_is_caught_on_chain_and_the_cheater_slashed() {
    let net = checked_net();
    let v = verifier(&net, 1);
    let v2 = verifier_named(&net, 2, "verifier-2");
    for (i, cheat) in Cheat::ALL.into_iter().enumerate() {
        // The client's nonce: 0 funded its escrow, 1 and 2 the verifiers.
        let cheater = cheating_provider(&net, &format!("cheater-{i}"), 3 + i as u64, cheat);
        let job = serve_and_settle(&net, &cheater, 20 + i as u8);
        let verdicts = judge_until_decided(&net, &cheater, &[&v, &v2], &job);
        assert!(
            verdicts.len() == 2
                && verdicts
                    .iter()
                    .all(|(j, v)| *j == job && matches!(v, Verdict::Fail { .. })),
            "{}: {verdicts:?}",
            cheat.name()
        );
        let state = job_state(&net, &job);
        assert_eq!(
            state["check"]["outcome"],
            "fraud",
            "{}: {state}",
            cheat.name()
        );
        assert!(!net.chain.is_provider(&cheater.address()).unwrap());
    }
}
