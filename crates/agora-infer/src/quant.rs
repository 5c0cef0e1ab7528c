//! Block-quantized weights (ggml's Q4_1 and Q8_0) and 8-bit quantized activations.
//!
//! GGUF stores a weight matrix as rows of 32-element blocks:
//! - Q4_1 block (20 bytes): `d: f16, m: f16, qs: [u8; 16]`, element `i` is `d * q_i + m`, where `q_i` is
//!   the low nibble of `qs[i]` for `i < 16` and the high nibble of `qs[i - 16]` otherwise.
//! - Q8_0 block (34 bytes): `d: f16, qs: [i8; 32]`, element `i` is `d * qs[i]`.
//!
//! At load the rows are interleaved by eights ([`GROUP`]), so that one SIMD instruction works on eight
//! rows at once: for each group of eight rows and each block, the eight `d` (then, Q4_1, the eight `m`)
//! as f16, then the quants in 4-byte slices, slice `j` of the eight rows side by side (32 bytes). The
//! size is the same as the file's (20 or 34 bytes per row and block).
//!
//! Activations are quantized per 32-element block to `i8` with a scale, as llama.cpp does (Q8_1 for Q4_1
//! weights: the scale and `s = d * Σq` rounded through f16; Q8_0 for Q8_0 weights), so a dot product is
//! an exact integer sum per block followed by a few float operations in a fixed order (see `kernels`).

use half::f16;

use crate::Error;
use crate::gguf::GgmlType;

pub const QK: usize = 32;
pub const Q4_1_BYTES: usize = 20;
pub const Q8_0_BYTES: usize = 34;

/// The weight formats the matmul kernels take, each in blocks of 32 weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    Q4_1,
    Q8_0,
    /// Q4_K's sub-blocks: Q4_1 with an f32 scale and minimum (24 bytes: `d: f32, m: f32,
    /// qs: [u8; 16]`). A sub-block's scale `d·sc` and minimum `−dmin·m` (an f16 times a 6-bit
    /// integer) are exact in f32, so every weight keeps exactly its Q4_K value.
    Q4K,
    /// Q6_K's: 8-bit quants (the 6-bit ones less 32) in two halves of 16, each with an f32 scale
    /// `d·sc` (40 bytes: `d_lo: f32, d_hi: f32, qs: [i8; 32]`), exact as above.
    Q6K,
}

impl WeightType {
    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => Q4_1_BYTES,
            Self::Q8_0 => Q8_0_BYTES,
            Self::Q4K => 24,
            Self::Q6K => 40,
        }
    }

    /// A block's scale fields (scale, minimum, or two scales) and the bytes of each.
    pub(crate) fn scales(self) -> (usize, usize) {
        match self {
            Self::Q4_1 => (2, 2),
            Self::Q8_0 => (1, 2),
            Self::Q4K | Self::Q6K => (2, 4),
        }
    }

    /// Where the quants start in an interleaved block of eight rows.
    pub(crate) fn quants_at(self) -> usize {
        let (n, bytes) = self.scales();
        n * bytes * GROUP
    }

    /// Whether the activations need their sums (`d·Σq`): the formats with a minimum.
    pub fn needs_sums(self) -> bool {
        matches!(self, Self::Q4_1 | Self::Q4K)
    }
}

/// Rows interleaved together.
pub const GROUP: usize = 8;

/// A quantized weight matrix: `rows` rows of `cols` elements (cols a multiple of 32), rows interleaved
/// by groups of eight (the last group padded with zero rows).
#[derive(Debug, Clone)]
pub struct QMatrix {
    pub ty: WeightType,
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<u8>,
}

impl QMatrix {
    /// Takes a matrix in GGUF's layout and interleaves its rows.
    pub fn new(ty: WeightType, rows: usize, cols: usize, ggml: Vec<u8>) -> Result<Self, Error> {
        let bb = ty.block_bytes();
        if cols == 0 || !cols.is_multiple_of(QK) || ggml.len() != rows * cols / QK * bb {
            return Err(Error::BadModel(format!(
                "a {ty:?} matrix of {rows}x{cols} cannot hold {} bytes",
                ggml.len()
            )));
        }
        let nb = cols / QK;
        let groups = rows.div_ceil(GROUP);
        let mut data = vec![0u8; groups * nb * GROUP * bb];
        let (fields, size) = ty.scales();
        let scales = fields * size;
        let quants = bb - scales;
        for r in 0..rows {
            let (g, lane) = (r / GROUP, r % GROUP);
            for b in 0..nb {
                let src = &ggml[(r * nb + b) * bb..][..bb];
                let dst = (g * nb + b) * GROUP * bb;
                // d (and m, or the second scale): lane `lane` of each 8-wide vector. Each must be
                // a number: a NaN's payload may come out of a fused multiply-add differently on
                // different paths, and change the token a sampler picks.
                for k in 0..fields {
                    let field = &src[k * size..(k + 1) * size];
                    let finite = if size == 2 {
                        f16::from_le_bytes([field[0], field[1]]).is_finite()
                    } else {
                        f32::from_le_bytes([field[0], field[1], field[2], field[3]]).is_finite()
                    };
                    if !finite {
                        return Err(Error::BadModel(format!(
                            "a {ty:?} matrix has a scale that is not a finite number (row {r}, \
                             block {b})"
                        )));
                    }
                    data[dst + k * size * GROUP + lane * size..][..size]
                        .copy_from_slice(&src[k * size..(k + 1) * size]);
                }
                let q = dst + scales * GROUP;
                for j in 0..quants / 4 {
                    data[q + j * 4 * GROUP + lane * 4..][..4]
                        .copy_from_slice(&src[scales + j * 4..][..4]);
                }
            }
        }
        Ok(Self {
            ty,
            rows,
            cols,
            data,
        })
    }

    /// Builds a matrix from a GGUF tensor of two dimensions (`dims[0]` = row length). Q4_0 is
    /// taken as Q4_1 with the minimum `-8·d`, which gives every weight exactly its Q4_0 value.
    pub fn from_gguf(name: &str, ty: GgmlType, dims: &[u64], data: Vec<u8>) -> Result<Self, Error> {
        let (wt, data) = match ty {
            GgmlType::Q4_1 => (WeightType::Q4_1, data),
            GgmlType::Q8_0 => (WeightType::Q8_0, data),
            GgmlType::Q4_0 => (WeightType::Q4_1, q4_0_as_q4_1(name, &data)?),
            GgmlType::Q5_0 => (WeightType::Q8_0, q5_0_as_q8_0(name, &data)?),
            GgmlType::Q4_K => (WeightType::Q4K, q4_k_blocks(name, &data)?),
            GgmlType::Q6_K => (WeightType::Q6K, q6_k_blocks(name, &data)?),
            other => {
                return Err(Error::BadModel(format!(
                    "tensor {name} is {other:?}; Q4_0, Q4_1, Q5_0, Q8_0, Q4_K or Q6_K expected"
                )));
            }
        };
        let [cols, rows] = dims else {
            return Err(Error::BadModel(format!(
                "tensor {name} has shape {dims:?}, two dimensions expected"
            )));
        };
        if matches!(ty, GgmlType::Q4_K | GgmlType::Q6_K) && !cols.is_multiple_of(QK_K as u64) {
            return Err(Error::BadModel(format!(
                "tensor {name}: rows of {cols} are not whole super-blocks of {QK_K}"
            )));
        }
        Self::new(wt, *rows as usize, *cols as usize, data)
    }

    pub fn blocks_per_row(&self) -> usize {
        self.cols / QK
    }

    /// The interleaved bytes of block `b` of row group `g`.
    #[inline(always)]
    pub(crate) fn group_block(&self, g: usize, b: usize) -> &[u8] {
        let size = GROUP * self.ty.block_bytes();
        &self.data[(g * self.blocks_per_row() + b) * size..][..size]
    }

    /// Dequantizes row `r` into `out` (length `cols`).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (g, lane) = (r / GROUP, r % GROUP);
        for (b, chunk) in out.chunks_exact_mut(QK).enumerate() {
            let blk = self.group_block(g, b);
            let [d, m] = self.scales_of(blk, lane);
            let at = self.ty.quants_at();
            match self.ty {
                WeightType::Q4_1 | WeightType::Q4K => {
                    for j in 0..4 {
                        for k in 0..4 {
                            let q = blk[at + j * 4 * GROUP + lane * 4 + k];
                            chunk[j * 4 + k] = d * f32::from(q & 0x0f) + m;
                            chunk[16 + j * 4 + k] = d * f32::from(q >> 4) + m;
                        }
                    }
                }
                WeightType::Q8_0 | WeightType::Q6K => {
                    for j in 0..8 {
                        // Q6K: the second half has its own scale.
                        let d = if self.ty == WeightType::Q6K && j >= 4 {
                            m
                        } else {
                            d
                        };
                        for k in 0..4 {
                            chunk[j * 4 + k] =
                                d * f32::from(blk[at + j * 4 * GROUP + lane * 4 + k] as i8);
                        }
                    }
                }
            }
        }
    }
}

impl QMatrix {
    /// Lane `lane`'s two scale fields in an interleaved block (the second is 0 for Q8_0): `d`
    /// and the minimum, or Q6K's two scales.
    #[inline(always)]
    pub(crate) fn scales_of(&self, blk: &[u8], lane: usize) -> [f32; 2] {
        match self.ty {
            WeightType::Q4_1 => [f16_at(blk, lane * 2), f16_at(blk, 2 * GROUP + lane * 2)],
            WeightType::Q8_0 => [f16_at(blk, lane * 2), 0.0],
            WeightType::Q4K | WeightType::Q6K => {
                [f32_at(blk, lane * 4), f32_at(blk, 4 * GROUP + lane * 4)]
            }
        }
    }
}

pub(crate) fn f32_at(bytes: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Q5_0 blocks (`d: f16`, `qh: u32` of fifth bits, 16 bytes of low nibbles; element `j < 16` is
/// the low nibble of `qs[j]` with bit `j` of `qh`, element `j + 16` the high nibble with bit
/// `j + 16`; weight `d·(q − 16)`) as Q8_0 blocks: `q − 16` is an 8-bit integer under the same
/// scale, so every weight keeps exactly its value (llama.cpp writes Q5_0 where a K-quant does not
/// fit a row, as in Q4_K_M files of models whose widths are not multiples of 256).
fn q5_0_as_q8_0(name: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
    const Q5_0_BYTES: usize = 22;
    whole_blocks(name, data, Q5_0_BYTES, "Q5_0")?;
    let mut out = Vec::with_capacity(data.len() / Q5_0_BYTES * Q8_0_BYTES);
    for block in data.chunks_exact(Q5_0_BYTES) {
        let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
        let qs = &block[6..];
        out.extend_from_slice(&block[..2]);
        let q = |j: usize| {
            let (low, bit) = if j < 16 {
                (qs[j] & 0x0f, (qh >> j) & 1)
            } else {
                (qs[j - 16] >> 4, (qh >> j) & 1)
            };
            ((low | ((bit as u8) << 4)) as i8 - 16) as u8
        };
        out.extend((0..QK).map(q));
    }
    Ok(out)
}

/// Quantizes `x` (length a multiple of 32) to Q5_0 the way ggml's reference quantizer does.
pub fn quantize_q5_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / QK * 22);
    for block in x.chunks_exact(QK) {
        // The value of largest magnitude, with its sign, maps to -16.
        let max = block
            .iter()
            .copied()
            .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        let q = |v: f32| (v * id + 16.5).clamp(0.0, 31.0) as u8;
        let mut qh = 0u32;
        let mut qs = [0u8; 16];
        for j in 0..16 {
            let (a, b) = (q(block[j]), q(block[j + 16]));
            qs[j] = (a & 0x0f) | ((b & 0x0f) << 4);
            qh |= u32::from(a >> 4) << j | u32::from(b >> 4) << (j + 16);
        }
        out.extend_from_slice(&qh.to_le_bytes());
        out.extend_from_slice(&qs);
    }
    out
}

/// Elements of a K-quant super-block.
pub const QK_K: usize = 256;
const Q4_K_BYTES: usize = 144;
const Q6_K_BYTES: usize = 210;

/// Sub-block `j`'s 6-bit scale and minimum in Q4_K's 12 packed bytes (ggml's `get_scale_min_k4`).
fn q4_k_scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

fn whole_blocks(name: &str, data: &[u8], bytes: usize, what: &str) -> Result<(), Error> {
    if data.len().is_multiple_of(bytes) {
        Ok(())
    } else {
        Err(Error::BadModel(format!(
            "tensor {name}: {} bytes are not whole {what} blocks",
            data.len()
        )))
    }
}

/// Q4_K super-blocks (`d, dmin: f16`, 12 bytes of 6-bit scales and minimums, 128 of quants:
/// element `l` of sub-block `2c` is the low nibble of `qs[32c + l]`, of `2c + 1` the high one;
/// weight `d·sc·q − dmin·m`) as eight [`WeightType::Q4K`] blocks each.
fn q4_k_blocks(name: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
    whole_blocks(name, data, Q4_K_BYTES, "Q4_K")?;
    let mut out = Vec::with_capacity(data.len() / Q4_K_BYTES * 8 * 24);
    for sb in data.chunks_exact(Q4_K_BYTES) {
        let (d, dmin) = (f16_at(sb, 0), f16_at(sb, 2));
        let (scales, qs) = (&sb[4..16], &sb[16..]);
        for j in 0..8 {
            let (sc, m) = q4_k_scale_min(j, scales);
            // f16 times a 6-bit integer: exact in f32.
            out.extend_from_slice(&(d * f32::from(sc)).to_le_bytes());
            out.extend_from_slice(&(-(dmin * f32::from(m))).to_le_bytes());
            let half = &qs[32 * (j / 2)..][..32];
            let q = |l: usize| {
                if j % 2 == 0 {
                    half[l] & 0x0f
                } else {
                    half[l] >> 4
                }
            };
            out.extend((0..16).map(|i| q(i) | (q(i + 16) << 4)));
        }
    }
    Ok(out)
}

/// Q6_K super-blocks (128 bytes of low 4 bits, 64 of high 2 bits, 16 scales `i8`, `d: f16`; in
/// each half of 128, element `l + 32·k` (l < 32, k < 4) takes nibble `k / 2` of `ql[l + 32·(k %
/// 2)]` and bits `2k..2k+2` of `qh[l]`; weight `d·sc[e / 16]·(q − 32)`) as eight
/// [`WeightType::Q6K`] blocks each.
fn q6_k_blocks(name: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
    whole_blocks(name, data, Q6_K_BYTES, "Q6_K")?;
    let mut out = Vec::with_capacity(data.len() / Q6_K_BYTES * 8 * 40);
    for sb in data.chunks_exact(Q6_K_BYTES) {
        let d = f16_at(sb, 208);
        let mut q = [0i8; QK_K];
        for half in 0..2 {
            let ql = &sb[64 * half..][..64];
            let qh = &sb[128 + 32 * half..][..32];
            for l in 0..32 {
                for k in 0..4 {
                    let low = if k < 2 {
                        ql[l + 32 * k] & 0x0f
                    } else {
                        ql[l + 32 * (k - 2)] >> 4
                    };
                    let high = (qh[l] >> (2 * k)) & 3;
                    q[128 * half + 32 * k + l] = ((low | (high << 4)) as i8) - 32;
                }
            }
        }
        for b in 0..8 {
            for h in 0..2 {
                let sc = sb[192 + 2 * b + h] as i8;
                // f16 times an 8-bit integer: exact in f32.
                out.extend_from_slice(&(d * f32::from(sc)).to_le_bytes());
            }
            out.extend(q[32 * b..32 * b + 32].iter().map(|&v| v as u8));
        }
    }
    Ok(out)
}

/// Quantizes `x` (length a multiple of 256) to Q4_K: per sub-block the range's step and its
/// minimum, their 6-bit multiples of two f16 factors, 4-bit quants (a valid encoding, not
/// ggml's search for the best one).
pub fn quantize_q4_k(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / QK_K * Q4_K_BYTES);
    for sb in x.chunks_exact(QK_K) {
        let mut step = [0f32; 8];
        let mut low = [0f32; 8];
        for (j, sub) in sb.chunks_exact(QK).enumerate() {
            let min = sub.iter().copied().fold(f32::INFINITY, f32::min).min(0.0);
            let max = sub.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            step[j] = (max - min) / 15.0;
            low[j] = -min;
        }
        let dq = f16::from_f32(step.iter().copied().fold(0.0, f32::max) / 63.0);
        let mq = f16::from_f32(low.iter().copied().fold(0.0, f32::max) / 63.0);
        let (d, dmin) = (dq.to_f32(), mq.to_f32());
        let six = |v: f32, f: f32| {
            if f > 0.0 {
                (v / f).round().clamp(0.0, 63.0) as u8
            } else {
                0
            }
        };
        let sc: [u8; 8] = std::array::from_fn(|j| six(step[j], d));
        let m: [u8; 8] = std::array::from_fn(|j| six(low[j], dmin));
        out.extend_from_slice(&dq.to_le_bytes());
        out.extend_from_slice(&mq.to_le_bytes());
        let mut packed = [0u8; 12];
        for j in 0..8 {
            if j < 4 {
                packed[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
                packed[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
            } else {
                packed[j + 4] = (sc[j] & 0x0f) | ((m[j] & 0x0f) << 4);
            }
        }
        out.extend_from_slice(&packed);
        let mut qs = [0u8; 128];
        for (j, sub) in sb.chunks_exact(QK).enumerate() {
            let scale = d * f32::from(sc[j]);
            let offset = dmin * f32::from(m[j]);
            for (l, &v) in sub.iter().enumerate() {
                let q = if scale > 0.0 {
                    ((v + offset) / scale).round().clamp(0.0, 15.0) as u8
                } else {
                    0
                };
                qs[32 * (j / 2) + l] |= if j % 2 == 0 { q } else { q << 4 };
            }
        }
        out.extend_from_slice(&qs);
    }
    out
}

/// Quantizes `x` (length a multiple of 256) to Q6_K: per 16 elements an 8-bit multiple of one
/// f16 factor as the scale, 6-bit quants (a valid encoding, not ggml's best one).
pub fn quantize_q6_k(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / QK_K * Q6_K_BYTES);
    for sb in x.chunks_exact(QK_K) {
        let step: [f32; 16] = std::array::from_fn(|s| {
            sb[16 * s..16 * s + 16]
                .iter()
                .fold(0f32, |a, v| a.max(v.abs()))
                / 31.0
        });
        let dq = f16::from_f32(step.iter().copied().fold(0.0, f32::max) / 127.0);
        let d = dq.to_f32();
        let sc: [i8; 16] = std::array::from_fn(|s| {
            if d > 0.0 {
                (step[s] / d).round().clamp(-128.0, 127.0) as i8
            } else {
                0
            }
        });
        let mut q = [0u8; QK_K];
        for (e, &v) in sb.iter().enumerate() {
            let scale = d * f32::from(sc[e / 16]);
            let signed = if scale != 0.0 {
                (v / scale).round().clamp(-32.0, 31.0) as i8
            } else {
                0
            };
            q[e] = (signed + 32) as u8;
        }
        let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
        for half in 0..2 {
            for l in 0..32 {
                for k in 0..4 {
                    let v = q[128 * half + 32 * k + l];
                    let at = 64 * half + l + 32 * (k % 2);
                    ql[at] |= if k < 2 { v & 0x0f } else { (v & 0x0f) << 4 };
                    qh[32 * half + l] |= (v >> 4) << (2 * k);
                }
            }
        }
        out.extend_from_slice(&ql);
        out.extend_from_slice(&qh);
        out.extend(sc.iter().map(|&s| s as u8));
        out.extend_from_slice(&dq.to_le_bytes());
    }
    out
}

pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Q4_0 blocks (`d`, 16 bytes of quants: `d·(q − 8)`) as Q4_1 blocks (`d`, `m = −8·d`, the same
/// quants: `d·q + m`). `−8·d` is exact in f16 (a power of two) unless it overflows, which is refused.
fn q4_0_as_q4_1(name: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
    const Q4_0_BYTES: usize = 18;
    if !data.len().is_multiple_of(Q4_0_BYTES) {
        return Err(Error::BadModel(format!(
            "tensor {name}: {} bytes are not whole Q4_0 blocks",
            data.len()
        )));
    }
    let mut out = Vec::with_capacity(data.len() / Q4_0_BYTES * Q4_1_BYTES);
    for block in data.chunks_exact(Q4_0_BYTES) {
        let d = f16::from_le_bytes([block[0], block[1]]);
        let m = f16::from_f32(-8.0 * d.to_f32());
        if !m.is_finite() || f32::from(m) != -8.0 * d.to_f32() {
            return Err(Error::BadModel(format!(
                "tensor {name}: a Q4_0 scale ({d}) out of range"
            )));
        }
        out.extend_from_slice(&block[..2]);
        out.extend_from_slice(&m.to_le_bytes());
        out.extend_from_slice(&block[2..]);
    }
    Ok(out)
}

/// Quantizes `x` (length a multiple of 32) to Q4_0 the way ggml's reference quantizer does.
pub fn quantize_q4_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / QK * 18);
    for block in x.chunks_exact(QK) {
        // The value of largest magnitude, with its sign, maps to -8.
        let max = block
            .iter()
            .copied()
            .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        let q = |v: f32| (v * id + 8.5).clamp(0.0, 15.0) as u8;
        for i in 0..16 {
            out.push(q(block[i]) | (q(block[i + 16]) << 4));
        }
    }
    out
}

/// Quantizes `x` (length a multiple of 32) to Q4_1 the way ggml's reference quantizer does.
pub fn quantize_q4_1(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / QK * Q4_1_BYTES);
    for block in x.chunks_exact(QK) {
        let min = block.iter().copied().fold(f32::INFINITY, f32::min);
        let max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
        let q = |v: f32| ((v - min) * id + 0.5).clamp(0.0, 15.0) as u8;
        for i in 0..16 {
            out.push(q(block[i]) | (q(block[i + 16]) << 4));
        }
    }
    out
}

/// Quantizes `x` (length a multiple of 32) to Q8_0.
pub fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / QK * Q8_0_BYTES);
    for block in x.chunks_exact(QK) {
        let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|v| (v * id).round_ties_even() as i8 as u8));
    }
    out
}

/// Tokens interleaved together in [`QActs`].
pub const QUAD: usize = 4;

/// Activations of `n` tokens, each of `cols` elements, quantized per 32-element block, tokens
/// interleaved by fours ([`QUAD`]) so that a kernel reads four tokens' quants from one place: for each
/// quad of tokens and each block, 128 bytes, the 4-byte slice `c` (of 8) of the four tokens side by
/// side at `16c`; the quad's scales (and sums) of a block are four consecutive floats. A last quad that
/// is not full is padded (with values no kernel reads).
#[derive(Debug, Clone, Default)]
pub struct QActs {
    pub n: usize,
    pub cols: usize,
    pub qs: Vec<i8>,
    /// Per token and block: the scale (rounded through f16).
    pub d: Vec<f32>,
    /// Per token and block: `d * Σq` rounded through f16 (Q8_1 only; zero for Q8_0).
    pub s: Vec<f32>,
    /// Per token and block: the sum of the stored quants, exactly (the wide kernels' signed
    /// weights are offset by 128, and this takes the offset's share back).
    pub qsum: Vec<i32>,
    /// The quants again, a token's `cols` after another's, for the tile kernels (filled only when
    /// they run: [`crate::kernels::tile_rows`]); then every field covers `n` rounded up to 16 tokens.
    pub rows: Vec<i8>,
    /// With `rows`: the scales (and sums) again, per 16 tokens and block, the 16 tokens' side by
    /// side.
    pub tile_d: Vec<f32>,
    pub tile_s: Vec<f32>,
}

impl QActs {
    /// Quantizes `x` (`n` rows of `cols`) for a matmul with weights of type `ty`.
    pub fn quantize(&mut self, x: &[f32], cols: usize, ty: WeightType) {
        debug_assert!(cols.is_multiple_of(QK) && x.len().is_multiple_of(cols));
        self.n = x.len() / cols;
        self.cols = cols;
        let nb = cols / QK;
        let tiles = crate::kernels::tile_rows(self.n);
        let quads = match tiles {
            true => self.n.div_ceil(16) * 4,
            false => self.n.div_ceil(QUAD),
        };
        // Every real token's entries are written below; a padding token's are never read (or,
        // by the tile kernels, only into results that are dropped), so a reused buffer is not
        // cleared.
        self.qs.resize(quads * QUAD * cols, 0);
        self.d.resize(quads * QUAD * nb, 0.0);
        self.s.resize(quads * QUAD * nb, 0.0);
        self.qsum.resize(quads * QUAD * nb, 0);
        self.rows
            .resize(if tiles { quads * QUAD * cols } else { 0 }, 0);
        let sums = ty.needs_sums();
        let quad_rows = QUAD * cols;
        // Without tile kernels, `rows` is empty and empty slices stand in for its chunks.
        let rows: Vec<&mut [i8]> = match tiles {
            true => self.rows.chunks_mut(quad_rows).collect(),
            false => (0..quads).map(|_| Default::default()).collect(),
        };
        if tiles {
            self.tile_d.resize(quads * QUAD * nb, 0.0);
            self.tile_s.resize(quads * QUAD * nb, 0.0);
        }
        if self.n < 8 {
            for (((((x, qs), d), s), qsum), rows) in x
                .chunks(quad_rows)
                .zip(self.qs.chunks_mut(quad_rows))
                .zip(self.d.chunks_mut(QUAD * nb))
                .zip(self.s.chunks_mut(QUAD * nb))
                .zip(self.qsum.chunks_mut(QUAD * nb))
                .zip(rows)
            {
                quantize_quad(x, cols, [qs, rows], [d, s], qsum, sums);
            }
            if tiles {
                self.tile_layout();
            }
            return;
        }
        // Many tokens: quads in parallel on the current pool (each block is independent).
        use rayon::prelude::*;
        x.par_chunks(quad_rows)
            .zip(self.qs.par_chunks_mut(quad_rows))
            .zip(self.d.par_chunks_mut(QUAD * nb))
            .zip(self.s.par_chunks_mut(QUAD * nb))
            .zip(self.qsum.par_chunks_mut(QUAD * nb))
            .zip(rows)
            .with_min_len(quads.div_ceil(rayon::current_num_threads() * 2))
            .for_each(|(((((x, qs), d), s), qsum), rows)| {
                quantize_quad(x, cols, [qs, rows], [d, s], qsum, sums)
            });
        if tiles {
            self.tile_layout();
        }
    }

    /// Copies the scales and sums into `tile_d` and `tile_s` (16 tokens side by side per block):
    /// each block's quad of four tokens at a time.
    fn tile_layout(&mut self) {
        let nb = self.blocks_per_row();
        let quads = self.n.div_ceil(QUAD);
        for (from, to) in [(&self.d, &mut self.tile_d), (&self.s, &mut self.tile_s)] {
            for (quad, from) in from.chunks_exact(QUAD * nb).take(quads).enumerate() {
                let (group, within) = (quad / 4, quad % 4);
                let to = &mut to[group * nb * 16..(group + 1) * nb * 16];
                for (from, to) in from.chunks_exact(QUAD).zip(to.chunks_exact_mut(16)) {
                    to[within * QUAD..(within + 1) * QUAD].copy_from_slice(from);
                }
            }
        }
    }

    pub(crate) fn blocks_per_row(&self) -> usize {
        self.cols / QK
    }

    /// Token `t`'s 32 quants of block `b`, its scale and its sum.
    pub(crate) fn token_block(&self, t: usize, b: usize) -> ([i8; QK], f32, f32) {
        let nb = self.blocks_per_row();
        let at = (t / QUAD * nb + b) * QUAD;
        let lane = t % QUAD;
        let bytes = &self.qs[at * QK..][..QUAD * QK];
        let q = std::array::from_fn(|i| bytes[i / 4 * 16 + lane * 4 + i % 4]);
        (q, self.d[at + lane], self.s[at + lane])
    }
}

/// Quantizes up to four rows (`x`, rows of `cols`) into one quad's interleaved quants (`qs`), and
/// into `rows` one after another (when it is not empty); their scales `d`, sums `s` and integer
/// sums `qsum`.
fn quantize_quad(
    x: &[f32],
    cols: usize,
    [qs, rows]: [&mut [i8]; 2],
    [d, s]: [&mut [f32]; 2],
    qsum: &mut [i32],
    sums: bool,
) {
    // A run of blocks of every row at a time, on the stack (no allocation per call).
    const RUN: usize = 16;
    let nb = cols / QK;
    let lanes = x.len() / cols;
    let mut run_q = [[0i8; RUN * QK]; QUAD];
    let (mut run_d, mut run_s, mut run_sum) = (
        [[0f32; RUN]; QUAD],
        [[0f32; RUN]; QUAD],
        [[0i32; RUN]; QUAD],
    );
    for b0 in (0..nb).step_by(RUN) {
        let len = RUN.min(nb - b0);
        for (lane, row) in x.chunks_exact(cols).enumerate() {
            let q = &mut run_q[lane][..len * QK];
            quantize_blocks(
                &row[b0 * QK..(b0 + len) * QK],
                q,
                &mut run_d[lane][..len],
                &mut run_s[lane][..len],
                &mut run_sum[lane][..len],
                sums,
            );
            if !rows.is_empty() {
                rows[lane * cols + b0 * QK..][..len * QK].copy_from_slice(q);
            }
        }
        for i in 0..len {
            let b = b0 + i;
            let dst = &mut qs[b * QUAD * QK..][..QUAD * QK];
            // The rows' 4-byte slices side by side.
            for lane in 0..lanes {
                for c in 0..QK / 4 {
                    dst[c * 16 + lane * 4..][..4]
                        .copy_from_slice(&run_q[lane][i * QK + c * 4..][..4]);
                }
            }
            for lane in 0..lanes {
                d[b * QUAD + lane] = run_d[lane][i];
                s[b * QUAD + lane] = run_s[lane][i];
                qsum[b * QUAD + lane] = run_sum[lane][i];
            }
        }
    }
}

/// Per 32-element block: scale `d = max|x| / 127`, quants `round(x · 127 / max|x|)` (ties to even),
/// `qsum = Σq`, and with `sums`, `s = d · Σq` (with the sum of the rounded values before their cut
/// to a byte, which is `Σq` in a finite block); `d` and `s` rounded through f16 as llama.cpp
/// stores them. With AVX-512, sixteen blocks at a time ([`crate::kernels::quantize_run`]).
fn quantize_blocks(
    x: &[f32],
    qs: &mut [i8],
    d: &mut [f32],
    s: &mut [f32],
    qsum: &mut [i32],
    sums: bool,
) {
    if !crate::kernels::quantize_run(x, qs, [&mut *d, &mut *s], qsum, sums) {
        quantize_blocks_portable(x, qs, d, s, qsum, sums);
    }
}

crate::kernels::multiversion! {
    /// [`quantize_blocks`], a block at a time.
    fn quantize_blocks_portable(
        x: &[f32],
        qs: &mut [i8],
        d: &mut [f32],
        s: &mut [f32],
        qsum: &mut [i32],
        sums: bool,
    ) {
        for (b, (block, q)) in x.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)).enumerate() {
            let block: &[f32; QK] = block.try_into().expect("a block of 32");
            let q: &mut [i8; QK] = q.try_into().expect("a block of 32");
            let (scale, sum) = quantize32(block, q);
            d[b] = f16::from_f32(scale).to_f32();
            // The stored quants' own sum: `sum` adds the values before they are cut to a byte,
            // which differ from them where the block holds a NaN or an infinity (and `s` keeps
            // `sum`, as it always has).
            qsum[b] = q.iter().map(|&v| i32::from(v)).sum();
            s[b] = if sums { f16::from_f32(scale * sum as f32).to_f32() } else { 0.0 };
        }
    }
}

/// One block's quants `q = round(x · 127 / max|x|)` (ties to even); returns the scale
/// `max|x| / 127` and the sum of the rounded values before their cut to a byte (`Σq` in a finite
/// block).
#[inline(always)]
fn quantize32(block: &[f32; QK], q: &mut [i8; QK]) -> (f32, i32) {
    // The largest magnitude, over eight lanes then across them (the same value as a
    // sequential scan: a maximum does not depend on the order).
    let mut lanes = [0f32; 8];
    for chunk in block.chunks_exact(8) {
        for (m, v) in lanes.iter_mut().zip(chunk) {
            let a = v.abs();
            *m = if a > *m { a } else { *m };
        }
    }
    let amax = lanes.iter().fold(0f32, |m, &a| if a > m { a } else { m });
    let scale = amax / 127.0;
    let inv = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    // |v · inv| ≤ 127: adding 1.5 · 2^23 leaves the value rounded to an integer (ties to
    // even) in the low mantissa bits, which vectorizes where a float-to-int cast does not.
    const MAGIC: f32 = 12_582_912.0;
    const MAGIC_BITS: i32 = 0x4b40_0000;
    let mut sum = 0i32;
    for (q, v) in q.iter_mut().zip(block) {
        let r = ((v * inv + MAGIC).to_bits() as i32).wrapping_sub(MAGIC_BITS);
        *q = r as i8;
        sum = sum.wrapping_add(r);
    }
    (scale, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        crate::testing::random_f32(n, seed)
    }

    #[test]
    fn every_layout_holds_each_tokens_quants_and_scales_where_the_kernels_read_them() {
        // A partial quad; one and two tokens past a tile (the tile layouts where the CPU has
        // AMX); three blocks a row.
        let cols = 3 * QK;
        for n in [5, 17, 18] {
            let x = data(n * cols, 11);
            for ty in [WeightType::Q4_1, WeightType::Q8_0] {
                let mut acts = QActs::default();
                acts.quantize(&x, cols, ty);
                let nb = cols / QK;
                for t in 0..n {
                    for b in 0..nb {
                        let block: &[f32; QK] = x[t * cols + b * QK..][..QK].try_into().unwrap();
                        let mut q = [0i8; QK];
                        let (scale, sum) = quantize32(block, &mut q);
                        let d = f16::from_f32(scale).to_f32();
                        let s = match ty.needs_sums() {
                            true => f16::from_f32(scale * sum as f32).to_f32(),
                            false => 0.0,
                        };
                        assert_eq!(acts.token_block(t, b), (q, d, s), "n {n} t {t} b {b}");
                        let qsum: i32 = q.iter().map(|&v| i32::from(v)).sum();
                        assert_eq!(acts.qsum[(t / QUAD * nb + b) * QUAD + t % QUAD], qsum);
                        if !acts.rows.is_empty() {
                            assert_eq!(acts.rows[t * cols + b * QK..][..QK], q);
                            let at = (t / 16 * nb + b) * 16 + t % 16;
                            assert_eq!((acts.tile_d[at], acts.tile_s[at]), (d, s));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn simd_and_portable_block_quantizers_agree_bit_for_bit() {
        let mut blocks: Vec<[f32; QK]> = data(QK * 200, 9)
            .as_chunks::<QK>()
            .0
            .iter()
            .map(|b| b.map(|v| v * 40.0))
            .collect();
        // Zeros of both signs, ties at the rounding boundary, infinities and NaNs, scales that
        // round to an f16 subnormal or overflow it.
        let specials = [
            0.0,
            -0.0,
            0.5,
            -1.5,
            127.0,
            1e-5,
            1e7,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        for (i, &v) in specials.iter().enumerate() {
            let mut b = [0.0; QK];
            b[i] = v;
            b[31 - i] = -v;
            blocks.push(b);
            blocks.push([v; QK]);
        }
        blocks.push([0.0; QK]);
        let x: Vec<f32> = blocks.iter().flatten().copied().collect();
        // Runs shorter than sixteen blocks, of sixteen, and longer (a last part of 1, 8 or 13),
        // from several offsets: the specials lie in blocks 200 to 220.
        for (start, len) in [
            (0, blocks.len()),
            (3, 1),
            (5, 15),
            (7, 16),
            (1, 17),
            (180, 40),
        ] {
            let x = &x[start * QK..(start + len) * QK];
            let outputs = || {
                let (q, d, s) = (vec![0i8; len * QK], vec![0f32; len], vec![0f32; len]);
                (q, d, s, vec![0i32; len])
            };
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            for sums in [false, true] {
                let (mut q, mut d, mut s, mut qsum) = outputs();
                if !crate::kernels::quantize_run(x, &mut q, [&mut d, &mut s], &mut qsum, sums) {
                    eprintln!("AVX-512 not available: only the portable quantizer runs");
                    return;
                }
                let (mut pq, mut pd, mut ps, mut pqsum) = outputs();
                quantize_blocks_portable(x, &mut pq, &mut pd, &mut ps, &mut pqsum, sums);
                assert_eq!(
                    (q, bits(&d), bits(&s), qsum),
                    (pq, bits(&pd), bits(&ps), pqsum),
                    "blocks {start}.. ({len}), sums {sums}"
                );
            }
        }
    }

    #[test]
    fn q4_0_loads_as_q4_1_with_every_weight_exactly_its_value() {
        let (rows, cols) = (24, 96);
        let x = data(rows * cols, 5);
        let bytes = quantize_q4_0(&x);
        let m = QMatrix::from_gguf(
            "w",
            GgmlType::Q4_0,
            &[cols as u64, rows as u64],
            bytes.clone(),
        )
        .unwrap();
        assert_eq!(m.ty, WeightType::Q4_1);
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            m.dequantize_row(r, &mut row);
            for (b, chunk) in row.chunks_exact(QK).enumerate() {
                let block = &bytes[(r * cols / QK + b) * 18..][..18];
                let d = f16_at(block, 0);
                for (i, &got) in chunk.iter().enumerate() {
                    let byte = block[2 + i % 16];
                    let q = if i < 16 { byte & 0x0f } else { byte >> 4 };
                    assert_eq!(
                        got,
                        d * (f32::from(q) - 8.0),
                        "row {r} block {b} element {i}"
                    );
                }
                // And close to the floats quantized: within a step (the top of the range, +8·d,
                // is clamped to +7·d).
                for (i, &got) in chunk.iter().enumerate() {
                    assert!((got - x[r * cols + b * QK + i]).abs() <= d.abs() * 1.01 + 1e-6);
                }
            }
        }
        // A block of the wrong size is refused.
        assert!(QMatrix::from_gguf("w", GgmlType::Q4_0, &[32, 1], vec![0; 17]).is_err());
    }

    #[test]
    fn q4_1_round_trip_is_within_half_a_step() {
        let x = data(256, 7);
        let m = QMatrix::new(WeightType::Q4_1, 2, 128, quantize_q4_1(&x)).unwrap();
        let mut back = vec![0f32; 128];
        for r in 0..2 {
            m.dequantize_row(r, &mut back);
            for (i, (a, b)) in x[r * 128..].iter().zip(&back).enumerate() {
                let block = &x[r * 128 + i / 32 * 32..][..32];
                let range = block.iter().copied().fold(f32::MIN, f32::max)
                    - block.iter().copied().fold(f32::MAX, f32::min);
                assert!((a - b).abs() <= range / 15.0 * 0.51 + 1e-3, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn q8_0_round_trip_is_close() {
        let x = data(64, 3);
        let m = QMatrix::new(WeightType::Q8_0, 1, 64, quantize_q8_0(&x)).unwrap();
        let mut back = vec![0f32; 64];
        m.dequantize_row(0, &mut back);
        for (a, b) in x.iter().zip(&back) {
            assert!((a - b).abs() < 0.01, "{a} vs {b}");
        }
    }

    /// ggml's `dequantize_row_q4_K`, written from its definition over the file's bytes.
    fn reference_q4_k(bytes: &[u8]) -> Vec<f32> {
        let mut y = Vec::new();
        for x in bytes.chunks_exact(144) {
            let (d, min) = (f16_at(x, 0), f16_at(x, 2));
            let scales = &x[4..16];
            let mut q = &x[16..];
            let mut is = 0;
            for _ in (0..256).step_by(64) {
                let (sc, m) = q4_k_scale_min(is, scales);
                let (d1, m1) = (d * f32::from(sc), min * f32::from(m));
                let (sc, m) = q4_k_scale_min(is + 1, scales);
                let (d2, m2) = (d * f32::from(sc), min * f32::from(m));
                y.extend((0..32).map(|l| d1 * f32::from(q[l] & 0xf) - m1));
                y.extend((0..32).map(|l| d2 * f32::from(q[l] >> 4) - m2));
                q = &q[32..];
                is += 2;
            }
        }
        y
    }

    /// ggml's `dequantize_row_q6_K`, written from its definition over the file's bytes.
    fn reference_q6_k(bytes: &[u8]) -> Vec<f32> {
        let mut y = vec![0f32; bytes.len() / 210 * 256];
        for (i, x) in bytes.chunks_exact(210).enumerate() {
            let d = f16_at(x, 208);
            let (mut ql, mut qh, mut sc) = (&x[..128], &x[128..192], &x[192..208]);
            let out = &mut y[i * 256..];
            for n in (0..256).step_by(128) {
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i8 - 32;
                    let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                    let s = |k: usize| d * f32::from(sc[is + k] as i8);
                    out[n + l] = s(0) * f32::from(q1);
                    out[n + l + 32] = s(2) * f32::from(q2);
                    out[n + l + 64] = s(4) * f32::from(q3);
                    out[n + l + 96] = s(6) * f32::from(q4);
                }
                ql = &ql[64..];
                qh = &qh[32..];
                sc = &sc[8..];
            }
        }
        y
    }

    /// K-quants load with every weight exactly the value ggml's reference gives it (the same
    /// float, for Q4_K up to how `d·q − m` rounds: ours is `d·q + (−m)`, exact here), and our
    /// quantizers' encodings are close to what they encode.
    #[test]
    fn k_quants_load_with_every_weight_its_value() {
        let (rows, cols) = (11, 512);
        let x: Vec<f32> = data(rows * cols, 9)
            .iter()
            .map(|v| v * 0.7 + 0.05)
            .collect();
        for (ty, bytes, reference) in [
            (
                GgmlType::Q4_K,
                quantize_q4_k(&x),
                reference_q4_k as fn(&[u8]) -> Vec<f32>,
            ),
            (GgmlType::Q6_K, quantize_q6_k(&x), reference_q6_k),
        ] {
            let expected = reference(&bytes);
            let m =
                QMatrix::from_gguf("w", ty, &[cols as u64, rows as u64], bytes.clone()).unwrap();
            let mut row = vec![0f32; cols];
            for r in 0..rows {
                m.dequantize_row(r, &mut row);
                for (c, (&got, &want)) in row.iter().zip(&expected[r * cols..]).enumerate() {
                    assert_eq!(got, want, "{ty:?} row {r} column {c}");
                }
                for (c, (&got, &orig)) in row.iter().zip(&x[r * cols..]).enumerate() {
                    let tol = if ty == GgmlType::Q4_K { 0.08 } else { 0.03 };
                    assert!(
                        (got - orig).abs() < tol,
                        "{ty:?} r{r} c{c}: {got} for {orig}"
                    );
                }
            }
            // Whole super-blocks only.
            assert!(QMatrix::from_gguf("w", ty, &[256, 1], bytes[..100].to_vec()).is_err());
            assert!(
                QMatrix::from_gguf("w", ty, &[128, 2], bytes[..bytes.len() / rows].to_vec())
                    .is_err()
            );
        }
    }

    /// Q5_0 loads as Q8_0 with every weight exactly ggml's value for it (`dequantize_row_q5_0`,
    /// written from its definition over the file's bytes).
    #[test]
    fn q5_0_loads_as_q8_0_with_every_weight_its_value() {
        let (rows, cols) = (9, 96);
        let x = data(rows * cols, 12);
        let bytes = quantize_q5_0(&x);
        let m = QMatrix::from_gguf(
            "w",
            GgmlType::Q5_0,
            &[cols as u64, rows as u64],
            bytes.clone(),
        )
        .unwrap();
        assert_eq!(m.ty, WeightType::Q8_0);
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            m.dequantize_row(r, &mut row);
            for (b, chunk) in row.chunks_exact(QK).enumerate() {
                let x5 = &bytes[(r * cols / QK + b) * 22..][..22];
                let d = f16_at(x5, 0);
                let qh = u32::from_le_bytes([x5[2], x5[3], x5[4], x5[5]]);
                for j in 0..16 {
                    let xh_0 = ((qh >> j) << 4) & 0x10;
                    let xh_1 = (qh >> (j + 12)) & 0x10;
                    let x0 = ((u32::from(x5[6 + j]) & 0x0f) | xh_0) as i32 - 16;
                    let x1 = ((u32::from(x5[6 + j]) >> 4) | xh_1) as i32 - 16;
                    assert_eq!(chunk[j], x0 as f32 * d, "r{r} b{b} j{j}");
                    assert_eq!(chunk[j + 16], x1 as f32 * d, "r{r} b{b} j{}", j + 16);
                }
                for (i, &got) in chunk.iter().enumerate() {
                    // Within a step (the far end of the range is clamped, as in Q4_0).
                    assert!((got - x[r * cols + b * QK + i]).abs() <= d.abs() * 1.01 + 1e-6);
                }
            }
        }
    }

    #[test]
    fn a_scale_that_is_not_a_number_is_refused() {
        let x = data(256, 4);
        for (ty, mut bytes, at) in [
            (GgmlType::Q4_1, quantize_q4_1(&x[..64]), 20),
            (GgmlType::Q8_0, quantize_q8_0(&x[..64]), 34),
            (GgmlType::Q4_K, quantize_q4_k(&x), 2),
            (GgmlType::Q6_K, quantize_q6_k(&x), 208),
        ] {
            let cols = if at < 20 || at == 208 { 256 } else { 64 };
            bytes[at..at + 2].copy_from_slice(&f16::NAN.to_le_bytes());
            assert!(
                QMatrix::from_gguf("w", ty, &[cols, 1], bytes.clone()).is_err(),
                "{ty:?}"
            );
            bytes[at..at + 2].copy_from_slice(&f16::INFINITY.to_le_bytes());
            assert!(
                QMatrix::from_gguf("w", ty, &[cols, 1], bytes).is_err(),
                "{ty:?}"
            );
        }
    }

    #[test]
    fn a_matrix_of_the_wrong_size_is_refused() {
        assert!(QMatrix::new(WeightType::Q4_1, 2, 64, vec![0; 79]).is_err());
        assert!(QMatrix::new(WeightType::Q4_1, 2, 63, vec![0; 80]).is_err());
    }
}
