//! The KV cache, in f16 (IEEE binary16, as bits: [`crate::fmath::narrow`] rounds to nearest, ties
//! to even, the same bits on every machine), so attention reads half the bytes. Each layer holds,
//! for each key/value head, its keys and then its values, contiguous, so a head's attention reads
//! one stretch of memory:
//! - keys in blocks of [`SCORE_BLOCK`] positions, each block the head's `head_dim` rows of those
//!   positions' keys: the scores of a block of positions read a block of keys;
//! - values a position per row of `head_dim`.

use super::*;
use crate::fmath::narrow;

impl KvCache {
    /// Number of positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A copy of the first `len` positions (at most all of them), to reuse a common prefix in
    /// another sequence.
    pub fn prefix(&self, len: usize) -> KvCache {
        let len = len.min(self.len);
        let mut out = KvCache {
            k: vec![Vec::new(); self.k.len()],
            v: vec![Vec::new(); self.v.len()],
            len: 0,
            cap: 0,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
        };
        if len == 0 {
            return out;
        }
        out.grow(len);
        out.copy_from(self, len);
        out.len = len;
        out
    }

    /// Bytes held by the cache.
    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|l| l.capacity() * 2).sum()
    }

    /// Makes room for `positions` positions, keeping what is there (capacity doubles).
    pub(super) fn reserve(&mut self, positions: usize) {
        if positions > self.cap {
            self.grow(positions.max(self.cap * 2).max(64));
        }
    }

    /// Makes room for exactly `positions` positions (rounded up to a block).
    pub(super) fn reserve_exact(&mut self, positions: usize) {
        if positions > self.cap {
            self.grow(positions);
        }
    }

    fn grow(&mut self, positions: usize) {
        // A whole number of score blocks, so a block that starts inside the span can be read whole.
        let cap = positions.next_multiple_of(SCORE_BLOCK);
        let size = self.kv_heads * self.head_dim * cap;
        let (old_cap, len) = (self.cap, self.len);
        let (heads, hd) = (self.kv_heads, self.head_dim);
        // Layer by layer, so that the old and the new layout coexist for one layer at a time.
        for (keys, layers) in [(true, &mut self.k), (false, &mut self.v)] {
            for layer in layers.iter_mut() {
                let old = std::mem::replace(layer, vec![0; size]);
                copy_layer(keys, layer, cap, &old, old_cap, len, heads, hd);
            }
        }
        self.cap = cap;
    }

    /// Copies `from`'s first `len` positions into this cache's (which has room for them).
    fn copy_from(&mut self, from: &KvCache, len: usize) {
        let (cap, heads, hd) = (self.cap, self.kv_heads, self.head_dim);
        for (dst, src) in self.k.iter_mut().zip(&from.k) {
            copy_layer(true, dst, cap, src, from.cap, len, heads, hd);
        }
        for (dst, src) in self.v.iter_mut().zip(&from.v) {
            copy_layer(false, dst, cap, src, from.cap, len, heads, hd);
        }
    }

    /// The keys and values of key/value head `head` in layer `li`, laid out as the module says:
    /// `cap` positions each.
    pub(super) fn head(&self, li: usize, head: usize) -> (&[u16], &[u16]) {
        let n = self.head_dim * self.cap;
        (
            &self.k[li][head * n..(head + 1) * n],
            &self.v[li][head * n..(head + 1) * n],
        )
    }

    /// Writes the keys and values of new tokens (rows of `kv_heads · head_dim`) at positions
    /// `len..` of layer `li`.
    pub(super) fn put(&mut self, li: usize, keys: &[f32], values: &[f32]) {
        let (hd, cap) = (self.head_dim, self.cap);
        let kv_dim = self.kv_heads * hd;
        let (k, v) = (&mut self.k[li], &mut self.v[li]);
        let (mut k16, mut v16) = (vec![0u16; kv_dim], vec![0u16; kv_dim]);
        for (t, (krow, vrow)) in keys
            .chunks_exact(kv_dim)
            .zip(values.chunks_exact(kv_dim))
            .enumerate()
        {
            narrow_all(krow, &mut k16);
            narrow_all(vrow, &mut v16);
            let p = self.len + t;
            let (block, at) = (p / SCORE_BLOCK, p % SCORE_BLOCK);
            for (h, (kh, vh)) in k16.chunks_exact(hd).zip(v16.chunks_exact(hd)).enumerate() {
                let base = h * hd * cap;
                let kb = &mut k[base + block * SCORE_BLOCK * hd..][..SCORE_BLOCK * hd];
                for (row, &x) in kb.chunks_exact_mut(SCORE_BLOCK).zip(kh) {
                    row[at] = x;
                }
                v[base + p * hd..][..hd].copy_from_slice(vh);
            }
        }
    }
}

/// The first `len` positions of one layer's keys (`keys`) or values, `heads` heads of `hd` each,
/// from a layout of `from_cap` positions per head into one of `cap`: the head's first entries, up
/// to the end of `len`'s block of keys, or `len` rows of values. Keys past `len` in that last block
/// are zeroed (a block is read whole; those positions are never used).
#[allow(clippy::too_many_arguments)]
fn copy_layer(
    keys: bool,
    dst: &mut [u16],
    cap: usize,
    src: &[u16],
    from_cap: usize,
    len: usize,
    heads: usize,
    hd: usize,
) {
    if len == 0 {
        return;
    }
    let n = match keys {
        true => len.next_multiple_of(SCORE_BLOCK) * hd,
        false => len * hd,
    };
    for h in 0..heads {
        let d = &mut dst[h * hd * cap..][..n];
        d.copy_from_slice(&src[h * hd * from_cap..][..n]);
        if keys {
            for row in d[n - SCORE_BLOCK * hd..].chunks_exact_mut(SCORE_BLOCK) {
                row[(len - 1) % SCORE_BLOCK + 1..].fill(0);
            }
        }
    }
}

crate::kernels::multiversion! {
    /// [`narrow`] of each value (a loop that vectorizes).
    fn narrow_all(x: &[f32], out: &mut [u16]) {
        for (o, &x) in out.iter_mut().zip(x) {
            *o = narrow(x);
        }
    }
}
