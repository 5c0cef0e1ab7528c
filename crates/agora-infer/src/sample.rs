//! Choosing the next token from logits: greedy, or seeded sampling with temperature, top-k and top-p.
//!
//! The random number for the token at output position `i` depends only on the seed and `i`
//! (a counter-based generator), so a verifier can replay any single position without the others.
//! Given the same logits the choice is the same on every machine: the candidates are ordered by
//! logit then id, and probabilities are summed in f64 in that order.

use serde::{Deserialize, Serialize};

use crate::Error;

/// How tokens are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (1 = all).
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (0 = all).
    pub top_k: u32,
    pub seed: u64,
    /// Subtracted from the logit of each token the answer already holds (OpenAI's
    /// `presence_penalty`), before the choice, greedy or sampled.
    #[serde(default)]
    pub presence_penalty: f32,
    /// Subtracted from the logit of each token the answer already holds, once per time it holds
    /// it (OpenAI's `frequency_penalty`).
    #[serde(default)]
    pub frequency_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self::default()
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    pub fn has_penalties(&self) -> bool {
        self.presence_penalty != 0.0 || self.frequency_penalty != 0.0
    }

    /// Applies the penalties to `logits` for the tokens the answer holds so far (`counts`: token
    /// → times). Each logit's arithmetic is its own, so the result is the same on every machine.
    pub fn penalize(&self, logits: &mut [f32], counts: &std::collections::BTreeMap<u32, u32>) {
        for (&token, &times) in counts {
            if let Some(x) = logits.get_mut(token as usize) {
                *x -= self.presence_penalty + self.frequency_penalty * times as f32;
            }
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        if !(self.temperature.is_finite() && (0.0..=100.0).contains(&self.temperature)) {
            return Err(Error::BadRequest(format!(
                "temperature {} is outside 0..=100",
                self.temperature
            )));
        }
        for (what, p) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(p.is_finite() && (-2.0..=2.0).contains(&p)) {
                return Err(Error::BadRequest(format!("{what} {p} is outside -2..=2")));
            }
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::BadRequest(format!(
                "top_p {} is outside (0, 1]",
                self.top_p
            )));
        }
        Ok(())
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The uniform number in [0, 1) used for output position `position` under `seed`.
pub fn uniform(seed: u64, position: u64) -> f64 {
    let bits = splitmix64(splitmix64(seed) ^ position.wrapping_mul(0xd6e8_feb8_6659_fd93));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

crate::kernels::multiversion! {
/// Index of the largest logit (the lowest id among equals; a NaN never wins, unless it is the
/// first logit, which a scan that starts from it keeps).
pub fn argmax(logits: &[f32]) -> u32 {
    const LANES: usize = 16;
    let (chunks, tail) = logits.as_chunks::<LANES>();
    if logits.first().is_none_or(|v| v.is_nan()) {
        return 0;
    }
    // Sixteen scans side by side, lane `l` over ids `l (mod 16)`: each keeps the first of its
    // largest. The largest of all is the largest lane's; among lanes that hold it, the lowest id is
    // the first overall. (No lane holds a NaN: `v > m` is false for one.)
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut at = [0u32; LANES];
    for (c, chunk) in chunks.iter().enumerate() {
        let base = (c * LANES) as u32;
        for (l, &v) in chunk.iter().enumerate() {
            let take = v > max[l];
            max[l] = if take { v } else { max[l] };
            at[l] = if take { base + l as u32 } else { at[l] };
        }
    }
    // A lane that never took a value (all −∞, or none at all) holds −∞ at id 0, which is what the
    // scan keeps where nothing is larger than the first logit.
    let mut best = (f32::NEG_INFINITY, 0u32);
    for (&m, &i) in max.iter().zip(&at) {
        if m > best.0 || (m == best.0 && i < best.1) {
            best = (m, i);
        }
    }
    let done = chunks.len() * LANES;
    for (i, &v) in tail.iter().enumerate() {
        if v > best.0 {
            best = (v, (done + i) as u32);
        }
    }
    best.1
}
}

/// The log-probabilities at one position: the chosen token's, and the `top` most likely tokens'
/// (most likely first, lower id first among equals).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprobs {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// Log-softmax of `logits` at `token` and at the `top` most likely tokens. The same bits on every
/// machine for the same logits: the normalizer sums `exp` (this crate's own) in f64, in id order.
pub fn logprobs(logits: &[f32], token: u32, top: usize) -> TokenLogprobs {
    let max = f64::from(logits[argmax(logits) as usize]);
    let sum: f64 = logits
        .iter()
        .map(|&x| crate::fmath::exp(f64::from(x) - max))
        .sum();
    let lse = max + crate::fmath::ln(sum);
    let lp = |id: u32| (f64::from(logits[id as usize]) - lse) as f32;
    let k = top.min(logits.len());
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    let cmp = order(logits);
    if k > 0 && k < ids.len() {
        ids.select_nth_unstable_by(k - 1, &cmp);
    }
    ids.truncate(k);
    ids.sort_unstable_by(&cmp);
    TokenLogprobs {
        token,
        logprob: lp(token),
        top: ids.into_iter().map(|id| (id, lp(id))).collect(),
    }
}

/// Orders candidates: higher logit first, then lower id.
fn order(logits: &[f32]) -> impl Fn(&u32, &u32) -> std::cmp::Ordering + '_ {
    |a, b| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    }
}

/// The token the sampler picks at output position `position`.
pub fn sample(logits: &[f32], params: &SamplingParams, position: u64) -> u32 {
    if params.is_greedy() || logits.len() < 2 {
        return argmax(logits);
    }
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    let cmp = order(logits);
    let k = match params.top_k {
        0 => ids.len(),
        k => (k as usize).min(ids.len()),
    };
    if k < ids.len() {
        ids.select_nth_unstable_by(k - 1, &cmp);
        ids.truncate(k);
    }
    let max = f64::from(logits[argmax(logits) as usize]);
    let t = f64::from(params.temperature);
    // `fmath::exp`, not libm's: a verifier must pick the same token on any machine.
    let weight = |id: u32| crate::fmath::exp((f64::from(logits[id as usize]) - max) / t);

    // The candidates' weights in id order; the total sums them in that order.
    ids.sort_unstable();
    let by_id: Vec<f64> = ids.iter().map(|&id| weight(id)).collect();
    let total: f64 = by_id.iter().sum();
    let (chosen, weights): (Vec<u32>, Vec<f64>) = if params.top_p < 1.0 {
        // Sort only as much of the candidates as top-p needs: grow a sorted prefix until it holds
        // top_p of the probability mass.
        let mut prefix = 64.min(ids.len());
        let chosen = loop {
            if prefix < ids.len() {
                ids.select_nth_unstable_by(prefix - 1, &cmp);
            }
            ids[..prefix].sort_unstable_by(&cmp);
            let mut mass = 0.0;
            let mut cut = None;
            for (i, &id) in ids[..prefix].iter().enumerate() {
                mass += weight(id) / total;
                if mass >= f64::from(params.top_p) {
                    cut = Some(i + 1);
                    break;
                }
            }
            match cut {
                Some(n) => break ids[..n].to_vec(),
                None if prefix == ids.len() => break ids,
                None => prefix = (prefix * 4).min(ids.len()),
            }
        };
        let weights = chosen.iter().map(|&id| weight(id)).collect();
        (chosen, weights)
    } else {
        // Without top-p every candidate is chosen, in id order, and its weight is known already.
        (ids, by_id)
    };
    let sum: f64 = weights.iter().sum();
    let target = uniform(params.seed, position) * sum;
    let mut acc = 0.0;
    for (&id, w) in chosen.iter().zip(&weights) {
        acc += w;
        if acc > target {
            return id;
        }
    }
    chosen.last().copied().unwrap_or(0)
}

/// The tokens allowed at one position of a constrained answer: one bit per token id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMask {
    words: Vec<u32>,
}

impl TokenMask {
    /// No token allowed, for a vocabulary of `vocab` tokens.
    pub fn none(vocab: usize) -> Self {
        Self {
            words: vec![0; vocab.div_ceil(32)],
        }
    }

    /// From bit words: token `t` is bit `t % 32` of word `t / 32`.
    pub fn from_words(words: Vec<u32>) -> Self {
        Self { words }
    }

    pub fn allow(&mut self, token: u32) {
        if let Some(w) = self.words.get_mut(token as usize / 32) {
            *w |= 1 << (token % 32);
        }
    }

    pub fn allows(&self, token: u32) -> bool {
        self.words
            .get(token as usize / 32)
            .is_some_and(|w| w & (1 << (token % 32)) != 0)
    }

    /// Whether no token is allowed.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Sets every disallowed token's logit to minus infinity, so that neither the greedy nor the
    /// seeded choice can take it (its weight is 0).
    pub fn apply(&self, logits: &mut [f32]) {
        for (t, l) in logits.iter_mut().enumerate() {
            if !self.allows(t as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// What an answer must follow (a grammar, a JSON schema): constrained decoding. The generator asks
/// for the allowed tokens before each choice and reports the token chosen; a verifier does the same
/// along the claimed answer, so both see the same masks. Implementations must be deterministic:
/// the masks may depend only on the tokens committed so far.
pub trait TokenConstraint: Send + std::fmt::Debug {
    /// The tokens allowed next. An error ends the answer (the constraint cannot go on).
    fn mask(&mut self) -> Result<TokenMask, String>;
    /// Takes `token` as the next one; an error if the constraint does not allow it.
    fn commit(&mut self, token: u32) -> Result<(), String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_largest_and_the_lowest_id_on_ties() {
        assert_eq!(argmax(&[0.0, 3.0, 1.0, 3.0]), 1);
        assert_eq!(sample(&[0.0, 3.0, 1.0], &SamplingParams::greedy(), 7), 1);
    }

    /// The scan `argmax` must agree with, written plainly.
    fn first_largest(logits: &[f32]) -> u32 {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        best as u32
    }

    #[test]
    fn argmax_picks_what_a_scan_picks_whatever_the_values() {
        // Few distinct values (ties everywhere), with NaNs, infinities and both zeros, over
        // lengths around the 16 lanes, the first logit among them or not.
        let values = [
            0.0,
            -0.0,
            1.5,
            -2.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1.5,
        ];
        let mut seed = 7u64;
        for len in (0..70).chain([49_152, 49_153]) {
            for _ in 0..40 {
                let row: Vec<f32> = (0..len)
                    .map(|_| {
                        seed = splitmix64(seed);
                        // Mostly −∞ or one value in some rows, so lanes stay untaken.
                        let pick = (seed >> 40) as usize % (values.len() + 3);
                        values.get(pick).copied().unwrap_or(f32::NEG_INFINITY)
                    })
                    .collect();
                assert_eq!(argmax(&row), first_largest(&row), "{row:?}");
            }
        }
        for row in [
            vec![f32::NEG_INFINITY; 40],
            vec![f32::NAN; 40],
            [vec![f32::NAN], vec![5.0; 39]].concat(),
            [vec![f32::NEG_INFINITY; 20], vec![f32::NAN; 20], vec![-1.0]].concat(),
            [vec![-0.0; 17], vec![0.0; 17]].concat(),
        ] {
            assert_eq!(argmax(&row), first_largest(&row), "{row:?}");
        }
    }

    #[test]
    fn sampling_follows_the_seed_and_the_position_only() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 17) as f32 * 0.3).collect();
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 0.9,
            top_k: 50,
            seed: 42,
            ..Default::default()
        };
        let a: Vec<u32> = (0..50).map(|i| sample(&logits, &p, i)).collect();
        let b: Vec<u32> = (0..50).map(|i| sample(&logits, &p, i)).collect();
        assert_eq!(a, b);
        let other = SamplingParams { seed: 43, ..p };
        let c: Vec<u32> = (0..50).map(|i| sample(&logits, &other, i)).collect();
        assert_ne!(a, c, "another seed gives other choices");
        // Only tokens among the most likely are ever picked.
        assert!(
            a.iter().all(|&id| logits[id as usize] >= 0.3 * 10.0),
            "{a:?}"
        );
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_head() {
        let logits = [1.0, 5.0, 2.0, 4.9];
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 1,
            seed: 1,
            ..Default::default()
        };
        assert!((0..20).all(|i| sample(&logits, &p, i) == 1));
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            top_k: 0,
            seed: 1,
            ..Default::default()
        };
        assert!(
            (0..20).all(|i| sample(&logits, &p, i) == 1),
            "the first token alone holds half the mass"
        );
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 0.9,
            top_k: 0,
            seed: 3,
            ..Default::default()
        };
        let picks: Vec<u32> = (0..200).map(|i| sample(&logits, &p, i)).collect();
        assert!(
            picks.contains(&1) && picks.contains(&3) && !picks.contains(&0),
            "{picks:?}"
        );
    }

    #[test]
    fn uniform_numbers_are_in_range_and_spread() {
        let xs: Vec<f64> = (0..1000).map(|i| uniform(9, i)).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05, "{mean}");
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(
            SamplingParams {
                temperature: -1.0,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(SamplingParams::default().validate().is_ok());
    }
}
