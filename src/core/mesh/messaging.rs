//! The mesh's application data: messages, tags and queries, wired to datagrams, timers
//! and events. The bookkeeping lives in [`crate::core::transfer`], [`crate::core::tags`]
//! and [`crate::core::query`]; here it meets the peer table, the matrix (to pick a relay)
//! and the seal.

use super::{emit, Mesh, Outgoing, SendError, Transmit};
use crate::core::drops::DropReason;
use crate::core::event::Event;
use crate::core::peer::PeerState;
use crate::core::peer_table::PeerId;
use crate::core::query::{QueryFilter, QueryId, QueryRef};
use crate::core::tags::{TagError, Tags};
use crate::core::timer::Timer;
use crate::core::transfer::{
    AckReply, Delivery, MessageId, Outcome, Refusal, Retransmit, MAX_RTO, MIN_RTO,
};
use crate::wire::app::{Channel, QueryHeader, ResponseHeader, TagDelta};
use crate::wire::seal::{self, SEAL_HEADER_LEN, SEAL_OVERHEAD};
use crate::wire::{
    self, Ack, Body, Fragment, NodeId, Packet, FRAGMENT_OVERHEAD, FRAG_ACK_NOW, FRAG_CONFIRM,
    MAX_MESSAGE, RELAY_OVERHEAD,
};
use log::{debug, info, trace, warn};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How far one peer has this node's tags.
#[derive(Debug, Default)]
pub(super) struct TagSync {
    /// The version it acknowledged, in its current process.
    acked: u64,
    /// The change on its way: message number, the version it starts from and ends at.
    inflight: Option<(u64, u64, u64)>,
}

/// How long a tags message is retried before the next interval tries again.
fn tags_timeout(mesh: &Mesh) -> Duration {
    mesh.settings.dead_after
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Mesh {
    // ----- the application's calls --------------------------------------------------------

    /// Sends `payload` (up to [`MAX_MESSAGE`] bytes) to peer `to`, split into fragments
    /// that fit [`crate::Settings::max_datagram`]. With [`Delivery::Confirmed`] the peer
    /// acknowledges it; it is retransmitted on a timeout drawn from the measured round trip
    /// to that peer, delivered there at most once, and reported here once, as
    /// [`Event::Delivered`] or [`Event::Failed`]. When this node cannot reach the peer but
    /// another node can (the peer is diagnosed unreachable), the message goes through the
    /// node with the shortest path by the matrix.
    pub fn send(
        &mut self,
        to: PeerId,
        payload: &[u8],
        delivery: Delivery,
    ) -> Result<MessageId, SendError> {
        self.check_send(payload.len())?;
        let key = self.peers.key(to).ok_or(SendError::UnknownPeer(to))?;
        let (id, _) = self.start_message(key, Channel::Data, Rc::from(payload), delivery)?;
        Ok(id)
    }

    /// Sends `payload` to every peer that has not left, one message each (the payload is
    /// held once). Returns each peer with its message's handle; a peer whose queue is full
    /// is left out (and logged).
    pub fn broadcast(
        &mut self,
        payload: &[u8],
        delivery: Delivery,
    ) -> Result<Vec<(PeerId, MessageId)>, SendError> {
        self.check_send(payload.len())?;
        let shared: Rc<[u8]> = Rc::from(payload);
        let keys: Vec<usize> = self
            .peers
            .iter()
            .filter(|(_, p)| p.state() != PeerState::Left)
            .map(|(k, _)| k)
            .collect();
        if self.transfers.outbound_len() + keys.len() > crate::core::transfer::MAX_OUTBOUND {
            return Err(SendError::QueueFull);
        }
        let mut sent = Vec::with_capacity(keys.len());
        for key in keys {
            match self.start_message(key, Channel::Data, Rc::clone(&shared), delivery) {
                Ok((id, _)) => sent.push((self.peers.id_of(key), id)),
                Err(e) => warn!(
                    "{}: broadcast not sent to {}: {e}",
                    self.name,
                    self.peers[key].name()
                ),
            }
        }
        Ok(sent)
    }

    /// This node's tags.
    pub fn tags(&self) -> &Tags {
        self.own_tags.tags()
    }

    /// A peer's tags as last received (`None`: none received, or no such peer).
    pub fn peer_tags(&self, id: PeerId) -> Option<&Tags> {
        self.peer_tags.get(&id).map(|t| t.tags())
    }

    /// Changes this node's tags: each `(key, Some(value))` sets a key, `(key, None)`
    /// removes one. All or nothing ([`TagError`] says what was refused). The change is
    /// pushed to every peer at once, as a delta from what each acknowledged, retried until
    /// acknowledged.
    pub fn set_tags(&mut self, changes: &[(String, Option<String>)]) -> Result<(), TagError> {
        if !self.own_tags.apply(changes)? {
            return Ok(());
        }
        info!(
            "{}: tags now version {} ({} keys)",
            self.name,
            self.own_tags.version(),
            self.own_tags.tags().len()
        );
        for key in self.peer_keys() {
            self.sync_tags(key);
        }
        Ok(())
    }

    /// Asks every peer that `filter` picks (never this node) the question `payload`. Each
    /// answers with [`Mesh::respond`] after its [`Event::Query`]; here come an
    /// [`Event::QueryAck`] per peer reached, an [`Event::QueryResponse`] per answer, and
    /// one [`Event::QueryDone`] with the peers that did not answer: at `timeout`, or as
    /// soon as every peer asked has answered.
    pub fn query(
        &mut self,
        filter: &QueryFilter,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<QueryId, SendError> {
        self.check_send(payload.len())?;
        let targets: Vec<usize> = self
            .peers
            .iter()
            .filter(|(k, p)| {
                p.state() != PeerState::Left
                    && filter.matches(p.name(), self.peer_tags(self.peers.id_of(*k)))
            })
            .map(|(k, _)| k)
            .collect();
        if self.transfers.outbound_len() + targets.len() > crate::core::transfer::MAX_OUTBOUND {
            return Err(SendError::QueueFull);
        }
        let id = self.queries.open().ok_or(SendError::QueueFull)?;
        let mut message = Vec::with_capacity(wire::app::QUERY_HEADER_LEN + payload.len());
        QueryHeader {
            query: id.0,
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        }
        .emit(&mut message);
        message.extend_from_slice(payload);
        let shared: Rc<[u8]> = Rc::from(message);
        for key in targets {
            let delivery = Delivery::Confirmed { timeout };
            match self.start_message(key, Channel::Query, Rc::clone(&shared), delivery) {
                Ok((message, _)) => self.queries.add_target(id, self.peers.id_of(key), message),
                Err(e) => warn!(
                    "{}: query {id} not sent to {}: {e}",
                    self.name,
                    self.peers[key].name()
                ),
            }
        }
        let at = self.now_ns.saturating_add(ns(timeout));
        self.timers.insert(at, Timer::QueryDeadline(id.0));
        debug!("{}: query {id} asked, {timeout:?} to answer", self.name);
        Ok(id)
    }

    /// Answers a query this node was asked ([`Event::Query`]) with `payload` (an error
    /// response if `error`). Once per query, while its asker still waits.
    pub fn respond(
        &mut self,
        query: QueryRef,
        payload: &[u8],
        error: bool,
    ) -> Result<(), SendError> {
        self.check_send(payload.len())?;
        let key = self
            .peers
            .key(query.peer)
            .ok_or(SendError::UnknownPeer(query.peer))?;
        let until = self
            .queries
            .take_answer(query, self.now_ns)
            .ok_or(SendError::NoSuchQuery)?;
        let mut message = Vec::with_capacity(wire::app::RESPONSE_HEADER_LEN + payload.len());
        ResponseHeader {
            query: query.id,
            error,
        }
        .emit(&mut message);
        message.extend_from_slice(payload);
        let timeout = Duration::from_nanos(until.saturating_sub(self.now_ns));
        self.start_message(
            key,
            Channel::Response,
            Rc::from(message),
            Delivery::Confirmed { timeout },
        )?;
        Ok(())
    }

    /// Bytes held by messages half received (bounded by
    /// [`crate::core::transfer::MAX_PARTIAL_BYTES`]) and how many such messages were
    /// dropped unfinished (memory bounds, or their sender stopped).
    pub fn reassembly(&self) -> (usize, u64) {
        (
            self.transfers.partial_bytes(),
            self.transfers.partials_dropped,
        )
    }

    // ----- sending ------------------------------------------------------------------------

    fn check_send(&self, len: usize) -> Result<(), SendError> {
        if self.leaving {
            return Err(SendError::Leaving);
        }
        if len > MAX_MESSAGE {
            return Err(SendError::TooLarge {
                len,
                max: MAX_MESSAGE,
            });
        }
        Ok(())
    }

    fn peer_keys(&self) -> Vec<usize> {
        self.peers.iter().map(|(k, _)| k).collect()
    }

    /// The most data one fragment carries: what is left of a datagram after the
    /// fragment's header, and room for a relay's wrapping (so any fragment can be relayed).
    fn fragment_len(&self) -> usize {
        let seal = if self.keyring.is_some() {
            SEAL_OVERHEAD
        } else {
            0
        };
        self.inner_max()
            .saturating_sub(FRAGMENT_OVERHEAD + RELAY_OVERHEAD + seal)
            .max(1)
    }

    /// The retransmission timeout towards peer `key`: twice the median round trip plus
    /// four times its jitter (as TCP's RTO adds four deviations), within
    /// [`MIN_RTO`]..[`MAX_RTO`]; a tenth of a second before any round trip was measured.
    fn rto_ns(&self, key: usize) -> u64 {
        let rto = match self.peers[key].rtt() {
            Some(rtt) => rtt.p50 * 2 + rtt.jitter * 4,
            None => Duration::from_millis(100),
        };
        ns(rto.clamp(MIN_RTO, MAX_RTO))
    }

    /// Accepts a message for peer `key` and queues its first round.
    fn start_message(
        &mut self,
        key: usize,
        channel: Channel,
        payload: Rc<[u8]>,
        delivery: Delivery,
    ) -> Result<(MessageId, u64), SendError> {
        let peer = self.peers.id_of(key);
        let deadline = match delivery {
            Delivery::BestEffort => None,
            Delivery::Confirmed { timeout } => Some(self.now_ns.saturating_add(ns(timeout))),
        };
        let len = payload.len();
        let (id, number) = self
            .transfers
            .start(
                peer,
                channel,
                payload,
                self.fragment_len(),
                deadline,
                self.rto_ns(key),
            )
            .map_err(|refusal| match refusal {
                Refusal::TooLarge(len) => SendError::TooLarge {
                    len,
                    max: MAX_MESSAGE,
                },
                Refusal::Full => SendError::QueueFull,
            })?;
        trace!(
            "{}: message {id} ({len} bytes, {channel:?}) to {}",
            self.name,
            self.peers[key].name()
        );
        if deadline.is_some()
            && matches!(self.peers[key].state(), PeerState::Left | PeerState::Dead)
        {
            // Known gone: reported failed at once rather than after the timeout.
            let outcome = self.transfers.finish(peer, number, false);
            self.report(outcome);
            return Ok((id, number));
        }
        self.outgoing
            .push_back(Outgoing::Burst { peer: key, number });
        Ok((id, number))
    }

    /// Peer `key`'s confirmed messages and tags, after its state went from `old` to `new`.
    pub(super) fn state_changed_for_messages(
        &mut self,
        key: usize,
        old: PeerState,
        new: PeerState,
    ) {
        match new {
            PeerState::Dead | PeerState::Left => {
                let peer = self.peers.id_of(key);
                for outcome in self.transfers.fail_peer(peer) {
                    self.report(outcome);
                }
            }
            PeerState::Alive if old != PeerState::Suspect => self.sync_tags(key),
            _ => {}
        }
    }

    /// A new process of peer `key` holds none of this node's tags: start from nothing.
    pub(super) fn tags_lost_by(&mut self, key: usize) {
        let peer = self.peers.id_of(key);
        self.tag_sync.entry(peer).or_default().acked = 0;
        self.peer_tags.remove(&peer);
    }

    /// Sends peer `key` the change of this node's tags since what it acknowledged, unless
    /// one is on its way (the next follows its acknowledgement) or it has them all.
    fn sync_tags(&mut self, key: usize) {
        let version = self.own_tags.version();
        let peer = self.peers.id_of(key);
        let state = self.peers[key].state();
        if version == 0
            || self.peers[key].incarnation().is_none()
            || matches!(
                state,
                PeerState::Dead | PeerState::Left | PeerState::Unknown
            )
        {
            return;
        }
        let sync = self.tag_sync.entry(peer).or_default();
        if sync.acked >= version || sync.inflight.is_some() {
            return;
        }
        let base = sync.acked;
        let delta = self.own_tags.delta_from(base);
        let timeout = tags_timeout(self);
        match self.start_message(
            key,
            Channel::Tags,
            Rc::from(delta),
            Delivery::Confirmed { timeout },
        ) {
            Ok((_, number)) => {
                if let Some(sync) = self.tag_sync.get_mut(&peer) {
                    if sync.inflight.is_none() && sync.acked == base {
                        sync.inflight = Some((number, base, version));
                    }
                }
            }
            Err(e) => debug!("{}: tags not sent now: {e}", self.name),
        }
    }

    /// What came of a message, reported on by its channel.
    fn report(&mut self, outcome: Outcome) {
        let Outcome {
            peer,
            number,
            id,
            channel,
            delivered,
        } = outcome;
        match channel {
            Channel::Data => {
                if delivered {
                    self.events.push_back(Event::Delivered { to: peer, id });
                } else {
                    let name = self.peers.key(peer).map_or("?", |k| self.peers[k].name());
                    info!("{}: message {id} to {name} failed", self.name);
                    self.events.push_back(Event::Failed { to: peer, id });
                }
            }
            Channel::Tags => {
                let Some(sync) = self.tag_sync.get_mut(&peer) else {
                    return;
                };
                let Some((inflight, base, version)) = sync.inflight else {
                    return;
                };
                if inflight != number {
                    return;
                }
                sync.inflight = None;
                if delivered && base <= sync.acked {
                    sync.acked = sync.acked.max(version);
                }
                // Failed: the next interval tries again; delivered: the next change, if any.
                if let (true, Some(key)) = (delivered, self.peers.key(peer)) {
                    self.sync_tags(key);
                }
            }
            Channel::Query if delivered => {
                if let Some(query) = self.queries.by_message(peer, id) {
                    self.events.push_back(Event::QueryAck { query, from: peer });
                }
            }
            Channel::Query | Channel::Response => {}
        }
    }

    /// Once an interval: drop stale half-received messages and expired queries, and
    /// retry the tags of peers that lack them.
    pub(super) fn tend_messages(&mut self) {
        let max_age = ns(self.settings.dead_after).saturating_mul(2);
        self.transfers.expire_partials(self.now_ns, max_age);
        self.queries.expire(self.now_ns);
        if self.own_tags.version() > 0 {
            // By slot, not through a list: no allocation on this once-an-interval path.
            for key in 0..self.peers.slot_bound() {
                if self.peers.get(key).is_some() {
                    self.sync_tags(key);
                }
            }
        }
    }

    pub(super) fn on_retransmit_timer(&mut self, peer: PeerId, number: u64, round: u32) {
        match self.transfers.retransmit(peer, number, round, self.now_ns) {
            Retransmit::Stale => {}
            Retransmit::Again => {
                if let Some(key) = self.peers.key(peer) {
                    trace!("{}: message {number} round {} again", self.name, round + 1);
                    self.outgoing
                        .push_back(Outgoing::Burst { peer: key, number });
                }
            }
            Retransmit::Failed(outcome) => self.report(outcome),
        }
    }

    pub(super) fn on_query_deadline(&mut self, query: u64) {
        if let Some(missing) = self.queries.close(QueryId(query)) {
            self.events.push_back(Event::QueryDone {
                query: QueryId(query),
                missing,
            });
        }
    }

    // ----- receiving ----------------------------------------------------------------------

    pub(super) fn on_fragment(&mut self, key: usize, incarnation: u64, fragment: &Fragment<'_>) {
        let peer = self.peers.id_of(key);
        let received = self
            .transfers
            .receive(peer, incarnation, fragment, self.now_ns);
        if let Some(reply) = received.ack {
            if self.outgoing.len() < self.queue_limit() {
                self.outgoing.push_back(Outgoing::Ack {
                    peer: key,
                    number: fragment.message,
                    reply,
                });
            }
        }
        if let Some((channel, payload)) = received.message {
            self.deliver(key, incarnation, fragment.message, channel, payload);
        }
    }

    pub(super) fn on_ack(&mut self, key: usize, ack: &Ack<'_>) {
        let peer = self.peers.id_of(key);
        if let Some(outcome) = self.transfers.acknowledged(peer, ack) {
            self.report(outcome);
        }
    }

    /// A whole message from peer `key`'s process `incarnation`.
    fn deliver(
        &mut self,
        key: usize,
        incarnation: u64,
        number: u64,
        channel: Channel,
        payload: Vec<u8>,
    ) {
        let from = self.peers.id_of(key);
        match channel {
            Channel::Data => self.events.push_back(Event::Message {
                from,
                id: MessageId(number),
                payload,
            }),
            Channel::Tags => match TagDelta::parse(&payload) {
                Ok(delta) => {
                    if self
                        .peer_tags
                        .entry(from)
                        .or_default()
                        .apply(incarnation, &delta)
                    {
                        debug!(
                            "{}: peer {}'s tags now version {}",
                            self.name,
                            self.peers[key].name(),
                            delta.version
                        );
                        self.events.push_back(Event::Tags { peer: from });
                    }
                }
                Err(e) => self.drop_message(key, &e),
            },
            Channel::Query => match QueryHeader::parse(&payload) {
                Ok((header, question)) => {
                    let query = QueryRef {
                        peer: from,
                        id: header.query,
                    };
                    let timeout = Duration::from_millis(u64::from(header.timeout_ms));
                    self.queries
                        .asked_by(query, self.now_ns.saturating_add(ns(timeout)));
                    self.events.push_back(Event::Query {
                        from,
                        query,
                        payload: question.to_vec(),
                        timeout,
                    });
                }
                Err(e) => self.drop_message(key, &e),
            },
            Channel::Response => match ResponseHeader::parse(&payload) {
                Ok((header, answer)) => {
                    if self.queries.answered(header.query, from) {
                        self.events.push_back(Event::QueryResponse {
                            query: QueryId(header.query),
                            from,
                            payload: answer.to_vec(),
                            error: header.error,
                        });
                        // Everyone answered: done now, not at the deadline (whose timer
                        // then finds the query closed).
                        if self.queries.all_answered(header.query) {
                            self.on_query_deadline(header.query);
                        }
                    }
                }
                Err(e) => self.drop_message(key, &e),
            },
        }
    }

    fn drop_message(&mut self, key: usize, why: &wire::DecodeError) {
        self.dropped.bump(DropReason::Malformed);
        trace!(
            "{}: dropped a message from {}: {why}",
            self.name,
            self.peers[key].name()
        );
    }

    /// A `Relay` datagram from peer `key`: for this node (the inner datagram is read as
    /// its own sender's), or to carry on to `target`.
    pub(super) fn on_relay(&mut self, now: Instant, key: usize, target: NodeId, inner: &[u8]) {
        if target == self.id {
            return self.handle_relayed(now, key, inner);
        }
        let Some(to) = self.peers.by_id(target) else {
            self.dropped.bump(DropReason::Misdirected);
            return;
        };
        // Sampled mode relays indirect probes, which matter most to a suspected node.
        let reachable = match self.peers[to].state() {
            PeerState::Alive => true,
            PeerState::Suspect | PeerState::Unknown | PeerState::Unreachable => self.is_sampled(),
            _ => false,
        };
        if to == key || !reachable {
            // Not back to its sender, and only to a node this one hears.
            self.dropped.bump(DropReason::Misdirected);
            return;
        }
        if self.outgoing.len() >= self.queue_limit() {
            return;
        }
        trace!(
            "{}: relaying {} bytes from {} to {}",
            self.name,
            inner.len(),
            self.peers[key].name(),
            self.peers[to].name()
        );
        self.outgoing.push_back(Outgoing::Forward {
            peer: to,
            inner: inner.to_vec(),
        });
    }

    /// A datagram another node relayed to this one: only fragments and acknowledgements,
    /// fresh (naming this process's incarnation) and admitted like any datagram of their
    /// sender. It says nothing of the sender's liveness or address.
    fn handle_relayed(&mut self, _now: Instant, via: usize, inner: &[u8]) {
        let mut opened;
        let (plain, sealer) = match &self.keyring {
            Some(keyring) => {
                opened = vec![0u8; inner.len()];
                match seal::open(keyring, inner, &mut opened) {
                    Ok((plain, sealer)) => (plain, Some(sealer)),
                    Err(_) => return self.dropped.bump(DropReason::AuthFailed),
                }
            }
            None if seal::is_sealed(inner) => return self.dropped.bump(DropReason::AuthFailed),
            None => (inner, None),
        };
        let Ok(packet) = Packet::parse(plain) else {
            return self.dropped.bump(DropReason::Malformed);
        };
        let header = packet.header;
        if header.to != self.id {
            return self.dropped.bump(DropReason::Misdirected);
        }
        if sealer.is_some_and(|s| s.sender != header.from.0 || s.incarnation != header.incarnation)
        {
            return self.dropped.bump(DropReason::AuthFailed);
        }
        let Some(key) = self.peers.by_id(header.from) else {
            return self.dropped.bump(DropReason::UnknownSender);
        };
        if key == via {
            return self.dropped.bump(DropReason::NotFresh);
        }
        // Sampled mode's indirect probes: answered or matched, never admitted (a relayed
        // datagram says nothing of the sender's address, and the probe's nonce is what
        // proves a Pong fresh).
        match packet.body {
            Body::Ping { probe, sent_ns, .. } if self.is_sampled() => {
                return self.answer_relayed_ping(via, key, probe, sent_ns);
            }
            Body::Pong { probe, echo_ns, .. } if self.is_sampled() => {
                return self.on_relayed_pong(key, probe, echo_ns);
            }
            _ => {}
        }
        if header.to_incarnation != self.settings.incarnation {
            return self.dropped.bump(DropReason::NotFresh);
        }
        if !matches!(packet.body, Body::Fragment(_) | Body::Ack(_)) {
            return self.dropped.bump(DropReason::Malformed);
        }
        let from = self.peers[key]
            .seen_addr()
            .unwrap_or(self.peers[key].addr());
        if let Err(reason) = self.admit(key, from, &header, false) {
            return self.dropped.bump(reason);
        }
        trace!(
            "{}: {:?} from {} relayed by {}",
            self.name,
            packet.kind(),
            self.peers[key].name(),
            self.peers[via].name()
        );
        match packet.body {
            Body::Fragment(fragment) => self.on_fragment(key, header.incarnation, &fragment),
            Body::Ack(ack) => self.on_ack(key, &ack),
            _ => {}
        }
    }

    // ----- encoding -----------------------------------------------------------------------

    /// The node to relay to peer `key` through, when this node cannot reach it but
    /// others can: of the peers this node hears whose fresh row hears `key`, the one with
    /// the smallest sum of the two round trips.
    fn relay_for(&self, key: usize) -> Option<usize> {
        let state = self.peers[key].state();
        let cut = state == PeerState::Unreachable
            || (state == PeerState::Unknown && self.witness_of(key));
        if !cut {
            return None;
        }
        self.peers
            .iter()
            .filter(|&(r, p)| r != key && p.state() == PeerState::Alive && self.row_is_fresh(r))
            .filter_map(|(r, p)| {
                let cell = self.matrix.row(r)?.cells.get(key + 1)?;
                if cell.state() != PeerState::Alive {
                    return None;
                }
                let cost = u64::from(p.rtt_p50_us().unwrap_or(u32::MAX / 2))
                    + u64::from(cell.rtt_us().unwrap_or(u32::MAX / 2));
                Some((cost, r))
            })
            .min()
            .map(|(_, r)| r)
    }

    /// The next fragment of message `number` to peer `key`: the rest of the round stays
    /// at the front of the queue; after the round's last, the retransmission timer is set.
    pub(super) fn encode_fragment(
        &mut self,
        key: usize,
        number: u64,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let peer = self.peers.id_of(key);
        let Some(next) = self.transfers.next_fragment(peer, number) else {
            // Nothing left to send this round (an ack came in the middle of it): the
            // round still ends with its timer. An extra one for a round is stale when it
            // fires.
            self.arm_retransmit(peer, number);
            return None;
        };
        if next.more {
            self.outgoing
                .push_front(Outgoing::Burst { peer: key, number });
        } else {
            self.arm_retransmit(peer, number);
        }
        let total = next.payload.len();
        let span = Fragment::span_of(next.index, next.count, total as u32);
        let mut flags = 0;
        if next.confirm {
            flags |= FRAG_CONFIRM;
            if next.ack_now {
                flags |= FRAG_ACK_NOW;
            }
        }
        let body = Body::Fragment(Fragment {
            message: number,
            flags,
            channel: next.channel as u8,
            index: next.index,
            count: next.count,
            total_len: total as u32,
            data: next.payload.get(span)?,
        });
        self.emit_to(key, body, buf)
    }

    /// Sets the retransmission timer of a confirmed message's current round.
    fn arm_retransmit(&mut self, peer: PeerId, number: u64) {
        if let Some((round, rto)) = self.transfers.round(peer, number) {
            self.timers.insert(
                self.now_ns.saturating_add(rto),
                Timer::Retransmit {
                    peer,
                    number,
                    round,
                },
            );
        }
    }

    pub(super) fn encode_ack(
        &mut self,
        key: usize,
        number: u64,
        reply: &AckReply,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let ack = match reply {
            AckReply::Complete => Ack {
                message: number,
                complete: true,
                count: 0,
                held: &[],
            },
            AckReply::Held { count, bits } => Ack {
                message: number,
                complete: false,
                count: *count,
                held: bits,
            },
        };
        self.emit_to(key, Body::Ack(ack), buf)
    }

    /// Encodes `body` for peer `key`: straight to it, or, when it is cut off, as the inner
    /// datagram (sealed when the mesh is keyed) of a `Relay` to the best relay.
    fn emit_to(&mut self, key: usize, body: Body<'_>, buf: &mut [u8]) -> Option<Transmit> {
        let via = self.relay_for(key);
        self.emit_via(key, via, body, buf)
    }

    /// Encodes `body` for peer `key`: straight to it (`via` is `None`), or as the inner
    /// datagram (sealed when the mesh is keyed) of a `Relay` to peer `via`.
    pub(super) fn emit_via(
        &mut self,
        key: usize,
        via: Option<usize>,
        body: Body<'_>,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        let Some(via) = via else {
            let header = self.header(key);
            let dst = self.peers[key].addr();
            return emit(&self.name, Packet { header, body }, dst, buf);
        };
        let mut inner = std::mem::take(&mut self.relay_buf);
        inner.resize(self.settings.max_datagram.max(SEAL_OVERHEAD + 64), 0);
        let header = self.header(key);
        let plain = Packet { header, body };
        let len = match &self.keyring {
            None => plain.emit(&mut inner).ok(),
            Some(keyring) => {
                let room = inner.len() - SEAL_OVERHEAD;
                let written = plain
                    .emit(&mut inner[SEAL_HEADER_LEN..SEAL_HEADER_LEN + room])
                    .ok();
                written.and_then(|n| {
                    self.seal_counter += 1;
                    seal::seal(
                        keyring,
                        self.id.0,
                        self.settings.incarnation,
                        self.seal_counter,
                        &mut inner,
                        n,
                    )
                })
            }
        };
        let out = len.and_then(|len| {
            let target = self.peers[key].id();
            let header = self.header(via);
            let dst = self.peers[via].addr();
            let body = Body::Relay {
                target,
                inner: &inner[..len],
            };
            emit(&self.name, Packet { header, body }, dst, buf)
        });
        self.relay_buf = inner;
        out
    }
}
