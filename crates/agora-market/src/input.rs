//! The documents a job carries: its input and its output, as JSON bytes whose blake3 hashes the
//! request and the receipt commit to.

use crate::Error;
use agora_types::Hash;
use serde::{Deserialize, Serialize};

/// Largest input a provider accepts, in bytes.
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

/// One message of a chat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// One Solidity file of an audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Its name (it names the file in findings).
    pub name: String,
    /// The Solidity source.
    pub source: String,
}

/// What a job asks the model for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobInput {
    /// A chat, answered through the model's chat template.
    Chat {
        /// The conversation so far.
        messages: Vec<ChatMessage>,
        /// A grammar the answer must follow (Lark text in llguidance's dialect, at most
        /// [`agora_grammar::MAX_GRAMMAR_BYTES`]): a JSON schema's, a tool call's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grammar: Option<String>,
    },
    /// Raw text continued as is.
    Completion {
        /// The text to continue.
        prompt: String,
        /// A grammar the continuation must follow, as for a chat.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grammar: Option<String>,
    },
    /// Texts to embed.
    Embedding {
        /// One vector per text.
        inputs: Vec<String>,
    },
    /// Solidity files to audit.
    Audit {
        /// The files, audited in this order.
        files: Vec<SourceFile>,
    },
    /// A read-only SQL query over the chain's history tables as they stood at `height`.
    Sql {
        /// The query.
        sql: String,
        /// The height the tables are cut at.
        height: u64,
    },
    /// A forecast of a series that a query gives (an integer time and a number per row).
    Forecast {
        /// The query.
        sql: String,
        /// The height the tables are cut at.
        height: u64,
        /// Steps ahead.
        horizon: u32,
        /// Steps per season, if the series has one.
        season: Option<u32>,
        /// The prediction intervals' level in thousandths (950: 95 %).
        level_milli: u32,
        /// Backtest windows.
        windows: u32,
    },
    /// A provable model's input (DESIGN.md §9): 8-bit integers, committed with a salt. The
    /// request's input hash is that commitment ([`JobInput::input_hash`]), so the chain checks
    /// the provider's proof against the input the client signed without ever seeing it.
    Zk {
        /// The model's input.
        input: Vec<i8>,
        /// Eight field elements (each below BabyBear's modulus) that hide the input in its
        /// commitment: random, and kept by the client to open the commitment.
        salt: [u32; 8],
        /// The proof's public predicate: output 0 below this (within ±2^27).
        threshold: i64,
    },
}

impl JobInput {
    /// The bytes that travel (sealed) and whose hash the request carries.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an input serializes")
    }

    /// What the request's `input_hash` is: blake3 of [`JobInput::to_bytes`], or for a provable
    /// model's input its Poseidon2 commitment (which the proof's public values carry).
    pub fn input_hash(&self) -> Hash {
        match self {
            JobInput::Zk { input, salt, .. } => {
                agora_types::commitment_hash(&agora_zk::input_commitment(input, salt))
            }
            _ => Hash::digest(&self.to_bytes()),
        }
    }

    /// Parses received bytes (size-checked).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_INPUT_BYTES {
            return Err(Error::TooLarge {
                size: bytes.len(),
                limit: MAX_INPUT_BYTES,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| Error::Malformed {
            what: "job input",
            reason: e.to_string(),
        })
    }
}

/// One token's log-probability, with the token's bytes (a client shows them; a token may hold
/// part of a character).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Logprob {
    pub token: u32,
    /// In hex, the shortest of the usual encodings: a job's reveal must carry them all.
    #[serde(with = "hex_bytes")]
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// Bytes as a hex string.
mod hex_bytes {
    use serde::Deserialize;

    pub(super) fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Most bytes one [`TokenLogprob`] with `top` alternatives takes in a job's output, for tokens of
/// at most `longest` bytes: what a provider checks before it serves log-probabilities, so that
/// the job's reveal fits what a check can carry.
pub(crate) fn logprob_bytes_bound(top: usize, longest: usize) -> usize {
    // {"token":4294967295,"bytes":"…","logprob":-1.2345678e-10} and the list around them.
    (top + 1) * (64 + 2 * longest) + 16
}

/// The log-probabilities at one position: the token there, and the most likely tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    #[serde(flatten)]
    pub chosen: Logprob,
    pub top: Vec<Logprob>,
}

/// A text job's log-probabilities: one per output token, and with `prompt_logprobs` one per
/// prompt token after the first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TextLogprobs {
    /// With `prompt_logprobs`: the prompt's first token (its log-probability is not defined and
    /// given as 0), then [`Self::prompt`] for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_first: Option<Logprob>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt: Vec<TokenLogprob>,
    pub output: Vec<TokenLogprob>,
}

/// What a provider delivered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobOutput {
    /// Generated text, with its token ids (what a verifier scores).
    Text {
        /// The answer.
        text: String,
        /// Its token ids, in order.
        tokens: Vec<u32>,
        /// `stop`, `length` or `cancelled`.
        finish: String,
        /// The log-probabilities the job asked for (`JobParams::logprobs`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logprobs: Option<TextLogprobs>,
    },
    /// Embedding vectors, one per input text.
    Embeddings {
        /// Unit-length vectors.
        vectors: Vec<Vec<f32>>,
    },
    /// The auditor's report.
    Audit {
        /// Findings, file by file, by line.
        findings: Vec<agora_audit::Finding>,
        /// Files that do not parse.
        errors: Vec<agora_audit::ParseError>,
    },
    /// A query's result.
    Table {
        /// Its columns.
        columns: Vec<TableColumn>,
        /// Its rows, each an array in the columns' order.
        rows: Vec<Vec<serde_json::Value>>,
    },
    /// A forecast: its points with their intervals, and its backtest.
    Forecast {
        /// As `agora predict --format json` prints it.
        forecast: serde_json::Value,
    },
    /// A provable model's result: the claim (model, input commitment, predicate, outputs) and
    /// the zero-knowledge proof of it, bound to the job. The receipt's output hash is the
    /// claim's hash, which the chain checks at settlement with the proof.
    Zk {
        /// What the proof shows.
        claim: agora_types::ZkClaim,
        /// The proof, base64.
        proof: String,
    },
}

/// One column of a query's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableColumn {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: String,
}

impl JobOutput {
    /// The canonical bytes whose blake3 hash the receipt carries.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an output serializes")
    }

    /// What the receipt's output hash is: blake3 of [`JobOutput::to_bytes`], or for a proved
    /// result the hash of its claim and proof ([`agora_types::ZkClaim::output_hash`]), which the
    /// chain checks at settlement against the proof it verifies.
    pub fn hash(&self) -> Hash {
        match self {
            // Proof bytes that are not base64 are hashed as they are (no proof has that hash).
            JobOutput::Zk { claim, proof } => match self.zk_proof() {
                Some(Ok(bytes)) => claim.output_hash(&bytes),
                _ => claim.output_hash(proof.as_bytes()),
            },
            _ => Hash::digest(&self.to_bytes()),
        }
    }

    /// A proved result's proof bytes.
    pub fn zk_proof(&self) -> Option<Result<Vec<u8>, Error>> {
        use base64::Engine as _;
        match self {
            JobOutput::Zk { proof, .. } => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(proof)
                    .map_err(|e| Error::Malformed {
                        what: "proof",
                        reason: e.to_string(),
                    }),
            ),
            _ => None,
        }
    }

    /// Parses the bytes a provider sent.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map_err(|e| Error::Malformed {
            what: "job output",
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn inputs_and_outputs_round_trip_and_hash_their_bytes() {
        let input = JobInput::Chat {
            messages: vec![ChatMessage {
                role: "user".into(),
                content: "Hi ✓".into(),
            }],
            grammar: None,
        };
        let bytes = input.to_bytes();
        assert_eq!(JobInput::from_bytes(&bytes).unwrap(), input);
        let output = JobOutput::Text {
            text: "Hello".into(),
            tokens: vec![1, 2],
            finish: "stop".into(),
            logprobs: None,
        };
        let back = JobOutput::from_bytes(&output.to_bytes()).unwrap();
        assert_eq!(back.hash(), output.hash());
        let other = JobOutput::Text {
            text: "Hello".into(),
            tokens: vec![1, 3],
            finish: "stop".into(),
            logprobs: None,
        };
        assert_ne!(other.hash(), output.hash());
        let big = vec![b' '; MAX_INPUT_BYTES + 1];
        assert!(matches!(
            JobInput::from_bytes(&big),
            Err(Error::TooLarge { .. })
        ));
        assert!(matches!(
            JobInput::from_bytes(br#"{"kind":"nope"}"#),
            Err(Error::Malformed { .. })
        ));
    }

    proptest! {
        /// What a gateway parses is what the provider hashed: every float comes back to the
        /// very number printed (a forecast's or a query's values).
        #[test]
        fn outputs_with_floats_hash_the_same_after_a_round_trip(
            xs in proptest::collection::vec(any::<f64>().prop_filter("finite", |x| x.is_finite()), 1..64)
        ) {
            let output = JobOutput::Table {
                columns: vec![TableColumn { name: "v".into(), ty: "Float64".into() }],
                rows: xs.iter().map(|x| vec![serde_json::json!(x)]).collect(),
            };
            let back = JobOutput::from_bytes(&output.to_bytes()).unwrap();
            prop_assert_eq!(back.hash(), output.hash());
            let forecast = JobOutput::Forecast { forecast: serde_json::json!({"points": xs}) };
            let back = JobOutput::from_bytes(&forecast.to_bytes()).unwrap();
            prop_assert_eq!(back.hash(), forecast.hash());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = JobInput::from_bytes(&bytes);
            let _ = JobOutput::from_bytes(&bytes);
        }
    }
}
