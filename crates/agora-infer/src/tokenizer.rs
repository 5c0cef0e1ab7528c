//! The byte-level BPE tokenizer of a GGUF model (`tokenizer.ggml.model = gpt2`), built from the file's
//! `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`, with llama.cpp's pre-tokenization for the
//! model family (`smollm`: every digit alone, then the GPT-2 split) and control tokens such as
//! `<|im_start|>` matched as whole tokens. Token ids equal llama.cpp's (checked against its output).

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use crate::Error;
use crate::gguf::Gguf;

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: u64 = 3;
const TOKEN_TYPE_USER_DEFINED: u64 = 4;

/// A model's tokenizer: text to token ids and back, with incremental decoding for streaming.
#[derive(Debug)]
pub struct BpeTokenizer {
    inner: Tokenizer,
    /// Every token's bytes (byte-level tokens mapped back to raw bytes; control tokens as their text).
    bytes: Vec<Vec<u8>>,
    control: Vec<bool>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
}

/// GPT-2's map from bytes to printable characters: byte `b` is written as `byte_chars()[b]`.
pub(crate) fn byte_chars() -> [char; 256] {
    let mut out = ['?'; 256];
    let mut n = 0u32;
    for (b, c) in out.iter_mut().enumerate() {
        let b = b as u32;
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let code = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        *c = char::from_u32(code).unwrap_or('?');
    }
    out
}

/// The same map inverted and sorted by character: printable character to byte.
fn unicode_to_byte() -> Vec<(char, u8)> {
    let mut out: Vec<(char, u8)> = byte_chars()
        .iter()
        .enumerate()
        .map(|(b, &c)| (c, b as u8))
        .collect();
    out.sort_unstable();
    out
}

impl BpeTokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Self, Error> {
        let model = g.str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(Error::BadModel(format!(
                "tokenizer {model} is not supported (gpt2 byte-level BPE)"
            )));
        }
        let pre = g
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let strings = |key: &str| -> Result<Vec<String>, Error> {
            let items = g
                .get(key)?
                .as_array()
                .ok_or_else(|| Error::BadModel(format!("{key} is not an array")))?;
            items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| Error::BadModel(format!("{key} holds a non-string")))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_owned(), b.to_owned())),
                None => Err(Error::BadModel(format!("merge {m:?} is not two tokens"))),
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let types: Vec<u64> = match g
            .metadata
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.as_array())
        {
            Some(items) => items.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(Error::BadModel(
                "token_type and tokens differ in length".into(),
            ));
        }

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| Error::BadModel(format!("cannot build the BPE tokenizer: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, false, true);
        match pre {
            // llama.cpp's "smollm" pre-tokenizer (and the HF tokenizer's): digits one by one first.
            "smollm" | "starcoder" | "refact" => {
                inner.with_pre_tokenizer(Some(Sequence::new(vec![
                    Digits::new(true).into(),
                    byte_level.into(),
                ])));
            }
            "default" | "gpt-2" | "gpt2" => {
                inner.with_pre_tokenizer(Some(byte_level));
            }
            other => {
                return Err(Error::BadModel(format!(
                    "pre-tokenizer {other} is not supported"
                )));
            }
        }
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let control: Vec<bool> = types
            .iter()
            .map(|&t| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
            .collect();
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&control)
            .filter(|(_, c)| **c)
            .map(|(t, _)| AddedToken::from(t.clone(), true))
            .collect();
        let _added = inner.add_special_tokens(specials);

        let map = unicode_to_byte();
        let bytes = tokens
            .iter()
            .zip(&control)
            .map(|(t, &c)| {
                if c {
                    return t.as_bytes().to_vec();
                }
                t.chars()
                    .map(|ch| match map.binary_search_by_key(&ch, |(c, _)| *c) {
                        Ok(i) => map[i].1,
                        Err(_) => b'?',
                    })
                    .collect()
            })
            .collect();
        let id = |key: &str| {
            g.metadata
                .get(key)
                .and_then(|v| v.as_u64())
                .map(|v| v as u32)
        };
        Ok(Self {
            inner,
            bytes,
            control,
            bos: id("tokenizer.ggml.bos_token_id"),
            eos: id("tokenizer.ggml.eos_token_id"),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.bytes.len()
    }

    /// Token ids of `text`; control tokens written in the text (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, Error> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::BadRequest(format!("cannot tokenize: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Id of a token given by its text, such as `<|im_end|>`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Whether the token is a control token (not text).
    pub fn is_control(&self, id: u32) -> bool {
        self.control.get(id as usize).copied().unwrap_or(false)
    }

    /// The raw bytes a token stands for (control tokens: their text).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Text of `ids`; control tokens are left out when `skip_control`.
    pub fn decode(&self, ids: &[u32], skip_control: bool) -> String {
        let mut out = Vec::new();
        for &id in ids {
            if !(skip_control && self.is_control(id)) {
                out.extend_from_slice(self.token_bytes(id));
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Turns a stream of tokens into a stream of text pieces, holding back bytes of a character that a
/// later token completes.
#[derive(Debug, Default)]
pub struct TextStream {
    pending: Vec<u8>,
}

impl TextStream {
    /// Adds a token's bytes and returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            // An incomplete character at the end waits; an invalid byte in the middle is replaced.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => {
                let text = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                return text;
            }
        };
        let rest = self.pending.split_off(valid);

        String::from_utf8(std::mem::replace(&mut self.pending, rest)).unwrap_or_default()
    }

    /// Whatever is left (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_map_covers_every_byte_once() {
        let map = unicode_to_byte();
        let mut seen = [false; 256];
        for (_, b) in &map {
            assert!(!seen[*b as usize]);
            seen[*b as usize] = true;
        }
        assert!(map.iter().any(|&(c, b)| c == 'Ġ' && b == b' '));
        assert!(map.iter().any(|&(c, b)| c == 'Ċ' && b == b'\n'));
    }

    #[test]
    fn text_stream_holds_back_split_characters() {
        let mut s = TextStream::default();
        let snow = "☃".as_bytes();
        assert_eq!(s.push(b"a"), "a");
        assert_eq!(s.push(&snow[..1]), "");
        assert_eq!(s.push(&snow[1..]), "☃");
        assert_eq!(s.push(&[0xe2]), "");
        assert_eq!(s.finish(), "\u{fffd}");
    }
}
