//! Provable models: small fixed-point MLPs, and the plain runtime that computes them exactly as the
//! circuit does.
//!
//! A model is a chain of dense layers over 8-bit integers:
//!
//! - the input is a vector of `i8` features;
//! - each layer computes `z = W·x + b` exactly (weights `i8`, biases `i32`, sums in `i64`);
//! - a *hidden* layer rescales and rectifies: `a = clamp(floor((z + 2^(s-1)) / 2^s), 0, 127)`,
//!   which is the next layer's input;
//! - the last layer only rescales: `y = floor((z + 2^(s-1)) / 2^s)`, the model's outputs (scores or
//!   logits), each a signed integer.
//!
//! The limits below keep every intermediate value under 2^27 in magnitude, so the circuit's field
//! (BabyBear, p ≈ 2^31) never wraps and the circuit's result is the integer this runtime computes.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::Error;

/// Most inputs one layer may read: 4,096 × 128 × 128 = 2^26, so a sum never reaches 2^27.
pub const MAX_FAN_IN: u32 = 4096;
/// Most neurons one layer may have.
pub const MAX_LAYER_OUT: u32 = 4096;
/// Most layers in a model.
pub const MAX_LAYERS: usize = 8;
/// Most outputs of a model (its last layer's neurons): each is a public value of a proof.
pub const MAX_OUTPUTS: usize = 8;
/// Largest rescaling shift.
pub const MAX_SHIFT: u8 = 20;
/// Largest bias magnitude: with the rounding term it stays under 2^26.
pub const MAX_BIAS: i32 = 1 << 25;
/// Most parameters (weights) of a model: 4 Mi, a trace of 2^22 rows.
pub const MAX_PARAMS: u64 = 1 << 22;
/// Bound on every pre-activation and output: |z| < 2^27.
pub const VALUE_BITS: u32 = 27;
/// Largest name length.
pub const MAX_NAME: usize = 64;

/// One dense layer. `weights` is row-major: neuron `j`'s weights are `weights[j*n_in..(j+1)*n_in]`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Layer {
    pub n_in: u32,
    pub n_out: u32,
    pub weights: Vec<i8>,
    pub bias: Vec<i32>,
    /// Rescaling: the sum is divided by 2^shift, rounding half up.
    pub shift: u8,
}

/// A provable model: dense layers, all but the last followed by ReLU clamped to `[0, 127]`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ZkModel {
    /// A label for people (not part of the model's id, which is its verifying key's hash).
    pub name: String,
    pub layers: Vec<Layer>,
}

/// The shape of a model without its parameters: what a verifier needs besides the commitment.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Architecture {
    /// `(n_in, n_out, shift)` of each layer.
    pub layers: Vec<(u32, u32, u8)>,
}

impl Layer {
    /// The bias with the rounding term folded in: `b + 2^(s-1)` (or `b` when `s = 0`).
    pub fn rounded_bias(&self, j: usize) -> i64 {
        let half = if self.shift == 0 {
            0
        } else {
            1i64 << (self.shift - 1)
        };
        i64::from(self.bias[j]) + half
    }
}

impl ZkModel {
    /// Checks every limit; a model that passes can be proved and its values never wrap the field.
    pub fn validate(&self) -> Result<(), Error> {
        if self.name.len() > MAX_NAME {
            return Err(Error::Model("name longer than 64 bytes"));
        }
        if self.layers.is_empty() || self.layers.len() > MAX_LAYERS {
            return Err(Error::Model("a model has 1 to 8 layers"));
        }
        let mut params = 0u64;
        for (l, layer) in self.layers.iter().enumerate() {
            if layer.n_in == 0 || layer.n_in > MAX_FAN_IN {
                return Err(Error::Model("a layer reads 1 to 4096 inputs"));
            }
            if layer.n_out == 0 || layer.n_out > MAX_LAYER_OUT {
                return Err(Error::Model("a layer has 1 to 4096 neurons"));
            }
            if l > 0 && layer.n_in != self.layers[l - 1].n_out {
                return Err(Error::Model(
                    "a layer's inputs must be the previous layer's outputs",
                ));
            }
            let n = u64::from(layer.n_in) * u64::from(layer.n_out);
            if layer.weights.len() as u64 != n {
                return Err(Error::Model("a layer needs n_in × n_out weights"));
            }
            if layer.bias.len() != layer.n_out as usize {
                return Err(Error::Model("a layer needs one bias per neuron"));
            }
            if layer
                .bias
                .iter()
                .any(|b| b.unsigned_abs() > MAX_BIAS as u32)
            {
                return Err(Error::Model("a bias exceeds 2^25 in magnitude"));
            }
            if layer.shift > MAX_SHIFT {
                return Err(Error::Model("a shift exceeds 20"));
            }
            params += n;
        }
        if params > MAX_PARAMS {
            return Err(Error::Model("a model has at most 4 Mi weights"));
        }
        if self.outputs() > MAX_OUTPUTS {
            return Err(Error::Model("a model has at most 8 outputs"));
        }
        Ok(())
    }

    pub fn inputs(&self) -> usize {
        self.layers.first().map_or(0, |l| l.n_in as usize)
    }

    pub fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.n_out as usize)
    }

    /// Number of weights.
    pub fn params(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| u64::from(l.n_in) * u64::from(l.n_out))
            .sum()
    }

    pub fn architecture(&self) -> Architecture {
        Architecture {
            layers: self
                .layers
                .iter()
                .map(|l| (l.n_in, l.n_out, l.shift))
                .collect(),
        }
    }

    /// Runs the model on `input`: the exact integers a proof's outputs are.
    pub fn forward(&self, input: &[i8]) -> Result<Vec<i64>, Error> {
        Ok(self.trace(input)?.pop().unwrap_or_default())
    }

    /// Every layer's values: the input (as integers), then each layer's activations; the last entry
    /// is the model's outputs.
    pub(crate) fn trace(&self, input: &[i8]) -> Result<Vec<Vec<i64>>, Error> {
        if input.len() != self.inputs() {
            return Err(Error::Input(
                "the input has the wrong length for this model",
            ));
        }
        let mut values = vec![input.iter().map(|&x| i64::from(x)).collect::<Vec<_>>()];
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let x = &values[l];
            let n_in = layer.n_in as usize;
            let out = (0..layer.n_out as usize)
                .map(|j| {
                    let row = &layer.weights[j * n_in..(j + 1) * n_in];
                    let z = layer.rounded_bias(j)
                        + row
                            .iter()
                            .zip(x)
                            .map(|(&w, &v)| i64::from(w) * v)
                            .sum::<i64>();
                    let q = z >> layer.shift;
                    if l == last { q } else { q.clamp(0, 127) }
                })
                .collect();
            values.push(out);
        }
        Ok(values)
    }

    /// The model's file: borsh of the model.
    pub fn to_bytes(&self) -> Vec<u8> {
        borsh::to_vec(self).unwrap_or_default()
    }

    /// Reads and validates a model file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let model = Self::try_from_slice(bytes).map_err(|_| Error::Model("not a model file"))?;
        model.validate()?;
        Ok(model)
    }
}

impl Architecture {
    pub fn inputs(&self) -> usize {
        self.layers.first().map_or(0, |l| l.0 as usize)
    }

    pub fn outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.1 as usize)
    }

    pub fn params(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| u64::from(l.0) * u64::from(l.1))
            .sum()
    }

    /// The proof's trace heights: (products' rows, activations' rows, commitment's rows). What
    /// proving and the setup cost follows (more than the number of weights: a narrow, deep model
    /// has few weights and tall traces).
    pub fn trace_rows(&self) -> (usize, usize, usize) {
        let (mac, act) = crate::air::heights(self);
        (mac, act, crate::air::com_height(self))
    }

    /// Number of activations: inputs plus every layer's neurons.
    pub fn activations(&self) -> usize {
        self.inputs() + self.layers.iter().map(|l| l.1 as usize).sum::<usize>()
    }

    /// The same limits as [`ZkModel::validate`], on the shape alone.
    pub fn validate(&self) -> Result<(), Error> {
        if self.layers.is_empty() || self.layers.len() > MAX_LAYERS {
            return Err(Error::Model("a model has 1 to 8 layers"));
        }
        for (l, &(n_in, n_out, shift)) in self.layers.iter().enumerate() {
            if n_in == 0 || n_in > MAX_FAN_IN || n_out == 0 || n_out > MAX_LAYER_OUT {
                return Err(Error::Model(
                    "a layer reads 1 to 4096 inputs into 1 to 4096 neurons",
                ));
            }
            if l > 0 && n_in != self.layers[l - 1].1 {
                return Err(Error::Model(
                    "a layer's inputs must be the previous layer's outputs",
                ));
            }
            if shift > MAX_SHIFT {
                return Err(Error::Model("a shift exceeds 20"));
            }
        }
        if self.params() > MAX_PARAMS || self.outputs() > MAX_OUTPUTS {
            return Err(Error::Model("too many weights or outputs"));
        }
        Ok(())
    }
}

impl ZkModel {
    /// A model with pseudo-random weights and biases (`seed`), layer sizes `sizes` (inputs first),
    /// and shifts that keep typical activations inside `[0, 127]`: for benchmarks and tests.
    pub fn synthetic(name: &str, sizes: &[u32], seed: u64) -> Result<Self, Error> {
        let mut s = seed;
        let mut next = move || {
            // splitmix64
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let layers = sizes
            .windows(2)
            .map(|w| {
                // A sum of n random products has a spread of about 2^13·√n: rescale it to ~2^6.
                let shift = (7 + (32 - w[0].leading_zeros()) / 2).min(u32::from(MAX_SHIFT)) as u8;
                Layer {
                    n_in: w[0],
                    n_out: w[1],
                    weights: (0..u64::from(w[0]) * u64::from(w[1]))
                        .map(|_| (next() & 0xff) as u8 as i8)
                        .collect(),
                    bias: (0..w[1]).map(|_| (next() % 4001) as i32 - 2000).collect(),
                    shift,
                }
            })
            .collect();
        let model = ZkModel {
            name: name.into(),
            layers,
        };
        model.validate()?;
        Ok(model)
    }
}
