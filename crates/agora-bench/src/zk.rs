//! `agora bench zk`: zero-knowledge proofs of inference. For MLPs from about 1 thousand to 1
//! million weights: the setup (committing the weights), proving time, proof size, verification
//! time (what the state machine spends per proof) and the process's peak memory, on this
//! machine's cores.
//!
//! Each model is an input layer, one hidden ReLU layer and 8 outputs, with pseudo-random 8-bit
//! weights; the 100k row is the shape of a classifier over MiniLM embeddings (384 → 256 → 8).
//! Proofs hide the input and the outputs and show the predicate "output 0 is below t".

use std::time::Instant;

use agora_zk::{Context, ProvingKey, ZkModel, verify};
use anyhow::{Context as _, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct ZkBenchArgs {
    /// Model sizes to measure, as layer sizes `IN-HIDDEN-OUT` (comma-separated).
    #[arg(long, default_value = "32-30-2,128-76-2,384-256-8,1024-960-8")]
    shapes: String,
    /// Verifications timed per model (the median is reported).
    #[arg(long, default_value_t = 21)]
    verify_runs: usize,
}

/// Peak resident memory of this process so far, in MiB (Linux).
fn peak_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

pub fn run(args: ZkBenchArgs) -> Result<()> {
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
