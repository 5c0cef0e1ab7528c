//! Where vectors come from: the model on this machine, the market (a paid job through a
//! gateway), or, for tests and quick runs, hashed words.

use std::time::Duration;

use crate::Error;

/// A sentence-embedding model: unit-length vectors of one dimension.
pub trait Embed: Send + Sync + std::fmt::Debug {
    /// Names the model; vectors stored under another name are computed again.
    fn model(&self) -> String;
    fn dim(&self) -> usize;
    /// One vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error>;
}

/// MiniLM run by this node's own runtime.
#[derive(Debug)]
pub struct LocalEmbed {
    embedder: agora_infer::bert::Embedder,
    model: String,
}

impl LocalEmbed {
    /// Loads a fetched model with `threads` threads.
    pub fn load(installed: &agora_infer::models::Installed, threads: usize) -> Result<Self, Error> {
        let embedder = agora_infer::bert::Embedder::load(&installed.dir, threads)
            .map_err(|e| Error::Embed(e.to_string()))?;
        Ok(LocalEmbed {
            embedder,
            model: installed.spec.id.to_string(),
        })
    }
}

impl Embed for LocalEmbed {
    fn model(&self) -> String {
        self.model.clone()
    }

    fn dim(&self) -> usize {
        self.embedder.dim()
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        self.embedder
            .embed(texts)
            .map_err(|e| Error::Embed(e.to_string()))
    }
}

/// Texts sent to a gateway per call.
const GATEWAY_BATCH: usize = 64;

/// Embeddings bought on the market: each call is a job through a gateway's
/// `POST /v1/embeddings`, paid from the API key's account, receipted and verifiable like any job.
#[derive(Debug)]
pub struct GatewayEmbed {
    url: String,
    api_key: String,
    model: String,
    dim: usize,
    agent: ureq::Agent,
}

impl GatewayEmbed {
    /// `gateway` is the base URL (`http://host:port`); `model` a model id or name the gateway
    /// serves; `dim` the vectors' length, checked on every answer.
    pub fn new(gateway: &str, api_key: &str, model: &str, dim: usize) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        GatewayEmbed {
            url: format!("{}/v1/embeddings", gateway.trim_end_matches('/')),
            api_key: api_key.to_string(),
            model: model.to_string(),
            dim,
            agent,
        }
    }

    fn call(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let body = serde_json::json!({"model": self.model, "input": texts});
        let mut answer = self
            .agent
            .post(&self.url)
            .header("Authorization", &format!("Bearer {}", self.api_key))
            .send_json(&body)
            .map_err(|e| Error::Embed(format!("{}: {e}", self.url)))?;
        let status = answer.status().as_u16();
        let v: serde_json::Value = answer
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_json()
            .map_err(|e| Error::Embed(format!("{}: unreadable answer ({e})", self.url)))?;
        if status != 200 {
            let why = v["error"]["message"].as_str().unwrap_or("no message");
            return Err(Error::Embed(format!("{}: {status}: {why}", self.url)));
        }
        let data = v["data"]
            .as_array()
            .ok_or_else(|| Error::Embed("gateway answer without `data`".into()))?;
        if data.len() != texts.len() {
            return Err(Error::Embed(format!(
                "gateway answered {} vectors for {} texts",
                data.len(),
                texts.len()
            )));
        }
        let mut out = vec![Vec::new(); texts.len()];
        for item in data {
            let i = item["index"]
                .as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&i| i < texts.len())
                .ok_or_else(|| Error::Embed("gateway vector without a valid index".into()))?;
            let v: Vec<f32> = item["embedding"]
                .as_array()
                .ok_or_else(|| Error::Embed("gateway vector is not a list of numbers".into()))?
                .iter()
                .map(|x| x.as_f64().map(|x| x as f32))
                .collect::<Option<_>>()
                .ok_or_else(|| Error::Embed("gateway vector is not a list of numbers".into()))?;
            if v.len() != self.dim || v.iter().any(|x| !x.is_finite()) {
                return Err(Error::Embed(format!(
                    "gateway vector of {} numbers (expected {} finite ones)",
                    v.len(),
                    self.dim
                )));
            }
            out[i] = normalized(v);
        }
        if out.iter().any(Vec::is_empty) {
            return Err(Error::Embed("gateway answered one index twice".into()));
        }
        Ok(out)
    }
}

impl Embed for GatewayEmbed {
    fn model(&self) -> String {
        self.model.clone()
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(GATEWAY_BATCH) {
            out.extend(self.call(chunk)?);
        }
        Ok(out)
    }
}

/// Words hashed into a vector (feature hashing, lower-cased words and their 4-letter prefixes):
/// a tiny deterministic model for tests and for machines without MiniLM. It knows no synonyms.
#[derive(Debug, Clone)]
pub struct HashEmbed {
    dim: usize,
}

impl HashEmbed {
    pub fn new(dim: usize) -> Self {
        HashEmbed { dim: dim.max(8) }
    }
}

impl Embed for HashEmbed {
    fn model(&self) -> String {
        format!("hashed-words-{}", self.dim)
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; self.dim];
                for word in t
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                {
                    let w = word.to_lowercase();
                    let prefix: String = w.chars().take(4).collect();
                    for (piece, weight) in [(w.as_str(), 1.0f32), (prefix.as_str(), 0.5)] {
                        let h = blake3::hash(piece.as_bytes());
                        let b = h.as_bytes();
                        let i =
                            u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                                % self.dim as u64;
                        let sign = if b[8] & 1 == 0 { 1.0 } else { -1.0 };
                        v[i as usize] += sign * weight;
                    }
                }
                normalized(v)
            })
            .collect())
    }
}

/// `v` scaled to unit length (a zero vector stays zero).
pub(crate) fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}
