use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

/// The node's Prometheus metrics; cheap to clone (shared atomics).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Height of the latest committed block.
    pub height: Gauge,
    /// Blocks committed by this process.
    pub blocks_committed: Counter,
    /// Transactions committed by this process.
    pub txs_committed: Counter,
    /// Transactions accepted into the mempool.
    pub txs_accepted: Counter,
    /// Transactions refused at admission.
    pub txs_rejected: Counter,
    /// Transactions waiting in the mempool.
    pub mempool_size: Gauge,
}

impl Metrics {
    /// A registry exposing these metrics under the `agora_` prefix.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("agora");
        r.register(
            "height",
            "Height of the latest committed block",
            self.height.clone(),
        );
        r.register(
            "blocks_committed",
            "Blocks committed by this process",
            self.blocks_committed.clone(),
        );
        r.register(
            "txs_committed",
            "Transactions committed by this process",
            self.txs_committed.clone(),
        );
        r.register(
            "txs_accepted",
            "Transactions accepted into the mempool",
            self.txs_accepted.clone(),
        );
        r.register(
            "txs_rejected",
            "Transactions refused at admission",
            self.txs_rejected.clone(),
        );
        r.register(
            "mempool_size",
            "Transactions waiting in the mempool",
            self.mempool_size.clone(),
        );
        r
    }
}
