//! Reassembly of streamed proposals: parts arrive in any order, from any relay, and are put back
//! in sequence per (publisher, stream). Memory is bounded: a stream that grows past the limit is
//! dropped, and so is the oldest stream when too many are open.

use crate::context::{Height, ProposalPart};
use malachitebft_app::types::{
    PeerId,
    streaming::{StreamId, StreamMessage},
};
use malachitebft_app_channel::app::streaming::StreamContent;
use std::collections::BTreeMap;

/// Streams kept open at once.
const MAX_STREAMS: usize = 64;

/// A complete proposal: its parts in order (Init first, Fin last).
#[derive(Debug, Clone)]
pub(crate) struct Assembled {
    pub(crate) parts: Vec<ProposalPart>,
}

impl Assembled {
    /// The height and round the first part names.
    pub(crate) fn height(&self) -> Option<Height> {
        match self.parts.first() {
            Some(ProposalPart::Init { height, .. }) => Some(*height),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Stream {
    parts: BTreeMap<u64, ProposalPart>,
    /// Sequence number of the end-of-stream message, once seen.
    fin: Option<u64>,
    bytes: usize,
    /// Arrival order, for evicting the oldest stream.
    opened: u64,
}

/// Open streams.
#[derive(Default)]
pub(crate) struct Streams {
    open: BTreeMap<(PeerId, StreamId), Stream>,
    counter: u64,
    max_bytes: usize,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Streams({} open)", self.open.len())
    }
}

impl Streams {
    /// Streams of at most `max_bytes` of block data each.
    pub(crate) fn new(max_bytes: usize) -> Self {
        Streams {
            max_bytes,
            ..Default::default()
        }
    }

    /// Adds a message; returns the proposal when its stream is complete.
    pub(crate) fn insert(
        &mut self,
        publisher: PeerId,
        msg: StreamMessage<ProposalPart>,
    ) -> Option<Assembled> {
        let key = (publisher, msg.stream_id.clone());
        if !self.open.contains_key(&key) && self.open.len() >= MAX_STREAMS {
            let oldest = self
                .open
                .iter()
                .min_by_key(|(_, s)| s.opened)
                .map(|(k, _)| k.clone())?;
            self.open.remove(&oldest);
        }
        self.counter += 1;
        let opened = self.counter;
        let stream = self.open.entry(key.clone()).or_insert_with(|| Stream {
            opened,
            ..Default::default()
        });
        match msg.content {
            StreamContent::Data(part) => {
                stream.bytes += match &part {
                    ProposalPart::Data(d) => d.len(),
                    _ => 64,
                };
                stream.parts.insert(msg.sequence, part);
            }
            StreamContent::Fin => stream.fin = Some(msg.sequence),
        }
        if stream.bytes > self.max_bytes {
            self.open.remove(&key);
            return None;
        }
        let fin = stream.fin?;
        // Complete when every sequence number before the end is here.
        if stream.parts.len() as u64 != fin
            || stream.parts.keys().next_back() != fin.checked_sub(1).as_ref()
        {
            return None;
        }
        let stream = self.open.remove(&key)?;
        Some(Assembled {
            parts: stream.parts.into_values().collect(),
        })
    }
}
