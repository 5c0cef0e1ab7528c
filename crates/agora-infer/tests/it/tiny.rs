//! The runtime on tiny random-weight models built by the test: determinism, batching, scoring, limits.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use agora_infer::Error;
use agora_infer::chat::{ChatModel, Finish, GenParams, Message};
use agora_infer::llama::Llama;
use agora_infer::sample::SamplingParams;
use agora_infer::testing::{TinySpec, write_tiny_chat_model};

fn tiny(dir: &Path, spec: TinySpec) -> PathBuf {
    let path = dir.join(format!("tiny-{}.gguf", spec.seed));
    write_tiny_chat_model(&path, spec).unwrap();
    path
}

fn no_stream(_: agora_infer::chat::Piece<'_>) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

fn sampled(seed: u64) -> GenParams {
    GenParams {
        max_tokens: 40,
        sampling: SamplingParams {
            temperature: 0.9,
            top_p: 0.95,
            top_k: 40,
            seed,
            ..Default::default()
        },
        logprobs: None,
    }
}

#[test]
fn generation_is_reproducible_across_runs_threads_and_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), TinySpec::default());
    let one = ChatModel::load(&path, 1).unwrap();
    let two = ChatModel::load(&path, 2).unwrap();
    let prompt = one
        .encode_chat(&[Message::new("user", "Tell me about the sea")])
        .unwrap();
    for params in [
        GenParams {
            max_tokens: 40,
            ..Default::default()
        },
        sampled(7),
    ] {
        let a = one.generate(&prompt, &params, &mut no_stream).unwrap();
        let b = one.generate(&prompt, &params, &mut no_stream).unwrap();
        let c = two.generate(&prompt, &params, &mut no_stream).unwrap();
        assert!(!a.tokens.is_empty());
        assert_eq!(a.tokens, b.tokens, "same run twice");
        assert_eq!(a.tokens, c.tokens, "1 thread vs 2 threads");
    }
    let a = one.generate(&prompt, &sampled(7), &mut no_stream).unwrap();
    let b = one.generate(&prompt, &sampled(8), &mut no_stream).unwrap();
    assert_ne!(a.tokens, b.tokens, "another seed samples other tokens");

    // Portable kernels give the same logits, bit for bit, as the SIMD ones.
    let simd = Llama::load(&path, 2).unwrap();
    let mut portable = Llama::load(&path, 2).unwrap();
    portable.force_portable_kernels();
    let (mut c1, mut c2) = (simd.new_cache(), portable.new_cache());
    let l1 = simd.forward(&mut c1, &prompt, 0..prompt.len()).unwrap();
    let l2 = portable.forward(&mut c2, &prompt, 0..prompt.len()).unwrap();
    assert_eq!(l1, l2);
}

/// A digest of the logits of a prompt and of batched passes of 1 to 16 sequences (so every
/// matmul kernel this CPU has runs: VNNI, wide, tiles), on models of each layer type.
fn logits_digest(dir: &Path) -> u64 {
    use agora_infer::llama::Step;
    let mut digest = 0xcbf2_9ce4_8422_2325u64;
    for (seed, layers) in [
        (21, agora_infer::gguf::GgmlType::Q4_1),
        (22, agora_infer::gguf::GgmlType::Q8_0),
    ] {
        let path = tiny(
            dir,
            TinySpec {
                seed,
                layers,
                ..Default::default()
            },
        );
        let model = Llama::load(&path, 2).unwrap();
        let vocab = model.config.vocab as u32;
        let mut all = Vec::new();
        let prompt: Vec<u32> = (0..37).map(|i| (i * 5 + 1) % vocab).collect();
        let mut caches: Vec<_> = (0..16).map(|_| model.new_cache()).collect();
        for (k, cache) in caches.iter_mut().enumerate() {
            all.extend(model.forward(cache, &prompt[k..], 0..1).unwrap());
        }
        let mut logits = Vec::new();
        for n in [1, 4, 8, 9, 12, 13, 16] {
            let tokens: Vec<[u32; 1]> = (0..n).map(|k| [(k as u32 * 3 + 2) % vocab]).collect();
            let mut steps: Vec<Step<'_>> = caches
                .iter_mut()
                .zip(&tokens)
                .map(|(cache, t)| Step {
                    cache,
                    tokens: t,
                    logits_for: 0..1,
                })
                .collect();
            model.forward_batch(&mut steps, &mut logits).unwrap();
            all.extend_from_slice(&logits);
        }
        for v in all {
            // FNV-1a over the bits.
            for byte in v.to_bits().to_le_bytes() {
                digest = (digest ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    digest
}

/// Every instruction set gives the same bits: the digest of `logits_digest` here (with AVX-512's
/// forms and the wide and tile kernels where the CPU has them) equals a child process's, run with
/// them turned off (`AGORA_NO_AVX512`, `AGORA_NO_AMX`: the AVX2 forms, the VNNI kernels).
#[test]
fn every_instruction_set_gives_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let digest = logits_digest(dir.path());
    if std::env::var_os("AGORA_TEST_DIGEST_ONLY").is_some() {
        println!("digest {digest:016x}");
        return;
    }
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tiny::every_instruction_set_gives_the_same_logits",
            "--nocapture",
        ])
        .env("AGORA_TEST_DIGEST_ONLY", "1")
        .env("AGORA_NO_AVX512", "1")
        .env("AGORA_NO_AMX", "1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&child.stdout);
    assert!(child.status.success(), "{out}");
    let theirs = out
        .lines()
        .find_map(|l| l.strip_prefix("digest "))
        .unwrap_or_else(|| panic!("the child printed no digest: {out}"));
    assert_eq!(theirs, format!("{digest:016x}"));
}

#[test]
fn a_batch_gives_the_logits_of_tokens_fed_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(
        dir.path(),
        TinySpec {
            seed: 3,
            ..Default::default()
        },
    );
    let model = Llama::load(&path, 2).unwrap();
    // Past 64 positions, so the one-by-one cache grows (and moves its blocks) on the way.
    let tokens: Vec<u32> = (0..101)
        .map(|i| (i * 7 + 3) % model.config.vocab as u32)
        .collect();
    let mut batch_cache = model.new_cache();
    let batch = model
        .forward(&mut batch_cache, &tokens, 0..tokens.len())
        .unwrap();
    let mut cache = model.new_cache();
    let mut single = Vec::new();
    for t in &tokens {
        single.extend(model.forward(&mut cache, &[*t], 0..1).unwrap());
    }
    assert_eq!(batch, single);
    // Mixed chunk sizes too.
    let mut cache = model.new_cache();
    let mut mixed = model.forward(&mut cache, &tokens[..5], 0..5).unwrap();
    mixed.extend(model.forward(&mut cache, &tokens[5..30], 0..25).unwrap());
    mixed.extend(model.forward(&mut cache, &tokens[30..], 0..71).unwrap());
    assert_eq!(batch, mixed);
    // A copied prefix of any length (inside a block of positions or at its end) goes on as the
    // whole cache would.
    let vocab = model.config.vocab;
    for len in [1, 15, 16, 17, 37, 64, 100] {
        let mut copy = batch_cache.prefix(len);
        assert_eq!(copy.len(), len);
        let rest = model
            .forward(&mut copy, &tokens[len..], 0..tokens.len() - len)
            .unwrap();
        assert_eq!(rest, batch[len * vocab..], "prefix of {len}");
    }
}

/// A request that starts like an earlier one reuses the earlier keys and values for the common
/// prefix, and gets the same tokens and scores, bit for bit, as a model that runs everything.
#[test]
fn kept_prefixes_are_reused_and_change_no_bit() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), TinySpec::default());
    let warm = ChatModel::load(&path, 2).unwrap();
    let system = Message::new(
        "system",
        "You are a terse assistant who answers in one line.",
    );
    let chat = |text: &str| {
        warm.encode_chat(&[system.clone(), Message::new("user", text)])
            .unwrap()
    };
    let (first, second) = (chat("What is a ledger?"), chat("What is a validator?"));
    let common = first
        .iter()
        .zip(&second)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(common >= 8, "the prompts share the system message");
    for params in [GenParams::default(), sampled(3)] {
        let params = GenParams {
            max_tokens: 24,
            ..params
        };
        // A fresh model for each request: nothing kept.
        let cold = |prompt: &[u32]| {
            let m = ChatModel::load(&path, 1).unwrap();
            let g = m.generate(prompt, &params, &mut no_stream).unwrap();
            assert_eq!(g.cached_tokens, 0);
            g.tokens
        };
        let a = warm.generate(&first, &params, &mut no_stream).unwrap();
        assert_eq!(a.tokens, cold(&first));
        // The same prompt again: all of it but the last token comes from the kept cache.
        let again = warm.generate(&first, &params, &mut no_stream).unwrap();
        assert_eq!(again.cached_tokens, first.len() - 1);
        assert_eq!(again.tokens, a.tokens);
        // Kept prefixes serve only their own scope (client).
        let alice = warm
            .generate_in(b"alice", &first, &params, &mut no_stream)
            .unwrap();
        assert_eq!((alice.cached_tokens, &alice.tokens), (0, &a.tokens));
        let bob = warm
            .generate_in(b"bob", &first, &params, &mut no_stream)
            .unwrap();
        assert_eq!((bob.cached_tokens, &bob.tokens), (0, &a.tokens));
        let alice = warm
            .generate_in(b"alice", &first, &params, &mut no_stream)
            .unwrap();
        assert_eq!(alice.cached_tokens, first.len() - 1);
        warm.clear_prefixes();
        let cleared = warm.generate(&first, &params, &mut no_stream).unwrap();
        assert_eq!(
            cleared.cached_tokens, 0,
            "nothing kept after clear_prefixes"
        );
        // Another question after the same system message: the shared part is reused.
        let b = warm.generate(&second, &params, &mut no_stream).unwrap();
        assert!(b.cached_tokens >= common, "{} < {common}", b.cached_tokens);
        assert_eq!(b.tokens, cold(&second));
        // The answer continued by the next turn's prompt reuses the whole first exchange.
        let mut next = first.clone();
        next.extend_from_slice(&a.tokens);
        next.extend_from_slice(&first[first.len() - 3..]);
        let c = warm.generate(&next, &params, &mut no_stream).unwrap();
        assert!(c.cached_tokens >= first.len() + a.tokens.len() - 1);
        assert_eq!(c.tokens, cold(&next));
        // Scoring after the generation it checks: the same verdicts and margins as from scratch.
        let fresh = ChatModel::load(&path, 2).unwrap();
        let s1 = warm
            .score(&second, &b.tokens, &params.sampling, 0.0)
            .unwrap();
        let s2 = fresh
            .score(&second, &b.tokens, &params.sampling, 0.0)
            .unwrap();
        assert!(s1.passed);
        assert_eq!(s1.checks, s2.checks);
    }
}

#[test]
fn scoring_passes_honest_answers_and_catches_altered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), TinySpec::default());
    let model = ChatModel::load(&path, 2).unwrap();
    let vocab = model.llama.config.vocab as u32;
    let prompt = model
        .encode_chat(&[Message::new("user", "What is a ledger?")])
        .unwrap();
    for params in [
        GenParams {
            max_tokens: 48,
            ..Default::default()
        },
        sampled(11),
    ] {
        let honest = model.generate(&prompt, &params, &mut no_stream).unwrap();
        assert!(
            honest.tokens.len() >= 8,
            "the tiny model should talk a while: {:?}",
            honest.tokens
        );
        let score = model
            .score(&prompt, &honest.tokens, &params.sampling, 0.0)
            .unwrap();
        assert!(
            score.passed,
            "honest answer failed: {:?}",
            score.first_failure
        );
        assert_eq!(score.checks.len(), honest.tokens.len());
        assert!(score.checks.iter().all(|c| c.expected == c.claimed));
        if params.sampling.is_greedy() {
            assert_eq!(
                score.max_margin, 0.0,
                "scoring reproduces generation's logits exactly"
            );
        }

        // One token changed in the middle.
        let mut altered = honest.tokens.clone();
        let mid = altered.len() / 2;
        altered[mid] = (altered[mid] + 1 + vocab / 2) % vocab;
        let s = model
            .score(&prompt, &altered, &params.sampling, 0.0)
            .unwrap();
        assert_eq!(s.first_failure, Some(mid));
        // A correct prefix then garbage.
        let mut garbage = honest.tokens[..mid].to_vec();
        garbage.extend((0..10).map(|i| (i * 31 + 5) % vocab));
        assert!(
            !model
                .score(&prompt, &garbage, &params.sampling, 0.0)
                .unwrap()
                .passed
        );
        // Another prompt's answer.
        let other = model
            .encode_chat(&[Message::new("user", "Sing me a song")])
            .unwrap();
        assert!(
            !model
                .score(&other, &honest.tokens, &params.sampling, 0.0)
                .unwrap()
                .passed
        );
    }
    // A sampled answer scored as greedy fails (it is not the top choice everywhere), and the converse.
    let s = sampled(11);
    let answer = model.generate(&prompt, &s, &mut no_stream).unwrap();
    assert!(
        !model
            .score(&prompt, &answer.tokens, &SamplingParams::greedy(), 0.0)
            .unwrap()
            .passed
    );
}

#[test]
fn streaming_pieces_make_the_text_and_the_stream_can_be_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(
        dir.path(),
        TinySpec {
            seed: 9,
            ..Default::default()
        },
    );
    let model = ChatModel::load(&path, 1).unwrap();
    let prompt = model.encode_chat(&[Message::new("user", "hello")]).unwrap();
    let mut streamed = String::new();
    let mut count = 0;
    let g = model
        .generate(
            &prompt,
            &GenParams {
                max_tokens: 30,
                ..Default::default()
            },
            &mut |p| {
                streamed.push_str(p.text);
                count += 1;
                ControlFlow::Continue(())
            },
        )
        .unwrap();
    assert_eq!(streamed, g.text);
    assert!(count > 0);
    match g.finish {
        Finish::Length => assert_eq!(g.tokens.len(), 30),
        Finish::Stop => assert!(model.stop_tokens().contains(g.tokens.last().unwrap())),
        Finish::Cancelled => panic!("not cancelled"),
    }
    let mut n = 0;
    let g = model
        .generate(
            &prompt,
            &GenParams {
                max_tokens: 30,
                ..Default::default()
            },
            &mut |_| {
                n += 1;
                if n == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .unwrap();
    if g.finish == Finish::Cancelled {
        assert_eq!(g.tokens.len(), 3);
    }
}

#[test]
fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(
        dir.path(),
        TinySpec {
            context: 128,
            ..Default::default()
        },
    );
    let mut model = ChatModel::load(&path, 1).unwrap();
    model.set_context(128);
    let long = "word ".repeat(200);
    let prompt = model.encode_chat(&[Message::new("user", &long)]).unwrap();
    let err = model
        .generate(&prompt, &GenParams::default(), &mut no_stream)
        .unwrap_err();
    assert!(
        matches!(err, Error::ContextOverflow { context: 128, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("context holds 128"), "{err}");
    assert!(matches!(
        model.generate(&[], &GenParams::default(), &mut no_stream),
        Err(Error::BadRequest(_))
    ));
    assert!(model.render(&[]).is_err());
    let bad = GenParams {
        sampling: SamplingParams {
            temperature: -1.0,
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(model.generate(&[1, 2], &bad, &mut no_stream).is_err());
    let vocab = model.llama.config.vocab as u32;
    let err = model
        .generate(&[1, vocab + 5], &GenParams::default(), &mut no_stream)
        .unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
    assert!(
        model
            .score(&[1, 2], &[vocab], &SamplingParams::greedy(), 0.0)
            .is_err()
    );

    // A short generation stops at the context bound instead of failing.
    let short = model.encode_chat(&[Message::new("user", "hi")]).unwrap();
    let g = model
        .generate(
            &short,
            &GenParams {
                max_tokens: 1000,
                ..Default::default()
            },
            &mut no_stream,
        )
        .unwrap();
    assert!(short.len() + g.tokens.len() <= 129);
}

#[test]
fn corrupt_model_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), TinySpec::default());
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let err = Llama::load(&cut, 1).unwrap_err();
    assert!(err.to_string().contains("outside the file"), "{err}");
    let magic = dir.path().join("magic.gguf");
    let mut b = bytes.clone();
    b[0] = b'X';
    std::fs::write(&magic, &b).unwrap();
    assert!(
        Llama::load(&magic, 1)
            .unwrap_err()
            .to_string()
            .contains("not a GGUF")
    );
    let header = dir.path().join("header.gguf");
    std::fs::write(&header, &bytes[..40]).unwrap();
    assert!(matches!(Llama::load(&header, 1), Err(Error::BadModel(_))));
    assert!(matches!(
        Llama::load(&dir.path().join("missing.gguf"), 1),
        Err(Error::Io { .. })
    ));
    // A context past the largest rotary angle the runtime computes is refused at load, not later.
    let huge = dir.path().join("huge");
    std::fs::create_dir(&huge).unwrap();
    let spec = TinySpec {
        context: 1 << 20,
        ..TinySpec::default()
    };
    let err = Llama::load(&tiny(&huge, spec), 1).unwrap_err();
    assert!(
        err.to_string()
            .contains("beyond what this runtime supports"),
        "{err}"
    );
}

#[test]
fn one_loaded_model_serves_concurrent_requests_with_the_same_answers() {
    fn shareable<T: Send + Sync>() {}
    shareable::<ChatModel>();
    shareable::<Llama>();
    shareable::<agora_infer::bert::Embedder>();

    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), TinySpec::default());
    let model = std::sync::Arc::new(ChatModel::load(&path, 2).unwrap());
    let prompts = ["one", "two", "three", "four"];
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            let prompt = model.encode_chat(&[Message::new("user", p)]).unwrap();
            model
                .generate(&prompt, &sampled(5), &mut no_stream)
                .unwrap()
                .tokens
        })
        .collect();
    let handles: Vec<_> = prompts
        .iter()
        .map(|p| {
            let model = model.clone();
            let p = p.to_string();
            std::thread::spawn(move || {
                let prompt = model.encode_chat(&[Message::new("user", &p)]).unwrap();
                model
                    .generate(&prompt, &sampled(5), &mut no_stream)
                    .unwrap()
                    .tokens
            })
        })
        .collect();
    let together: Vec<Vec<u32>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(alone, together);
}

/// One batched pass over sequences at different stages (a whole prompt, a prompt's middle chunk,
/// a single next token) gives each one the logits it gets alone, bit for bit.
#[test]
fn a_batch_of_sequences_gives_each_the_logits_it_gets_alone() {
    use agora_infer::llama::Step;
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), TinySpec::default());
    let model = Llama::load(&path, 2).unwrap();
    let vocab = model.config.vocab as u32;
    let seq = |k: u32, n: u32| -> Vec<u32> { (0..n).map(|i| (i * k + 5) % vocab).collect() };
    let (a, b, c) = (seq(7, 23), seq(11, 40), seq(13, 9));
    // Alone: a whole; b's first 12, then 12..30; c's first 8, then its 9th.
    let mut alone = model.new_cache();
    let la = model.forward(&mut alone, &a, 0..a.len()).unwrap();
    let mut alone_b = model.new_cache();
    model.forward(&mut alone_b, &b[..12], 0..0).unwrap();
    let lb = model.forward(&mut alone_b, &b[12..30], 17..18).unwrap();
    let mut alone_c = model.new_cache();
    model.forward(&mut alone_c, &c[..8], 0..0).unwrap();
    let lc = model.forward(&mut alone_c, &c[8..], 0..1).unwrap();

    let (mut ca, mut cb, mut cc) = (model.new_cache(), model.new_cache(), model.new_cache());
    model.forward(&mut cb, &b[..12], 0..0).unwrap();
    model.forward(&mut cc, &c[..8], 0..0).unwrap();
    let mut logits = Vec::new();
    model
        .forward_batch(
            &mut [
                Step {
                    cache: &mut ca,
                    tokens: &a,
                    logits_for: 0..a.len(),
                },
                Step {
                    cache: &mut cb,
                    tokens: &b[12..30],
                    logits_for: 17..18,
                },
                Step {
                    cache: &mut cc,
                    tokens: &c[8..],
                    logits_for: 0..1,
                },
            ],
            &mut logits,
        )
        .unwrap();
    assert_eq!(logits, [la, lb, lc].concat());
    assert_eq!((ca.len(), cb.len(), cc.len()), (23, 30, 9));
    // A step's bad request refuses the whole pass and changes no cache.
    let err = model
        .forward_batch(
            &mut [
                Step {
                    cache: &mut ca,
                    tokens: &a[..2],
                    logits_for: 0..1,
                },
                Step {
                    cache: &mut cb,
                    tokens: &[vocab],
                    logits_for: 0..1,
                },
            ],
            &mut logits,
        )
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "{err}");
    assert_eq!((ca.len(), cb.len()), (23, 30));
}

/// Concurrent generations run in shared passes (continuous batching), prompts in small chunks
/// beside others' tokens, and every answer is the one the model gives alone; a verifier's
/// teacher-forced check of a batched greedy answer finds margin 0 at every token.
#[test]
fn concurrent_generations_are_batched_and_change_no_bit() {
    use agora_infer::batch::BatchConfig;
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), TinySpec::default());
    let reference = ChatModel::load(&path, 2).unwrap();
    let mut batched = ChatModel::load(&path, 2).unwrap();
    // Small chunks, so that prompts are cut and run beside other sequences' tokens.
    batched.set_batching(BatchConfig {
        chunk: 5,
        ..BatchConfig::default()
    });
    let batched = std::sync::Arc::new(batched);
    let requests: Vec<(Vec<u32>, GenParams)> = (0..8u64)
        .map(|i| {
            let text = format!("request {i}: {}", "tell me more ".repeat(i as usize + 1));
            let prompt = reference
                .encode_chat(&[Message::new("user", &text)])
                .unwrap();
            let params = if i % 2 == 0 {
                GenParams {
                    max_tokens: 30 + i as u32,
                    ..Default::default()
                }
            } else {
                sampled(i)
            };
            (prompt, params)
        })
        .collect();
    let alone: Vec<Vec<u32>> = requests
        .iter()
        .map(|(p, params)| {
            reference.clear_prefixes();
            reference
                .generate(p, params, &mut no_stream)
                .unwrap()
                .tokens
        })
        .collect();
    let handles: Vec<_> = requests
        .iter()
        .cloned()
        .map(|(prompt, params)| {
            let model = batched.clone();
            std::thread::spawn(move || {
                model
                    .generate(&prompt, &params, &mut no_stream)
                    .unwrap()
                    .tokens
            })
        })
        .collect();
    let together: Vec<Vec<u32>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(alone, together);
    let stats = batched.batch_stats();
    assert!(stats.widest >= 2, "no pass ran two sequences: {stats:?}");
    assert!(stats.seq_steps > stats.passes, "{stats:?}");
    let produced: usize = together.iter().map(Vec::len).sum();
    assert_eq!(stats.output_tokens, produced as u64);
    for ((prompt, params), tokens) in requests.iter().zip(&together) {
        if params.sampling.is_greedy() {
            let score = reference
                .score(prompt, tokens, &params.sampling, 0.0)
                .unwrap();
            assert!(score.passed && score.max_margin == 0.0, "{score:?}");
        }
    }
}

/// A batch bounded to two sequences makes the others wait their turn; a caller that stops its
/// stream leaves the batch, and the others finish with their own answers.
#[test]
fn the_batch_is_bounded_and_a_stopped_stream_leaves_it() {
    use agora_infer::batch::BatchConfig;
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), TinySpec::default());
    let reference = ChatModel::load(&path, 1).unwrap();
    let mut model = ChatModel::load(&path, 1).unwrap();
    model.set_batching(BatchConfig {
        max_seqs: 2,
        ..BatchConfig::default()
    });
    let model = std::sync::Arc::new(model);
    let prompt = |i: usize| {
        reference
            .encode_chat(&[Message::new("user", &format!("question {i}"))])
            .unwrap()
    };
    let params = GenParams {
        max_tokens: 24,
        ..Default::default()
    };
    let handles: Vec<_> = (0..5)
        .map(|i| {
            let (model, prompt) = (model.clone(), prompt(i));
            std::thread::spawn(move || {
                let mut seen = 0;
                let g = model
                    .generate(&prompt, &params, &mut |_| {
                        seen += 1;
                        // The first caller stops after three pieces.
                        if i == 0 && seen == 3 {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    })
                    .unwrap();
                (i, g)
            })
        })
        .collect();
    for h in handles {
        let (i, g) = h.join().unwrap();
        let alone = reference
            .generate(&prompt(i), &params, &mut no_stream)
            .unwrap();
        if i == 0 {
            assert_eq!(g.finish, Finish::Cancelled);
            assert_eq!(g.tokens[..], alone.tokens[..g.tokens.len()]);
        } else {
            assert_eq!(g.tokens, alone.tokens, "request {i}");
        }
    }
    assert!(model.batch_stats().widest <= 2);
}

/// Log-probabilities given with a generation (batched with other requests) are exactly those a
/// teacher-forced pass computes, greedy or sampled; the prompt's are those of scoring the prompt
/// as an answer to its first token; over the whole vocabulary they sum to one.
#[test]
fn log_probabilities_are_the_same_in_generation_scoring_and_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), TinySpec::default());
    let model = std::sync::Arc::new(ChatModel::load(&path, 2).unwrap());
    let vocab = model.llama.config.vocab;
    let prompt = model
        .encode_chat(&[Message::new("user", "Count the waves")])
        .unwrap();
    let requests = [
        GenParams {
            max_tokens: 20,
            logprobs: Some(5),
            ..Default::default()
        },
        GenParams {
            logprobs: Some(0),
            ..sampled(11)
        },
        GenParams {
            logprobs: Some(20),
            ..sampled(12)
        },
    ];
    let handles: Vec<_> = requests
        .iter()
        .map(|params| {
            let (model, prompt, params) = (model.clone(), prompt.clone(), *params);
            std::thread::spawn(move || model.generate(&prompt, &params, &mut no_stream).unwrap())
        })
        .collect();
    for (params, h) in requests.iter().zip(handles) {
        let g = h.join().unwrap();
        let top = usize::from(params.logprobs.unwrap());
        assert_eq!(g.logprobs.len(), g.tokens.len());
        let score = model
            .score_with(&prompt, &g.tokens, &params.sampling, 0.0, Some(top), None)
            .unwrap();
        assert!(score.passed);
        assert_eq!(score.logprobs, g.logprobs, "{params:?}");
        for (lp, &t) in g.logprobs.iter().zip(&g.tokens) {
            assert_eq!(lp.token, t);
            assert_eq!(lp.top.len(), top.min(vocab));
            assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
            if params.sampling.is_greedy() {
                assert_eq!(lp.top[0], (t, lp.logprob));
            }
        }
    }
    // Every token's probability, summed: one.
    let mut cache = model.llama.new_cache();
    let logits = model
        .llama
        .forward(&mut cache, &prompt, prompt.len() - 1..prompt.len())
        .unwrap();
    let everything = agora_infer::sample::logprobs(&logits, 0, vocab);
    assert_eq!(everything.top.len(), vocab);
    let total: f64 = everything
        .top
        .iter()
        .map(|(_, l)| f64::from(*l).exp())
        .sum();
    assert!((total - 1.0).abs() < 1e-4, "{total}");
    // The prompt's: the same as scoring prompt[1..] after prompt[0].
    let lps = model.prompt_logprobs(&prompt, 4).unwrap();
    assert_eq!(lps.len(), prompt.len() - 1);
    let as_answer = model
        .score_with(
            &prompt[..1],
            &prompt[1..],
            &SamplingParams::greedy(),
            f32::MAX,
            Some(4),
            None,
        )
        .unwrap();
    assert_eq!(lps, as_answer.logprobs);
}

/// A stop text ends the answer where it first appears: the text before it, streamed without any
/// of it (text that may begin it is held back), the tokens up to the one that completes it; and
/// `stop_at` finds the same place from the tokens alone, as a verifier does.
#[test]
fn stop_texts_end_the_answer_where_they_appear() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), TinySpec::default());
    let model = ChatModel::load(&path, 2).unwrap();
    let prompt = model
        .encode_chat(&[Message::new("user", "Tell a long story")])
        .unwrap();
    let params = GenParams {
        max_tokens: 60,
        ..Default::default()
    };
    let free = model.generate(&prompt, &params, &mut no_stream).unwrap();
    // A stop text from the middle of the free answer: two characters where they first appear.
    let chars: Vec<(usize, char)> = free.text.char_indices().collect();
    assert!(chars.len() > 10, "{:?}", free.text);
    let (at, stop) = (chars.len() / 2..chars.len() - 2)
        .map(|c| {
            let from = chars[c].0;
            let to = chars.get(c + 2).map_or(free.text.len(), |x| x.0);
            (from, free.text[from..to].to_string())
        })
        .find(|(from, s)| free.text.find(s.as_str()) == Some(*from))
        .expect("a stop text that first appears in the middle");
    let stops = vec!["never appears in this answer".to_string(), stop.clone()];
    let mut streamed = String::new();
    let g = model
        .generate_until(&[], &prompt, &params, &stops, None, &mut |p| {
            streamed.push_str(p.text);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(g.finish, Finish::Stop);
    assert_eq!(g.text, free.text[..at]);
    assert_eq!(streamed, g.text, "nothing of the stop text is streamed");
    assert_eq!(g.tokens[..], free.tokens[..g.tokens.len()]);
    assert!(g.tokens.len() < free.tokens.len());
    assert_eq!(
        model.stop_at(&g.tokens, &stops),
        Some((g.tokens.len() - 1, g.text.clone()))
    );
    // Before its last token the answer had not reached the stop text.
    assert_eq!(model.stop_at(&g.tokens[..g.tokens.len() - 1], &stops), None);
    assert_eq!(model.stop_at(&free.tokens, &[]), None);
}

/// Presence and frequency penalties change the choice, greedy or sampled, the same way in
/// generation and in a verifier's teacher-forced check (margin 0), and an answer generated
/// without them fails a check that applies them.
#[test]
fn penalties_change_the_answer_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny(dir.path(), TinySpec::default());
    let model = ChatModel::load(&path, 2).unwrap();
    let prompt = model
        .encode_chat(&[Message::new("user", "Repeat after me")])
        .unwrap();
    let plain = GenParams {
        max_tokens: 40,
        ..Default::default()
    };
    let mut penalized = plain;
    penalized.sampling.frequency_penalty = 2.0;
    penalized.sampling.presence_penalty = 1.5;
    let a = model.generate(&prompt, &plain, &mut no_stream).unwrap();
    let b = model.generate(&prompt, &penalized, &mut no_stream).unwrap();
    assert_ne!(a.tokens, b.tokens, "penalties change the greedy answer");
    let score = model
        .score(&prompt, &b.tokens, &penalized.sampling, 0.0)
        .unwrap();
    assert!(score.passed && score.max_margin == 0.0, "{score:?}");
    let score = model
        .score(&prompt, &a.tokens, &penalized.sampling, 0.0)
        .unwrap();
    assert!(
        !score.passed,
        "an unpenalized answer passed a penalized check"
    );
    let mut sampled_pen = sampled(4);
    sampled_pen.sampling.frequency_penalty = 1.0;
    let c = model
        .generate(&prompt, &sampled_pen, &mut no_stream)
        .unwrap();
    assert!(
        model
            .score(&prompt, &c.tokens, &sampled_pen.sampling, 0.0)
            .unwrap()
            .passed
    );
    let mut bad = plain;
    bad.sampling.presence_penalty = 2.5;
    assert!(matches!(
        model.generate(&prompt, &bad, &mut no_stream),
        Err(Error::BadRequest(_))
    ));
}

/// A model whose layers are Q4_0, Q4_1, Q8_0, Q4_K (mixed with Q6_K) or Q5_0 loads and runs with the
/// same guarantees: the same tokens on 1 and 2 threads, the same logits from the SIMD and portable
/// kernels, a batch equal to its sequences alone; and the types give different models.
#[test]
fn every_weight_type_loads_and_runs_deterministically() {
    use agora_infer::gguf::GgmlType;
    let dir = tempfile::tempdir().unwrap();
    let mut answers = Vec::new();
    for (i, layers) in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_0,
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("tiny-{i}.gguf"));
        // K-quants' rows are whole super-blocks of 256.
        let (n_embd, n_ff) = if layers == GgmlType::Q4_K {
            (256, 512)
        } else {
            (64, 128)
        };
        write_tiny_chat_model(
            &path,
            TinySpec {
                layers,
                n_embd,
                n_ff,
                ..Default::default()
            },
        )
        .unwrap();
        let one = ChatModel::load(&path, 1).unwrap();
        let two = ChatModel::load(&path, 2).unwrap();
        let prompt = one
            .encode_chat(&[Message::new("user", "Which type am I?")])
            .unwrap();
        let params = GenParams {
            max_tokens: 24,
            ..Default::default()
        };
        let a = one.generate(&prompt, &params, &mut no_stream).unwrap();
        let b = two.generate(&prompt, &params, &mut no_stream).unwrap();
        assert_eq!(a.tokens, b.tokens, "{layers:?}: 1 vs 2 threads");
        assert!(!a.tokens.is_empty());
        let score = two
            .score(&prompt, &a.tokens, &params.sampling, 0.0)
            .unwrap();
        assert!(
            score.passed && score.max_margin == 0.0,
            "{layers:?}: {score:?}"
        );
        let simd = Llama::load(&path, 2).unwrap();
        let mut portable = Llama::load(&path, 2).unwrap();
        portable.force_portable_kernels();
        let (mut c1, mut c2) = (simd.new_cache(), portable.new_cache());
        assert_eq!(
            simd.forward(&mut c1, &prompt, 0..prompt.len()).unwrap(),
            portable.forward(&mut c2, &prompt, 0..prompt.len()).unwrap(),
            "{layers:?}: SIMD vs portable"
        );
        answers.push(a.tokens);
    }
    assert!(answers[0] != answers[1] || answers[1] != answers[2]);
    assert!(answers[3] != answers[1] && answers[4] != answers[2]);
}

/// A mask that allows every token.
fn every_token(vocab: usize) -> agora_infer::sample::TokenMask {
    let mut mask = agora_infer::sample::TokenMask::none(vocab);
    for t in 0..vocab as u32 {
        mask.allow(t);
    }
    mask
}

/// A constraint that allows every token for `left` more positions, then cannot go on (as a
/// grammar past its work limit).
#[derive(Debug)]
struct Spent {
    left: usize,
    vocab: usize,
}

impl agora_infer::sample::TokenConstraint for Spent {
    fn mask(&mut self) -> Result<agora_infer::sample::TokenMask, String> {
        if self.left == 0 {
            return Err("past its work limit".into());
        }
        Ok(every_token(self.vocab))
    }

    fn commit(&mut self, _: u32) -> Result<(), String> {
        self.left -= 1;
        Ok(())
    }
}

/// A constraint that cannot go on ends the answer there as cut short (not as a failure), with
/// the tokens chosen before it, and a verifier's replay passes them.
#[test]
fn a_constraint_that_cannot_go_on_cuts_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_chat_model(&path, TinySpec::default()).unwrap();
    let model = ChatModel::load(&path, 2).unwrap();
    let vocab = model.llama.config.vocab;
    let prompt = model
        .encode_chat(&[Message::new("user", "Go on.")])
        .unwrap();
    let params = GenParams {
        max_tokens: 20,
        ..Default::default()
    };
    let free = model.generate(&prompt, &params, &mut no_stream).unwrap();
    assert!(free.tokens.len() > 5, "{free:?}");
    let cut = model
        .generate_until(
            &[],
            &prompt,
            &params,
            &[],
            Some(Box::new(Spent { left: 5, vocab })),
            &mut no_stream,
        )
        .unwrap();
    assert_eq!(cut.finish, Finish::Length);
    assert_eq!(cut.tokens, free.tokens[..5]);
    let mut replay = Spent { left: 5, vocab };
    let score = model
        .score_with(
            &prompt,
            &cut.tokens,
            &params.sampling,
            0.0,
            None,
            Some(&mut replay),
        )
        .unwrap();
    assert!(score.passed && score.max_margin == 0.0, "{score:?}");
    // Past the cut, the replay has nothing allowed: a longer claim fails there.
    let mut replay = Spent { left: 5, vocab };
    let longer = model
        .score_with(
            &prompt,
            &free.tokens,
            &params.sampling,
            0.0,
            None,
            Some(&mut replay),
        )
        .unwrap();
    assert_eq!(longer.first_failure, Some(5));
}

/// A constraint that refuses a token its own mask allowed.
#[derive(Debug)]
struct Inconsistent {
    vocab: usize,
}

impl agora_infer::sample::TokenConstraint for Inconsistent {
    fn mask(&mut self) -> Result<agora_infer::sample::TokenMask, String> {
        Ok(every_token(self.vocab))
    }

    fn commit(&mut self, t: u32) -> Result<(), String> {
        Err(format!("token {t} refused"))
    }
}

/// A format checker at odds with itself is the runtime's fault, not the request's: the answer
/// fails with a runtime error that says so.
#[test]
fn a_constraint_at_odds_with_itself_is_a_runtime_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_chat_model(&path, TinySpec::default()).unwrap();
    let model = ChatModel::load(&path, 2).unwrap();
    let vocab = model.llama.config.vocab;
    let prompt = model
        .encode_chat(&[Message::new("user", "Go on.")])
        .unwrap();
    let err = model
        .generate_until(
            &[],
            &prompt,
            &GenParams::default(),
            &[],
            Some(Box::new(Inconsistent { vocab })),
            &mut no_stream,
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Runtime(m) if m.contains("not of the request")),
        "{err:?}"
    );
}
