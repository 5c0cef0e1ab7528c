//! The verifier's judgement with the real chat model (SmolLM2, fetched like the inference tests'
//! models; skipped with a line when it cannot be had, unless `AGORA_REQUIRE_MODELS=1`): every
//! cheating strategy of DESIGN.md §6 is caught, honest answers always pass, whatever the thread
//! counts of provider and verifier.

use super::*;
use agora_infer::models::{ModelCache, SMOLLM2};
use agora_market::{Backend, Cheat, GREEDY_TOLERANCE};
use agora_types::{Fault, Verdict};

fn real_chat(threads: usize) -> Option<Arc<ChatModel>> {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("models");
    match ModelCache::new(dir).ensure(&SMOLLM2, &mut |line| eprintln!("{line}")) {
        Ok(m) => Some(Arc::new(ChatModel::load(&m.weights, threads).unwrap())),
        Err(e) if std::env::var_os("AGORA_REQUIRE_MODELS").is_some() => {
            panic!("SmolLM2 is required: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: SmolLM2 is not available here ({e})");
            None
        }
    }
}

fn chat(text: &str) -> JobInput {
    JobInput::Chat {
        messages: vec![agora_market::ChatMessage {
            role: "user".into(),
            content: text.into(),
        }],
        grammar: None,
    }
}

fn backend(model: Arc<ChatModel>) -> InferBackend {
    let mut b = InferBackend::default();
    b.add_chat(MODEL, model);
    b
}

/// Judges `output` for `input` as a verifier would, with the receipt counts it implies.
fn judge(
    verifier: &InferBackend,
    input: &JobInput,
    params: &JobParams,
    output: &JobOutput,
) -> Verdict {
    let prompt_tokens = verifier.input_tokens(&MODEL, input).unwrap();
    let n = match output {
        JobOutput::Text { tokens, .. } => tokens.len() as u32,
        JobOutput::Embeddings { .. }
        | JobOutput::Audit { .. }
        | JobOutput::Table { .. }
        | JobOutput::Forecast { .. }
        | JobOutput::Zk { .. } => 0,
    };
    verifier
        .judge(
            &MODEL,
            input,
            params,
            output,
            (prompt_tokens, n),
            GREEDY_TOLERANCE,
        )
        .unwrap()
}

#[test]
fn every_cheating_strategy_is_caught_and_honest_answers_pass() {
    let (Some(provider_model), Some(verifier_model)) = (real_chat(1), real_chat(2)) else {
        return;
    };
    let provider = backend(provider_model.clone());
    let verifier = backend(verifier_model.clone());
    let m = &*verifier_model;
    let params = JobParams {
        max_tokens: 24,
        ..JobParams::default()
    };
    let served = |input: &JobInput, params: &JobParams| {
        provider
            .run(&MODEL, input, params, &mut |_| ControlFlow::Continue(()))
            .unwrap()
            .output
    };
    let prompts = [
        "What is the capital of France?",
        "Write a haiku about the sea.",
        "Explain what a blockchain is in one sentence.",
        "List three prime numbers.",
    ];
    let mut caught = Vec::new();
    for p in prompts {
        let input = chat(p);
        let honest = served(&input, &params);
        // Honest, generated on 1 thread and judged on 2: passes.
        assert_eq!(
            judge(&verifier, &input, &params, &honest),
            Verdict::Pass,
            "{p}"
        );
        let JobOutput::Text { tokens, .. } = honest.clone() else {
            panic!("text expected");
        };
        assert!(tokens.len() >= 4, "{p}: {tokens:?}");
        let mut cheats: Vec<(&str, JobOutput)> = Vec::new();
        for cheat in Cheat::ALL {
            let output = cheat
                .apply(m, &provider, &MODEL, &input, &params, &honest)
                .unwrap();
            cheats.push((cheat.name(), output));
        }
        // The right tokens with another text.
        if let JobOutput::Text { tokens, finish, .. } = &honest {
            cheats.push((
                "text not the tokens'",
                JobOutput::Text {
                    text: "something else entirely".into(),
                    tokens: tokens.clone(),
                    finish: finish.clone(),
                    logprobs: None,
                },
            ));
        }
        for (name, output) in cheats {
            let verdict = judge(&verifier, &input, &params, &output);
            assert!(
                matches!(verdict, Verdict::Fail { .. }),
                "{p}: {name} passed: {output:?}"
            );
            caught.push((name, verdict));
        }
        // A receipt that claims more tokens than delivered.
        let prompt_tokens = verifier.input_tokens(&MODEL, &input).unwrap();
        assert_eq!(
            verifier
                .judge(
                    &MODEL,
                    &input,
                    &params,
                    &honest,
                    (prompt_tokens, tokens.len() as u32 + 5),
                    GREEDY_TOLERANCE
                )
                .unwrap(),
            Verdict::Fail {
                fault: Fault::WrongCount
            }
        );
    }
    // A sampled job is judged against the seeded sampler: honest passes, another seed fails.
    let input = chat(prompts[1]);
    let sampled = JobParams {
        temperature_milli: 800,
        top_p_milli: 900,
        seed: 42,
        ..params.clone()
    };
    let answer = served(&input, &sampled);
    assert_eq!(judge(&verifier, &input, &sampled, &answer), Verdict::Pass);
    let other_seed = JobParams {
        seed: 43,
        ..sampled.clone()
    };
    assert!(matches!(
        judge(&verifier, &input, &other_seed, &answer),
        Verdict::Fail { .. }
    ));
    eprintln!("caught: {caught:?}");
}

/// DESIGN.md §6: honest work is never slashed. 500 jobs (short answers, greedy and sampled
/// alternately) generated on 1 thread all pass a verifier running on 2 (about 3 minutes on 2
/// cores; `AGORA_HONEST_JOBS=N` runs another number).
#[test]
fn honest_jobs_all_pass_across_thread_counts() {
    let (Some(provider_model), Some(verifier_model)) = (real_chat(1), real_chat(2)) else {
        return;
    };
    let provider = backend(provider_model);
    let verifier = backend(verifier_model);
    let jobs: u32 = std::env::var("AGORA_HONEST_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    for i in 0..jobs {
        let input = chat(&format!(
            "Question {i}: what is {} plus {}?",
            i * 7 % 101,
            i * 13 % 97
        ));
        let params = JobParams {
            max_tokens: 6,
            temperature_milli: if i % 2 == 0 { 0 } else { 700 },
            top_p_milli: 950,
            seed: u64::from(i),
            ..JobParams::default()
        };
        let served = provider
            .run(&MODEL, &input, &params, &mut |_| ControlFlow::Continue(()))
            .unwrap();
        let verdict = verifier
            .judge(
                &MODEL,
                &input,
                &params,
                &served.output,
                (served.input_tokens, served.output_tokens),
                GREEDY_TOLERANCE,
            )
            .unwrap();
        assert_eq!(verdict, Verdict::Pass, "job {i}: {:?}", served.output);
    }
}

/// Log-probabilities a provider returns (answer and prompt) are checked with the answer: honest
/// ones pass, whatever the threads; altered values, a swapped alternative, a missing list or one
/// not asked for are each caught.
#[test]
fn log_probabilities_are_checked_with_the_answer() {
    let (Some(provider_model), Some(verifier_model)) = (real_chat(1), real_chat(2)) else {
        return;
    };
    let provider = backend(provider_model);
    let verifier = backend(verifier_model);
    let input = JobInput::Completion {
        prompt: "The capital of France is".into(),
        grammar: None,
    };
    let params = JobParams {
        max_tokens: 8,
        logprobs: Some(3),
        prompt_logprobs: true,
        ..JobParams::default()
    };
    let honest = provider
        .run(&MODEL, &input, &params, &mut |_| ControlFlow::Continue(()))
        .unwrap()
        .output;
    assert_eq!(judge(&verifier, &input, &params, &honest), Verdict::Pass);
    let JobOutput::Text {
        tokens,
        logprobs: Some(lp),
        ..
    } = &honest
    else {
        panic!("logprobs expected: {honest:?}");
    };
    assert_eq!(lp.output.len(), tokens.len());
    let prompt_tokens = verifier.input_tokens(&MODEL, &input).unwrap() as usize;
    assert_eq!(lp.prompt.len(), prompt_tokens - 1);
    assert!(lp.prompt_first.is_some());
    for e in lp.output.iter().chain(&lp.prompt) {
        assert_eq!(e.top.len(), 3);
        assert!(e.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
        assert!(e.chosen.logprob <= 0.0, "{e:?}");
    }
    // Greedy: each output token is the most likely, so it heads its list.
    for (e, t) in lp.output.iter().zip(tokens) {
        assert_eq!(e.top[0].token, *t);
        assert_eq!(e.top[0].logprob, e.chosen.logprob);
    }

    let with = |f: &dyn Fn(&mut agora_market::TextLogprobs)| {
        let mut out = honest.clone();
        if let JobOutput::Text {
            logprobs: Some(l), ..
        } = &mut out
        {
            f(l);
        }
        out
    };
    let fault = |out: &JobOutput, p: &JobParams| match judge(&verifier, &input, p, out) {
        Verdict::Fail { fault } => fault,
        Verdict::Pass => panic!("a cheat passed: {out:?}"),
    };
    // The runtime's values are the same bits everywhere: even a small nudge is caught.
    let nudged = with(&|l| l.output[0].chosen.logprob -= 0.01);
    assert_eq!(
        fault(&nudged, &params),
        Fault::WrongLogprobs {
            position: 0,
            prompt: false
        }
    );
    let raised = with(&|l| l.output[1].chosen.logprob += 0.5);
    assert_eq!(
        fault(&raised, &params),
        Fault::WrongLogprobs {
            position: 1,
            prompt: false
        }
    );
    // An alternative replaced by an unlikely token given a likely value.
    let swapped = with(&|l| {
        l.output[0].top[2].token = 7;
        l.output[0].top[2].bytes = vec![];
    });
    assert!(matches!(
        fault(&swapped, &params),
        Fault::WrongLogprobs { position: 0, .. }
    ));
    let prompt_lie = with(&|l| l.prompt[2].chosen.logprob = -0.01);
    assert_eq!(
        fault(&prompt_lie, &params),
        Fault::WrongLogprobs {
            position: 3,
            prompt: true
        }
    );
    let short = with(&|l| {
        l.output[0].top.pop();
    });
    assert!(matches!(
        fault(&short, &params),
        Fault::WrongLogprobs { .. }
    ));
    // Log-probabilities nobody asked for, or none where they were asked for.
    let plain = JobParams {
        logprobs: None,
        prompt_logprobs: false,
        ..params.clone()
    };
    assert!(matches!(
        fault(&honest, &plain),
        Fault::WrongLogprobs { .. }
    ));
    let mut none = honest.clone();
    if let JobOutput::Text { logprobs, .. } = &mut none {
        *logprobs = None;
    }
    assert!(matches!(fault(&none, &params), Fault::WrongLogprobs { .. }));
}

/// Stop texts and penalties are checked with the answer: honest answers pass; an answer that
/// runs past a stop text, or that ignored the penalties, is caught.
#[test]
fn stop_texts_and_penalties_are_checked() {
    let (Some(provider_model), Some(verifier_model)) = (real_chat(1), real_chat(2)) else {
        return;
    };
    let provider = backend(provider_model);
    let verifier = backend(verifier_model);
    let input = chat("List the days of the week, one per line.");
    let run = |params: &JobParams| {
        provider
            .run(&MODEL, &input, params, &mut |_| ControlFlow::Continue(()))
            .unwrap()
            .output
    };
    let free_params = JobParams {
        max_tokens: 40,
        ..JobParams::default()
    };
    let free = run(&free_params);
    let JobOutput::Text { text, .. } = &free else {
        panic!("text expected");
    };
    assert!(text.contains('\n'), "{text}");
    let stopped_params = JobParams {
        stop: vec!["\n".into()],
        ..free_params.clone()
    };
    let stopped = run(&stopped_params);
    let JobOutput::Text {
        text: short,
        finish,
        ..
    } = &stopped
    else {
        panic!("text expected");
    };
    assert_eq!(
        (short.as_str(), finish.as_str()),
        (&text[..text.find('\n').unwrap()], "stop")
    );
    assert_eq!(
        judge(&verifier, &input, &stopped_params, &stopped),
        Verdict::Pass
    );
    // The free answer, claimed for a job with the stop text: it runs past it.
    assert_eq!(
        judge(&verifier, &input, &stopped_params, &free),
        Verdict::Fail {
            fault: Fault::WrongStop
        }
    );
    let penalized_params = JobParams {
        frequency_penalty_milli: 1500,
        presence_penalty_milli: 500,
        ..free_params.clone()
    };
    let penalized = run(&penalized_params);
    assert_ne!(penalized, free, "the penalties change the answer");
    assert_eq!(
        judge(&verifier, &input, &penalized_params, &penalized),
        Verdict::Pass
    );
    assert!(matches!(
        judge(&verifier, &input, &penalized_params, &free),
        Verdict::Fail {
            fault: Fault::WrongToken { .. } | Fault::WrongStop
        }
    ));
}
