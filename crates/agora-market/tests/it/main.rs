//! The provider against a real node and its HTTP API on 127.0.0.1, with a tiny chat model.

#![allow(clippy::unwrap_used)]

use agora_chain::Node;
use agora_infer::chat::ChatModel;
use agora_infer::testing::{TinySpec, write_tiny_chat_model};
use agora_market::{
    Chain, Error, HttpChain, InferBackend, JobInput, JobOutput, JobSubmission, Provider,
    ProviderConfig, ProviderSecret, open_delivery, seal,
};
use agora_state::{Genesis, GenesisAccount, MarketParams, Params};
use agora_types::{
    AGR, Address, EncryptionKey, Hash, JobParams, JobRequest, Keypair, Message, ModelKind,
    ProviderInfo, Transaction, job_fee,
};
use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

mod audit;
mod cheats;
mod verify;
mod zk;

const MODEL: Hash = Hash([0x11; 32]);
const CHAIN_ID: &str = "market-test";

struct Net {
    /// The node API's URL.
    base: String,
    node: Arc<Node>,
    chain: Arc<dyn Chain>,
    provider: Provider,
    client: Keypair,
    /// The node and its API (its runtime and folder too).
    t: agora_api::testing::TestNode,
}

impl Net {
    fn block(&self) {
        self.t.block();
    }

    /// A request from the client for `input`, and its sealed submission.
    fn submission(
        &self,
        job: u8,
        input: &JobInput,
        max_fee: u128,
        expiry: u64,
    ) -> (JobSubmission, agora_market::OutputReader) {
        self.submission_from(&self.client, job, input, max_fee, expiry)
    }

    fn submission_from(
        &self,
        client: &Keypair,
        job: u8,
        input: &JobInput,
        max_fee: u128,
        expiry: u64,
    ) -> (JobSubmission, agora_market::OutputReader) {
        let bytes = input.to_bytes();
        let request = JobRequest {
            chain_id: CHAIN_ID.into(),
            client: client.public(),
            provider: self.provider.address(),
            model: MODEL,
            input_hash: Hash::digest(&bytes),
            params: JobParams {
                max_tokens: 8,
                ..JobParams::default()
            },
            max_fee,
            nonce: Hash([job; 32]),
            expiry_height: expiry,
        };
        let (envelope, reader) = seal(
            &self.provider.info().encryption_key.0,
            &request.hash(),
            &bytes,
        );
        let signed = request.sign(client);
        (
            JobSubmission {
                request: hex::encode(borsh::to_vec(&signed).unwrap()),
                input: envelope,
                stream: true,
            },
            reader,
        )
    }
}

fn tx(key: &Keypair, nonce: u64, messages: Vec<Message>) -> Vec<u8> {
    Transaction {
        chain_id: CHAIN_ID.into(),
        sender: key.public(),
        nonce,
        fee: 1_000,
        messages,
    }
    .sign(key)
    .encode()
}

fn start() -> Net {
    start_with(agora_state::VerifyParams::default())
}

fn start_with(verify: agora_state::VerifyParams) -> Net {
    let (provider_key, client) = (
        Keypair::from_seed_label("provider"),
        Keypair::from_seed_label("client"),
    );
    let genesis = Genesis::new(CHAIN_ID)
        .with_params(Params {
            min_fee: 1_000,
            unbonding_period: 5,
        })
        .with_accounts([&provider_key, &client].iter().map(|k| GenesisAccount {
            address: k.address(),
            balance: 200 * AGR,
            bonded: 0,
        }))
        .with_market(MarketParams {
            min_provider_stake: 10 * AGR,
            challenge_window: 2,
            ..MarketParams::default()
        })
        .with_verify(verify)
        .with_model(MODEL, "tiny-chat", ModelKind::Chat)
        .with_model(
            agora_market::auditor_id(),
            agora_audit::MODEL_NAME,
            ModelKind::Audit,
        );
    let t = agora_api::testing::TestNode::start(&genesis, "market-test-validator");
    let (node, base, dir) = (t.node.clone(), t.base.clone(), t.dir.path().to_path_buf());
    let chain: Arc<dyn Chain> = Arc::new(HttpChain::new(&base));

    let model_path = dir.join("tiny.gguf");
    write_tiny_chat_model(&model_path, tiny_spec()).unwrap();
    let mut backend = InferBackend::default();
    backend.add_chat(MODEL, Arc::new(ChatModel::load(&model_path, 1).unwrap()));
    backend.add_auditor();
    let secret = ProviderSecret::generate();
    let info = ProviderInfo {
        models: vec![MODEL, agora_market::auditor_id()],
        price_input_per_1k: 10_000,
        price_output_per_1k: 30_000,
        endpoint: "http://127.0.0.1:1".into(),
        encryption_key: EncryptionKey(secret.public()),
    };
    let provider = Provider::new(
        provider_key,
        secret,
        info,
        chain.clone(),
        Arc::new(backend),
        ProviderConfig {
            min_expiry_margin: 5,
            jobs_dir: Some(dir.join("jobs")),
            ..ProviderConfig::default()
        },
    )
    .unwrap();
    let net = Net {
        node,
        base: base.clone(),
        chain,
        provider,
        client,
        t,
    };
    assert!(net.provider.ensure_registered(10 * AGR).unwrap().is_some());
    net.node
        .submit(&tx(
            &net.client,
            0,
            vec![Message::EscrowDeposit { amount: 1_000_000 }],
        ))
        .unwrap();
    net.block();
    assert!(net.chain.is_provider(&net.provider.address()).unwrap());
    assert!(net.provider.ensure_registered(10 * AGR).unwrap().is_none());
    net
}

fn code(e: Error) -> &'static str {
    match e {
        Error::Refused { code, .. } => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_job_is_served_sealed_receipted_and_settled_for_exactly_its_fee() {
    let net = start();
    let input = JobInput::Completion {
        prompt: "hello there".into(),
        grammar: None,
    };
    let (submission, mut reader) = net.submission(1, &input, 1_000_000, 100);
    let job = net.provider.admit(&submission).unwrap();
    let mut streamed = Vec::new();
    let delivery = net
        .provider
        .execute(job, &mut |piece| {
            streamed.push(reader.open(piece.n, &piece.sealed).unwrap());
            ControlFlow::Continue(())
        })
        .unwrap();
    let (output, receipt) = open_delivery(&mut reader, &delivery).unwrap();
    receipt.verify().unwrap();
    assert_eq!(receipt.receipt.output_hash, output.hash());
    let JobOutput::Text { text, tokens, .. } = &output else {
        panic!("text expected, got {output:?}");
    };
    assert_eq!(streamed.concat(), text.as_bytes());
    assert_eq!(receipt.receipt.output_tokens as usize, tokens.len());
    let fee = job_fee(
        10_000,
        30_000,
        receipt.receipt.input_tokens,
        receipt.receipt.output_tokens,
    )
    .unwrap();
    assert_eq!(receipt.receipt.fee, fee);

    // The same job id is not served twice.
    assert_eq!(
        code(net.provider.admit(&submission).unwrap_err()),
        "duplicate_job"
    );

    // The input is kept for the verification window, sealed: the provider opens it, its disk
    // holds no prompt in plain text.
    let job_id = receipt.receipt.request_hash;
    assert_eq!(
        net.provider.kept_input(&job_id).unwrap().unwrap(),
        input.to_bytes()
    );
    let kept_job = net.provider.kept_job(&job_id).unwrap().unwrap();
    assert_eq!(kept_job.output, output.to_bytes());
    let kept = std::fs::read(net.t.dir.path().join(format!("jobs/{job_id}.job"))).unwrap();
    assert!(!kept.windows(11).any(|w| w == b"hello there"));
    assert!(!kept.windows(text.len()).any(|w| w == text.as_bytes()) || text.is_empty());
    assert!(net.provider.kept_input(&Hash([9; 32])).unwrap().is_none());

    let before = net.chain.escrow(&net.client.address()).unwrap();
    assert_eq!(net.provider.settle().unwrap().unwrap().1, 1);
    assert_eq!(net.provider.unsettled(), 0);
    net.block();
    let after = net.chain.escrow(&net.client.address()).unwrap();
    assert_eq!(before.balance - after.balance, fee);
}

#[test]
fn bad_requests_are_refused_before_anything_runs() {
    let net = start();
    let input = JobInput::Completion {
        prompt: "hi".into(),
        grammar: None,
    };
    // Max fee below the worst case (8 output tokens at 30,000 per 1,000 alone is 240).
    let (low, _) = net.submission(2, &input, 100, 100);
    assert_eq!(
        code(net.provider.admit(&low).unwrap_err()),
        "max_fee_too_low"
    );
    // Expires too soon to be settled.
    let (soon, _) = net.submission(3, &input, 1_000_000, 2);
    assert_eq!(code(net.provider.admit(&soon).unwrap_err()), "expired");
    // A client with no escrow.
    let poor = Keypair::from_seed_label("poor");
    let (unpaid, _) = net.submission_from(&poor, 4, &input, 1_000_000, 100);
    assert_eq!(
        code(net.provider.admit(&unpaid).unwrap_err()),
        "insufficient_escrow"
    );
    // Counting a prompt is work the provider does only for a client that can pay at least for
    // the output: a prompt over the model's context is refused as such to a funded client, and
    // as unpaid to a client with no escrow (its input never counted).
    let long = JobInput::Completion {
        prompt: "hi ".repeat(600),
        grammar: None,
    };
    let (funded_long, _) = net.submission(8, &long, 1_000_000_000, 100);
    assert_eq!(
        code(net.provider.admit(&funded_long).unwrap_err()),
        "context_length_exceeded"
    );
    let (unpaid_long, _) = net.submission_from(&poor, 9, &long, 1_000_000_000, 100);
    assert_eq!(
        code(net.provider.admit(&unpaid_long).unwrap_err()),
        "insufficient_escrow"
    );
    // A flipped ciphertext byte.
    let (mut s, _) = net.submission(7, &input, 1_000_000, 100);
    let mut ct = hex::decode(&s.input.ciphertext).unwrap();
    ct[0] ^= 1;
    s.input.ciphertext = hex::encode(ct);
    assert_eq!(
        code(net.provider.admit(&s).unwrap_err()),
        "undecryptable_input"
    );
    // The input swapped for another one sealed properly: its hash does not match the request.
    let (mut swapped, _) = net.submission(5, &input, 1_000_000, 100);
    let other = JobInput::Completion {
        prompt: "something else".into(),
        grammar: None,
    };
    let request: agora_types::SignedJobRequest =
        borsh::from_slice(&hex::decode(&swapped.request).unwrap()).unwrap();
    swapped.input = seal(
        &net.provider.info().encryption_key.0,
        &request.request.hash(),
        &other.to_bytes(),
    )
    .0;
    assert_eq!(
        code(net.provider.admit(&swapped).unwrap_err()),
        "input_hash_mismatch"
    );
    // Signed by someone else than the client it names.
    let mut forged = request.clone();
    forged.request.nonce = Hash([6; 32]);
    let forged = agora_types::SignedJobRequest {
        signature: Keypair::from_seed_label("mallory").sign(&forged.request.sign_bytes()),
        ..forged
    };
    let s = JobSubmission {
        request: hex::encode(borsh::to_vec(&forged).unwrap()),
        ..swapped.clone()
    };
    assert_eq!(
        code(net.provider.admit(&s).unwrap_err()),
        "invalid_signature"
    );
    // Garbage.
    let s = JobSubmission {
        request: "zz".into(),
        ..swapped
    };
    assert_eq!(
        code(net.provider.admit(&s).unwrap_err()),
        "malformed_request"
    );
}

/// Starts a provider with its own key and prices, served over HTTP on 127.0.0.1, registered on
/// the chain. Returns it and its endpoint.
/// The tiny model of these tests: context enough for a system message that describes tools.
pub(crate) fn tiny_spec() -> TinySpec {
    TinySpec {
        context: 1024,
        ..TinySpec::default()
    }
}

fn serve_provider(net: &Net, label: &str, price_out: u128, nonce: u64) -> (Arc<Provider>, String) {
    register_provider(net, label, price_out, nonce, true, Duration::ZERO)
}

/// The tiny model's backend, misbehaving as told: it waits `delay` before each job (a slow or
/// far-away machine); with `freeze_after`, after that many pieces of output (0: before any) it
/// freezes for good, as a process does when it is killed (its thread never returns, so it never
/// signs a receipt), raising `frozen`.
struct Faulty {
    inner: InferBackend,
    delay: Duration,
    freeze_after: Option<usize>,
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

impl Faulty {
    fn slow(inner: InferBackend, delay: Duration) -> Faulty {
        Faulty {
            inner,
            delay,
            freeze_after: None,
            frozen: Arc::default(),
        }
    }

    fn freeze(&self) -> ! {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

impl agora_market::Backend for Faulty {
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
        std::thread::sleep(self.delay);
        let Some(after) = self.freeze_after else {
            return self.inner.run(model, input, params, on_text);
        };
        if after == 0 {
            self.freeze();
        }
        let mut pieces = 0;
        self.inner.run(model, input, params, &mut |text| {
            let flow = on_text(text);
            pieces += 1;
            if pieces == after {
                self.freeze();
            }
            flow
        })
    }
}

/// A provider killed with its process while it serves a job: after `pieces` of its output (0:
/// before any), its server's runtime is shut down, closing every connection, and its job never
/// finishes.
fn killed_mid_job(net: &Net, label: &str, nonce: u64, pieces: usize) -> (Arc<Provider>, Killer) {
    let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Cheapest, with more than half the stake of those ready: the band holds it alone, so it is
    // tried first.
    let (provider, _) = provider_on(net, label, 10, nonce, 25 * AGR, Some(&rt), &|inner| {
        Arc::new(Faulty {
            inner,
            delay: Duration::ZERO,
            freeze_after: Some(pieces),
            frozen: frozen.clone(),
        })
    });
    (provider, Killer(Some(rt), frozen))
}

/// Kills a provider's server once its job has frozen.
struct Killer(
    Option<tokio::runtime::Runtime>,
    Arc<std::sync::atomic::AtomicBool>,
);

impl Killer {
    /// Kills the server once its job has frozen, and `ready` (if any) has fired.
    fn kill_when_frozen(
        mut self,
        ready: Option<std::sync::mpsc::Receiver<()>>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            while !self.1.load(std::sync::atomic::Ordering::SeqCst) {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the job never froze"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            if let Some(ready) = ready {
                ready
                    .recv_timeout(Duration::from_secs(60))
                    .expect("the client saw its pieces");
            }
            if let Some(rt) = self.0.take() {
                rt.shutdown_background();
            }
        })
    }
}

#[test]
fn a_provider_killed_mid_job_gets_the_client_a_failover_or_an_error_and_no_charge() {
    let net = start();
    let gateway = Arc::new(agora_market::Gateway::new(net.chain.clone()));
    let input = say_hi();
    let params = JobParams {
        max_tokens: 8,
        ..JobParams::default()
    };
    let escrow = || net.chain.escrow(&net.client.address()).unwrap().balance;
    // The net's own provider is down; this one answers.
    let (fallback, _) = serve_provider(&net, "fallback", 50_000, 1);

    // Killed before its first piece of output: the gateway fails over to the next provider,
    // and the client pays that one's fee only.
    let (early, killer) = killed_mid_job(&net, "killed-early", 2, 0);
    assert_eq!(
        gateway.candidates(&MODEL).unwrap()[0].address,
        early.address()
    );
    let killer = killer.kill_when_frozen(None);
    let before = escrow();
    let done = gateway
        .run(&net.client, MODEL, &input, params.clone(), &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    killer.join().unwrap();
    assert_eq!(done.provider, fallback.address());
    assert_eq!(early.unsettled(), 0);
    fallback.settle().unwrap();
    net.block();
    assert_eq!(before - escrow(), done.receipt.receipt.fee);

    // Killed after two pieces, once the client has them: no failover can hide the cut; the
    // client gets an error, and nothing is charged, then or later. (The dead early provider may
    // be drawn first again once it has cooled down: it refuses the connection, and the job goes
    // on to the late one, which is in the band with it, before the dearer ones.)
    let (late, killer) = killed_mid_job(&net, "killed-late", 3, 2);
    let order: Vec<Address> = gateway
        .candidates(&MODEL)
        .unwrap()
        .iter()
        .map(|p| p.address)
        .collect();
    assert!(order[..2].contains(&late.address()), "{order:?}");
    let before = escrow();
    let (saw_two, ready) = std::sync::mpsc::channel();
    let killer = killer.kill_when_frozen(Some(ready));
    let mut seen = 0;
    let err = gateway
        .run(&net.client, MODEL, &input, params, &mut |_| {
            seen += 1;
            if seen == 2 {
                let _ = saw_two.send(());
            }
            ControlFlow::Continue(())
        })
        .unwrap_err();
    killer.join().unwrap();
    assert_eq!(seen, 2, "{err:?}");
    let Error::Refused { status, code, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!((*status, *code), (502, "provider_broke_off"), "{err:?}");
    for _ in 0..3 {
        assert_eq!(late.settle().unwrap(), None, "nothing to settle");
        assert_eq!(fallback.settle().unwrap(), None);
        net.block();
    }
    assert_eq!(escrow(), before);
}

#[test]
fn a_request_refused_after_the_work_is_answered_as_is_and_blames_no_provider() {
    let net = start();
    let (big, _) = serve_provider(&net, "big-audits", 1_000, 1);
    let gateway = agora_market::Gateway::new(net.chain.clone());
    let auditor = agora_market::auditor_id();
    // A contract whose audit report is too large for a check to carry: the provider runs it,
    // then refuses it (a reveal over 384 KiB), in its stream.
    let mut src = String::from("contract C {\n  address owner;\n  function f() public {\n");
    for _ in 0..2_500 {
        src.push_str("    require(tx.origin == owner);\n");
    }
    src.push_str("  }\n}\n");
    let input = JobInput::Audit {
        files: vec![agora_market::SourceFile {
            name: "big.sol".into(),
            source: src,
        }],
    };
    for _ in 0..2 {
        let err = gateway
            .run(
                &net.client,
                auditor,
                &input,
                JobParams::default(),
                &mut |_| ControlFlow::Continue(()),
            )
            .unwrap_err();
        let Error::Refused { status, code, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!((*status, *code), (413, "too_large_to_verify"), "{err:?}");
        // Not blamed: still first (before, it cooled down, and so did every provider the
        // request was sent to next).
        assert_eq!(
            gateway.candidates(&auditor).unwrap()[0].address,
            big.address()
        );
    }
    assert_eq!(big.unsettled(), 0);
}

/// As [`serve_provider`]; with `serve` false, the endpoint is a port nobody listens on; each job
/// starts after `delay`.
fn register_provider(
    net: &Net,
    label: &str,
    price_out: u128,
    nonce: u64,
    serve: bool,
    delay: Duration,
) -> (Arc<Provider>, String) {
    let rt = serve.then_some(&net.t.rt);
    provider_on(net, label, price_out, nonce, 10 * AGR, rt, &|b| {
        Arc::new(Faulty::slow(b, delay))
    })
}

/// A provider registered for `label`, its backend wrapped by `wrap`, served on `rt` (none: the
/// endpoint is a port nobody listens on).
fn provider_on(
    net: &Net,
    label: &str,
    price_out: u128,
    nonce: u64,
    stake: u128,
    rt: Option<&tokio::runtime::Runtime>,
    wrap: &dyn Fn(InferBackend) -> Arc<dyn agora_market::Backend>,
) -> (Arc<Provider>, String) {
    let key = Keypair::from_seed_label(label);
    // Funds for the stake, from the client (who has plenty).
    net.node
        .submit(&tx(
            &net.client,
            nonce,
            vec![Message::Transfer {
                to: key.address(),
                amount: stake + 10 * AGR,
            }],
        ))
        .unwrap();
    net.block();
    let listener = net
        .t
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let dir = net.t.dir.path().join(label);
    std::fs::create_dir_all(&dir).unwrap();
    let model_path = dir.join("tiny.gguf");
    // Room for the prompts that explain audit findings (the tiny vocabulary spends a token on
    // almost every byte).
    let spec = TinySpec {
        context: 1024,
        ..TinySpec::default()
    };
    write_tiny_chat_model(&model_path, spec).unwrap();
    let mut backend = InferBackend::default();
    backend.add_chat(MODEL, Arc::new(ChatModel::load(&model_path, 1).unwrap()));
    backend.add_auditor();
    let secret = ProviderSecret::generate();
    let info = ProviderInfo {
        models: vec![MODEL, agora_market::auditor_id()],
        price_input_per_1k: 10_000,
        price_output_per_1k: price_out,
        endpoint: endpoint.clone(),
        encryption_key: EncryptionKey(secret.public()),
    };
    let provider = Arc::new(
        Provider::new(
            key,
            secret,
            info,
            net.chain.clone(),
            wrap(backend),
            ProviderConfig {
                min_expiry_margin: 5,
                ..ProviderConfig::default()
            },
        )
        .unwrap(),
    );
    provider.ensure_registered(stake).unwrap();
    net.block();
    if let Some(rt) = rt {
        // The listener was bound on the net's runtime; it moves to `rt`'s reactor.
        let listener = listener.into_std().unwrap();
        let router = agora_market::provider_router(provider.clone());
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = axum::serve(listener, router).await;
        });
    } else {
        drop(listener);
    }
    (provider, endpoint)
}

#[test]
fn the_gateway_draws_within_the_price_band_and_fails_over_when_one_is_down() {
    let net = start();
    let (cheap, _) = serve_provider(&net, "cheap", 1_000, 1);
    let (dear, _) = serve_provider(&net, "dear", 50_000, 2);
    let gateway = agora_market::Gateway::new(net.chain.clone());
    // Equal stakes; the median fee is the net's own provider's (30,000): the band is it and
    // the cheap one, and the dear one comes after them.
    let band = [cheap.address(), net.provider.address()];
    let mut first = BTreeSet::new();
    for _ in 0..40 {
        let order: Vec<Address> = gateway
            .candidates(&MODEL)
            .unwrap()
            .iter()
            .map(|p| p.address)
            .collect();
        assert_eq!(order.len(), 3);
        assert!(
            band.contains(&order[0]) && band.contains(&order[1]),
            "{order:?}"
        );
        assert_eq!(order[2], dear.address());
        first.insert(order[0]);
    }
    assert_eq!(first.len(), 2, "each in the band comes first by its stake");
    assert_eq!(gateway.resolve_model("tiny-chat").unwrap(), MODEL);
    assert!(gateway.resolve_model("nope").is_err());

    let input = say_hi();
    let params = JobParams {
        max_tokens: 6,
        ..JobParams::default()
    };
    let mut streamed = String::new();
    let done = gateway
        .run(&net.client, MODEL, &input, params.clone(), &mut |t| {
            streamed.push_str(t);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(band.contains(&done.provider));
    let JobOutput::Text { text, .. } = &done.output else {
        panic!("text expected");
    };
    assert_eq!(&streamed, text);
    assert_eq!(cheap.unsettled() + net.provider.unsettled(), 1);
    let first_fee = done.receipt.receipt.fee;

    // A still cheaper provider registers, but nothing answers at its endpoint. The band is now
    // it and the cheap one: whichever is drawn first, the job ends on the cheap one, with no
    // output lost.
    let (down, _) = register_provider(&net, "cheapest-but-down", 10, 3, false, Duration::ZERO);
    let mut fees = first_fee;
    for tries in 1.. {
        let done = gateway
            .run(&net.client, MODEL, &input, params.clone(), &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(done.provider, cheap.address());
        fees += done.receipt.receipt.fee;
        // Run until the down one was drawn first (half the time) and failed: it then comes
        // after all the others for a while.
        // (The band is the cheap one and the down one while neither cools down.)
        let order = gateway.candidates(&MODEL).unwrap();
        if order[..2].iter().all(|p| p.address != down.address()) {
            break;
        }
        assert!(tries < 40, "the down provider was never drawn first");
    }
    assert_eq!(down.unsettled() + dear.unsettled(), 0);
    // The provider that failed comes after all the others that are not cooling down too (the
    // net's own provider may be: nothing listens at its endpoint).
    let order: Vec<Address> = gateway
        .candidates(&MODEL)
        .unwrap()
        .iter()
        .map(|p| p.address)
        .collect();
    assert_eq!(order.len(), 4);
    let at = |a: Address| order.iter().position(|p| *p == a).unwrap();
    assert!(
        at(cheap.address()) < at(dear.address()) && at(dear.address()) < at(down.address()),
        "{order:?}"
    );
    assert!(gateway.latency_ms(&cheap.address(), &MODEL).is_some());
    assert!(gateway.latency_ms(&down.address(), &MODEL).is_none());

    // Settled on-chain: the client's escrow went down by exactly the fees.
    let before = net.chain.escrow(&net.client.address()).unwrap();
    cheap.settle().unwrap();
    net.provider.settle().unwrap();
    net.block();
    let after = net.chain.escrow(&net.client.address()).unwrap();
    assert_eq!(before.balance - after.balance, fees);
}

#[test]
fn with_every_provider_down_the_gateway_answers_503_and_charges_nothing() {
    let net = start();
    // The net's only provider is registered at an endpoint nobody listens on.
    let (down, _) = register_provider(&net, "down-too", 1_000, 1, false, Duration::ZERO);
    let gateway = agora_market::Gateway::new(net.chain.clone());
    assert_eq!(gateway.candidates(&MODEL).unwrap().len(), 2);
    let before = net.chain.escrow(&net.client.address()).unwrap();
    let input = JobInput::Completion {
        prompt: "hello".into(),
        grammar: None,
    };
    let err = gateway
        .run(
            &net.client,
            MODEL,
            &input,
            JobParams::default(),
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap_err();
    let Error::Refused { status, code, .. } = err else {
        panic!("{err:?}");
    };
    assert_eq!((status, code), (503, "no_provider_available"));
    net.block();
    net.block();
    assert_eq!(net.chain.escrow(&net.client.address()).unwrap(), before);
    assert_eq!((net.provider.unsettled(), down.unsettled()), (0, 0));
}

#[test]
fn at_equal_prices_the_gateway_learns_which_provider_answers_faster() {
    let net = start();
    let slow_delay = Duration::from_millis(6 * agora_market::LATENCY_CLASS_MS);
    let (slow, _) = register_provider(&net, "slow", 5_000, 1, true, slow_delay);
    let (fast, _) = register_provider(&net, "fast", 5_000, 2, true, Duration::ZERO);
    let gateway = agora_market::Gateway::new(net.chain.clone());
    let input = say_hi();
    let params = JobParams {
        max_tokens: 2,
        ..JobParams::default()
    };
    // Both are in the price band, by equal stakes; until measured each counts as fast. Run jobs
    // until both were measured.
    for runs in 1.. {
        let done = gateway
            .run(&net.client, MODEL, &input, params.clone(), &mut |_| {
                ControlFlow::Continue(())
            })
            .unwrap();
        assert!([slow.address(), fast.address()].contains(&done.provider));
        if gateway.latency_ms(&slow.address(), &MODEL).is_some()
            && gateway.latency_ms(&fast.address(), &MODEL).is_some()
        {
            assert_eq!(slow.unsettled() + fast.unsettled(), runs);
            break;
        }
        assert!(runs < 40, "both should have been drawn by now");
    }
    let (s, f) = (
        gateway.latency_ms(&slow.address(), &MODEL).unwrap(),
        gateway.latency_ms(&fast.address(), &MODEL).unwrap(),
    );
    assert!(
        s >= slow_delay.as_millis() as u64 && s > 2 * f + agora_market::LATENCY_CLASS_MS,
        "{s} vs {f}"
    );
    // Slower than twice the median (the fast one's time) and 100 ms more, the slow one weighs
    // a sixteenth as much: the fast one comes first about 94 % of the time.
    let fast_first = (0..400)
        .filter(|_| gateway.candidates(&MODEL).unwrap()[0].address == fast.address())
        .count();
    assert!(fast_first >= 340, "{fast_first} of 400");
}

/// The gateway's OpenAI-compatible API on 127.0.0.1, paying from the test client's escrow.
fn serve_gateway(net: &Net) -> String {
    let gateway = Arc::new(agora_market::Gateway::new(net.chain.clone()));
    let keys = [("test-key".to_string(), Keypair::from_seed_label("client"))].into();
    let state = agora_market::OpenAiState::new(gateway, keys);
    let listener = net
        .t
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = agora_market::openai_router(state);
    net.t.rt.spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    base
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into()
}

fn post(
    base: &str,
    path: &str,
    key: Option<&str>,
    body: serde_json::Value,
) -> (u16, String, Option<String>) {
    let mut req = agent().post(&format!("{base}{path}"));
    if let Some(k) = key {
        req = req.header("Authorization", &format!("Bearer {k}"));
    }
    let mut r = req.send_json(body).unwrap();
    let job = r
        .headers()
        .get("x-agora-job-id")
        .map(|v| v.to_str().unwrap().to_string());
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap(),
        job,
    )
}

/// The JSON chunks of a server-sent stream, without its closing `[DONE]`.
fn sse_chunks(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[test]
fn openai_routes_answer_stream_and_settle() {
    let net = start();
    let (provider, _) = serve_provider(&net, "openai-provider", 5_000, 1);
    let base = serve_gateway(&net);

    let mut r = agent().get(&format!("{base}/v1/models")).call().unwrap();
    let models: serde_json::Value = r.body_mut().read_json().unwrap();
    assert_eq!(models["data"][0]["id"], "tiny-chat", "{models}");

    let chat = |stream: bool| {
        serde_json::json!({
            "model": "tiny-chat",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
            "max_tokens": 6,
            "stream": stream,
        })
    };
    let (status, body, _) = post(&base, "/v1/chat/completions", None, chat(false));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_api_key"));
    let mut unknown = chat(false);
    unknown["model"] = "gpt-4".into();
    let (status, body, _) = post(&base, "/v1/chat/completions", Some("test-key"), unknown);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("model_not_found"));

    let (status, body, job) = post(&base, "/v1/chat/completions", Some("test-key"), chat(false));
    assert_eq!(status, 200, "{body}");
    let whole: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(whole["object"], "chat.completion");
    let content = whole["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let job_id = whole["agora"]["job_id"].as_str().unwrap().to_string();
    assert_eq!(job.as_deref(), Some(job_id.as_str()));
    assert_eq!(
        whole["usage"]["completion_tokens"],
        whole["agora"]["output_tokens"]
    );

    // Streamed: the deltas add up to the same (greedy) answer, and the last chunk has the receipt.
    let (status, body, _) = post(&base, "/v1/chat/completions", Some("test-key"), chat(true));
    assert_eq!(status, 200, "{body}");
    let chunks = sse_chunks(&body);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, content);
    let last = chunks.last().unwrap();
    assert!(last["agora"]["receipt"].is_string());
    assert!(last["choices"][0]["finish_reason"].is_string());

    // `stream_options.include_usage`: one more chunk, with no choices and the request's usage.
    let mut with_usage = chat(true);
    with_usage["stream_options"] = serde_json::json!({"include_usage": true});
    let (status, body, _) = post(&base, "/v1/chat/completions", Some("test-key"), with_usage);
    assert_eq!(status, 200, "{body}");
    let chunks = sse_chunks(&body);
    let (usage, finish) = (&chunks[chunks.len() - 1], &chunks[chunks.len() - 2]);
    assert_eq!(usage["choices"], serde_json::json!([]), "{body}");
    assert_eq!(
        usage["usage"]["completion_tokens"],
        finish["agora"]["output_tokens"]
    );

    // Log-probabilities, chat: one entry per answer token (a stop token is not content), each
    // with its alternatives.
    let mut with_lp = chat(false);
    with_lp["logprobs"] = true.into();
    with_lp["top_logprobs"] = 2.into();
    let (status, body, _) = post(&base, "/v1/chat/completions", Some("test-key"), with_lp);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    let stop = usize::from(v["choices"][0]["finish_reason"] == "stop");
    assert_eq!(
        content.len() + stop,
        v["usage"]["completion_tokens"].as_u64().unwrap() as usize,
        "{body}"
    );
    // The tokens' bytes make the answer (a token may hold part of a character).
    let bytes: Vec<u8> = content
        .iter()
        .flat_map(|e| e["bytes"].as_array().unwrap().clone())
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        v["choices"][0]["message"]["content"].as_str().unwrap()
    );
    for e in content {
        assert_eq!(e["top_logprobs"].as_array().unwrap().len(), 2, "{e}");
        assert!(e["logprob"].as_f64().unwrap() <= 0.0);
    }
    // Completions with echo: the prompt's tokens first (the first without a value), then the
    // answer's, and the text is the prompt and the answer.
    let (status, body, _) = post(
        &base,
        "/v1/completions",
        Some("test-key"),
        serde_json::json!({"model": "tiny-chat", "prompt": "Once upon a time", "max_tokens": 3,
                           "echo": true, "logprobs": 1}),
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let lp = &v["choices"][0]["logprobs"];
    let values = lp["token_logprobs"].as_array().unwrap();
    let prompt_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap() as usize;
    assert!(
        values[0].is_null() && values[1..].iter().all(|x| x.is_f64()),
        "{lp}"
    );
    assert!(values.len() >= prompt_tokens, "{lp}");
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("Once upon a time"), "{text}");
    let tokens: String = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(tokens.starts_with("Once upon a time"), "{tokens}");
    // Scoring a text alone (echo, no answer), as evaluation harnesses do.
    let (status, body, _) = post(
        &base,
        "/v1/completions",
        Some("test-key"),
        serde_json::json!({"model": "tiny-chat", "prompt": "Once upon a time", "max_tokens": 0,
                           "echo": true, "logprobs": 0}),
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["choices"][0]["text"], "Once upon a time");
    assert_eq!(v["usage"]["completion_tokens"], 0);
    assert_eq!(
        v["choices"][0]["logprobs"]["token_logprobs"]
            .as_array()
            .unwrap()
            .len() as u64,
        v["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    // Log-probabilities that could outgrow what a check can carry are refused before any work.
    let mut huge = chat(true);
    huge["max_tokens"] = 200.into();
    huge["logprobs"] = true.into();
    huge["top_logprobs"] = 20.into();
    let (status, body, _) = post(&base, "/v1/chat/completions", Some("test-key"), huge);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("too_large_to_verify"), "{body}");
    for (bad, code) in [
        (
            serde_json::json!({"logprobs": true, "top_logprobs": 50}),
            "invalid_value",
        ),
        (serde_json::json!({"top_logprobs": 2}), "invalid_value"),
    ] {
        let mut body = chat(false);
        for (k, v) in bad.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, text, _) = post(&base, "/v1/chat/completions", Some("test-key"), body);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(code), "{text}");
    }

    // n choices: a job each, seeded one after another, each with its receipt.
    let mut three = chat(false);
    three["n"] = 3.into();
    three["temperature"] = 1.0.into();
    three["seed"] = 5.into();
    let (status, body, _) = post(&base, "/v1/chat/completions", Some("test-key"), three);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3, "{body}");
    let mut jobs = BTreeSet::new();
    let mut completion = 0;
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i, "{c}");
        jobs.insert(c["agora"]["job_id"].as_str().unwrap().to_string());
        completion += c["agora"]["output_tokens"].as_u64().unwrap();
    }
    assert_eq!(jobs.len(), 3, "three jobs");
    assert_eq!(v["usage"]["completion_tokens"], completion);
    assert_eq!(v["agora"]["job_id"], choices[0]["agora"]["job_id"]);
    // Streamed, the same choices come interleaved, each chunk with its index, each choice
    // ending with its receipt, then the usage of them all.
    let mut three = chat(true);
    three["n"] = 3.into();
    three["temperature"] = 1.0.into();
    three["seed"] = 5.into();
    three["stream_options"] = serde_json::json!({"include_usage": true});
    let (status, body, _) = post(&base, "/v1/chat/completions", Some("test-key"), three);
    assert_eq!(status, 200, "{body}");
    let chunks = sse_chunks(&body);
    for (i, c) in choices.iter().enumerate() {
        let of_i = || {
            chunks
                .iter()
                .filter(move |ch| ch["choices"].get(0).is_some_and(|x| x["index"] == i))
        };
        let text: String = of_i()
            .filter_map(|ch| ch["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(
            text,
            c["message"]["content"].as_str().unwrap(),
            "choice {i}"
        );
        let ends: Vec<_> = of_i().filter(|ch| ch["agora"].is_object()).collect();
        assert_eq!(ends.len(), 1, "choice {i}: {body}");
    }
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], serde_json::json!([]), "{body}");
    assert_eq!(usage["usage"]["completion_tokens"], completion, "{body}");
    let mut nine = chat(false);
    nine["n"] = 9.into();
    let (status, text, _) = post(&base, "/v1/chat/completions", Some("test-key"), nine);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("invalid_value"), "{text}");

    // Fields: those that ask for nothing beyond the default are served; a field set to
    // something this gateway does not do yet, or one OpenAI does not know, is refused.
    let mut harmless = chat(false);
    for (k, v) in [
        ("user", serde_json::json!("end-user-7")),
        ("logprobs", serde_json::json!(false)),
        ("stop", serde_json::Value::Null),
        ("presence_penalty", serde_json::json!(0)),
        ("response_format", serde_json::json!({"type": "text"})),
        ("tools", serde_json::json!([])),
    ] {
        harmless[k] = v;
    }
    let (status, body, _) = post(&base, "/v1/chat/completions", Some("test-key"), harmless);
    assert_eq!(status, 200, "{body}");
    for (k, v, code) in [
        (
            "logit_bias",
            serde_json::json!({"42": -100}),
            "unsupported_parameter",
        ),
        ("presence_penalty", serde_json::json!(2.5), "invalid_value"),
        (
            "stop",
            serde_json::json!(["a", "b", "c", "d", "e"]),
            "invalid_value",
        ),
        (
            "tools",
            serde_json::json!([{"type": "function"}]),
            "invalid_value",
        ),
        (
            "stream_options",
            serde_json::json!({"shout": true}),
            "unsupported_parameter",
        ),
        ("temprature", serde_json::json!(0.5), "unknown_parameter"),
    ] {
        let mut body = chat(false);
        body[k] = v;
        let (status, text, _) = post(&base, "/v1/chat/completions", Some("test-key"), body);
        assert_eq!(status, 400, "{k}: {text}");
        let err: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(err["error"]["code"], code, "{text}");
        assert_eq!(err["error"]["type"], "invalid_request_error", "{text}");
    }

    // A stop text and penalties: the answer ends before the stop text, as the greedy answer
    // cut there.
    let mut long = chat(false);
    long["max_tokens"] = 24.into();
    let (_, body, _) = post(
        &base,
        "/v1/chat/completions",
        Some("test-key"),
        long.clone(),
    );
    let free: serde_json::Value = serde_json::from_str(&body).unwrap();
    let free = free["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let cut = free.char_indices().nth(free.chars().count() / 2).unwrap().0;
    let stop: String = free[cut..].chars().take(1).collect();
    let first = free.find(&stop).unwrap();
    long["stop"] = serde_json::json!([stop]);
    long["presence_penalty"] = 0.into();
    let (status, body, _) = post(&base, "/v1/chat/completions", Some("test-key"), long);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        free[..first],
        "{body}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    let (status, body, _) = post(
        &base,
        "/v1/completions",
        Some("test-key"),
        serde_json::json!({"model": "tiny-chat", "prompt": "Once upon", "max_tokens": 4}),
    );
    assert_eq!(status, 200, "{body}");
    let text: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(text["object"], "text_completion");
    assert!(text["choices"][0]["text"].is_string());

    // Before settlement the job is unknown to the chain; after it, settled.
    let verify = |id: &str| -> serde_json::Value {
        agent()
            .get(&format!("{base}/v1/verify/{id}"))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap()
    };
    assert_eq!(verify(&job_id)["settled"], false);
    assert_eq!(provider.settle().unwrap().unwrap().1, 16);
    net.block();
    let v = verify(&job_id);
    assert_eq!(
        (v["settled"].as_bool(), v["state"].as_str()),
        (Some(true), Some("pending")),
        "{v}"
    );
    assert_eq!(v["job"]["fee"], whole["agora"]["fee"]);
    // Whether it is checked is drawn in the next block (no verifier here: never checked).
    assert_eq!(v["verification"]["level"], "sampled");
    net.block();
    let v = verify(&job_id);
    assert_eq!(v["verification"]["sampled"], false, "{v}");
}

fn ball_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "color": {"enum": ["red", "green", "blue"]},
            "size": {"type": "integer", "minimum": 0, "maximum": 99},
        },
        "required": ["ok", "color", "size"],
        "additionalProperties": false,
    })
}

/// Whether `text` is a JSON document valid under [`ball_schema`].
fn is_ball(text: &str) -> bool {
    let Ok(serde_json::Value::Object(o)) = serde_json::from_str(text) else {
        return false;
    };
    o.len() == 3
        && o["ok"].is_boolean()
        && ["red", "green", "blue"].contains(&o["color"].as_str().unwrap_or(""))
        && o["size"].as_u64().is_some_and(|n| n <= 99)
}

#[test]
fn structured_outputs_and_tool_calls_through_the_gateway() {
    let net = start();
    let (_provider, _) = serve_provider(&net, "structured-provider", 5_000, 1);
    let base = serve_gateway(&net);
    let chat = |extra: serde_json::Value| {
        let mut body = serde_json::json!({
            "model": "tiny-chat",
            "messages": [{"role": "user", "content": "A ball?"}],
            "max_tokens": 64,
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        post(&base, "/v1/chat/completions", Some("test-key"), body)
    };
    let format = serde_json::json!({"type": "json_schema",
                                    "json_schema": {"name": "ball", "schema": ball_schema()}});
    // A JSON schema: whole and streamed, greedy and sampled, the answer parses and validates.
    for (stream, temperature) in [(false, 0.0), (true, 0.0), (false, 1.0), (true, 1.2)] {
        let (status, body, _) = chat(serde_json::json!({"response_format": format,
            "stream": stream, "temperature": temperature, "seed": 7}));
        assert_eq!(status, 200, "{body}");
        let (text, finish) = if stream {
            let chunks = sse_chunks(&body);
            let text: String = chunks
                .iter()
                .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
                .collect();
            let last = &chunks[chunks.len() - 1]["choices"][0]["finish_reason"];
            (text, last.as_str().unwrap().to_string())
        } else {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let c = &v["choices"][0];
            (
                c["message"]["content"].as_str().unwrap().to_string(),
                c["finish_reason"].as_str().unwrap().to_string(),
            )
        };
        assert_eq!(finish, "stop", "{body}");
        assert!(is_ball(&text), "{text}");
    }
    // `json_object`: any JSON object (the random model may not close it within the tokens).
    let (status, body, _) =
        chat(serde_json::json!({"response_format": {"type": "json_object"}, "max_tokens": 4}));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with('{'),
        "{body}"
    );

    // A tool the answer must call: `tool_calls` whose arguments fit the tool's parameters.
    let tools = serde_json::json!([{"type": "function", "function": {"name": "paint",
        "parameters": {"type": "object", "properties": {"color": {"enum": ["red", "blue"]}},
                       "required": ["color"], "additionalProperties": false}}}]);
    let named = serde_json::json!({"type": "function", "function": {"name": "paint"}});
    for (stream, choice) in [
        (false, named.clone()),
        (true, named),
        (false, "required".into()),
    ] {
        let (status, body, _) = chat(serde_json::json!({"tools": tools, "tool_choice": choice,
            "stream": stream, "temperature": 0.7, "seed": 3}));
        assert_eq!(status, 200, "{body}");
        let (call, finish) = if stream {
            let chunks = sse_chunks(&body);
            assert!(
                chunks.iter().all(|c| c["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_none_or(str::is_empty)),
                "{body}"
            );
            let call = chunks
                .iter()
                .find_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0).cloned())
                .unwrap();
            let last = chunks[chunks.len() - 1]["choices"][0]["finish_reason"].clone();
            (call, last)
        } else {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let c = &v["choices"][0];
            assert!(c["message"]["content"].is_null(), "{body}");
            (
                c["message"]["tool_calls"][0].clone(),
                c["finish_reason"].clone(),
            )
        };
        assert_eq!(finish, "tool_calls", "{body}");
        assert_eq!(call["type"], "function");
        assert!(call["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(call["function"]["name"], "paint");
        let arguments: serde_json::Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert!(
            ["red", "blue"].contains(&arguments["color"].as_str().unwrap()),
            "{arguments}"
        );
    }
    // `auto`: a call, or text that is not one.
    let (status, body, _) = chat(serde_json::json!({"tools": tools}));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let message = &v["choices"][0]["message"];
    assert!(
        message["tool_calls"].is_array() || !message["content"].as_str().unwrap().starts_with('{'),
        "{body}"
    );
    // An earlier call and its result in the conversation are taken as the model wrote them.
    let (status, body, _) = chat(serde_json::json!({"tools": tools, "messages": [
        {"role": "user", "content": "Paint it."},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "paint", "arguments": "{\"color\": \"red\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "done"}]}));
    assert_eq!(status, 200, "{body}");

    // Refused before any job, each with why.
    for (extra, says) in [
        (
            serde_json::json!({"response_format": {"type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}}),
            "cannot be followed",
        ),
        (
            serde_json::json!({"response_format": {"type": "yaml"}}),
            "json_schema",
        ),
        (
            serde_json::json!({"tools": tools, "tool_choice":
                {"type": "function", "function": {"name": "erase"}}}),
            "not among",
        ),
        (
            serde_json::json!({"tools": tools, "response_format": {"type": "json_object"}}),
            "cannot both",
        ),
        (serde_json::json!({"tool_choice": "required"}), "no `tools`"),
    ] {
        let (status, body, _) = chat(extra);
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("invalid_value") && body.contains(says),
            "{body}"
        );
    }
}

/// A verifier holds an answer to its job's grammar: the honest one passes, one that leaves the
/// grammar fails at that token, and a job whose grammar does not compile has no honest answer.
#[test]
fn a_verifier_holds_answers_to_their_grammar() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_chat_model(&path, tiny_spec()).unwrap();
    let mut backend = InferBackend::default();
    backend.add_chat(MODEL, Arc::new(ChatModel::load(&path, 1).unwrap()));
    use agora_market::Backend;
    let input = |grammar: Option<String>| JobInput::Chat {
        messages: vec![agora_market::ChatMessage {
            role: "user".into(),
            content: "A ball?".into(),
        }],
        grammar,
    };
    let constrained = input(Some(agora_grammar::json_schema(&ball_schema())));
    let params = JobParams {
        max_tokens: 64,
        ..JobParams::default()
    };
    let judge = |input: &JobInput, output: &JobOutput| {
        let JobOutput::Text { tokens, .. } = output else {
            panic!("text")
        };
        let counts = (
            backend.input_tokens(&MODEL, input).unwrap(),
            tokens.len() as u32,
        );
        backend
            .judge(
                &MODEL,
                input,
                &params,
                output,
                counts,
                agora_market::GREEDY_TOLERANCE,
            )
            .unwrap()
    };
    let served = backend
        .run(&MODEL, &constrained, &params, &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap();
    let JobOutput::Text { text, tokens, .. } = &served.output else {
        panic!("text")
    };
    assert!(is_ball(text), "{text}");
    assert_eq!(
        judge(&constrained, &served.output),
        agora_types::Verdict::Pass
    );
    // The same answer claimed for the job without the grammar: not the model's free choice.
    assert!(matches!(
        judge(&input(None), &served.output),
        agora_types::Verdict::Fail {
            fault: agora_types::Fault::WrongToken { .. }
        }
    ));
    // One token swapped for one the grammar does not allow there (the text made to match).
    let at = tokens.len() / 2;
    let mut forged = tokens.clone();
    forged[at] = u32::from(b'a') + 3;
    let model = ChatModel::load(&path, 1).unwrap();
    let forged_output = JobOutput::Text {
        text: model.text_of(&forged),
        tokens: forged,
        finish: "stop".into(),
        logprobs: None,
    };
    assert_eq!(
        judge(&constrained, &forged_output),
        agora_types::Verdict::Fail {
            fault: agora_types::Fault::WrongToken {
                position: at as u32
            }
        }
    );
    // An answer cut short and claimed as such where the grammar could go on: not a length.
    let half = tokens[..tokens.len() / 2].to_vec();
    let cut = JobOutput::Text {
        text: model.text_of(&half),
        tokens: half,
        finish: "length".into(),
        logprobs: None,
    };
    assert_eq!(
        judge(&constrained, &cut),
        agora_types::Verdict::Fail {
            fault: agora_types::Fault::WrongStop
        }
    );
    // A grammar that does not compile: refused to the client, and no answer to it passes.
    let broken = input(Some("start: (".into()));
    assert!(matches!(
        backend.run(&MODEL, &broken, &params, &mut |_| ControlFlow::Continue(())),
        Err(Error::BadInput(_))
    ));
    assert_eq!(
        judge(&broken, &served.output),
        agora_types::Verdict::Fail {
            fault: agora_types::Fault::WrongKind
        }
    );
}

#[test]
fn receipts_survive_a_provider_restart_and_are_forgotten_once_settled() {
    let net = start();
    let input = JobInput::Completion {
        prompt: "keep me".into(),
        grammar: None,
    };
    let (submission, _) = net.submission(9, &input, 1_000_000, 100);
    let job = net.provider.admit(&submission).unwrap();
    let delivery = net
        .provider
        .execute(job, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(net.provider.receipts_kept(), 1);
    let receipt: agora_types::SignedJobReceipt =
        borsh::from_slice(&hex::decode(&delivery.receipt).unwrap()).unwrap();

    // The provider stops before settling; a new one on the same key and folder takes the claim.
    let restart = || {
        let model_path = net.t.dir.path().join("tiny.gguf");
        let mut backend = InferBackend::default();
        backend.add_chat(MODEL, Arc::new(ChatModel::load(&model_path, 1).unwrap()));
        backend.add_auditor();
        let secret = ProviderSecret::generate();
        let mut info = net.provider.info().clone();
        info.encryption_key = EncryptionKey(secret.public());
        Provider::new(
            Keypair::from_seed_label("provider"),
            secret,
            info,
            net.chain.clone(),
            Arc::new(backend),
            ProviderConfig {
                min_expiry_margin: 5,
                jobs_dir: Some(net.t.dir.path().join("jobs")),
                ..ProviderConfig::default()
            },
        )
        .unwrap()
    };
    let restarted = restart();
    assert_eq!(restarted.unsettled(), 1);
    // The same job id is not served again by the new process either.
    assert_eq!(
        code(restarted.admit(&submission).unwrap_err()),
        "duplicate_job"
    );
    let before = net.chain.escrow(&net.client.address()).unwrap();
    assert_eq!(restarted.settle().unwrap().unwrap().1, 1);
    net.block();
    let after = net.chain.escrow(&net.client.address()).unwrap();
    assert_eq!(before.balance - after.balance, receipt.receipt.fee);
    // Once the chain shows it settled, the file goes.
    assert_eq!(restarted.receipts_kept(), 1);
    assert!(restarted.settle().unwrap().is_none());
    assert_eq!(restarted.receipts_kept(), 0);
    // Replayed to yet another run, after its receipt is gone and its kept copy swept: the
    // chain shows it settled, so it is not served (for nothing) again.
    let _ = std::fs::remove_file(
        net.t
            .dir
            .path()
            .join(format!("jobs/{}.job", receipt.receipt.request_hash)),
    );
    assert_eq!(
        code(restart().admit(&submission).unwrap_err()),
        "duplicate_job"
    );
}

/// A one-line chat from the user: "hi".
fn say_hi() -> JobInput {
    JobInput::Chat {
        messages: vec![agora_market::ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }],
        grammar: None,
    }
}

/// A provider that stops its own answer early and calls it stopped by the client.
struct CutShort(InferBackend);

impl agora_market::Backend for CutShort {
    fn serves(&self, model: &Hash) -> bool {
        self.0.serves(model)
    }
    fn input_tokens(&self, model: &Hash, input: &JobInput) -> Result<u32, Error> {
        self.0.input_tokens(model, input)
    }
    fn run(
        &self,
        model: &Hash,
        input: &JobInput,
        params: &JobParams,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<agora_market::Served, Error> {
        let mut pieces = 0;
        self.0.run(model, input, params, &mut |text| {
            pieces += 1;
            let _ = on_text(text);
            if pieces >= 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
    }
}

/// An answer its provider cut short, claimed as stopped by the client (which a verifier cannot
/// tell from a real stop), is refused by the gateway.
#[test]
fn an_answer_its_provider_cut_short_is_refused() {
    let net = start();
    let (cutter, _) = provider_on(&net, "cutter", 30_000, 1, 10 * AGR, Some(&net.t.rt), &|b| {
        Arc::new(CutShort(b))
    });
    let gateway = agora_market::Gateway::new(net.chain.clone());
    let targets: Vec<_> = gateway
        .candidates(&MODEL)
        .unwrap()
        .into_iter()
        .filter(|p| p.address == cutter.address())
        .map(|p| (p, MODEL))
        .collect();
    assert_eq!(targets.len(), 1);
    let params = JobParams {
        max_tokens: 12,
        ..JobParams::default()
    };
    let result = gateway.run_on(&net.client, &targets, &say_hi(), params, &mut |_| {
        ControlFlow::Continue(())
    });
    let e = result.unwrap_err();
    assert_eq!(code(e), "bad_receipt");
}
