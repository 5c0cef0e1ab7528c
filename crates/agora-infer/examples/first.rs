#![allow(clippy::unwrap_used, clippy::expect_used)]
use agora_infer::chat::{ChatModel, GenParams, Message};
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let m = ChatModel::load(std::path::Path::new(&path), 2).unwrap();
    let prompt = m
        .encode_chat(&[Message::new("user", &std::env::args().nth(2).unwrap())])
        .unwrap();
    let g = m
        .generate(
            &prompt,
            &GenParams {
                max_tokens: 6,
                logprobs: Some(5),
                ..Default::default()
            },
            &mut |_| std::ops::ControlFlow::Continue(()),
        )
        .unwrap();
    println!("{:?}", g.text);
    for lp in &g.logprobs {
        let tops: Vec<String> = lp
            .top
            .iter()
            .map(|(t, l)| format!("{:?}:{:.3}", m.tokenizer.decode(&[*t], false), l))
            .collect();
        println!("{}", tops.join("  "));
    }
}
