//! `agora bench infer`: the inference runtime's figures on the real models.

use std::time::Instant;

use agora_infer::bert::Embedder;
use agora_infer::chat::ChatModel;
use agora_infer::models::{self, ModelCache};
use agora_infer::sample::{self, SamplingParams};
use anyhow::{Result, bail};
use clap::Args;

use agora_infer::default_threads;

#[derive(Debug, Args)]
pub struct InferBenchArgs {
    /// Compute threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Prompt length in tokens.
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens generated per run (the stop token is ignored so every run generates this many).
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Runs of each measurement; medians are printed.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Sentences per embedding batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Measure only one model.
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Set on the child processes a full run starts: no header line.
    #[arg(long, hide = true)]
    part: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Only {
    Chat,
    Embed,
}

const TEXT: &str = "The history of the printing press begins in the fifteenth century, when movable type \
made books cheaper and faster to produce. Within decades, presses spread across Europe, and the number of \
books in circulation grew from thousands to millions. Scholars could compare texts, merchants could print \
price lists, and ideas travelled faster than ever before. ";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak to the current resident size (Linux).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn run(args: InferBenchArgs, dir: &std::path::Path) -> Result<()> {
    let threads = args.threads.unwrap_or_else(default_threads);
    let runs = args.runs.max(1);
    let cache = ModelCache::new(dir);
    if !args.part {
        println!(
            "agora bench infer: {} threads, kernels {:?}",
            threads,
            agora_infer::kernels::detected()
        );
    }
    if args.only.is_none() {
        // Each model in a process of its own, so that one's peak memory is not counted in the
        // other's (the allocator keeps the chat model's freed pages).
        for only in ["chat", "embed"] {
            std::io::Write::flush(&mut std::io::stdout())?;
            let status = std::process::Command::new(std::env::current_exe()?)
                .arg("--models-dir")
                .arg(dir)
                .args(["bench", "infer", "--part", "--only", only])
                .args(["--threads", &threads.to_string()])
                .args(["--prompt-tokens", &args.prompt_tokens.to_string()])
                .args(["--gen-tokens", &args.gen_tokens.to_string()])
                .args(["--runs", &runs.to_string()])
                .args(["--batch", &args.batch.to_string()])
                .status()?;
            if !status.success() {
                bail!("the {only} benchmark failed ({status})");
            }
        }
        return Ok(());
    }
    if args.only != Some(Only::Embed) {
        chat(&args, &cache, threads, runs)?;
    }
    if args.only != Some(Only::Chat) {
        embed(&args, &cache, threads, runs)?;
    }
    Ok(())
}

fn chat(args: &InferBenchArgs, cache: &ModelCache, threads: usize, runs: usize) -> Result<()> {
    let chat_model = cache.ensure_reporting(&models::SMOLLM2)?;

    reset_peak_rss();
    let model = ChatModel::load(&chat_model.weights, threads)?;
    let mut prompt = model
        .tokenizer
        .encode(&TEXT.repeat(1 + args.prompt_tokens / 60))?;
    if prompt.len() < args.prompt_tokens {
        bail!(
            "the benchmark text is too short for {} tokens",
            args.prompt_tokens
        );
    }
    prompt.truncate(args.prompt_tokens);
    let llama = &model.llama;
    println!(
        "chat model {} ({}), prompt {} tokens, {} generated tokens, median of {runs} runs",
        models::SMOLLM2.display,
        &models::SMOLLM2.id[..12],
        prompt.len(),
        args.gen_tokens
    );

    let (mut pp, mut tg, mut ttft, mut score_ratio, mut score_time) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut answer_ratio = vec![];
    let mut answer = Vec::new();
    for _ in 0..runs {
        let mut cache = llama.new_cache();
        let t = Instant::now();
        let logits = llama.forward(&mut cache, &prompt, prompt.len() - 1..prompt.len())?;
        let mut token = sample::argmax(&logits);
        let prompt_time = t.elapsed();
        ttft.push(prompt_time.as_secs_f64() * 1e3);
        pp.push(prompt.len() as f64 / prompt_time.as_secs_f64());
        answer = vec![token];
        let t = Instant::now();
        while answer.len() < args.gen_tokens {
            let logits = llama.forward(&mut cache, &[token], 0..1)?;
            token = sample::argmax(&logits);
            answer.push(token);
        }
        let gen_time = t.elapsed();
        // Generation of n tokens: n-1 single-token passes after the prompt pass.
        let per_token = gen_time.as_secs_f64() / (answer.len() - 1).max(1) as f64;
        tg.push(1.0 / per_token);

        // A verifier holds no generation cache, nor a kept prefix of a prompt it has not seen:
        // the scoring pass runs everything.
        drop(cache);
        model.clear_prefixes();
        let t = Instant::now();
        let score = model.score(&prompt, &answer, &SamplingParams::greedy(), 0.0)?;
        let st = t.elapsed();
        if !score.passed {
            bail!(
                "scoring failed its own greedy answer at {:?}",
                score.first_failure
            );
        }
        let full_generation = prompt_time + gen_time;
        score_time.push(st.as_secs_f64() * 1e3);
        score_ratio.push(st.as_secs_f64() / full_generation.as_secs_f64() * 100.0);
        // The answer's share: scoring minus the prompt pass, against generating the answer alone.
        let answer_score = st.saturating_sub(prompt_time);
        answer_ratio.push(answer_score.as_secs_f64() / gen_time.as_secs_f64() * 100.0);
    }
    let chat_peak = peak_rss();
    let batched = batched_generation(llama, &prompt, runs)?;
    println!("  prompt processing      {:>8.1} tokens/s", median(pp));
    println!("  generation (batch 1)   {:>8.1} tokens/s", median(tg));
    println!("  time to first token    {:>8.1} ms", median(ttft));
    println!(
        "  teacher-forced scoring {:>8.1} ms for prompt + {} answer tokens = {:.1} % of generating them",
        median(score_time),
        answer.len(),
        median(score_ratio)
    );
    println!(
        "    the answer alone       {:>6.1} % of generating it (prompt pass left out of both)",
        median(answer_ratio)
    );
    for (batch, rate, pass_ms) in batched {
        println!(
            "  generation (batch {batch:>2})  {rate:>8.1} tokens/s  ({pass_ms:.1} ms per pass)"
        );
    }
    if let Some(b) = chat_peak {
        println!("  peak RSS (chat)        {:>8.1} MB", b as f64 / 1e6);
    }
    structured(&model, runs)?;
    kernels(runs);
    Ok(())
}

/// The matmul kernel of each weight type on one thread: a 2048×2048 matrix (16 MB and more, out of
/// cache) against 1 and 16 tokens, in multiply-adds per second.
fn kernels(runs: usize) {
    use agora_infer::gguf::GgmlType;
    use agora_infer::kernels::{Isa, detected, matmul_rows};
    use agora_infer::quant::{self, QActs, QMatrix};
    let (rows, cols) = (2048, 2048);
    let w = agora_infer::testing::random_f32(rows * cols, 3);
    let isa = detected();
    println!("  matmul kernels ({isa:?}, one thread, {rows}x{cols})");
    for (ty, bytes) in [
        (GgmlType::Q4_1, quant::quantize_q4_1(&w)),
        (GgmlType::Q8_0, quant::quantize_q8_0(&w)),
        (GgmlType::Q4_K, quant::quantize_q4_k(&w)),
        (GgmlType::Q6_K, quant::quantize_q6_k(&w)),
    ] {
        let Ok(m) = QMatrix::from_gguf("w", ty, &[cols as u64, rows as u64], bytes) else {
            continue;
        };
        let mut line = format!("    {:<6}", format!("{ty:?}"));
        // With tile kernels, 16 tokens also on the VNNI kernel, to compare.
        let mut cases = vec![(1usize, isa), (16, isa)];
        if isa == Isa::Amx {
            cases.push((16, Isa::Vnni));
        }
        for (n, kernel) in cases {
            let x = agora_infer::testing::random_f32(n * cols, 4);
            let mut acts = QActs::default();
            acts.quantize(&x, cols, m.ty);
            let mut out = vec![0f32; n * rows];
            let reps = (64 / n).max(4);
            let rates: Vec<f64> = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..reps {
                        matmul_rows(kernel, &m, &acts, 0..rows, &mut out);
                    }
                    (rows * cols * n * reps) as f64 / t.elapsed().as_secs_f64() / 1e9
                })
                .collect();
            let on = if kernel != isa { " (VNNI)" } else { "" };
            line.push_str(&format!(
                "  {:>6.1} GMAC/s at {n:>2} tokens{on}",
                median(rates)
            ));
        }
        println!("{line}");
    }
}

/// A constraint that times its masks.
#[derive(Debug)]
struct Timed {
    inner: agora_grammar::Constraint,
    spent: std::sync::Arc<std::sync::Mutex<(std::time::Duration, usize)>>,
}

impl sample::TokenConstraint for Timed {
    fn mask(&mut self) -> Result<sample::TokenMask, String> {
        let t = Instant::now();
        let mask = self.inner.mask();
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        spent.0 += t.elapsed();
        spent.1 += 1;
        mask
    }

    fn commit(&mut self, token: u32) -> Result<(), String> {
        self.inner.commit(token)
    }
}

/// Structured outputs: the grammar compiler's start-up for the model's vocabulary, generation that
/// follows a JSON schema beside free generation, the mask's time per token, and the verifier's
/// check of the constrained answer.
fn structured(model: &ChatModel, runs: usize) -> Result<()> {
    use agora_infer::chat::{GenParams, Message};
    use std::ops::ControlFlow;
    let t = Instant::now();
    let grammars = agora_grammar::Grammars::new(model)?;
    let startup = t.elapsed();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "city": {"type": "string", "maxLength": 40},
            "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 4},
        },
        "required": ["name", "age", "city", "hobbies"],
        "additionalProperties": false,
    });
    let grammar = agora_grammar::json_schema(&schema);
    let prompt = model.encode_chat(&[Message::new(
        "user",
        "Describe a fictional person as JSON with their name, age, city and hobbies.",
    )])?;
    let params = GenParams {
        max_tokens: 96,
        ..GenParams::default()
    };
    let (mut free_rate, mut rate, mut mask_us, mut compile_ms) = (vec![], vec![], vec![], vec![]);
    let mut answer = String::new();
    for _ in 0..runs {
        model.clear_prefixes();
        let free = model.generate(&prompt, &params, &mut |_| ControlFlow::Continue(()))?;
        free_rate.push(free.tokens.len() as f64 / free.generate_time.as_secs_f64());
        model.clear_prefixes();
        let t = Instant::now();
        let constraint = grammars.compile(&grammar)?;
        compile_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let spent = std::sync::Arc::default();
        let timed = Timed {
            inner: constraint,
            spent: std::sync::Arc::clone(&spent),
        };
        let g = model.generate_until(
            &[],
            &prompt,
            &params,
            &[],
            Some(Box::new(timed)),
            &mut |_| ControlFlow::Continue(()),
        )?;
        rate.push(g.tokens.len() as f64 / g.generate_time.as_secs_f64());
        let (time, masks) = *spent.lock().unwrap_or_else(|e| e.into_inner());
        mask_us.push(time.as_secs_f64() * 1e6 / masks.max(1) as f64);
        if serde_json::from_str::<serde_json::Value>(&g.text).is_err() {
            bail!("the constrained answer is not JSON: {}", g.text);
        }
        let mut check = grammars.compile(&grammar)?;
        let score = model.score_with(
            &prompt,
            &g.tokens,
            &params.sampling,
            0.0,
            None,
            Some(&mut check),
        )?;
        if !score.passed {
            bail!(
                "the verifier failed the constrained answer at {:?}",
                score.first_failure
            );
        }
        answer = g.text;
    }
    println!("  structured outputs (a JSON schema of 4 fields, greedy)");
    println!(
        "    grammar start-up     {:>8.1} ms once per model ({} tokens)",
        startup.as_secs_f64() * 1e3,
        model.llama.config.vocab
    );
    println!(
        "    schema compile       {:>8.2} ms per request",
        median(compile_ms)
    );
    println!("    mask per token       {:>8.1} µs", median(mask_us));
    println!(
        "    generation           {:>8.1} tokens/s constrained, {:.1} free",
        median(rate),
        median(free_rate)
    );
    println!("    answer: {answer}");
    Ok(())
}

/// Continuous batching's core: `batch` sequences (each after a 64-token prompt) generating
/// together, one batched pass per token. Returns (batch, tokens/s, ms per pass), medians.
fn batched_generation(
    llama: &agora_infer::llama::Llama,
    prompt: &[u32],
    runs: usize,
) -> Result<Vec<(usize, f64, f64)>> {
    use agora_infer::llama::Step;
    const PASSES: usize = 32;
    let prompt = &prompt[..prompt.len().min(64)];
    let mut out = Vec::new();
    for batch in [1usize, 4, 16, 64] {
        let mut rates = Vec::new();
        let mut pass_ms = Vec::new();
        for _ in 0..runs {
            let mut caches: Vec<_> = (0..batch).map(|_| llama.new_cache()).collect();
            let mut next = Vec::new();
            for (i, cache) in caches.iter_mut().enumerate() {
                // Each sequence its own prompt: the benchmark text from a different place.
                let mut p = prompt.to_vec();
                p.rotate_left(i % prompt.len());
                llama.reserve(cache, p.len() + PASSES + 1);
                let logits = llama.forward(cache, &p, p.len() - 1..p.len())?;
                next.push([sample::argmax(&logits)]);
            }
            let mut logits = Vec::new();
            let vocab = llama.config.vocab;
            let t = Instant::now();
            for _ in 0..PASSES {
                let mut steps: Vec<Step<'_>> = caches
                    .iter_mut()
                    .zip(&next)
                    .map(|(cache, token)| Step {
                        cache,
                        tokens: &token[..],
                        logits_for: 0..1,
                    })
                    .collect();
                llama.forward_batch(&mut steps, &mut logits)?;
                drop(steps);
                for (i, token) in next.iter_mut().enumerate() {
                    *token = [sample::argmax(&logits[i * vocab..(i + 1) * vocab])];
                }
            }
            let took = t.elapsed().as_secs_f64();
            rates.push((batch * PASSES) as f64 / took);
            pass_ms.push(took / PASSES as f64 * 1e3);
        }
        out.push((batch, median(rates), median(pass_ms)));
    }
    Ok(out)
}

fn embed(args: &InferBenchArgs, cache: &ModelCache, threads: usize, runs: usize) -> Result<()> {
    let embed_model = cache.ensure_reporting(&models::MINILM)?;
    reset_peak_rss();
    let embedder = Embedder::load(&embed_model.dir, threads)?;
    let sentences: Vec<&str> = agora_infer::BENCH_SENTENCES
        .lines()
        .filter(|l| !l.is_empty())
        .collect();
    let tokens: usize = embedder.tokenize(&sentences)?.iter().map(Vec::len).sum();
    let _ = embedder.embed(&sentences[..args.batch.min(sentences.len())])?;
    let mut rates = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        for chunk in sentences.chunks(args.batch.max(1)) {
            embedder.embed(chunk)?;
        }
        rates.push(sentences.len() as f64 / t.elapsed().as_secs_f64());
    }
    println!(
        "embedding model {} ({}), {} sentences ({} tokens), batches of {}",
        models::MINILM.display,
        &models::MINILM.id[..12],
        sentences.len(),
        tokens,
        args.batch
    );
    println!(
        "  embeddings             {:>8.1} sentences/s",
        median(rates)
    );
    if let Some(b) = peak_rss() {
        println!("  peak RSS (embeddings)  {:>8.1} MB", b as f64 / 1e6);
    }
    Ok(())
}
