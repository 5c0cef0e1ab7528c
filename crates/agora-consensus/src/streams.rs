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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::ValidatorAddress;
    use agora_types::Signature;
    use bytes::Bytes;
    use malachitebft_app::types::core::Round;

    fn msg(seq: u64, content: StreamContent<ProposalPart>) -> StreamMessage<ProposalPart> {
        StreamMessage::new(StreamId::new(Bytes::from_static(b"s1")), seq, content)
    }

    fn parts() -> Vec<StreamMessage<ProposalPart>> {
        vec![
            msg(
                0,
                StreamContent::Data(ProposalPart::Init {
                    height: Height(5),
                    round: Round::new(0),
                    proposer: ValidatorAddress::default(),
                    pol_round: Round::Nil,
                }),
            ),
            msg(1, StreamContent::Data(ProposalPart::Data(vec![1; 10]))),
            msg(2, StreamContent::Data(ProposalPart::Data(vec![2; 10]))),
            msg(
                3,
                StreamContent::Data(ProposalPart::Fin {
                    signature: Signature([0; 64]),
                }),
            ),
            msg(4, StreamContent::Fin),
        ]
    }

    #[test]
    fn parts_in_any_order_complete_once_and_oversized_streams_are_dropped() {
        let id = malachitebft_app::types::Keypair::ed25519_from_bytes([5u8; 32])
            .unwrap()
            .public()
            .to_peer_id();
        let peer = PeerId::from_bytes(&id.to_bytes()).unwrap();
        let mut streams = Streams::new(1 << 20);
        let mut shuffled = parts();
        shuffled.reverse();
        let mut done = Vec::new();
        for m in shuffled {
            if let Some(a) = streams.insert(peer, m) {
                done.push(a);
            }
        }
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].height(), Some(Height(5)));
        assert_eq!(done[0].parts.len(), 4);
        assert!(matches!(done[0].parts[2], ProposalPart::Data(ref d) if d[0] == 2));

        // A gap: never complete.
        let mut streams = Streams::new(1 << 20);
        let all = parts();
        for (i, m) in all.into_iter().enumerate() {
            if i != 2 {
                assert!(streams.insert(peer, m).is_none());
            }
        }
        // Over the byte limit: dropped.
        let mut streams = Streams::new(15);
        let mut out = None;
        for m in parts() {
            out = out.or(streams.insert(peer, m));
        }
        assert!(out.is_none());
    }
}
