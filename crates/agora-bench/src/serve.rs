//! `agora bench serve`: a provider under load through the gateway, streamed chat completions from
//! 1, 4, 16 and 64 concurrent clients: generated tokens per second over all clients, latency and
//! time to the first token (p50, p99); side by side with llama.cpp's server on the same GGUF with
//! the same threads, when one is given.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::market::{GatewayFixture, gateway_fixture};

#[derive(Debug, Args)]
pub struct ServeBenchArgs {
    /// Concurrent clients, one measurement each.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 4, 16, 64])]
    clients: Vec<usize>,
    /// Requests each client sends, one after another, at each level.
    #[arg(long, default_value_t = 4)]
    requests: usize,
    /// Times every level is measured, the levels in turn (1, 16, 1, 16, …), so that a machine
    /// whose speed drifts affects them alike; each level's figures are those of its median
    /// round by tokens/s (the lower of the two middle ones for an even number).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Most output tokens per request (greedy; an answer may stop earlier).
    #[arg(long, default_value_t = 64)]
    max_tokens: u32,
    /// Compute threads (default: every core); llama.cpp's server gets as many.
    #[arg(long)]
    threads: Option<usize>,
    /// llama.cpp's `llama-server` binary: measured the same way, with a parallel slot per
    /// client (continuous batching on).
    #[arg(long)]
    llama_server: Option<PathBuf>,
    /// A Python with `llama-cpp-python[server]` installed: its server measured the same way.
    #[arg(long)]
    llama_cpp_python: Option<PathBuf>,
}

/// Questions the clients ask, in turn: different prompts, so that no answer is another's.
const QUESTIONS: [&str; 16] = [
    "Explain in one sentence what a blockchain is.",
    "Write a short poem about the sea.",
    "What is the capital of France, and why is it famous?",
    "Give three tips for writing clean code.",
    "How does a bicycle stay upright?",
    "Describe the water cycle to a child.",
    "What is a hash function used for?",
    "Name two planets and one fact about each.",
    "Why is the sky blue?",
    "Summarize the plot of a detective story in two sentences.",
    "What makes bread rise?",
    "List three uses of a spreadsheet.",
    "How do vaccines train the immune system?",
    "What is the difference between weather and climate?",
    "Suggest a name for a friendly robot and explain it.",
    "Why do we have seasons on Earth?",
];

/// One streamed answer.
struct Answer {
    tokens: u64,
    latency_ms: f64,
    first_token_ms: f64,
}

/// An OpenAI-compatible server to load: where, with which key and model name.
struct Target {
    base: String,
    key: Option<String>,
    model: String,
}

/// Streams one chat completion and times it.
fn stream_chat(
    agent: &ureq::Agent,
    target: &Target,
    tenant: usize,
    question: &str,
    max_tokens: u32,
) -> Result<Answer> {
    let body = json!({
        "model": target.model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let t0 = Instant::now();
    let mut request = agent.post(&format!("{}/v1/chat/completions", target.base));
    if let Some(key) = &target.key {
        request = request.header("Authorization", &format!("Bearer {key}-{tenant}"));
    }
    let response = request.send_json(&body)?;
    let reader = std::io::BufReader::new(response.into_body().into_reader());
    let (mut first, mut chunks, mut usage) = (None, 0u64, None);
    for line in reader.lines() {
        let line = line?;
        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(data).context("a chunk that is not JSON")?;
        if v.get("error").is_some() {
            bail!("the stream failed: {v}");
        }
        let text = v["choices"][0]["delta"]["content"].as_str().unwrap_or("");
        if !text.is_empty() {
            chunks += 1;
            first.get_or_insert_with(|| t0.elapsed());
        }
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            usage = Some(n);
        }
    }
    let latency = t0.elapsed();
    Ok(Answer {
        tokens: usage.unwrap_or(chunks),
        latency_ms: latency.as_secs_f64() * 1e3,
        first_token_ms: first.unwrap_or(latency).as_secs_f64() * 1e3,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One load level's figures.
struct Level {
    clients: usize,
    tokens_per_s: f64,
    latency: (f64, f64),
    first_token: (f64, f64),
    failed: usize,
}

/// `clients` clients each send `requests` requests, one after another.
fn load(target: &Target, clients: usize, requests: usize, max_tokens: u32) -> Result<Level> {
    let t0 = Instant::now();
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                scope.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .timeout_global(Some(Duration::from_secs(900)))
                        .build()
                        .into();
                    (0..requests)
                        .map(|r| {
                            let question = QUESTIONS[(c * requests + r) % QUESTIONS.len()];
                            stream_chat(&agent, target, c, question, max_tokens)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect::<Vec<_>>()
    });
    let took = t0.elapsed().as_secs_f64();
    let (mut latency, mut first, mut tokens, mut failed) = (Vec::new(), Vec::new(), 0, 0);
    for r in results {
        match r {
            Ok(a) => {
                latency.push(a.latency_ms);
                first.push(a.first_token_ms);
                tokens += a.tokens;
            }
            Err(e) => {
                failed += 1;
                tracing::warn!("a request failed under load: {e:#}");
            }
        }
    }
    failed += clients * requests - latency.len() - failed;
    latency.sort_by(f64::total_cmp);
    first.sort_by(f64::total_cmp);
    Ok(Level {
        clients,
        tokens_per_s: tokens as f64 / took,
        latency: (percentile(&latency, 0.5), percentile(&latency, 0.99)),
        first_token: (percentile(&first, 0.5), percentile(&first, 0.99)),
        failed,
    })
}

/// Measures every level of `args.clients`; `batch` (Agora's) reads the model's batch counters,
/// so that each level's mean batch is printed.
fn measure(
    name: &str,
    target: &Target,
    args: &ServeBenchArgs,
    batch: Option<&dyn Fn() -> agora_infer::batch::BatchStats>,
) -> Result<Vec<Level>> {
    // Warm up: the model's pages, the server's first request.
    stream_chat(
        &ureq::Agent::new_with_defaults(),
        target,
        0,
        QUESTIONS[0],
        8,
    )
    .with_context(|| format!("{name} does not answer"))?;
    let mut rounds: Vec<Vec<Level>> = args.clients.iter().map(|_| Vec::new()).collect();
    for round in 1..=args.rounds {
        for (&clients, measured) in args.clients.iter().zip(&mut rounds) {
            let before = batch.map(|b| b());
            let level = load(target, clients, args.requests, args.max_tokens)?;
            let mean = match (before, batch.map(|b| b())) {
                (Some(a), Some(b)) if b.passes > a.passes => format!(
                    ", {:.1} sequences per pass",
                    (b.seq_steps - a.seq_steps) as f64 / (b.passes - a.passes) as f64
                ),
                _ => String::new(),
            };
            eprintln!(
                "  {name}: {clients} clients, {:.1} tokens/s{mean} (round {round} of {})",
                level.tokens_per_s, args.rounds
            );
            measured.push(level);
        }
    }
    // Each level's median round by tokens/s.
    Ok(rounds
        .into_iter()
        .filter_map(|mut measured| {
            measured.sort_by(|a, b| a.tokens_per_s.total_cmp(&b.tokens_per_s));
            let median = (measured.len() - 1) / 2;
            measured.into_iter().nth(median)
        })
        .collect())
}

fn print(name: &str, levels: &[Level]) {
    println!("{name}");
    println!(
        "  {:>7} {:>10} {:>8} {:>11} {:>11} {:>12} {:>12} {:>7}",
        "clients", "tokens/s", "× 1", "p50 ms", "p99 ms", "TTFT p50", "TTFT p99", "failed"
    );
    let one = levels
        .iter()
        .find(|l| l.clients == 1)
        .map(|l| l.tokens_per_s);
    for l in levels {
        let times = one.map_or(String::from("-"), |o| {
            format!("{:.2}", l.tokens_per_s / o.max(1e-9))
        });
        println!(
            "  {:>7} {:>10.1} {:>8} {:>11.0} {:>11.0} {:>12.0} {:>12.0} {:>7}",
            l.clients,
            l.tokens_per_s,
            times,
            l.latency.0,
            l.latency.1,
            l.first_token.0,
            l.first_token.1,
            l.failed
        );
    }
}

/// A child process killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until the server at `base` lists its models.
fn wait_ready(base: &str, server: &mut Server) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    while Instant::now() < deadline {
        if let Some(status) = server.0.try_wait()? {
            bail!("the server exited ({status})");
        }
        if agent.get(&format!("{base}/v1/models")).call().is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("the server did not start within 300 s")
}

pub fn run(args: ServeBenchArgs, models_dir: &std::path::Path) -> Result<()> {
    if args.clients.is_empty()
        || args.clients.contains(&0)
        || args.requests == 0
        || args.rounds == 0
    {
        bail!("need --clients ≥ 1 each, --requests ≥ 1 and --rounds ≥ 1");
    }
    let threads = args.threads.unwrap_or_else(agora_infer::default_threads);
    let most = args.clients.iter().copied().max().unwrap_or(1);
    let fixture: GatewayFixture = gateway_fixture(models_dir, most, threads)?;
    let gguf = agora_infer::models::ModelCache::new(models_dir)
        .ensure_reporting(&fixture.spec)?
        .weights;
    println!(
        "agora bench serve: {} ({} output tokens at most, greedy, streamed), {threads} threads, {} requests per client",
        fixture.spec.display, args.max_tokens, args.requests
    );
    let agora = Target {
        base: fixture.gw.clone(),
        key: Some("bench".into()),
        model: fixture.spec.name.into(),
    };
    let batch = || fixture.model.batch_stats();
    let ours = measure("agora", &agora, &args, Some(&batch))?;
    let stats = fixture.model.batch_stats();
    fixture.stop();
    print(
        "Agora (through the gateway: signed jobs, receipts, settlement)",
        &ours,
    );
    if stats.passes > 0 {
        println!(
            "  batch: {} passes, {:.1} sequences per pass on average over all levels, {} at most",
            stats.passes,
            stats.seq_steps as f64 / stats.passes as f64,
            stats.widest
        );
    }

    let mut theirs = Vec::new();
    if let Some(bin) = &args.llama_server {
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut server = Server(
            Command::new(bin)
                .args(["-m", &gguf.to_string_lossy(), "--host", "127.0.0.1"])
                .args(["--port", &port.to_string(), "-t", &threads.to_string()])
                .args(["-tb", &threads.to_string(), "-np", &most.to_string()])
                // A 2,048-position context per slot, as Agora's.
                .args(["-c", &(2048 * most).to_string(), "-cb", "--no-warmup"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?,
        );
        theirs.push((
            format!("llama.cpp llama-server ({most} parallel slots)"),
            measure_server("llama-server", base, &mut server, &args)?,
        ));
    }
    if let Some(python) = &args.llama_cpp_python {
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut server = Server(
            Command::new(python)
                .args(["-m", "llama_cpp.server", "--model", &gguf.to_string_lossy()])
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--n_threads", &threads.to_string(), "--n_ctx", "2048"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| {
                    format!("cannot start {} -m llama_cpp.server", python.display())
                })?,
        );
        theirs.push((
            "llama-cpp-python server".into(),
            measure_server("llama-cpp-python", base, &mut server, &args)?,
        ));
    }
    for (name, levels) in &theirs {
        print(name, levels);
        for l in levels {
            if let Some(o) = ours.iter().find(|o| o.clients == l.clients) {
                println!(
                    "  Agora / {name} at {} clients: {:.2}× the tokens/s",
                    l.clients,
                    o.tokens_per_s / l.tokens_per_s.max(1e-9)
                );
            }
        }
    }
    if ours.iter().any(|l| l.failed > 0) {
        bail!("some requests to Agora failed (see the warnings)");
    }
    Ok(())
}

/// Measures a llama.cpp server started at `base` once it answers (it serves one model, whatever
/// the name asked for).
fn measure_server(
    name: &str,
    base: String,
    server: &mut Server,
    args: &ServeBenchArgs,
) -> Result<Vec<Level>> {
    wait_ready(&base, server)?;
    let target = Target {
        base,
        key: None,
        model: "SmolLM2-135M-Instruct".into(),
    };
    // Listing models may answer before the model has loaded: wait for a first answer.
    let deadline = Instant::now() + Duration::from_secs(300);
    let agent = ureq::Agent::new_with_defaults();
    while let Err(e) = stream_chat(&agent, &target, 0, QUESTIONS[0], 4) {
        if Instant::now() > deadline {
            bail!("{name} does not answer: {e}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    measure(name, &target, args, None)
}
