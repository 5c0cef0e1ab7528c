//! `agora bench zk`: zero-knowledge proofs of inference. For MLPs from about 1 thousand to 1
//! million weights: the setup (committing the weights), proving time, proof size, verification
//! time (what the state machine spends per proof) and the process's peak memory, on this
//! machine's cores.
//!
//! Each model is an input layer, one hidden ReLU layer and 8 outputs, with pseudo-random 8-bit
//! weights; the 100k row is the shape of a classifier over MiniLM embeddings (384 → 256 → 8).
//! Proofs hide the input and the outputs and show the predicate "output 0 is below t".

use std::path::{Path, PathBuf};
use std::time::Instant;

use agora_infer::bert::Embedder;
use agora_infer::models::{self, ModelCache};
use agora_zk::topic::{TOPIC_MODEL_NAME, TOPICS};
use agora_zk::train::{self, Example, TrainConfig};
use agora_zk::{Context, ProvingKey, ZkModel, verify};
use anyhow::{Context as _, Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct ZkBenchArgs {
    /// Model sizes to measure, as layer sizes `IN-HIDDEN-OUT` (comma-separated).
    #[arg(long, default_value = "32-30-2,128-76-2,384-256-8,1024-960-8")]
    shapes: String,
    /// Verifications timed per model (the median is reported).
    #[arg(long, default_value_t = 21)]
    verify_runs: usize,
    /// Also train the topic classifier over MiniLM embeddings of OpenZeppelin Contracts'
    /// documentation (8 classes: its folders), and report its accuracy and its proofs.
    #[arg(long)]
    classifier: bool,
    /// A folder holding OpenZeppelin Contracts' sources (default: fetched with npm into
    /// `corpus/` beside the models folder).
    #[arg(long)]
    openzeppelin: Option<PathBuf>,
    /// Where to write the trained classifier's model file.
    #[arg(long)]
    classifier_out: Option<PathBuf>,
}

/// Peak resident memory of this process so far, in MiB (Linux).
fn peak_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// Pieces of about this many characters, cut at sentence ends, are the classifier's examples.
const PIECE_CHARS: usize = 400;

/// A document's text in pieces of about [`PIECE_CHARS`], cut after sentences.
fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for sentence in text.split_inclusive(". ") {
        cur.push_str(sentence);
        if cur.len() >= PIECE_CHARS {
            out.push(std::mem::take(&mut cur));
        }
    }
    if cur.len() >= PIECE_CHARS / 4 {
        out.push(cur);
    }
    out
}

/// The labelled set: every piece of every documented OpenZeppelin file, labelled by its folder,
/// embedded with MiniLM and quantized; a fifth of the files (by the hash of their path) held
/// out for testing. Returns `(train, test)`.
pub fn topic_examples(
    openzeppelin: &Path,
    embedder: &Embedder,
) -> Result<(Vec<Example>, Vec<Example>)> {
    let docs = agora_search::corpus::solidity_docs(openzeppelin, "openzeppelin")?;
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for doc in docs {
        let Some(rel) = doc.id.strip_prefix("article:openzeppelin/") else {
            continue;
        };
        let folder = rel.split('/').next().unwrap_or_default();
        let Some(label) = TOPICS.iter().position(|t| *t == folder) else {
            continue;
        };
        let texts = pieces(&doc.body);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let held_out = agora_types::Hash::digest(rel.as_bytes()).0[0].is_multiple_of(5);
        for chunk in refs.chunks(32) {
            for v in embedder.embed(chunk)? {
                let e = Example {
                    input: train::quantize_input(&v),
                    label,
                };
                if held_out { &mut test } else { &mut train }.push(e);
            }
        }
    }
    if train.is_empty() || test.is_empty() {
        bail!("{}: no documented files", openzeppelin.display());
    }
    Ok((train, test))
}

/// Trains the topic classifier: 384 → 32 → 8.
pub fn train_topic_classifier(train_set: &[Example]) -> Result<(train::FloatMlp, ZkModel)> {
    let cfg = TrainConfig::default();
    let mlp = train::train(train_set, &cfg)?;
    let model = train::quantize(&mlp, train_set, TOPIC_MODEL_NAME)?;
    Ok((mlp, model))
}

fn classifier(args: &ZkBenchArgs, models_dir: &Path) -> Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let minilm = ModelCache::new(models_dir).ensure_reporting(&models::MINILM)?;
    let embedder = Embedder::load(&minilm.dir, threads)?;
    let openzeppelin = match args.openzeppelin.clone() {
        Some(p) => p,
        None => crate::search::fetch_openzeppelin(&models_dir.join("..").join("corpus"))?,
    };
    let start = Instant::now();
    let (train_set, test_set) = topic_examples(&openzeppelin, &embedder)?;
    let embed_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let (mlp, model) = train_topic_classifier(&train_set)?;
    let train_s = start.elapsed().as_secs_f64();
    let accuracy = |f: &dyn Fn(&Example) -> usize, set: &[Example]| {
        set.iter().filter(|e| f(e) == e.label).count() as f64 / set.len() as f64
    };
    let float = |e: &Example| mlp.predict(&e.input);
    let int = |e: &Example| train::classify(&model, &e.input).unwrap_or(usize::MAX);
    let mut counts = [0usize; 8];
    for e in &train_set {
        counts[e.label] += 1;
    }
    let majority = train::argmax(&counts);
    let agree = test_set.iter().filter(|e| float(e) == int(e)).count();
    println!();
    println!(
        "Topic classifier over MiniLM embeddings (384 → 32 → 8, {} weights): OpenZeppelin Contracts' documentation in pieces of about {PIECE_CHARS} characters, labelled by folder ({}), a fifth of the files held out",
        model.params(),
        TOPICS.join(", ")
    );
    println!(
        "{} training and {} test pieces; embedding {embed_s:.1} s, training {train_s:.1} s",
        train_set.len(),
        test_set.len()
    );
    println!();
    println!("| model | train accuracy | test accuracy |");
    println!("| --- | ---: | ---: |");
    println!(
        "| majority class ({}) | {:.3} | {:.3} |",
        TOPICS[majority],
        accuracy(&|_| majority, &train_set),
        accuracy(&|_| majority, &test_set)
    );
    println!(
        "| float MLP | {:.3} | {:.3} |",
        accuracy(&float, &train_set),
        accuracy(&float, &test_set)
    );
    println!(
        "| 8-bit integers (what is proved) | {:.3} | {:.3} |",
        accuracy(&int, &train_set),
        accuracy(&int, &test_set)
    );
    println!(
        "integer and float models agree on {agree} of {} test pieces",
        test_set.len()
    );
    let start = Instant::now();
    let pk = ProvingKey::new(model.clone())?;
    let setup = start.elapsed().as_secs_f64();
    let context = Context {
        chain_id: [1; 32],
        nonce: [3; 32],
    };
    let input = &test_set[0].input;
    let start = Instant::now();
    let (statement, proof) = pk.prove(input, &[9; 8], 1 << 27, false, &context)?;
    let prove = start.elapsed().as_secs_f64();
    let start = Instant::now();
    verify(pk.verifying_key(), &statement, &context, &proof)?;
    let verify_ms = start.elapsed().as_secs_f64() * 1e3;
    println!(
        "a proved classification (outputs shown): setup {setup:.2} s, prove {prove:.2} s, proof {:.0} KiB, verify {verify_ms:.1} ms",
        proof.len() as f64 / 1024.0
    );
    if let Some(out) = &args.classifier_out {
        std::fs::write(out, model.to_bytes())
            .with_context(|| format!("writing {}", out.display()))?;
        println!("model file → {}", out.display());
    }
    Ok(())
}

pub fn run(args: ZkBenchArgs, models_dir: &Path) -> Result<()> {
    if args.classifier {
        return classifier(&args, models_dir);
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "zero-knowledge proofs of MLP inference (Plonky3 batch-STARK, BabyBear, FRI, hiding), {threads} threads"
    );
    println!();
    println!("| model | weights | setup s | prove s | proof KiB | verify ms | peak memory MiB |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for shape in args.shapes.split(',') {
        let sizes: Vec<u32> = shape
            .split('-')
            .map(|s| s.trim().parse())
            .collect::<Result<_, _>>()
            .with_context(|| format!("a shape is layer sizes like 384-256-8, not {shape}"))?;
        let model = ZkModel::synthetic(shape, &sizes, 1)?;
        let weights = model.params();
        let input: Vec<i8> = (0..sizes[0])
            .map(|i| (i.wrapping_mul(37) % 251) as u8 as i8)
            .collect();
        let score = model.forward(&input)?[0];
        let start = Instant::now();
        let pk = ProvingKey::new(model)?;
        let setup = start.elapsed().as_secs_f64();
        let context = Context {
            chain_id: [1; 32],
            nonce: [2; 32],
        };
        let start = Instant::now();
        let (statement, proof) = pk.prove(&input, &[7; 8], score + 1, true, &context)?;
        let prove = start.elapsed().as_secs_f64();
        let mut times = Vec::with_capacity(args.verify_runs);
        for _ in 0..args.verify_runs.max(1) {
            let start = Instant::now();
            verify(pk.verifying_key(), &statement, &context, &proof)?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {shape} | {weights} | {setup:.2} | {prove:.2} | {:.0} | {:.1} | {} |",
            proof.len() as f64 / 1024.0,
            times[times.len() / 2],
            peak_mib().map_or("?".into(), |m| m.to_string()),
        );
    }
    println!();
    println!(
        "Published, for scale: EZKL proves a 4M-parameter dense model in about 127 s; Lagrange's"
    );
    println!("DeepProve (sumcheck/GKR) in about 2.3 s, both on large server CPUs.");
    Ok(())
}
