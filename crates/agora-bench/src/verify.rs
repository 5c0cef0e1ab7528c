//! `agora bench verify`: how often one check catches each cheating strategy, how likely a cheater
//! is to escape after n jobs at the chain's sampling rate, and what a check costs the verifier
//! against generating the answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_infer::chat::ChatModel;
use agora_infer::models::{self, ModelCache};
use agora_market::{Backend, Cheat, GREEDY_TOLERANCE, InferBackend, JobInput, JobOutput};
use agora_state::VerifyParams;
use agora_types::{JobParams, Verdict};
use anyhow::{Result, bail};
use clap::Args;
use std::ops::ControlFlow;

use agora_infer::default_threads;

#[derive(Debug, Args)]
pub struct VerifyBenchArgs {
    /// Compute threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Jobs (distinct prompts), each served honestly and by every cheating strategy.
    #[arg(long, default_value_t = 12)]
    jobs: usize,
    /// Most output tokens per job.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Sampling probability in basis points (default: the chain's default).
    #[arg(long)]
    sample_bps: Option<u32>,
}

const TOPICS: [&str; 12] = [
    "Explain how a blockchain reaches agreement.",
    "Write a short poem about autumn leaves.",
    "What are the benefits of regular exercise?",
    "Describe the water cycle to a child.",
    "Give three tips for writing clear code.",
    "Why is the sky blue?",
    "Summarize the plot of a detective story you invent.",
    "How do vaccines train the immune system?",
    "Compare trains and planes for a 500 km trip.",
    "What should I pack for a week of hiking?",
    "Explain what a smart contract is.",
    "Tell me a fun fact about octopuses.",
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub fn run(args: VerifyBenchArgs, models_dir: &std::path::Path) -> Result<()> {
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let threads = args.threads.unwrap_or_else(default_threads);
    let spec = models::SMOLLM2;
    let installed = ModelCache::new(models_dir).ensure_reporting(&spec)?;
    // The provider and the verifier each load the model: each keeps its own cache of prefixes
    // (see `ChatModel::generate`), as on two machines.
    let chat = Arc::new(ChatModel::load(&installed.weights, threads)?);
    let id = spec.id.parse()?;
    let mut backend = InferBackend::default();
    backend.add_chat(id, chat.clone());
    let verifier_chat = Arc::new(ChatModel::load(&installed.weights, threads)?);
    let mut verifier = InferBackend::default();
    verifier.add_chat(id, verifier_chat.clone());
    let p = f64::from(
        args.sample_bps
            .unwrap_or(VerifyParams::default().sample_bps),
    ) / 10_000.0;
    let params = JobParams {
        max_tokens: args.max_tokens,
        ..JobParams::default()
    };
    println!(
        "agora bench verify: {} ({}), {} jobs of up to {} tokens, greedy, {threads} threads, p = {:.2} %",
        spec.display,
        &spec.id[..12],
        args.jobs,
        args.max_tokens,
        p * 100.0
    );

    let judge = |input: &JobInput, output: &JobOutput| -> Result<(Verdict, Duration)> {
        let n = match output {
            JobOutput::Text { tokens, .. } => tokens.len() as u32,
            JobOutput::Embeddings { .. }
            | JobOutput::Audit { .. }
            | JobOutput::Table { .. }
            | JobOutput::Forecast { .. }
            | JobOutput::Zk { .. } => 0,
        };
        let prompt = verifier.input_tokens(&id, input)?;
        let t = Instant::now();
        let v = verifier.judge(&id, input, &params, output, (prompt, n), GREEDY_TOLERANCE)?;
        Ok((v, t.elapsed()))
    };
    let (mut honest_passed, mut costs, mut tokens_out) = (0, Vec::new(), Vec::new());
    let mut cold_costs = Vec::new();
    let mut detected = [0usize; Cheat::ALL.len()];
    for i in 0..args.jobs {
        let topic = TOPICS[i % TOPICS.len()];
        let content = if i < TOPICS.len() {
            topic.to_string()
        } else {
            format!("{topic} (take {})", i / TOPICS.len() + 1)
        };
        let input = JobInput::Chat {
            messages: vec![agora_market::ChatMessage {
                role: "user".into(),
                content,
            }],
            grammar: None,
        };
        let t = Instant::now();
        let honest = backend
            .run(&id, &input, &params, &mut |_| ControlFlow::Continue(()))?
            .output;
        let generation = t.elapsed();
        let (verdict, check) = judge(&input, &honest)?;
        if verdict == Verdict::Pass {
            honest_passed += 1;
        }
        costs.push(check.as_secs_f64() / generation.as_secs_f64() * 100.0);
        // Again with nothing kept from earlier checks (the shared system prompt run too).
        verifier_chat.clear_prefixes();
        let (_, cold) = judge(&input, &honest)?;
        cold_costs.push(cold.as_secs_f64() / generation.as_secs_f64() * 100.0);
        if let JobOutput::Text { tokens, .. } = &honest {
            tokens_out.push(tokens.len() as f64);
            if tokens.len() < 2 {
                continue;
            }
        }
        for (k, cheat) in Cheat::ALL.iter().enumerate() {
            let output = cheat.apply(&chat, &backend, &id, &input, &params, &honest)?;
            if matches!(judge(&input, &output)?.0, Verdict::Fail { .. }) {
                detected[k] += 1;
            }
        }
    }
    println!(
        "  honest answers passed        {honest_passed}/{} (median {} tokens)",
        args.jobs,
        median(tokens_out)
    );
    let mut sorted = costs.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "  verifier cost per check      {:.1} % of generating the answer (median; range {:.1}–{:.1} %; goal ≤ 25 %)",
        median(costs),
        sorted.first().copied().unwrap_or(0.0),
        sorted.last().copied().unwrap_or(0.0),
    );
    println!(
        "    with no prefix kept        {:.1} % (the verifier runs the shared system prompt too)",
        median(cold_costs)
    );
    println!(
        "  {:<32} {:>10} {:>14} {:>14} {:>14}",
        "strategy (P escape after n jobs)", "caught", "n=10", "n=100", "n=1000"
    );
    for (k, cheat) in Cheat::ALL.iter().enumerate() {
        let d = detected[k] as f64 / args.jobs as f64;
        let escape = |n: i32| {
            let e = (1.0 - p * d).powi(n);
            if e >= 1e-3 {
                format!("{e:.4}")
            } else {
                format!("{e:.2e}")
            }
        };
        println!(
            "  {:<32} {:>9.1}% {:>14} {:>14} {:>14}",
            cheat.name(),
            d * 100.0,
            escape(10),
            escape(100),
            escape(1000)
        );
    }
    if honest_passed != args.jobs {
        bail!("an honest answer failed its check");
    }
    Ok(())
}
