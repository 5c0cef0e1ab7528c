//! Training a provable classifier over embeddings: a float MLP (one hidden ReLU layer, softmax
//! cross-entropy, plain minibatch SGD, seeded), then quantized to the integers a proof runs on.
//!
//! Quantization (`x` the embedding, `S_in` = [`INPUT_SCALE`]):
//! - input: `xq = clamp(round(S_in·x), −127, 127)`;
//! - layer 1: `W1q = round(W1/s1)` with `s1 = max|W1|/127`, bias `round(b1·S_in/s1)`, so the sum
//!   is `z1·S_in/s1`; a shift `k` brings the hidden values into `0..=127` (chosen so that 99.9 % of
//!   the training set's fit);
//! - layer 2: `W2q = round(W2/s2)`, bias `round(b2·S_h/s2)` with `S_h = S_in/(s1·2^k)`; no shift.
//!
//! The model is trained on the quantized inputs (as floats), so it learns what the integers see.
//! Training happens off chain, once; only the integer model is registered and proved.

use crate::{Error, Layer, ZkModel};

/// Input quantization: an embedding component `x` becomes `round(INPUT_SCALE·x)`, clamped to
/// ±127. Unit-length 384-dimensional embeddings have components mostly within ±0.3.
pub const INPUT_SCALE: f32 = 400.0;

/// An embedding as a provable model's input.
pub fn quantize_input(x: &[f32]) -> Vec<i8> {
    x.iter()
        .map(|&v| (v * INPUT_SCALE).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

/// A labelled example: a quantized embedding and its class.
#[derive(Clone, Debug)]
pub struct Example {
    pub input: Vec<i8>,
    pub label: usize,
}

/// How to train.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    pub hidden: usize,
    pub classes: usize,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f32,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            hidden: 32,
            classes: 8,
            epochs: 60,
            batch: 16,
            learning_rate: 0.1,
            seed: 1,
        }
    }
}

/// A float MLP `d → h (ReLU) → c`.
#[derive(Clone, Debug)]
pub struct FloatMlp {
    d: usize,
    h: usize,
    c: usize,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

/// splitmix64: a seeded, portable generator for the initial weights and the shuffles.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn as_float(input: &[i8]) -> Vec<f32> {
    input.iter().map(|&v| f32::from(v) / INPUT_SCALE).collect()
}

impl FloatMlp {
    fn hidden(&self, x: &[f32]) -> Vec<f32> {
        (0..self.h)
            .map(|j| {
                let row = &self.w1[j * self.d..(j + 1) * self.d];
                (self.b1[j] + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>()).max(0.0)
            })
            .collect()
    }

    fn logits(&self, hidden: &[f32]) -> Vec<f32> {
        (0..self.c)
            .map(|k| {
                let row = &self.w2[k * self.h..(k + 1) * self.h];
                self.b2[k] + row.iter().zip(hidden).map(|(w, v)| w * v).sum::<f32>()
            })
            .collect()
    }

    /// The class it predicts for a quantized input.
    pub fn predict(&self, input: &[i8]) -> usize {
        argmax(&self.logits(&self.hidden(&as_float(input))))
    }
}

/// The index of the largest value (the first among equals).
pub fn argmax<T: PartialOrd + Copy>(values: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// Trains the float MLP on `examples`.
pub fn train(examples: &[Example], cfg: &TrainConfig) -> Result<FloatMlp, Error> {
    let Some(first) = examples.first() else {
        return Err(Error::Input("no training examples"));
    };
    let (d, h, c) = (first.input.len(), cfg.hidden, cfg.classes);
    if examples.iter().any(|e| e.input.len() != d || e.label >= c) {
        return Err(Error::Input(
            "examples of mixed sizes or labels out of range",
        ));
    }
    let mut rng = Rng(cfg.seed);
    // He-style initial scales: the inputs are about 0.05 in magnitude.
    let (s1, s2) = ((2.0 / d as f32).sqrt() * 1.7, (2.0 / h as f32).sqrt());
    let mut m = FloatMlp {
        d,
        h,
        c,
        w1: (0..d * h).map(|_| rng.unit() * s1).collect(),
        b1: vec![0.0; h],
        w2: (0..h * c).map(|_| rng.unit() * s2).collect(),
        b2: vec![0.0; c],
    };
    let xs: Vec<Vec<f32>> = examples.iter().map(|e| as_float(&e.input)).collect();
    let mut order: Vec<usize> = (0..examples.len()).collect();
    for epoch in 0..cfg.epochs {
        for i in (1..order.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        // Step size decays linearly to a tenth.
        let lr = cfg.learning_rate * (1.0 - 0.9 * epoch as f32 / cfg.epochs as f32);
        for batch in order.chunks(cfg.batch.max(1)) {
            let (mut gw1, mut gb1) = (vec![0.0; d * h], vec![0.0; h]);
            let (mut gw2, mut gb2) = (vec![0.0; h * c], vec![0.0; c]);
            for &i in batch {
                let x = &xs[i];
                let hid = m.hidden(x);
                let logits = m.logits(&hid);
                let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exp: Vec<f32> = logits.iter().map(|z| (z - top).exp()).collect();
                let sum: f32 = exp.iter().sum();
                // d(loss)/d(logit) = softmax − one-hot.
                let dz: Vec<f32> = exp
                    .iter()
                    .enumerate()
                    .map(|(k, e)| e / sum - if k == examples[i].label { 1.0 } else { 0.0 })
                    .collect();
                for k in 0..c {
                    gb2[k] += dz[k];
                    for j in 0..h {
                        gw2[k * h + j] += dz[k] * hid[j];
                    }
                }
                for j in 0..h {
                    if hid[j] <= 0.0 {
                        continue;
                    }
                    let dh: f32 = (0..c).map(|k| dz[k] * m.w2[k * h + j]).sum();
                    gb1[j] += dh;
                    for (g, v) in gw1[j * d..(j + 1) * d].iter_mut().zip(x) {
                        *g += dh * v;
                    }
                }
            }
            let step = lr / batch.len() as f32;
            for (w, g) in m.w1.iter_mut().zip(&gw1) {
                *w -= step * g;
            }
            for (w, g) in m.b1.iter_mut().zip(&gb1) {
                *w -= step * g;
            }
            for (w, g) in m.w2.iter_mut().zip(&gw2) {
                *w -= step * g;
            }
            for (w, g) in m.b2.iter_mut().zip(&gb2) {
                *w -= step * g;
            }
        }
    }
    Ok(m)
}

fn quantize_weights(w: &[f32]) -> (Vec<i8>, f32) {
    let top = w
        .iter()
        .fold(0.0f32, |a, v| a.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let scale = top / 127.0;
    (
        w.iter()
            .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8)
            .collect(),
        scale,
    )
}

/// The integer model of `m`, its hidden shift chosen on `examples` (see the module's words).
pub fn quantize(m: &FloatMlp, examples: &[Example], name: &str) -> Result<ZkModel, Error> {
    let (w1q, s1) = quantize_weights(&m.w1);
    let (w2q, s2) = quantize_weights(&m.w2);
    let bias = |b: f32| (b.round() as i64).clamp(-(1 << 24), 1 << 24) as i32;
    let b1q: Vec<i32> = m.b1.iter().map(|b| bias(b * INPUT_SCALE / s1)).collect();
    // The hidden sums over the training set: the shift that fits 99.9 % of them in 0..=127.
    let mut sums: Vec<i64> = examples
        .iter()
        .flat_map(|e| {
            (0..m.h).map(|j| {
                let row = &w1q[j * m.d..(j + 1) * m.d];
                i64::from(b1q[j])
                    + row
                        .iter()
                        .zip(&e.input)
                        .map(|(&w, &x)| i64::from(w) * i64::from(x))
                        .sum::<i64>()
            })
        })
        .filter(|&z| z > 0)
        .collect();
    sums.sort_unstable();
    let high = sums
        .get(sums.len().saturating_sub(1 + sums.len() / 1000))
        .copied()
        .unwrap_or(127);
    let mut shift = 0u8;
    while (high >> shift) > 127 && shift < crate::model::MAX_SHIFT {
        shift += 1;
    }
    let hidden_scale = INPUT_SCALE / (s1 * (1u64 << shift) as f32);
    let b2q: Vec<i32> = m.b2.iter().map(|b| bias(b * hidden_scale / s2)).collect();
    let model = ZkModel {
        name: name.into(),
        layers: vec![
            Layer {
                n_in: m.d as u32,
                n_out: m.h as u32,
                weights: w1q,
                bias: b1q,
                shift,
            },
            Layer {
                n_in: m.h as u32,
                n_out: m.c as u32,
                weights: w2q,
                bias: b2q,
                shift: 0,
            },
        ],
    };
    model.validate()?;
    Ok(model)
}

/// The class an integer classifier gives `input`: the largest output (the first among equals).
pub fn classify(model: &ZkModel, input: &[i8]) -> Result<usize, Error> {
    Ok(argmax(&model.forward(input)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes of points around opposite corners: the float model learns them, and its
    /// integer model classifies as it does.
    #[test]
    fn a_separable_set_is_learned_and_survives_quantization() {
        let mut rng = Rng(7);
        let examples: Vec<Example> = (0..200)
            .map(|i| {
                let label = i % 2;
                let sign = if label == 0 { 1.0 } else { -1.0 };
                let x: Vec<f32> = (0..16)
                    .map(|k| sign * if k < 8 { 0.2 } else { -0.1 } + rng.unit() * 0.1)
                    .collect();
                Example {
                    input: quantize_input(&x),
                    label,
                }
            })
            .collect();
        let cfg = TrainConfig {
            hidden: 8,
            classes: 2,
            epochs: 20,
            ..TrainConfig::default()
        };
        let m = train(&examples, &cfg).unwrap();
        let model = quantize(&m, &examples, "corners").unwrap();
        let float_right = examples
            .iter()
            .filter(|e| m.predict(&e.input) == e.label)
            .count();
        let int_right = examples
            .iter()
            .filter(|e| classify(&model, &e.input).unwrap() == e.label)
            .count();
        assert_eq!(float_right, 200);
        assert_eq!(int_right, 200);
    }

    #[test]
    fn inputs_quantize_with_clamping() {
        assert_eq!(
            quantize_input(&[0.0, 0.1, -0.1, 1.0, -1.0]),
            [0, 40, -40, 127, -127]
        );
    }
}
