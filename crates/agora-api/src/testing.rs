//! Test support (feature `test-support`): a node with its HTTP API on 127.0.0.1, in a temporary
//! folder, that makes a block when told. The API, market and benchmark tests share it.

use agora_chain::{Node, NodeConfig};
use agora_state::Genesis;
use agora_types::Keypair;
use std::cell::Cell;
use std::sync::Arc;

/// A node serving its API on a free port of 127.0.0.1, until dropped.
#[derive(Debug)]
pub struct TestNode {
    /// The API's base URL (`http://127.0.0.1:…`).
    pub base: String,
    /// The node.
    pub node: Arc<Node>,
    /// The runtime the API runs on (tests may spawn other servers on it).
    pub rt: tokio::runtime::Runtime,
    /// Where the node keeps its files.
    pub dir: tempfile::TempDir,
    height: Cell<u64>,
}

impl TestNode {
    /// A node of `genesis` whose block producer is the key of `validator` (a seed label),
    /// serving its API.
    ///
    /// # Panics
    /// If the node or its server cannot start (a test cannot go on).
    pub fn start(genesis: &Genesis, validator: &str) -> TestNode {
        Self::start_with_pages(genesis, validator, |_| axum::Router::new())
    }

    /// [`TestNode::start`], serving `pages(node)` beside the API (the web app's routes).
    ///
    /// # Panics
    /// If the node or its server cannot start (a test cannot go on).
    #[allow(clippy::unwrap_used)]
    pub fn start_with_pages(
        genesis: &Genesis,
        validator: &str,
        pages: impl FnOnce(Arc<Node>) -> axum::Router,
    ) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(
            Node::open(
                &dir.path().join("db.redb"),
                genesis,
                Keypair::from_seed_label(validator),
                NodeConfig::default(),
            )
            .unwrap(),
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let pages = pages(node.clone());
        rt.spawn(crate::serve_with_pages(
            node.clone(),
            listener,
            pages,
            std::future::pending(),
        ));
        TestNode {
            base,
            node,
            rt,
            dir,
            height: Cell::new(0),
        }
    }

    /// Makes the next block (its time: a second per height).
    ///
    /// # Panics
    /// If the node cannot make it.
    #[allow(clippy::unwrap_used)]
    pub fn block(&self) {
        let h = self.height.get() + 1;
        self.height.set(h);
        self.node.produce_block(h * 1_000).unwrap();
    }
}
