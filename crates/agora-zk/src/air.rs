//! The circuit, as two AIRs proved together with lookups between them (Plonky3 batch-STARK):
//!
//! - **MAC**: one row per weight. Its preprocessed (committed, public) columns hold the weight,
//!   the bias, where each neuron starts and ends, and which activation the row reads. The row reads
//!   that activation from the `act` bus and adds `w·x` to a running sum; a neuron's last row sends
//!   its sum on the `pre` bus.
//! - **ACT**: one row per activation (the inputs, then every layer's neurons). It offers each value
//!   on the `act` bus as many times as the next layer reads it, receives each neuron's sum from the
//!   `pre` bus, and proves the rescaling, the ReLU clamp, the input range and the public predicate
//!   with bit decompositions.
//!
//! - **COM**: the commitment to the private input, a Poseidon2 sponge over a private salt and the
//!   input values (read from the `act` bus), one permutation per row; its digest is public.
//!
//! Every value is an integer under 2^27 in magnitude (the model's limits), so the field never
//! wraps: the circuit's arithmetic is the plain runtime's (`model.rs`).

use std::sync::Arc;

use p3_air::{Air, AirBuilder, BaseAir, PermutationAirBuilder, WindowAccess};
use p3_baby_bear::{
    BABYBEAR_POSEIDON2_RC_16_EXTERNAL_FINAL, BABYBEAR_POSEIDON2_RC_16_EXTERNAL_INITIAL,
    BABYBEAR_POSEIDON2_RC_16_INTERNAL, BabyBear, GenericPoseidon2LinearLayersBabyBear,
    default_babybear_poseidon2_16,
};
use p3_field::{Field, PrimeCharacteristicRing};
use p3_lookup::{Count, InteractionBuilder};
use p3_matrix::dense::RowMajorMatrix;
use p3_poseidon2_air::{Poseidon2Air, RoundConstants, generate_trace_rows, num_cols};
use p3_symmetric::Permutation;
use p3_uni_stark::SubAirBuilder;

use crate::model::{Architecture, MAX_OUTPUTS, MAX_SHIFT, VALUE_BITS, ZkModel};

/// Smallest trace height: hiding needs more masked rows than a proof opens (2 × (4 × 2 + 50)).
pub(crate) const MIN_HEIGHT: usize = 128;

/// Products per MAC row: a row reads `K` consecutive activations.
pub(crate) const K: usize = 16;
// MAC preprocessed columns: the row's K weights, then these.
const P_W: usize = 0;
const P_FIRST: usize = K;
const P_BIAS: usize = K + 1;
const P_SRC: usize = K + 2;
const P_LAST: usize = K + 3;
const P_DST: usize = K + 4;
const MAC_PREP_WIDTH: usize = K + 5;
// MAC main columns: the K values read, then the running sum.
const M_X: usize = 0;
const M_ACC: usize = K;
const MAC_WIDTH: usize = K + 1;

/// Bits of a rescaling remainder (`shift ≤ 20`).
const R_BITS: usize = MAX_SHIFT as usize;
/// Bits of a rescaled value's magnitude.
const T_BITS: usize = VALUE_BITS as usize;
/// Bits of the predicate's slack: |score - t| < 2^28.
const PD_BITS: usize = VALUE_BITS as usize + 2;
/// Bits from which a rescaled value clamps to 127.
const CLAMP_BIT: usize = 7;

// ACT preprocessed columns.
const A_IDX: usize = 0;
const A_MULT: usize = 1;
const A_IN: usize = 2;
const A_HID: usize = 3;
const A_OUT: usize = 4;
const A_POW: usize = 5;
const A_PRED: usize = 6;
const A_SEL: usize = 7;
const A_EN_T: usize = A_SEL + MAX_OUTPUTS;
const A_EN_R: usize = A_EN_T + T_BITS;
const ACT_PREP_WIDTH: usize = A_EN_R + R_BITS;
// ACT main columns.
const V: usize = 0;
const Z: usize = 1;
const QQ: usize = 2;
const SGN: usize = 3;
const P: usize = 4;
const H: usize = 5;
const INV: usize = 6;
const RB: usize = 7;
const TB: usize = RB + R_BITS;
const PDB: usize = TB + T_BITS;
const ACT_WIDTH: usize = PDB + PD_BITS;

/// Public values of the ACT instance: `[hide, t, below, out_0 … out_7]`.
pub(crate) const PV_HIDE: usize = 0;
pub(crate) const PV_T: usize = 1;
pub(crate) const PV_BELOW: usize = 2;
pub(crate) const PV_OUT: usize = 3;
pub(crate) const NUM_PUBLIC: usize = PV_OUT + MAX_OUTPUTS;

/// Public values of the COM instance: the input commitment.
pub(crate) const DIGEST: usize = 8;

// COM: a Poseidon2 permutation per row (its own columns first), then the 8 values absorbed.
type Val = BabyBear;
type P2Air = Poseidon2Air<Val, GenericPoseidon2LinearLayersBabyBear, 16, 7, 1, 4, 13>;
const P2_WIDTH: usize = num_cols::<16, 7, 1, 4, 13>();
const RATE: usize = 8;
const C_ABS: usize = P2_WIDTH;
const COM_WIDTH: usize = P2_WIDTH + RATE;
// COM preprocessed: the first input index absorbed, which slots read an input, which slots are
// zero, whether the next row continues the sponge, and whether this row's output is the digest.
const C_SRC: usize = 0;
const C_READ: usize = 1;
const C_ZERO: usize = C_READ + RATE;
const C_CHAIN: usize = C_ZERO + RATE;
const C_FINAL: usize = C_CHAIN + 1;
const COM_PREP_WIDTH: usize = C_FINAL + 1;

fn round_constants() -> RoundConstants<Val, 16, 4, 13> {
    RoundConstants::new(
        BABYBEAR_POSEIDON2_RC_16_EXTERNAL_INITIAL,
        BABYBEAR_POSEIDON2_RC_16_INTERNAL,
        BABYBEAR_POSEIDON2_RC_16_EXTERNAL_FINAL,
    )
}

/// Rows of the sponge: the salt, then the input 8 values at a time.
fn com_rows(inputs: usize) -> usize {
    1 + inputs.div_ceil(RATE)
}

/// The commitment to an input: a Poseidon2 sponge (width 16, rate 8) whose state starts as
/// `[salt, n, 0…]` and absorbs the input (as signed field elements) 8 at a time, the last chunk
/// padded with zeros. The digest is the first 8 words of the final state.
pub fn input_commitment(input: &[i8], salt: &[u32; 8]) -> [u32; 8] {
    use p3_field::PrimeField32;
    let perm = default_babybear_poseidon2_16();
    let mut state = [Val::ZERO; 16];
    for (s, &w) in state.iter_mut().zip(salt) {
        *s = Val::from_u32(w);
    }
    state[RATE] = Val::from_usize(input.len());
    perm.permute_mut(&mut state);
    for chunk in input.chunks(RATE) {
        for (s, &x) in state.iter_mut().zip(chunk) {
            *s += fe::<Val>(i64::from(x));
        }
        perm.permute_mut(&mut state);
    }
    let mut out = [0u32; 8];
    for (o, s) in out.iter_mut().zip(&state) {
        *o = s.as_canonical_u32();
    }
    out
}

const BUS_ACT: &str = "act";
const BUS_PRE: &str = "pre";

/// A field element from a signed integer.
pub(crate) fn fe<F: Field>(v: i64) -> F {
    if v >= 0 {
        F::from_u64(v as u64)
    } else {
        -F::from_u64(v.unsigned_abs())
    }
}

/// MAC rows of one neuron of a layer reading `n_in` inputs.
fn chunks(n_in: u32) -> usize {
    (n_in as usize).div_ceil(K)
}

/// Trace heights of a model: `(mac rows, act rows)`, powers of two. A neuron's last row may read
/// up to K - 1 activations past its layer's inputs (with weight 0), so the ACT table has room for
/// them.
pub(crate) fn heights(arch: &Architecture) -> (usize, usize) {
    let rows: usize = arch.layers.iter().map(|l| l.1 as usize * chunks(l.0)).sum();
    let mac = rows.next_power_of_two().max(MIN_HEIGHT);
    let off = offsets(arch);
    let last_read = arch
        .layers
        .iter()
        .zip(&off)
        .map(|(l, &o)| o + chunks(l.0) * K)
        .max()
        .unwrap_or(0);
    let act = arch
        .activations()
        .max(last_read)
        .next_power_of_two()
        .max(MIN_HEIGHT);
    (mac, act)
}

pub(crate) fn com_height(arch: &Architecture) -> usize {
    com_rows(arch.inputs()).next_power_of_two().max(MIN_HEIGHT)
}

/// How many times the MAC table reads each activation (row of ACT): each slot of each row reads
/// one, padding rows included (they read activations 0..K with weight 0).
fn reads(arch: &Architecture) -> Vec<u64> {
    let (mac_h, act_h) = heights(arch);
    let mut reads = vec![0u64; act_h];
    let mut rows = 0;
    for (l, &o) in arch.layers.iter().zip(&offsets(arch)) {
        for s in 0..chunks(l.0) * K {
            reads[o + s] += u64::from(l.1);
        }
        rows += l.1 as usize * chunks(l.0);
    }
    for r in reads.iter_mut().take(K) {
        *r += (mac_h - rows) as u64;
    }
    // The commitment reads each input once.
    for r in reads.iter_mut().take(arch.inputs()) {
        *r += 1;
    }
    reads
}

/// The two AIRs. The prover's copy carries the model (for the committed columns); a verifier's
/// needs only the shape.
#[derive(Clone)]
pub(crate) enum ZkAir {
    Mac {
        model: Option<Arc<ZkModel>>,
    },
    Act {
        arch: Arc<Architecture>,
    },
    Com {
        arch: Arc<Architecture>,
        p2: Box<P2Air>,
    },
}

impl std::fmt::Debug for ZkAir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ZkAir::Mac { .. } => "MAC",
            ZkAir::Act { .. } => "ACT",
            ZkAir::Com { .. } => "COM",
        })
    }
}

impl ZkAir {
    pub(crate) fn all(arch: Arc<Architecture>, model: Option<Arc<ZkModel>>) -> [ZkAir; 3] {
        [
            ZkAir::Mac { model },
            ZkAir::Act { arch: arch.clone() },
            ZkAir::Com {
                arch,
                p2: Box::new(P2Air::new(round_constants())),
            },
        ]
    }
}

impl BaseAir<Val> for ZkAir {
    fn width(&self) -> usize {
        match self {
            ZkAir::Mac { .. } => MAC_WIDTH,
            ZkAir::Act { .. } => ACT_WIDTH,
            ZkAir::Com { .. } => COM_WIDTH,
        }
    }

    fn preprocessed_trace(&self) -> Option<RowMajorMatrix<Val>> {
        match self {
            ZkAir::Mac { model } => model.as_ref().map(|m| mac_preprocessed(m)),
            ZkAir::Act { arch } => Some(act_preprocessed(arch)),
            ZkAir::Com { arch, .. } => Some(com_preprocessed(arch)),
        }
    }

    fn preprocessed_width(&self) -> usize {
        match self {
            ZkAir::Mac { .. } => MAC_PREP_WIDTH,
            ZkAir::Act { .. } => ACT_PREP_WIDTH,
            ZkAir::Com { .. } => COM_PREP_WIDTH,
        }
    }

    fn main_next_row_columns(&self) -> Vec<usize> {
        match self {
            ZkAir::Mac { .. } => (0..MAC_WIDTH).collect(),
            ZkAir::Act { .. } => vec![],
            // The next row's permutation input and absorbed values.
            ZkAir::Com { .. } => (0..16).chain(C_ABS..C_ABS + RATE).collect(),
        }
    }

    fn preprocessed_next_row_columns(&self) -> Vec<usize> {
        match self {
            ZkAir::Mac { .. } => (P_W..P_W + K).chain([P_FIRST, P_BIAS]).collect(),
            ZkAir::Act { .. } | ZkAir::Com { .. } => vec![],
        }
    }

    fn num_public_values(&self) -> usize {
        match self {
            ZkAir::Mac { .. } => 0,
            ZkAir::Act { .. } => NUM_PUBLIC,
            ZkAir::Com { .. } => DIGEST,
        }
    }
}

impl<AB: PermutationAirBuilder<F = Val> + InteractionBuilder> Air<AB> for ZkAir {
    fn eval(&self, builder: &mut AB) {
        match self {
            ZkAir::Mac { .. } => eval_mac(builder),
            ZkAir::Act { .. } => eval_act(builder),
            ZkAir::Com { arch, p2 } => eval_com(builder, arch.inputs(), p2),
        }
    }
}

/// A row's (or the public values') variables as expressions.
fn exprs<AB: AirBuilder>(vars: &[impl Into<AB::Expr> + Copy]) -> Vec<AB::Expr> {
    vars.iter().map(|&v| v.into()).collect()
}

fn eval_com<AB: AirBuilder<F = Val> + InteractionBuilder>(
    builder: &mut AB,
    inputs: usize,
    p2: &P2Air,
) {
    // Each row is one Poseidon2 permutation.
    {
        let mut sub = SubAirBuilder::<AB, P2Air, AB::Var>::new(builder, 0..P2_WIDTH);
        p2.eval(&mut sub);
    }
    let m = exprs::<AB>(builder.main().current_slice());
    let n = exprs::<AB>(builder.main().next_slice());
    let p = exprs::<AB>(builder.preprocessed().current_slice());
    let pv = exprs::<AB>(builder.public_values());
    let out = |i: usize| m[P2_WIDTH - 16 + i].clone();
    // Row 0: the state starts as [salt, n, 0…] (the salt is the row's absorbed values).
    for i in 0..16 {
        let start = if i < RATE {
            m[C_ABS + i].clone()
        } else if i == RATE {
            AB::Expr::from_usize(inputs)
        } else {
            AB::Expr::ZERO
        };
        builder.when_first_row().assert_zero(m[i].clone() - start);
    }
    // Each next row of the sponge permutes the previous output plus the values it absorbs.
    for i in 0..16 {
        let absorbed = if i < RATE {
            n[C_ABS + i].clone()
        } else {
            AB::Expr::ZERO
        };
        builder
            .when_transition()
            .assert_zero(p[C_CHAIN].clone() * (n[i].clone() - out(i) - absorbed));
    }
    for i in 0..RATE {
        // Past the input, the last chunk absorbs zeros.
        builder.assert_zero(p[C_ZERO + i].clone() * m[C_ABS + i].clone());
        // The digest is public.
        builder.assert_zero(p[C_FINAL].clone() * (out(i) - pv[i].clone()));
        // The absorbed values are the input's, read from the ACT table.
        builder.push_interaction(
            BUS_ACT,
            [
                p[C_SRC].clone() + AB::Expr::from_usize(i),
                m[C_ABS + i].clone(),
            ],
            Count::bounded(p[C_READ + i].clone(), 1),
        );
    }
}

fn com_preprocessed(arch: &Architecture) -> RowMajorMatrix<Val> {
    let height = com_height(arch);
    let inputs = arch.inputs();
    let rows = com_rows(inputs);
    let mut v = Val::zero_vec(height * COM_PREP_WIDTH);
    for r in 1..rows {
        let row = &mut v[r * COM_PREP_WIDTH..(r + 1) * COM_PREP_WIDTH];
        let first = (r - 1) * RATE;
        row[C_SRC] = Val::from_usize(first);
        for i in 0..RATE {
            let read = first + i < inputs;
            row[C_READ + i] = Val::from_bool(read);
            row[C_ZERO + i] = Val::from_bool(!read);
        }
    }
    for r in 0..rows - 1 {
        v[r * COM_PREP_WIDTH + C_CHAIN] = Val::ONE;
    }
    v[(rows - 1) * COM_PREP_WIDTH + C_FINAL] = Val::ONE;
    RowMajorMatrix::new(v, COM_PREP_WIDTH)
}

/// The COM trace: the sponge's permutations (padding rows permute zeros), and what each absorbs.
pub(crate) fn com_trace(input: &[i8], salt: &[u32; 8], height: usize) -> RowMajorMatrix<Val> {
    let perm = default_babybear_poseidon2_16();
    let mut absorbed = vec![[Val::ZERO; RATE]; height];
    let mut states = vec![[Val::ZERO; 16]; height];
    let mut state = [Val::ZERO; 16];
    for i in 0..RATE {
        absorbed[0][i] = Val::from_u32(salt[i]);
        state[i] = absorbed[0][i];
    }
    state[RATE] = Val::from_usize(input.len());
    states[0] = state;
    perm.permute_mut(&mut state);
    for (c, chunk) in input.chunks(RATE).enumerate() {
        for (i, &x) in chunk.iter().enumerate() {
            absorbed[c + 1][i] = fe(i64::from(x));
            state[i] += absorbed[c + 1][i];
        }
        states[c + 1] = state;
        perm.permute_mut(&mut state);
    }
    let p2 = generate_trace_rows::<Val, GenericPoseidon2LinearLayersBabyBear, 16, 7, 1, 4, 13>(
        states,
        &round_constants(),
        0,
    );
    let mut v = Vec::with_capacity(height * COM_WIDTH);
    for (r, abs) in absorbed.iter().enumerate() {
        v.extend_from_slice(&p2.values[r * P2_WIDTH..(r + 1) * P2_WIDTH]);
        v.extend_from_slice(abs);
    }
    RowMajorMatrix::new(v, COM_WIDTH)
}

fn eval_mac<AB: AirBuilder<F = Val> + InteractionBuilder>(builder: &mut AB) {
    let (x, acc, x_next, acc_next) = {
        let main = builder.main();
        let (c, n) = (main.current_slice(), main.next_slice());
        let x: Vec<AB::Expr> = c[M_X..M_X + K].iter().map(|&v| v.into()).collect();
        let x_next: Vec<AB::Expr> = n[M_X..M_X + K].iter().map(|&v| v.into()).collect();
        (x, c[M_ACC].into(), x_next, n[M_ACC].into())
    };
    let (w, bias, src, last, dst, w_next, first_next, bias_next) = {
        let prep = builder.preprocessed();
        let (c, n) = (prep.current_slice(), prep.next_slice());
        let w: Vec<AB::Expr> = c[P_W..P_W + K].iter().map(|&v| v.into()).collect();
        let w_next: Vec<AB::Expr> = n[P_W..P_W + K].iter().map(|&v| v.into()).collect();
        let e = |v: AB::Var| -> AB::Expr { v.into() };
        (
            w,
            e(c[P_BIAS]),
            e(c[P_SRC]),
            e(c[P_LAST]),
            e(c[P_DST]),
            w_next,
            e(n[P_FIRST]),
            e(n[P_BIAS]),
        )
    };
    let dot = |w: &[AB::Expr], x: &[AB::Expr]| {
        w.iter()
            .zip(x)
            .fold(AB::Expr::ZERO, |acc, (w, x)| acc + w.clone() * x.clone())
    };
    let acc: AB::Expr = acc;
    let acc_next: AB::Expr = acc_next;

    // Row 0 starts a neuron: acc = b + w·x.
    builder
        .when_first_row()
        .assert_zero(acc.clone() - dot(&w, &x) - bias);
    // Each next row adds its products to the sum, or starts the next neuron from its bias.
    builder.when_transition().assert_zero(
        acc_next
            - dot(&w_next, &x_next)
            - first_next.clone() * bias_next
            - (AB::Expr::ONE - first_next) * acc.clone(),
    );
    // Read K consecutive activations; a neuron's last row hands its sum to the ACT table.
    for (k, x) in x.into_iter().enumerate() {
        builder.push_interaction(BUS_ACT, [src.clone() + AB::Expr::from_usize(k), x], 1);
    }
    builder.push_interaction(BUS_PRE, [dst, acc], Count::bounded(last, 1));
}

fn eval_act<AB: AirBuilder<F = Val> + InteractionBuilder>(builder: &mut AB) {
    let m = exprs::<AB>(builder.main().current_slice());
    let p = exprs::<AB>(builder.preprocessed().current_slice());
    let pv = exprs::<AB>(builder.public_values());
    let one = AB::Expr::ONE;
    let two = AB::Expr::TWO;

    let pow2 = |i: usize| AB::Expr::from_u64(1u64 << i);
    let sum_bits = |start: usize, bits: std::ops::Range<usize>| {
        bits.fold(AB::Expr::ZERO, |acc, i| {
            acc + m[start + i].clone() * pow2(i)
        })
    };
    for i in 0..R_BITS {
        let b = m[RB + i].clone();
        builder.assert_bool(b.clone());
        builder.assert_zero(b * (one.clone() - p[A_EN_R + i].clone()));
    }
    for i in 0..T_BITS {
        let b = m[TB + i].clone();
        builder.assert_bool(b.clone());
        builder.assert_zero(b * (one.clone() - p[A_EN_T + i].clone()));
    }
    for i in 0..PD_BITS {
        let b = m[PDB + i].clone();
        builder.assert_bool(b.clone());
        builder.assert_zero(b * (one.clone() - p[A_PRED].clone()));
    }
    builder.assert_bool(m[SGN].clone());
    builder.assert_bool(m[H].clone());

    let r = sum_bits(RB, 0..R_BITS);
    let t = sum_bits(TB, 0..T_BITS);
    let t_low = sum_bits(TB, 0..CLAMP_BIT);
    let t_high = (CLAMP_BIT..T_BITS).fold(AB::Expr::ZERO, |acc, i| acc + m[TB + i].clone());
    let pd = sum_bits(PDB, 0..PD_BITS);
    let (v, z, qq, sgn) = (m[V].clone(), m[Z].clone(), m[QQ].clone(), m[SGN].clone());
    let (is_in, hid, out) = (p[A_IN].clone(), p[A_HID].clone(), p[A_OUT].clone());
    let has_z = hid.clone() + out.clone();

    // An input is a signed byte: v + 128 is 8 bits (EN_T allows 8 on input rows).
    builder.assert_zero(is_in * (v.clone() + AB::Expr::from_u64(128) - t.clone()));
    // z = 2^s · q + r with 0 ≤ r < 2^s, and q = t ≥ 0 (sign 1) or q = -1 - t < 0 (sign 0), t < 2^(27-s).
    builder.assert_zero(has_z.clone() * (z.clone() - p[A_POW].clone() * qq.clone() - r));
    builder.assert_zero(
        has_z.clone()
            * (qq.clone() - ((two * sgn.clone() - one.clone()) * t + sgn.clone() - one.clone())),
    );
    // Hidden: v = 0 when q < 0, 127 when q ≥ 128 (a bit from 7 up is set: h), else q.
    builder.assert_zero(hid.clone() * (m[P].clone() - (one.clone() - m[H].clone()) * t_low));
    builder.assert_zero(
        hid.clone() * (v.clone() - sgn * (m[P].clone() + AB::Expr::from_u64(127) * m[H].clone())),
    );
    builder.assert_zero(hid.clone() * (m[H].clone() - t_high.clone() * m[INV].clone()));
    builder.assert_zero(hid * (one.clone() - m[H].clone()) * t_high);
    // Outputs: v = q.
    builder.assert_zero(out * (v.clone() - qq));
    // The predicate on output 0: below = 1 proves v < t (t - 1 - v ≥ 0), below = 0 proves v ≥ t.
    let (tt, below) = (pv[PV_T].clone(), pv[PV_BELOW].clone());
    let slack = below.clone() * (tt.clone() - one.clone() - v.clone())
        + (one.clone() - below) * (v.clone() - tt);
    builder.assert_zero(p[A_PRED].clone() * (pd - slack));
    // Outputs are public unless hidden.
    let shown = one - pv[PV_HIDE].clone();
    for o in 0..MAX_OUTPUTS {
        builder.assert_zero(
            p[A_SEL + o].clone() * shown.clone() * (v.clone() - pv[PV_OUT + o].clone()),
        );
    }
    // Offer each value as often as the next layer reads it; take each neuron's sum.
    builder.push_interaction(
        BUS_ACT,
        [p[A_IDX].clone(), v],
        Count::provided(-p[A_MULT].clone()),
    );
    builder.push_interaction(BUS_PRE, [p[A_IDX].clone(), z], Count::provided(-has_z));
}

/// Global index of each layer's first value: inputs at 0, then each layer's neurons.
fn offsets(arch: &Architecture) -> Vec<usize> {
    let mut off = vec![0, arch.inputs()];
    for l in &arch.layers {
        off.push(off[off.len() - 1] + l.1 as usize);
    }
    off.pop();
    off
}

fn mac_preprocessed<F: Field>(model: &ZkModel) -> RowMajorMatrix<F> {
    let arch = model.architecture();
    let (height, _) = heights(&arch);
    let off = offsets(&arch);
    let mut v = F::zero_vec(height * MAC_PREP_WIDTH);
    let mut row = 0;
    for (l, layer) in model.layers.iter().enumerate() {
        let n_in = layer.n_in as usize;
        let n_chunks = chunks(layer.n_in);
        for j in 0..layer.n_out as usize {
            for c in 0..n_chunks {
                let r = &mut v[row * MAC_PREP_WIDTH..(row + 1) * MAC_PREP_WIDTH];
                for k in 0..K.min(n_in - c * K) {
                    r[P_W + k] = fe(i64::from(layer.weights[j * n_in + c * K + k]));
                }
                r[P_FIRST] = F::from_bool(c == 0);
                r[P_BIAS] = if c == 0 {
                    fe(layer.rounded_bias(j))
                } else {
                    F::ZERO
                };
                r[P_SRC] = F::from_usize(off[l] + c * K);
                r[P_LAST] = F::from_bool(c + 1 == n_chunks);
                r[P_DST] = F::from_usize(off[l + 1] + j);
                row += 1;
            }
        }
    }
    // Padding rows start "neurons" of nothing: acc stays 0; they read activations 0..K, weight 0.
    for r in row..height {
        v[r * MAC_PREP_WIDTH + P_FIRST] = F::ONE;
    }
    RowMajorMatrix::new(v, MAC_PREP_WIDTH)
}

/// The kind of each activation row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Input,
    Hidden { shift: u8 },
    Output { shift: u8, slot: usize },
}

fn kinds(arch: &Architecture) -> Vec<Kind> {
    let last = arch.layers.len() - 1;
    let mut rows: Vec<Kind> = (0..arch.inputs()).map(|_| Kind::Input).collect();
    for (l, &(_, n_out, shift)) in arch.layers.iter().enumerate() {
        for j in 0..n_out as usize {
            rows.push(if l == last {
                Kind::Output { shift, slot: j }
            } else {
                Kind::Hidden { shift }
            });
        }
    }
    rows
}

fn act_preprocessed<F: Field>(arch: &Architecture) -> RowMajorMatrix<F> {
    let (_, height) = heights(arch);
    let mut v = F::zero_vec(height * ACT_PREP_WIDTH);
    // Every row offers its value as often as the MAC table reads it; rows past the activations
    // hold nothing (their values are read only with weight 0).
    for (k, &mult) in reads(arch).iter().enumerate() {
        v[k * ACT_PREP_WIDTH + A_IDX] = F::from_usize(k);
        v[k * ACT_PREP_WIDTH + A_MULT] = F::from_u64(mult);
    }
    for (k, kind) in kinds(arch).into_iter().enumerate() {
        let r = &mut v[k * ACT_PREP_WIDTH..(k + 1) * ACT_PREP_WIDTH];
        let (t_bits, shift) = match kind {
            Kind::Input => {
                r[A_IN] = F::ONE;
                (8, 0)
            }
            Kind::Hidden { shift } => {
                r[A_HID] = F::ONE;
                (T_BITS - shift as usize, shift)
            }
            Kind::Output { shift, slot } => {
                r[A_OUT] = F::ONE;
                r[A_SEL + slot] = F::ONE;
                r[A_PRED] = F::from_bool(slot == 0);
                (T_BITS - shift as usize, shift)
            }
        };
        r[A_POW] = F::from_u64(1 << shift);
        for i in 0..t_bits {
            r[A_EN_T + i] = F::ONE;
        }
        for i in 0..shift as usize {
            r[A_EN_R + i] = F::ONE;
        }
    }
    RowMajorMatrix::new(v, ACT_PREP_WIDTH)
}

/// The public statement of a proof: the predicate on output 0 (`below` = output 0 < `t`), and the
/// outputs unless hidden.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The commitment to the private input ([`input_commitment`]).
    pub input_commitment: [u32; 8],
    pub t: i64,
    pub below: bool,
    /// `None` when the outputs stay private (only the predicate is shown).
    pub outputs: Option<Vec<i64>>,
}

impl Statement {
    pub(crate) fn digest_values(&self) -> Vec<Val> {
        self.input_commitment
            .iter()
            .map(|&w| Val::from_u32(w))
            .collect()
    }

    pub(crate) fn public_values<F: Field>(&self) -> Vec<F> {
        let mut pv = F::zero_vec(NUM_PUBLIC);
        pv[PV_HIDE] = F::from_bool(self.outputs.is_none());
        pv[PV_T] = fe(self.t);
        pv[PV_BELOW] = F::from_bool(self.below);
        if let Some(outputs) = &self.outputs {
            for (o, &y) in outputs.iter().enumerate() {
                pv[PV_OUT + o] = fe(y);
            }
        }
        pv
    }
}

fn bits<F: Field>(row: &mut [F], start: usize, n: usize, value: u64) {
    for i in 0..n {
        row[start + i] = F::from_bool((value >> i) & 1 == 1);
    }
}

/// The two main traces for `input`, given the layer values from [`ZkModel::trace`].
pub(crate) fn main_traces<F: Field>(
    model: &ZkModel,
    values: &[Vec<i64>],
    t: i64,
) -> [RowMajorMatrix<F>; 2] {
    let arch = model.architecture();
    let (mac_h, act_h) = heights(&arch);
    // MAC: the values read, and the running sum.
    let off = offsets(&arch);
    let all: Vec<i64> = values.iter().flatten().copied().collect();
    let read = |idx: usize| all.get(idx).copied().unwrap_or(0);
    let mut mac = F::zero_vec(mac_h * MAC_WIDTH);
    let mut row = 0;
    for (l, layer) in model.layers.iter().enumerate() {
        let n_in = layer.n_in as usize;
        for j in 0..layer.n_out as usize {
            let mut acc = layer.rounded_bias(j);
            for c in 0..chunks(layer.n_in) {
                let r = &mut mac[row * MAC_WIDTH..(row + 1) * MAC_WIDTH];
                for k in 0..K {
                    let x = read(off[l] + c * K + k);
                    if c * K + k < n_in {
                        acc += i64::from(layer.weights[j * n_in + c * K + k]) * x;
                    }
                    r[M_X + k] = fe(x);
                }
                r[M_ACC] = fe(acc);
                row += 1;
            }
        }
    }
    for r in row..mac_h {
        for k in 0..K {
            mac[r * MAC_WIDTH + M_X + k] = fe(read(k));
        }
    }
    // ACT.
    let mut act = F::zero_vec(act_h * ACT_WIDTH);
    let mut k = 0;
    for &x in &values[0] {
        let r = &mut act[k * ACT_WIDTH..(k + 1) * ACT_WIDTH];
        r[V] = fe(x);
        bits(r, TB, 8, (x + 128) as u64);
        k += 1;
    }
    let last = model.layers.len() - 1;
    for (l, layer) in model.layers.iter().enumerate() {
        let n_in = layer.n_in as usize;
        for j in 0..layer.n_out as usize {
            let z = layer.rounded_bias(j)
                + (0..n_in)
                    .map(|i| i64::from(layer.weights[j * n_in + i]) * values[l][i])
                    .sum::<i64>();
            let q = z >> layer.shift;
            let rem = z - (q << layer.shift);
            let t_val = if q >= 0 { q } else { -1 - q } as u64;
            let r = &mut act[k * ACT_WIDTH..(k + 1) * ACT_WIDTH];
            r[Z] = fe(z);
            r[QQ] = fe(q);
            r[SGN] = F::from_bool(q >= 0);
            bits(r, RB, R_BITS, rem as u64);
            bits(r, TB, T_BITS, t_val);
            let v = values[l + 1][j];
            r[V] = fe(v);
            if l < last {
                let high = u64::from((t_val >> CLAMP_BIT).count_ones());
                let h = high > 0;
                r[H] = F::from_bool(h);
                r[INV] = if high > 0 {
                    F::from_u64(high).inverse()
                } else {
                    F::ZERO
                };
                r[P] = if h { F::ZERO } else { F::from_u64(t_val & 127) };
            } else if j == 0 {
                let slack = if v < t { t - 1 - v } else { v - t };
                bits(r, PDB, PD_BITS, slack as u64);
            }
            k += 1;
        }
    }
    [
        RowMajorMatrix::new(mac, MAC_WIDTH),
        RowMajorMatrix::new(act, ACT_WIDTH),
    ]
}
