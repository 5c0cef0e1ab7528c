//! The elementwise operations: SwiGLU's gate, residual adds, RMSNorm and rotary position
//! embedding.

use super::*;

crate::kernels::multiversion! {
    /// `gate = silu(gate) · up`, with silu(x) = x / (1 + e^-x).
    pub(super) fn silu_mul(gate: &mut [f32], up: &[f32]) {
        for (g, u) in gate.iter_mut().zip(up) {
            *g = *g / (1.0 + exp(-*g)) * u;
        }
    }
}

crate::kernels::multiversion! {
    /// `x += y`.
    pub(super) fn add_assign(x: &mut [f32], y: &[f32]) {
        for (a, b) in x.iter_mut().zip(y) {
            *a += b;
        }
    }
}

/// `out = x / rms(x) * weight`, per row; the sum of squares in f64 as llama.cpp does.
pub(super) fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let sum: f64 = row.iter().map(|v| f64::from(v * v)).sum();
        let mean = (sum / d as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, v), w) in o.iter_mut().zip(row).zip(weight) {
            *o = (v * scale) * w;
        }
    }
}

/// The rotary embedding's angles for tokens at `positions`: for each, `head_dim / 2` pairs
/// `(cos, sin)` of `pos * base^(-2i/head_dim)`, the angle built by repeated multiplication as in
/// llama.cpp. Computed once per pass, for every layer.
pub(super) fn rope_angles(head_dim: usize, positions: &[usize], base: f32, out: &mut [(f32, f32)]) {
    // Angles from this crate's own functions: the same bits on every machine (see `fmath`).
    let theta_scale = fmath::powf(base, -2.0 / head_dim as f32);
    for (row, &pos) in out.chunks_exact_mut(head_dim / 2).zip(positions) {
        let mut theta = pos as f32;
        for cs in row.iter_mut() {
            let (sin, cos) = fmath::sin_cos(theta);
            *cs = (cos, sin);
            theta *= theta_scale;
        }
    }
}

/// Rotary embedding on rows of `row_len` (one token each, whole heads): pairs `(2i, 2i+1)` of each
/// head rotated by the row's angles (`head_dim / 2` of [`rope_angles`] per row).
pub(super) fn rope(x: &mut [f32], row_len: usize, head_dim: usize, angles: &[(f32, f32)]) {
    for (row, cos_sin) in x
        .chunks_exact_mut(row_len)
        .zip(angles.chunks_exact(head_dim / 2))
    {
        for head in row.chunks_exact_mut(head_dim) {
            for (pair, &(c, s)) in head.chunks_exact_mut(2).zip(cos_sin) {
                let (x0, x1) = (pair[0], pair[1]);
                pair[0] = x0 * c - x1 * s;
                pair[1] = x0 * s + x1 * c;
            }
        }
    }
}
