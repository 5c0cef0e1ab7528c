//! The topic classifier: a provable MLP over MiniLM embeddings (384 → 32 → 8) that tells which
//! part of a smart-contract library a text is about. Trained by `agora bench zk --classifier` on
//! OpenZeppelin Contracts' documentation, labelled by folder ([`TOPICS`]); its file is kept in
//! the source tree (`models/agora-topic-v1.zkm`), as that command wrote it.
//!
//! Its input is a text's MiniLM embedding quantized with [`crate::train::quantize_input`]; its
//! outputs are one score per topic, the largest the class.

use crate::{Error, ZkModel};

/// The classes, in output order.
pub const TOPICS: [&str; 8] = [
    "access",
    "finance",
    "governance",
    "interfaces",
    "metatx",
    "proxy",
    "token",
    "utils",
];

/// Its name on chain.
pub const TOPIC_MODEL_NAME: &str = "agora-topic-v1";

/// The model file.
const FILE: &[u8] = include_bytes!("../models/agora-topic-v1.zkm");

/// The classifier.
pub fn topic_model() -> Result<ZkModel, Error> {
    ZkModel::from_bytes(FILE)
}

/// The topic of an embedding: its name and the model's scores.
pub fn classify(model: &ZkModel, embedding: &[f32]) -> Result<(&'static str, Vec<i64>), Error> {
    let scores = model.forward(&crate::train::quantize_input(embedding))?;
    let best = crate::train::argmax(&scores);
    Ok((TOPICS.get(best).copied().unwrap_or("?"), scores))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_classifier_loads_with_its_shape() {
        let model = topic_model().unwrap();
        assert_eq!(model.name, TOPIC_MODEL_NAME);
        assert_eq!((model.inputs(), model.outputs()), (384, TOPICS.len()));
        assert_eq!(model.params(), 384 * 32 + 32 * 8);
        // It proves as registered: a proof of its scores on an input verifies.
        let pk = crate::ProvingKey::new(model.clone()).unwrap();
        let input: Vec<i8> = (0..384).map(|i| ((i * 7) % 41) as i8 - 20).collect();
        let context = crate::Context {
            chain_id: [4; 32],
            nonce: [5; 32],
        };
        let (statement, proof) = pk.prove(&input, &[1; 8], 1 << 27, false, &context).unwrap();
        assert_eq!(statement.outputs, Some(model.forward(&input).unwrap()));
        crate::verify(pk.verifying_key(), &statement, &context, &proof).unwrap();
    }
}
