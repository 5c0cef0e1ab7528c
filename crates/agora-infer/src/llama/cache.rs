//! The KV cache: keys transposed per layer (a row of positions per key dimension), values a
//! position per row.

use super::*;

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
        };
        let Some(kv_dim) = self.v.first().and_then(|v| v.len().checked_div(self.len)) else {
            return out;
        };
        if len == 0 {
            return out;
        }
        out.reserve(len, kv_dim);
        for (dst, src) in out.k.iter_mut().zip(&self.k) {
            for (d, s) in dst
                .chunks_exact_mut(out.cap)
                .zip(src.chunks_exact(self.cap))
            {
                d[..len].copy_from_slice(&s[..len]);
            }
        }
        for (dst, src) in out.v.iter_mut().zip(&self.v) {
            dst.extend_from_slice(&src[..len * kv_dim]);
        }
        out.len = len;
        out
    }

    /// Bytes held by the cache.
    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|l| l.capacity() * 4).sum()
    }

    /// Makes room for `positions` keys per row, keeping what is there (capacity doubles).
    pub(super) fn reserve(&mut self, positions: usize, kv_dim: usize) {
        if positions > self.cap {
            self.grow(positions.max(self.cap * 2).max(64), kv_dim);
        }
    }

    /// Makes room for exactly `positions` keys per row (rounded up to a block).
    pub(super) fn reserve_exact(&mut self, positions: usize, kv_dim: usize) {
        if positions > self.cap {
            self.grow(positions, kv_dim);
        }
    }

    fn grow(&mut self, positions: usize, kv_dim: usize) {
        // A whole number of score blocks, so a block that starts inside the span can be read whole.
        let cap = positions.next_multiple_of(SCORE_BLOCK);
        for layer in self.k.iter_mut() {
            let mut grown = vec![0f32; kv_dim * cap];
            for r in 0..kv_dim {
                grown[r * cap..r * cap + self.len]
                    .copy_from_slice(&layer[r * self.cap..r * self.cap + self.len]);
            }
            *layer = grown;
        }
        for layer in self.v.iter_mut() {
            layer.reserve_exact((cap * kv_dim).saturating_sub(layer.len()));
        }
        self.cap = cap;
    }

    /// Writes the keys of `n` new tokens (rows of `kv_dim`) at positions `len..len+n` of layer `li`.
    pub(super) fn put_keys(&mut self, li: usize, keys: &[f32], kv_dim: usize) {
        let cap = self.cap;
        let layer = &mut self.k[li];
        for (t, row) in keys.chunks_exact(kv_dim).enumerate() {
            for (r, &x) in row.iter().enumerate() {
                layer[r * cap + self.len + t] = x;
            }
        }
    }
}
