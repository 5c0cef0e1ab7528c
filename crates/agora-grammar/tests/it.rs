//! Constrained decoding on a tiny model the test writes: answers follow their grammar, batched or
//! alone, and a verifier's teacher-forced check with the same grammar passes them and catches a
//! token outside it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::ControlFlow;
use std::sync::Arc;

use agora_grammar::{Grammars, Tool, ToolChoice};
use agora_infer::chat::{ChatModel, Finish, GenParams, Message};
use agora_infer::sample::SamplingParams;
use serde_json::{Value, json};

fn model() -> (tempfile::TempDir, Arc<ChatModel>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let spec = agora_infer::testing::TinySpec {
        context: 1024,
        ..Default::default()
    };
    agora_infer::testing::write_tiny_chat_model(&path, spec).unwrap();
    let model = Arc::new(ChatModel::load(&path, 2).unwrap());
    (dir, model)
}

fn schema() -> Value {
    json!({
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

fn valid(answer: &Value) -> bool {
    let Value::Object(o) = answer else {
        return false;
    };
    o.len() == 3
        && o["ok"].is_boolean()
        && ["red", "green", "blue"].contains(&o["color"].as_str().unwrap_or(""))
        && o["size"].as_u64().is_some_and(|n| n <= 99)
}

fn params(temperature: f32, seed: u64) -> GenParams {
    GenParams {
        max_tokens: 64,
        sampling: SamplingParams {
            temperature,
            seed,
            ..SamplingParams::greedy()
        },
        logprobs: None,
    }
}

#[test]
fn answers_follow_the_schema_and_verifiers_pass_them_and_catch_a_token_outside_it() {
    let (_dir, model) = model();
    let grammars = Grammars::new(&model).unwrap();
    let grammar = agora_grammar::json_schema(&schema());
    let prompt = model
        .encode_chat(&[Message::new("user", "Describe a ball.")])
        .unwrap();
    // Free, the random model writes no JSON.
    let free = model
        .generate(&prompt, &params(0.0, 0), &mut |_| ControlFlow::Continue(()))
        .unwrap();
    assert!(serde_json::from_str::<Value>(&free.text).is_err());
    for (temperature, seed) in [(0.0, 0), (0.8, 1), (1.0, 2), (1.5, 3)] {
        let p = params(temperature, seed);
        let g = model
            .generate_until(
                &[],
                &prompt,
                &p,
                &[],
                Some(Box::new(grammars.compile(&grammar).unwrap())),
                &mut |_| ControlFlow::Continue(()),
            )
            .unwrap();
        assert_eq!(g.finish, Finish::Stop, "{:?}", g.text);
        let answer: Value = serde_json::from_str(&g.text).unwrap();
        assert!(valid(&answer), "{answer}");
        // The verifier's check, with the grammar: every token passes, at margin 0 when greedy.
        let mut c = grammars.compile(&grammar).unwrap();
        let score = model
            .score_with(&prompt, &g.tokens, &p.sampling, 0.0, None, Some(&mut c))
            .unwrap();
        assert!(score.passed, "{score:?}");
        if temperature == 0.0 {
            assert_eq!(score.max_margin, 0.0);
        }
        // Without the grammar the model would have chosen otherwise: unconstrained, the greedy
        // answer fails.
        if temperature == 0.0 {
            let plain = model.score(&prompt, &g.tokens, &p.sampling, 0.0).unwrap();
            assert!(!plain.passed);
            // The unconstrained answer, checked with the grammar, fails at its first token.
            let mut c = grammars.compile(&grammar).unwrap();
            let wrong = model
                .score_with(&prompt, &free.tokens, &p.sampling, 0.0, None, Some(&mut c))
                .unwrap();
            assert_eq!(wrong.first_failure, Some(0));
        }
        // A provider that swaps one token for one outside the grammar is caught there, even at an
        // unbounded tolerance.
        let at = g.tokens.len() / 2;
        let mut forged = g.tokens.clone();
        forged[at] = model.tokenizer.token_id("a").unwrap_or(100);
        let mut c = grammars.compile(&grammar).unwrap();
        let caught = model
            .score_with(&prompt, &forged, &p.sampling, f32::MAX, None, Some(&mut c))
            .unwrap();
        assert_eq!(caught.first_failure, Some(at), "{}", g.text);
    }
}

#[test]
fn constrained_answers_in_a_batch_are_the_ones_they_are_alone() {
    let (_dir, model) = model();
    let grammars = Arc::new(Grammars::new(&model).unwrap());
    let grammar = agora_grammar::json_schema(&schema());
    let run = |i: u64| {
        let prompt = model
            .encode_chat(&[Message::new("user", &format!("Ball number {i}?"))])
            .unwrap();
        let constraint = i.is_multiple_of(2).then(|| {
            Box::new(grammars.compile(&grammar).unwrap())
                as Box<dyn agora_infer::sample::TokenConstraint>
        });
        model
            .generate_until(
                &[],
                &prompt,
                &params(if i % 4 < 2 { 0.0 } else { 0.9 }, i),
                &[],
                constraint,
                &mut |_| ControlFlow::Continue(()),
            )
            .unwrap()
    };
    let alone: Vec<_> = (0..6).map(run).collect();
    let batched: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6).map(|i| s.spawn(move || run(i))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, b)) in alone.iter().zip(&batched).enumerate() {
        assert_eq!(a.tokens, b.tokens, "request {i}");
        if i % 2 == 0 {
            assert!(valid(&serde_json::from_str(&a.text).unwrap()));
        }
    }
}

#[test]
fn tool_calls_follow_their_tool_and_auto_leaves_text_free() {
    let (_dir, model) = model();
    let grammars = Grammars::new(&model).unwrap();
    let tools = vec![Tool {
        name: "paint".into(),
        description: "Paints a ball".into(),
        parameters: json!({"type": "object", "properties": {"color": {"enum": ["red", "blue"]}},
                           "required": ["color"], "additionalProperties": false}),
    }];
    let prompt = model
        .encode_chat(&[
            Message::new("system", &agora_grammar::tools_prompt(&tools)),
            Message::new("user", "Paint it."),
        ])
        .unwrap();
    for choice in [ToolChoice::Required, ToolChoice::Named("paint".into())] {
        let grammar = agora_grammar::tools_grammar(&tools, &choice).unwrap();
        let g = model
            .generate_until(
                &[],
                &prompt,
                &params(0.7, 5),
                &[],
                Some(Box::new(grammars.compile(&grammar).unwrap())),
                &mut |_| ControlFlow::Continue(()),
            )
            .unwrap();
        let (name, arguments) = agora_grammar::parse_tool_call(&g.text, &tools).unwrap();
        assert_eq!(name, "paint");
        let arguments: Value = serde_json::from_str(&arguments).unwrap();
        assert!(["red", "blue"].contains(&arguments["color"].as_str().unwrap()));
    }
    // With `auto`, the answer is a call or text that does not start with `{` (whole characters:
    // the random model's free answer is not even UTF-8, the constrained one is).
    let grammar = agora_grammar::tools_grammar(&tools, &ToolChoice::Auto).unwrap();
    let g = model
        .generate_until(
            &[],
            &prompt,
            &params(0.0, 0),
            &[],
            Some(Box::new(grammars.compile(&grammar).unwrap())),
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap();
    let free = model
        .generate(&prompt, &params(0.0, 0), &mut |_| ControlFlow::Continue(()))
        .unwrap();
    assert!(free.text.contains('\u{fffd}'));
    let bytes: Vec<u8> = g
        .tokens
        .iter()
        .filter(|&&t| !model.stop_tokens().contains(&t))
        .flat_map(|&t| model.tokenizer.token_bytes(t).to_vec())
        .collect();
    let text = String::from_utf8(bytes).unwrap();
    assert_eq!(text, g.text);
    assert!(!text.is_empty());
    if agora_grammar::parse_tool_call(&text, &tools).is_none() {
        assert!(!text.starts_with('{'));
    }
    let mut c = grammars.compile(&grammar).unwrap();
    assert!(
        model
            .score_with(
                &prompt,
                &g.tokens,
                &params(0.0, 0).sampling,
                0.0,
                None,
                Some(&mut c)
            )
            .unwrap()
            .passed
    );
}

/// Every stop token ends an answer exactly where the grammar may end: allowed by the mask there
/// and taken by the constraint, refused before; a claimed answer that stops early fails there.
#[test]
fn every_stop_token_ends_an_answer_where_the_grammar_may_end() {
    use agora_infer::sample::TokenConstraint;
    let (_dir, model) = model();
    let grammars = Grammars::new(&model).unwrap();
    let stops = model.stop_tokens().to_vec();
    assert!(stops.len() >= 2, "{stops:?}");
    let grammar = "start: \"hi\"";
    let h = model.tokenizer.token_id("h").unwrap();
    let i = model.tokenizer.token_id("i").unwrap();
    for &stop in &stops {
        let mut c = grammars.compile(grammar).unwrap();
        let first = c.mask().unwrap();
        assert!(first.allows(h) && stops.iter().all(|&s| !first.allows(s)));
        assert!(
            c.commit(stop).is_err(),
            "a stop token before the grammar's end"
        );
        let mut c = grammars.compile(grammar).unwrap();
        c.mask().unwrap();
        c.commit(h).unwrap();
        c.mask().unwrap();
        c.commit(i).unwrap();
        let end = c.mask().unwrap();
        assert!(stops.iter().all(|&s| end.allows(s)) && !end.allows(h));
        c.commit(stop).unwrap();
    }
    let prompt = model
        .encode_chat(&[Message::new("user", "Say hi.")])
        .unwrap();
    let sampling = SamplingParams::greedy();
    let mut c = grammars.compile(grammar).unwrap();
    let early = model
        .score_with(
            &prompt,
            &[h, stops[0]],
            &sampling,
            f32::MAX,
            None,
            Some(&mut c),
        )
        .unwrap();
    assert_eq!(early.first_failure, Some(1));
    let mut c = grammars.compile(grammar).unwrap();
    let whole = model
        .score_with(
            &prompt,
            &[h, i, stops[1]],
            &sampling,
            f32::MAX,
            None,
            Some(&mut c),
        )
        .unwrap();
    assert!(whole.passed, "{whole:?}");
}
