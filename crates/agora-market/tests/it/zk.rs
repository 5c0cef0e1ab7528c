//! Jobs of verification level `zk` through the gateway: a provider that serves a provable model
//! proves each job, the gateway verifies the proof before answering, and the chain settles the job
//! with it in one block. A provider that alters a proved result is refused by the gateway and
//! unpaid by the chain.

use super::*;
use agora_zk::{ProvingKey, ZkModel};

/// A small provable model: 8 inputs, a hidden layer of 6, 3 outputs.
fn tiny_zk() -> ZkModel {
    ZkModel::synthetic("tiny-zk", &[8, 6, 3], 7).unwrap()
}

/// How a test provider's results leave it.
#[derive(Clone, Copy, PartialEq)]
enum Proving {
    Honest,
    /// Shows output 0 one higher than the model computed (the proof is left as it was).
    RaisesOutput,
}

struct ZkBackend {
    inner: InferBackend,
    proving: Proving,
}

impl agora_market::Backend for ZkBackend {
    fn serves(&self, model: &Hash) -> bool {
        self.inner.serves(model)
    }
    fn input_tokens(&self, model: &Hash, input: &JobInput) -> Result<u32, Error> {
        self.inner.input_tokens(model, input)
    }
    fn run(
        &self,
        model: &Hash,
        input: &JobInput,
        params: &JobParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<agora_market::Served, Error> {
        self.inner.run(model, input, params, on_text)
    }
    fn provable(&self, model: &Hash) -> bool {
        self.inner.provable(model)
    }
    fn prove(
        &self,
        model: &Hash,
        input: &JobInput,
        context: &agora_zk::Context,
    ) -> Result<agora_market::Served, Error> {
        let mut served = self.inner.prove(model, input, context)?;
        if self.proving == Proving::RaisesOutput
            && let JobOutput::Zk { claim, .. } = &mut served.output
            && let Some(outputs) = &mut claim.outputs
        {
            outputs[0] += 1;
        }
        Ok(served)
    }
}

/// Registers the tiny provable model on chain (from the client, with nonce `nonce`), and a
/// provider `label` serving it (funded with nonce `nonce + 1`) on the net's runtime, keeping its
/// jobs in its own folder. Returns the provider, the model id and the folder.
fn zk_provider(
    net: &Net,
    label: &str,
    nonce: u64,
    proving: Proving,
) -> (Arc<Provider>, Hash, std::path::PathBuf) {
    let model = tiny_zk();
    let key = ProvingKey::new(model.clone()).unwrap();
    let id = Hash(key.verifying_key().model_id());
    if net.chain.model(&id).unwrap().is_none() {
        let messages = vec![Message::RegisterZkModel {
            name: model.name.clone(),
            model: model.to_bytes(),
        }];
        // A registration pays for the bytes the chain commits to.
        let fee = 1_000 * u128::from(agora_types::work_units(&messages));
        let register = Transaction {
            chain_id: CHAIN_ID.into(),
            sender: net.client.public(),
            nonce,
            fee,
            messages,
        };
        net.node
            .submit(&register.sign(&net.client).encode())
            .unwrap();
        net.block();
        assert!(net.chain.zk_model(&id).unwrap().is_some());
    }
    let provider_key = Keypair::from_seed_label(label);
    net.node
        .submit(&tx(
            &net.client,
            nonce + 1,
            vec![Message::Transfer {
                to: provider_key.address(),
                amount: 20 * AGR,
            }],
        ))
        .unwrap();
    net.block();
    // A proved job's fee covers its settlement: more escrow than the chat tests need.
    net.node
        .submit(&tx(
            &net.client,
            nonce + 2,
            vec![Message::EscrowDeposit { amount: 10 * AGR }],
        ))
        .unwrap();
    net.block();
    let mut backend = InferBackend::default();
    assert_eq!(backend.add_provable(key), id);
    let dir = net.t.dir.path().join(label);
    let listener = net
        .t
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let secret = ProviderSecret::generate();
    let info = ProviderInfo {
        models: vec![id],
        price_input_per_1k: 10_000,
        price_output_per_1k: 30_000,
        endpoint: format!("http://{}", listener.local_addr().unwrap()),
        encryption_key: EncryptionKey(secret.public()),
    };
    let provider = Arc::new(
        Provider::new(
            provider_key,
            secret,
            info,
            net.chain.clone(),
            Arc::new(ZkBackend {
                inner: backend,
                proving,
            }),
            ProviderConfig {
                min_expiry_margin: 5,
                jobs_dir: Some(dir.clone()),
                ..ProviderConfig::default()
            },
        )
        .unwrap(),
    );
    provider.ensure_registered(10 * AGR).unwrap();
    net.block();
    let router = agora_market::provider_router(provider.clone());
    net.t.rt.spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (provider, id, dir)
}

fn infer(base: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (status, body, _) = post(base, "/v1/zk/infer", Some("test-key"), body);
    (status, serde_json::from_str(&body).unwrap())
}

fn files(dir: &std::path::Path, ext: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == ext))
            .count()
    })
}

#[test]
fn a_proved_job_is_answered_verified_and_paid_in_the_block_that_settles_it() {
    let net = start();
    let (provider, id, dir) = zk_provider(&net, "prover", 1, Proving::Honest);
    let base = serve_gateway(&net);
    let input: Vec<i8> = vec![5, -3, 100, 0, 7, -128, 127, 1];
    let expected = tiny_zk().forward(&input).unwrap();

    let (status, body) = infer(
        &base,
        serde_json::json!({"model": "tiny-zk", "input": input, "threshold": 50}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["verified"], true);
    assert_eq!(body["model_id"], id.to_hex());
    assert_eq!(body["outputs"], serde_json::json!(expected));
    assert_eq!(body["below"], expected[0] < 50);
    // The commitment the client signed opens with the salt it got back.
    let salt: [u32; 8] = serde_json::from_value(body["salt"].clone()).unwrap();
    let commitment = agora_types::commitment_hash(&agora_zk::input_commitment(&input, &salt));
    assert_eq!(body["input_commitment"], commitment.to_hex());
    assert_eq!(body["agora"]["input_hash"], commitment.to_hex());
    assert_eq!(body["usage"]["prompt_tokens"], 8);
    assert_eq!(body["usage"]["completion_tokens"], 3);
    let job_id: Hash = body["agora"]["job_id"].as_str().unwrap().parse().unwrap();
    let fee: u128 = body["agora"]["fee"].as_str().unwrap().parse().unwrap();
    // The tokens' price, and the settlement's chain fee at this chain's minimum (1,000 a unit).
    assert_eq!(
        fee,
        job_fee(10_000, 30_000, 8, 3).unwrap() + agora_types::zk_proof_fee(1_000)
    );

    // Kept on disk until settled; never kept for a check (a proved job is never drawn).
    assert_eq!(files(&dir, "zkjob"), 1);
    assert_eq!(files(&dir, "job"), 0);
    let before = net.chain.escrow(&net.client.address()).unwrap();
    assert_eq!(provider.settle().unwrap().unwrap().1, 1);
    net.block();
    let job = net.chain.job(&job_id).unwrap().expect("settled");
    assert_eq!(job.job.level, agora_types::Verification::Zk);
    assert_eq!(
        job.job.output_hash.to_hex(),
        body["output_hash"].as_str().unwrap()
    );
    let verified = job.zk.expect("the chain keeps what it verified");
    assert_eq!(verified.claim.outputs.as_deref(), Some(expected.as_slice()));
    let after = net.chain.escrow(&net.client.address()).unwrap();
    assert_eq!(before.balance - after.balance, fee);
    // Settled: the file goes, and nothing is sent again.
    assert!(provider.settle().unwrap().is_none());
    assert_eq!(files(&dir, "zkjob"), 0);
    assert_eq!(provider.unsettled(), 0);

    // Bad requests: clear errors, nothing charged.
    for (body, status, code) in [
        (
            serde_json::json!({"model": "tiny-zk", "input": [1, 2, 3]}),
            400,
            "bad_input",
        ),
        (
            serde_json::json!({"model": "tiny-zk", "input": [300, 0, 0, 0, 0, 0, 0, 0]}),
            400,
            "invalid_input",
        ),
        (
            serde_json::json!({"model": "tiny-zk", "input": input, "verification": "sampled"}),
            400,
            "invalid_verification",
        ),
        (
            serde_json::json!({"model": "tiny-zk", "input": input, "threshold": 1i64 << 40}),
            400,
            "invalid_threshold",
        ),
        (
            serde_json::json!({"model": "tiny-zk", "input": input, "salt": [u32::MAX, 0, 0, 0, 0, 0, 0, 0]}),
            400,
            "invalid_salt",
        ),
        // A text is for a classifier over embeddings: refused before any embedding is paid.
        (
            serde_json::json!({"model": "tiny-zk", "input": "a text"}),
            400,
            "invalid_input",
        ),
        (
            serde_json::json!({"model": "tiny-chat", "input": input}),
            400,
            "not_provable",
        ),
    ] {
        let (got, answer) = infer(&base, body.clone());
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body} → {answer}"
        );
    }
    assert_eq!(provider.unsettled(), 0);

    // A chat model's provider refuses a zk job, and a provable model's a job without "zk".
    let zk_input = JobInput::Zk {
        input: input.clone(),
        salt,
        threshold: 0,
    };
    let (submission, _) = net.submission(40, &zk_input, 1_000_000, 100);
    assert_eq!(
        code(net.provider.admit(&submission).unwrap_err()),
        "bad_input",
        "a chat model takes no provable model's input"
    );
    let request = |verification, input_hash| JobRequest {
        chain_id: CHAIN_ID.into(),
        client: net.client.public(),
        provider: provider.address(),
        model: id,
        input_hash,
        params: JobParams {
            max_tokens: 1,
            verification,
            ..JobParams::default()
        },
        max_fee: 1_000_000,
        nonce: Hash([41; 32]),
        expiry_height: 100,
    };
    let submit = |request: JobRequest| {
        let (envelope, _) = seal(
            &provider.info().encryption_key.0,
            &request.hash(),
            &zk_input.to_bytes(),
        );
        provider.admit(&JobSubmission {
            request: hex::encode(borsh::to_vec(&request.sign(&net.client)).unwrap()),
            input: envelope,
            stream: false,
        })
    };
    let sampled = request(
        agora_types::Verification::Sampled,
        Hash::digest(&zk_input.to_bytes()),
    );
    assert_eq!(code(submit(sampled).unwrap_err()), "zk_mismatch");
    // A request whose input hash is not the input's commitment.
    let wrong = request(agora_types::Verification::Zk, Hash([7; 32]));
    assert_eq!(code(submit(wrong).unwrap_err()), "input_hash_mismatch");
}

#[test]
fn a_provider_that_alters_a_proved_result_is_refused_and_never_paid() {
    let net = start();
    let (liar, _, _) = zk_provider(&net, "liar", 1, Proving::RaisesOutput);
    let base = serve_gateway(&net);
    let before = net.chain.escrow(&net.client.address()).unwrap();
    let (status, body) = infer(
        &base,
        serde_json::json!({"model": "tiny-zk", "input": [1, 2, 3, 4, 5, 6, 7, 8]}),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("bad_proof")),
        "{body}"
    );
    // It claims the job all the same: the chain verifies the proof against the claim, and
    // refuses it.
    assert_eq!(liar.settle().unwrap().unwrap().1, 1);
    net.block();
    let after = net.chain.escrow(&net.client.address()).unwrap();
    assert_eq!(after.balance, before.balance);
    assert_eq!(
        net.chain
            .provider(&liar.address())
            .unwrap()
            .unwrap()
            .provider
            .jobs_settled,
        0
    );
}

#[test]
fn proved_jobs_survive_a_provider_restart_and_settle_at_most_four_at_a_time() {
    let net = start();
    let (provider, id, dir) = zk_provider(&net, "prover", 1, Proving::Honest);
    let key = ProvingKey::new(tiny_zk()).unwrap();
    let mut ids = Vec::new();
    for n in 0..5u8 {
        let input = JobInput::Zk {
            input: vec![n as i8; 8],
            salt: [u32::from(n); 8],
            threshold: 0,
        };
        let request = JobRequest {
            chain_id: CHAIN_ID.into(),
            client: net.client.public(),
            provider: provider.address(),
            model: id,
            input_hash: input.input_hash(),
            params: JobParams {
                max_tokens: 1,
                verification: agora_types::Verification::Zk,
                ..JobParams::default()
            },
            max_fee: 1_000_000,
            nonce: Hash([50 + n; 32]),
            expiry_height: 200,
        };
        ids.push(request.id());
        let (envelope, _) = seal(
            &provider.info().encryption_key.0,
            &request.hash(),
            &input.to_bytes(),
        );
        let job = provider
            .admit(&JobSubmission {
                request: hex::encode(borsh::to_vec(&request.sign(&net.client)).unwrap()),
                input: envelope,
                stream: false,
            })
            .unwrap();
        provider
            .execute(job, &mut |_| ControlFlow::Continue(()))
            .unwrap();
    }
    assert_eq!(files(&dir, "zkjob"), 5);

    // A new process on the same key and folder takes the five claims back.
    let mut backend = InferBackend::default();
    backend.add_provable(key);
    let secret = ProviderSecret::generate();
    let mut info = provider.info().clone();
    info.encryption_key = EncryptionKey(secret.public());
    drop(provider);
    let restarted = Provider::new(
        Keypair::from_seed_label("prover"),
        secret,
        info,
        net.chain.clone(),
        Arc::new(backend),
        ProviderConfig {
            min_expiry_margin: 5,
            jobs_dir: Some(dir.clone()),
            ..ProviderConfig::default()
        },
    )
    .unwrap();
    assert_eq!(restarted.unsettled(), 5);
    // One proof per transaction, and no more than the mempool keeps for one sender.
    for _ in 0..4 {
        assert_eq!(restarted.settle().unwrap().unwrap().1, 1);
    }
    assert!(restarted.settle().unwrap().is_none(), "four are in flight");
    net.block();
    assert_eq!(restarted.settle().unwrap().unwrap().1, 1);
    net.block();
    for id in &ids {
        let job = net.chain.job(id).unwrap().expect("settled");
        assert_eq!(job.job.level, agora_types::Verification::Zk);
    }
    assert!(restarted.settle().unwrap().is_none());
    assert_eq!(files(&dir, "zkjob"), 0);
    assert_eq!(restarted.unsettled(), 0);
}
