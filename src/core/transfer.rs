//! Messages between two nodes: split into fragments that fit a datagram, reassembled with
//! bounded memory, and, when confirmation is asked for, acknowledged, retransmitted on a
//! timeout drawn from the measured round trip, delivered at most once and reported once.
//!
//! Pure bookkeeping: the mesh turns what this says into datagrams and timers. Messages
//! are numbered per receiver from 1 within the sender's incarnation, so the receiver
//! keeps a window of the numbers it delivered instead of a set that would grow.

use crate::core::peer_table::PeerId;
use crate::wire::app::Channel;
use crate::wire::{Ack, Fragment, MAX_MESSAGE_LEN};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

/// A message's handle, as [`crate::Mesh::send`] returns it and the events about it carry.
/// Unique within one process of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// How hard the mesh tries to deliver a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Sent once; no acknowledgement, no report. Lost if any fragment is lost.
    BestEffort,
    /// Acknowledged and retransmitted until `timeout`, then reported once: as
    /// [`crate::Event::Delivered`] or [`crate::Event::Failed`].
    Confirmed {
        /// How long to keep trying.
        timeout: Duration,
    },
}

/// Confirmed messages to one peer that may be outstanding at once: the receiver's window
/// of delivered numbers is this wide, so a number below it is certainly old.
pub const PEER_WINDOW: u64 = 1024;
/// Messages of all peers waiting to be sent or confirmed.
pub const MAX_OUTBOUND: usize = 16_384;
/// Payload bytes those messages hold (a broadcast's payload counts once).
pub const MAX_OUTBOUND_BYTES: usize = 32 << 20;
/// Messages one peer may have half-received at once; a new one drops its oldest.
pub const PARTIALS_PER_PEER: usize = 16;
/// Bytes of half-received messages of all peers; past it a new one is refused.
pub const MAX_PARTIAL_BYTES: usize = 16 << 20;
/// The shortest retransmission timeout, whatever the round trip: a node answering in a
/// few microseconds may still be busy for a millisecond with a burst of fragments.
pub const MIN_RTO: Duration = Duration::from_millis(5);
/// The longest: retransmissions of a long-lived message stay at least this frequent.
pub const MAX_RTO: Duration = Duration::from_millis(500);

/// Why a message was not accepted for sending. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Longer than [`MAX_MESSAGE_LEN`].
    TooLarge(usize),
    /// The queues are full ([`MAX_OUTBOUND`], [`MAX_OUTBOUND_BYTES`], [`PEER_WINDOW`]).
    Full,
}

/// A message on its way out.
#[derive(Debug)]
struct Outbound {
    id: MessageId,
    channel: Channel,
    payload: Rc<[u8]>,
    count: u16,
    /// Fragments the receiver said it holds (confirmed messages).
    held: Vec<u8>,
    /// `None`: best effort.
    deadline_ns: Option<u64>,
    /// Where the current round of sending is.
    cursor: u16,
    /// Rounds of sending so far; a retransmission timer of an older round is stale.
    round: u32,
    rto_ns: u64,
}

impl Outbound {
    fn holds(&self, index: u16) -> bool {
        bit(&self.held, index)
    }
}

fn bit(bits: &[u8], index: u16) -> bool {
    bits.get(usize::from(index / 8))
        .is_some_and(|b| b & (1 << (index % 8)) != 0)
}

fn set_bit(bits: &mut [u8], index: u16) {
    if let Some(b) = bits.get_mut(usize::from(index / 8)) {
        *b |= 1 << (index % 8);
    }
}

/// One fragment to encode now.
#[derive(Clone, Debug)]
pub(crate) struct NextFragment {
    pub(crate) channel: Channel,
    pub(crate) index: u16,
    pub(crate) count: u16,
    pub(crate) confirm: bool,
    /// The last of this round: the receiver acknowledges at once.
    pub(crate) ack_now: bool,
    pub(crate) payload: Rc<[u8]>,
    /// More fragments of this message are to go in this round.
    pub(crate) more: bool,
}

/// What came of a message: reported to the mesh, which reports it on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) peer: PeerId,
    pub(crate) number: u64,
    pub(crate) id: MessageId,
    pub(crate) channel: Channel,
    pub(crate) delivered: bool,
}

/// What a retransmission timer found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Retransmit {
    /// Nothing to do (the message is done, or the timer is of an older round).
    Stale,
    /// Send what the receiver does not hold again.
    Again,
    /// The deadline passed.
    Failed(Outcome),
}

/// What an acknowledgement to send says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AckReply {
    Complete,
    Held { count: u16, bits: Vec<u8> },
}

/// What a received fragment led to.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Acknowledge with this.
    pub(crate) ack: Option<AckReply>,
    /// A whole message, new: deliver it.
    pub(crate) message: Option<(Channel, Vec<u8>)>,
}

/// A message half received.
#[derive(Debug)]
struct Partial {
    number: u64,
    channel: u8,
    total_len: u32,
    count: u16,
    data: Vec<u8>,
    held: Vec<u8>,
    got: u16,
    started_ns: u64,
}

/// The numbers delivered from one sender incarnation: every number below `low`, and
/// those of the next [`PEER_WINDOW`] whose bits are set.
#[derive(Debug)]
struct DeliveredWindow {
    low: u64,
    bits: Vec<u64>,
}

impl DeliveredWindow {
    fn new() -> Self {
        DeliveredWindow {
            low: 1,
            bits: vec![0; (PEER_WINDOW / 64) as usize],
        }
    }

    fn contains(&self, n: u64) -> bool {
        if n < self.low {
            return true;
        }
        let off = n - self.low;
        off < PEER_WINDOW && self.bits[(off / 64) as usize] & (1 << (off % 64)) != 0
    }

    /// Makes room for `n`: numbers more than a window below it are taken as done (the
    /// sender never has older ones outstanding).
    fn reach(&mut self, n: u64) {
        while n >= self.low + PEER_WINDOW {
            self.shift();
        }
    }

    fn insert(&mut self, n: u64) {
        self.reach(n);
        if n < self.low {
            return;
        }
        let off = n - self.low;
        self.bits[(off / 64) as usize] |= 1 << (off % 64);
        while self.bits[0] & 1 != 0 {
            self.shift();
        }
    }

    /// Moves the window up by one number.
    fn shift(&mut self) {
        let mut carry = 0;
        for word in self.bits.iter_mut().rev() {
            let next = *word & 1;
            *word = (*word >> 1) | (carry << 63);
            carry = next;
        }
        self.low += 1;
    }
}

/// What one peer sends this node.
#[derive(Debug)]
struct Inbound {
    incarnation: u64,
    delivered: DeliveredWindow,
    partials: VecDeque<Partial>,
}

/// This node's messages with one peer.
#[derive(Debug, Default)]
struct PeerTransfers {
    next_number: u64,
    /// Numbers of confirmed messages not yet done.
    open: BTreeSet<u64>,
    inbound: Option<Inbound>,
}

/// Every message this node has on its way out or half received.
#[derive(Debug, Default)]
pub(crate) struct Transfers {
    next_id: u64,
    outbound: HashMap<(PeerId, u64), Outbound>,
    peers: HashMap<PeerId, PeerTransfers>,
    outbound_bytes: usize,
    /// How many outbound messages hold each payload (by address: a broadcast's is shared),
    /// so its bytes count once.
    payload_users: HashMap<usize, usize>,
    partial_bytes: usize,
    /// Partial messages dropped (memory bounds, age).
    pub(crate) partials_dropped: u64,
}

impl Transfers {
    /// Accepts a message for `peer` in fragments of at most `fragment_len` bytes;
    /// `deadline_ns`: confirmed until then. Returns its handle and number.
    pub(crate) fn start(
        &mut self,
        peer: PeerId,
        channel: Channel,
        payload: Rc<[u8]>,
        fragment_len: usize,
        deadline_ns: Option<u64>,
        rto_ns: u64,
    ) -> Result<(MessageId, u64), Refusal> {
        if payload.len() > MAX_MESSAGE_LEN {
            return Err(Refusal::TooLarge(payload.len()));
        }
        let address = Rc::as_ptr(&payload) as *const u8 as usize;
        let new_bytes = if self.payload_users.contains_key(&address) {
            0
        } else {
            payload.len()
        };
        if self.outbound.len() >= MAX_OUTBOUND
            || self.outbound_bytes + new_bytes > MAX_OUTBOUND_BYTES
        {
            return Err(Refusal::Full);
        }
        let count = payload.len().div_ceil(fragment_len.max(1)).max(1);
        let Ok(count) = u16::try_from(count) else {
            return Err(Refusal::TooLarge(payload.len()));
        };
        let state = self.peers.entry(peer).or_default();
        let number = state.next_number + 1;
        if deadline_ns.is_some() {
            if state
                .open
                .first()
                .is_some_and(|&oldest| number - oldest >= PEER_WINDOW)
            {
                return Err(Refusal::Full);
            }
            state.open.insert(number);
        }
        state.next_number = number;
        self.next_id += 1;
        let id = MessageId(self.next_id);
        self.outbound_bytes += new_bytes;
        *self.payload_users.entry(address).or_default() += 1;
        self.outbound.insert(
            (peer, number),
            Outbound {
                id,
                channel,
                payload,
                count,
                held: vec![0; usize::from(count).div_ceil(8)],
                deadline_ns,
                cursor: 0,
                round: 0,
                rto_ns,
            },
        );
        Ok((id, number))
    }

    /// The next fragment of message `number` to `peer` in this round (`None`: none left,
    /// or the message is done). A best-effort message is forgotten after its last one.
    pub(crate) fn next_fragment(&mut self, peer: PeerId, number: u64) -> Option<NextFragment> {
        let out = self.outbound.get_mut(&(peer, number))?;
        if out.cursor == 0 && (0..out.count).all(|i| out.holds(i)) {
            // The receiver said it held every fragment yet did not complete: it dropped
            // what it held (memory bounds). Start over.
            out.held.fill(0);
        }
        let index = (out.cursor..out.count).find(|&i| !out.holds(i))?;
        let last = (index + 1..out.count).all(|i| out.holds(i));
        out.cursor = index + 1;
        let next = NextFragment {
            channel: out.channel,
            index,
            count: out.count,
            confirm: out.deadline_ns.is_some(),
            ack_now: last,
            payload: Rc::clone(&out.payload),
            more: !last,
        };
        if last && out.deadline_ns.is_none() {
            self.remove(peer, number);
        }
        Some(next)
    }

    /// The round and timeout of the retransmission timer to set once a round is sent.
    pub(crate) fn round(&self, peer: PeerId, number: u64) -> Option<(u32, u64)> {
        let out = self.outbound.get(&(peer, number))?;
        out.deadline_ns?;
        Some((out.round, out.rto_ns))
    }

    /// A retransmission timer of `round` fired at `now_ns`.
    pub(crate) fn retransmit(
        &mut self,
        peer: PeerId,
        number: u64,
        round: u32,
        now_ns: u64,
    ) -> Retransmit {
        let Some(out) = self.outbound.get_mut(&(peer, number)) else {
            return Retransmit::Stale;
        };
        let Some(deadline) = out.deadline_ns else {
            return Retransmit::Stale;
        };
        if out.round != round {
            return Retransmit::Stale;
        }
        if now_ns >= deadline {
            return Retransmit::Failed(self.finish(peer, number, false));
        }
        out.round += 1;
        out.cursor = 0;
        let max = u64::try_from(MAX_RTO.as_nanos()).unwrap_or(u64::MAX);
        out.rto_ns = (out.rto_ns.saturating_mul(3) / 2).min(max);
        Retransmit::Again
    }

    /// An acknowledgement from `peer`; `Some` once it completes a message.
    pub(crate) fn acknowledged(&mut self, peer: PeerId, ack: &Ack<'_>) -> Option<Outcome> {
        let out = self.outbound.get_mut(&(peer, ack.message))?;
        out.deadline_ns?;
        if ack.complete {
            return Some(self.finish(peer, ack.message, true));
        }
        if ack.count == out.count && ack.held.len() == out.held.len() {
            // What the receiver holds now, not added to what it said before: it may have
            // dropped a half-received message and started it again.
            out.held.copy_from_slice(ack.held);
        }
        None
    }

    /// Ends every message to `peer` (it left, died, or was removed): confirmed ones fail.
    pub(crate) fn fail_peer(&mut self, peer: PeerId) -> Vec<Outcome> {
        let mut numbers: Vec<u64> = self
            .outbound
            .keys()
            .filter(|(p, _)| *p == peer)
            .map(|&(_, n)| n)
            .collect();
        numbers.sort_unstable();
        numbers
            .into_iter()
            .filter_map(|n| {
                let confirmed = self.outbound.get(&(peer, n))?.deadline_ns.is_some();
                let outcome = self.finish(peer, n, false);
                confirmed.then_some(outcome)
            })
            .collect()
    }

    /// Forgets `peer` entirely (it was removed); what was outstanding is dropped unreported.
    pub(crate) fn forget(&mut self, peer: PeerId) -> Vec<MessageId> {
        let numbers: Vec<u64> = self
            .outbound
            .keys()
            .filter(|(p, _)| *p == peer)
            .map(|&(_, n)| n)
            .collect();
        // Confirmed application messages still open: their senders are told they failed.
        let mut unconfirmed: Vec<(u64, MessageId)> = Vec::new();
        for n in numbers {
            if let Some(out) = self.outbound.get(&(peer, n)) {
                if out.channel == Channel::Data && out.deadline_ns.is_some() {
                    unconfirmed.push((n, out.id));
                }
            }
            self.remove(peer, n);
        }
        if let Some(state) = self.peers.remove(&peer) {
            if let Some(inbound) = state.inbound {
                for partial in inbound.partials {
                    self.partial_bytes -= partial.data.len();
                }
            }
        }
        unconfirmed.sort_unstable();
        unconfirmed.into_iter().map(|(_, id)| id).collect()
    }

    /// Ends message `number` to `peer` now, as `delivered` or not.
    pub(crate) fn finish(&mut self, peer: PeerId, number: u64, delivered: bool) -> Outcome {
        let (id, channel) = self
            .outbound
            .get(&(peer, number))
            .map_or((MessageId(0), Channel::Data), |o| (o.id, o.channel));
        self.remove(peer, number);
        Outcome {
            peer,
            number,
            id,
            channel,
            delivered,
        }
    }

    fn remove(&mut self, peer: PeerId, number: u64) {
        if let Some(out) = self.outbound.remove(&(peer, number)) {
            let address = Rc::as_ptr(&out.payload) as *const u8 as usize;
            if let Some(users) = self.payload_users.get_mut(&address) {
                *users -= 1;
                if *users == 0 {
                    self.payload_users.remove(&address);
                    self.outbound_bytes -= out.payload.len();
                }
            }
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.open.remove(&number);
        }
    }

    /// A fragment from `peer`'s process `incarnation`, received at `now_ns`.
    pub(crate) fn receive(
        &mut self,
        peer: PeerId,
        incarnation: u64,
        fragment: &Fragment<'_>,
        now_ns: u64,
    ) -> Received {
        let confirm = fragment.flags & crate::wire::FRAG_CONFIRM != 0;
        let ack_now = fragment.flags & crate::wire::FRAG_ACK_NOW != 0;
        let state = self.peers.entry(peer).or_default();
        let inbound = match &mut state.inbound {
            Some(inbound) if inbound.incarnation == incarnation => inbound,
            slot => {
                // A new process of the peer numbers from 1 again.
                if let Some(old) = slot.take() {
                    for partial in old.partials {
                        self.partial_bytes -= partial.data.len();
                    }
                }
                slot.insert(Inbound {
                    incarnation,
                    delivered: DeliveredWindow::new(),
                    partials: VecDeque::new(),
                })
            }
        };
        let number = fragment.message;
        let mut received = Received::default();
        if number == 0 || inbound.delivered.contains(number) {
            // Delivered before: a retransmission whose acknowledgement was lost.
            received.ack = confirm.then_some(AckReply::Complete);
            return received;
        }
        let at = inbound.partials.iter().position(|p| p.number == number);
        let at = match at {
            Some(at) => {
                let p = &inbound.partials[at];
                if p.count != fragment.count
                    || p.total_len != fragment.total_len
                    || p.channel != fragment.channel
                {
                    return received; // disagrees with its own first fragment: dropped
                }
                at
            }
            None => {
                let len = fragment.total_len as usize;
                if inbound.partials.len() >= PARTIALS_PER_PEER {
                    if let Some(oldest) = inbound.partials.pop_front() {
                        self.partial_bytes -= oldest.data.len();
                        self.partials_dropped += 1;
                    }
                }
                if self.partial_bytes + len > MAX_PARTIAL_BYTES {
                    self.partials_dropped += 1;
                    return received;
                }
                self.partial_bytes += len;
                inbound.partials.push_back(Partial {
                    number,
                    channel: fragment.channel,
                    total_len: fragment.total_len,
                    count: fragment.count,
                    data: vec![0; len],
                    held: vec![0; usize::from(fragment.count).div_ceil(8)],
                    got: 0,
                    started_ns: now_ns,
                });
                inbound.partials.len() - 1
            }
        };
        let partial = &mut inbound.partials[at];
        if !bit(&partial.held, fragment.index) {
            let span = fragment.span();
            if let Some(dst) = partial.data.get_mut(span) {
                dst.copy_from_slice(fragment.data);
            }
            set_bit(&mut partial.held, fragment.index);
            partial.got += 1;
        }
        if partial.got < partial.count {
            if confirm && ack_now {
                received.ack = Some(AckReply::Held {
                    count: partial.count,
                    bits: partial.held.clone(),
                });
            }
            return received;
        }
        let Some(done) = inbound.partials.remove(at) else {
            return received;
        };
        self.partial_bytes -= done.data.len();
        inbound.delivered.insert(number);
        received.ack = confirm.then_some(AckReply::Complete);
        // An unknown channel is acknowledged (the sender stops) but not delivered.
        received.message = Channel::from_byte(done.channel).map(|c| (c, done.data));
        received
    }

    /// Drops messages half received for longer than `max_age_ns` (their sender gave up or
    /// will send them again).
    pub(crate) fn expire_partials(&mut self, now_ns: u64, max_age_ns: u64) {
        for state in self.peers.values_mut() {
            let Some(inbound) = &mut state.inbound else {
                continue;
            };
            inbound.partials.retain(|p| {
                let keep = now_ns.saturating_sub(p.started_ns) <= max_age_ns;
                if !keep {
                    self.partial_bytes -= p.data.len();
                    self.partials_dropped += 1;
                }
                keep
            });
        }
    }

    /// Bytes held by half-received messages.
    pub(crate) fn partial_bytes(&self) -> usize {
        self.partial_bytes
    }

    /// Messages on their way out.
    pub(crate) fn outbound_len(&self) -> usize {
        self.outbound.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivered_window_slides_over_holes_only_when_it_must() {
        let mut w = DeliveredWindow::new();
        w.insert(1);
        w.insert(3);
        assert!(w.contains(1) && !w.contains(2) && w.contains(3));
        assert_eq!(w.low, 2);
        w.insert(2);
        assert_eq!(w.low, 4);
        w.insert(4 + PEER_WINDOW);
        assert!(w.contains(4) && w.contains(4 + PEER_WINDOW));
        assert!(!w.contains(5 + PEER_WINDOW));
    }
}
