#![allow(clippy::unwrap_used, clippy::expect_used)]
use agora_infer::llama::{Llama, Step};
use std::time::Instant;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let batch: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    let passes: usize = std::env::args().nth(3).unwrap().parse().unwrap();
    let llama = Llama::load(std::path::Path::new(&path), 2).unwrap();
    let prompt: Vec<u32> = (0..64u32).map(|i| 100 + i * 37).collect();
    let mut caches: Vec<_> = (0..batch).map(|_| llama.new_cache()).collect();
    let mut next = Vec::new();
    for (i, cache) in caches.iter_mut().enumerate() {
        let mut p = prompt.clone();
        p.rotate_left(i % prompt.len());
        llama.reserve(cache, p.len() + passes + 1);
        let logits = llama.forward(cache, &p, p.len() - 1..p.len()).unwrap();
        next.push([agora_infer::sample::argmax(&logits)]);
    }
    let mut logits = Vec::new();
    let vocab = llama.config.vocab;
    let t = Instant::now();
    for _ in 0..passes {
        let mut steps: Vec<Step<'_>> = caches
            .iter_mut()
            .zip(&next)
            .map(|(cache, token)| Step {
                cache,
                tokens: &token[..],
                logits_for: 0..1,
            })
            .collect();
        llama.forward_batch(&mut steps, &mut logits).unwrap();
        drop(steps);
        for (i, token) in next.iter_mut().enumerate() {
            *token = [agora_infer::sample::argmax(
                &logits[i * vocab..(i + 1) * vocab],
            )];
        }
    }
    let took = t.elapsed().as_secs_f64();
    println!(
        "batch {batch}: {:.2} ms per pass, {:.1} tok/s",
        took / passes as f64 * 1e3,
        (batch * passes) as f64 / took
    );
}
