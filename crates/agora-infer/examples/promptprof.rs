#![allow(clippy::unwrap_used, clippy::expect_used)]
use agora_infer::llama::Llama;
use std::time::Instant;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let n: usize = std::env::args().nth(2).unwrap().parse().unwrap();
    let runs: usize = std::env::args().nth(3).unwrap().parse().unwrap();
    let llama = Llama::load(std::path::Path::new(&path), 2).unwrap();
    let prompt: Vec<u32> = (0..n as u32).map(|i| 100 + i * 37).collect();
    let t = Instant::now();
    for _ in 0..runs {
        let mut cache = llama.new_cache();
        let _ = llama.forward(&mut cache, &prompt, n - 1..n).unwrap();
    }
    let took = t.elapsed().as_secs_f64() / runs as f64;
    println!(
        "prompt {n}: {:.1} ms, {:.0} tok/s",
        took * 1e3,
        n as f64 / took
    );
}
