//! The wire format: parse and emit peermesh datagrams.
//!
//! Parsing happens in two steps, as in smoltcp: every length is checked once up front, then
//! plain structs are read out of the bytes. Nothing here knows about peers, clocks or sockets.
//! All integers are big-endian (network byte order). `docs/PROTOCOL.md` is the reference.
//!
//! ```text
//!  0     2    3    4             12            20            28              36     40
//!  +-----+----+----+-------------+-------------+-------------+---------------+------+----
//!  |magic|ver |kind|  sender id  | incarnation | receiver id | receiver's    | seq  | body
//!  |     |    |    |             |             |             | incarnation   |      |
//!  +-----+----+----+-------------+-------------+-------------+---------------+------+----
//! ```
//!
//! The receiver's incarnation, as the sender last verified it, is what makes a datagram
//! *fresh*: one that echoes the receiver's current incarnation was made during the receiver's
//! current life, so a capture from before the receiver started can never pass for it.

use crate::wire::coordinate::{WireCoordinate, COORDINATE_LEN};
use crate::wire::identity::NodeId;
use crate::wire::member::MemberUpdates;
use crate::wire::state::PeerState;
use std::fmt;

/// The first two bytes of every datagram: ASCII "PM".
pub const MAGIC: u16 = 0x504d;
/// The protocol version this build speaks. A datagram of any other version is dropped.
pub const VERSION: u8 = 5;
/// Length of the common header.
pub const HEADER_LEN: usize = 40;

/// Byte offsets of the header's fields, named once for parse and emit.
mod field {
    pub(super) const MAGIC: usize = 0;
    pub(super) const VERSION: usize = 2;
    pub(super) const KIND: usize = 3;
    pub(super) const FROM: usize = 4;
    pub(super) const INCARNATION: usize = 12;
    pub(super) const TO: usize = 20;
    pub(super) const TO_INCARNATION: usize = 28;
    pub(super) const SEQ: usize = 36;
    /// Ping: probe number, then send time.
    pub(super) const PING_PROBE: usize = super::HEADER_LEN;
    pub(super) const PING_SENT_NS: usize = super::HEADER_LEN + 4;
    /// Pong: probe number, echoed send time, hold time.
    pub(super) const PONG_PROBE: usize = super::HEADER_LEN;
    pub(super) const PONG_ECHO_NS: usize = super::HEADER_LEN + 4;
    pub(super) const PONG_HOLD_US: usize = super::HEADER_LEN + 12;
    pub(super) const PONG_COORDINATE: usize = super::HEADER_LEN + 16;
    /// Fragment: message id, flags, channel, index, count, total length, then data.
    pub(super) const FRAG_MESSAGE: usize = super::HEADER_LEN;
    pub(super) const FRAG_FLAGS: usize = super::HEADER_LEN + 8;
    pub(super) const FRAG_CHANNEL: usize = super::HEADER_LEN + 9;
    pub(super) const FRAG_INDEX: usize = super::HEADER_LEN + 10;
    pub(super) const FRAG_COUNT: usize = super::HEADER_LEN + 12;
    pub(super) const FRAG_TOTAL: usize = super::HEADER_LEN + 14;
    /// Ack: message id, flags, fragment count, then the bitmap of fragments held.
    pub(super) const ACK_MESSAGE: usize = super::HEADER_LEN;
    pub(super) const ACK_FLAGS: usize = super::HEADER_LEN + 8;
    pub(super) const ACK_COUNT: usize = super::HEADER_LEN + 9;
    /// Relay: the final receiver, the inner datagram's length, then that datagram.
    pub(super) const RELAY_TARGET: usize = super::HEADER_LEN;
    pub(super) const RELAY_LEN: usize = super::HEADER_LEN + 8;
}
/// Length of a whole `Ping` datagram.
pub const PING_LEN: usize = HEADER_LEN + 12;
/// Length of a whole `Pong` datagram.
pub const PONG_LEN: usize = HEADER_LEN + 16 + COORDINATE_LEN;
/// Length of a whole `Leave` datagram.
pub const LEAVE_LEN: usize = HEADER_LEN;
/// Bytes a `Fragment` datagram spends before its data.
pub const FRAGMENT_OVERHEAD: usize = HEADER_LEN + 18;
/// Length of an `Ack` without its bitmap.
pub const ACK_MIN_LEN: usize = HEADER_LEN + 11;
/// Bytes a `Relay` datagram spends before the datagram it carries.
pub const RELAY_OVERHEAD: usize = HEADER_LEN + 10;
/// The longest payload a message carries for the application: 64 KiB.
pub const MAX_MESSAGE: usize = 65_536;
/// The longest message on the wire: a payload and the few bytes its channel puts before
/// it (a query's or response's header).
pub const MAX_MESSAGE_LEN: usize = MAX_MESSAGE + 64;

/// The kind byte at offset 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A heartbeat probe; the receiver answers with a `Pong` at once.
    Ping = 1,
    /// The answer to a `Ping`.
    Pong = 2,
    /// The sender is shutting down on purpose.
    Leave = 3,
    // 4 was `Data` (one unconfirmed datagram of application data) until messages were
    // split into fragments; it is not reused.
    /// A piece of a message (application data, tags, a query or its response).
    Fragment = 5,
    /// Which fragments of a confirmed message the receiver holds.
    Ack = 6,
    /// A datagram for a third node, carried by this receiver because the sender cannot
    /// reach that node directly.
    Relay = 7,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Ping),
            2 => Some(Kind::Pong),
            3 => Some(Kind::Leave),
            5 => Some(Kind::Fragment),
            6 => Some(Kind::Ack),
            7 => Some(Kind::Relay),
            _ => None,
        }
    }
}

/// The fields every datagram starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Who sent it.
    pub from: NodeId,
    /// The sender's incarnation: random per process start, so a restarted peer is told apart.
    pub incarnation: u64,
    /// Who it is for. A node drops datagrams addressed to another identity.
    pub to: NodeId,
    /// The receiver's incarnation as the sender last verified it; 0 while the sender has not
    /// yet heard a fresh datagram of the receiver's current process. A receiver believes only
    /// datagrams that echo its own current incarnation (see `docs/PROTOCOL.md`, Freshness).
    pub to_incarnation: u64,
    /// The sender's datagram counter towards this receiver (wraps).
    pub seq: u32,
}

/// What a datagram says, after the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// A heartbeat probe.
    Ping {
        /// The sender's probe number towards this receiver.
        probe: u32,
        /// When it was sent, in nanoseconds on the sender's own clock (only the sender reads it).
        sent_ns: u64,
        /// A piece of the sender's latency row, piggy-backed (see [`RowChunk`]).
        row: Option<RowChunk<'a>>,
    },
    /// The answer to a ping.
    Pong {
        /// The probe number of the ping answered.
        probe: u32,
        /// The ping's `sent_ns`, echoed.
        echo_ns: u64,
        /// How long the responder held the ping before answering, in microseconds, so the
        /// round trip excludes the responder's own processing time (as in STAMP and NTP).
        hold_us: u32,
        /// The responder's network coordinate when it answered.
        coordinate: WireCoordinate,
        /// Membership updates piggy-backed by a sampled-mode node (none in full mode).
        members: MemberUpdates<'a>,
    },
    /// The sender leaves the mesh on purpose.
    Leave,
    /// A piece of a message.
    Fragment(Fragment<'a>),
    /// What the receiver of a confirmed message holds of it.
    Ack(Ack<'a>),
    /// A datagram the receiver is to pass on to `target` (or, if it is `target`, to read).
    Relay {
        /// The node the inner datagram is for.
        target: NodeId,
        /// The whole inner datagram (sealed by its own sender when the mesh is keyed).
        inner: &'a [u8],
    },
}

/// Flag bit of a fragment: the receiver acknowledges the message (confirmed delivery).
pub const FRAG_CONFIRM: u8 = 0x01;
/// Flag bit of a fragment: the last of a burst; the receiver answers with an [`Ack`] now.
pub const FRAG_ACK_NOW: u8 = 0x02;

/// A piece of a message: message `message` of the sender is `total_len` bytes in `count`
/// fragments of equal size (the last one shorter), and this is number `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// The sender's number for the message, unique towards this receiver within the
    /// sender's incarnation (they count up from 1 per receiver).
    pub message: u64,
    /// [`FRAG_CONFIRM`], [`FRAG_ACK_NOW`]; other bits are zero.
    pub flags: u8,
    /// What the message is: 0 application data, 1 tags, 2 query, 3 query response (others
    /// are dropped by the receiver as unknown).
    pub channel: u8,
    /// Which fragment, `0..count`.
    pub index: u16,
    /// How many fragments the message has, at least 1.
    pub count: u16,
    /// The whole message's length, at most [`MAX_MESSAGE_LEN`].
    pub total_len: u32,
    /// This fragment's bytes.
    pub data: &'a [u8],
}

/// What the receiver of a confirmed message holds of it: all of it (`complete`, delivered
/// to the application), or the fragments whose bits are set in `held`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack<'a> {
    /// The message's number.
    pub message: u64,
    /// The whole message was delivered (now or before): the sender stops.
    pub complete: bool,
    /// How many fragments `held` covers (0 when complete).
    pub count: u16,
    /// Bit `i % 8` of byte `i / 8` set: fragment `i` is held. `count.div_ceil(8)` bytes.
    pub held: &'a [u8],
}

impl Fragment<'_> {
    /// The bytes of the message fragment `index` of `count` holds when the whole is
    /// `total_len` long: fragments are `total_len.div_ceil(count)` bytes, the last shorter.
    pub fn span_of(index: u16, count: u16, total_len: u32) -> std::ops::Range<usize> {
        let size = (total_len as usize).div_ceil(usize::from(count.max(1)));
        let start = (usize::from(index) * size).min(total_len as usize);
        start..(start + size).min(total_len as usize)
    }

    /// This fragment's place in the message ([`Fragment::span_of`]).
    pub fn span(&self) -> std::ops::Range<usize> {
        Fragment::span_of(self.index, self.count, self.total_len)
    }
}

impl Ack<'_> {
    /// Whether fragment `index` is held (always, once complete).
    pub fn holds(&self, index: u16) -> bool {
        self.complete
            || self
                .held
                .get(usize::from(index / 8))
                .is_some_and(|b| b & (1 << (index % 8)) != 0)
    }
}

/// A whole datagram: header and body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The common header.
    pub header: Header,
    /// The kind-specific part.
    pub body: Body<'a>,
}

/// Why a datagram could not be decoded. It is dropped and counted, never an error to a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the header, or than its kind requires.
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// Does not start with the peermesh magic: not ours.
    BadMagic,
    /// A peermesh datagram of a version this build does not speak.
    UnsupportedVersion(u8),
    /// A kind byte this version does not define.
    UnknownKind(u8),
    /// A field holds a value the format does not allow.
    BadField(&'static str),
    /// Longer than its kind and declared lengths allow.
    TrailingBytes {
        /// Bytes expected.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { needed, got } => {
                write!(f, "truncated: {got} bytes, need {needed}")
            }
            DecodeError::BadMagic => write!(f, "not a peermesh datagram (bad magic)"),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "protocol version {v}, this node speaks {VERSION}")
            }
            DecodeError::UnknownKind(k) => write!(f, "unknown datagram kind {k}"),
            DecodeError::BadField(what) => write!(f, "bad {what}"),
            DecodeError::TrailingBytes { expected, got } => {
                write!(f, "{got} bytes where {expected} were expected")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a datagram could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is smaller than the datagram.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// A data payload longer than a datagram can carry (65,535 bytes).
    PayloadTooLarge(usize),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall { needed, got } => {
                write!(f, "buffer of {got} bytes, datagram needs {needed}")
            }
            EncodeError::PayloadTooLarge(n) => write!(f, "payload of {n} bytes is too large"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Length of a row chunk's own header (after the ping's fields).
pub const ROW_HEADER_LEN: usize = 10;
/// The most bytes one row entry can take (identity, state, loss, two 5-byte varints).
pub const ROW_ENTRY_MAX_LEN: usize = 8 + 1 + 1 + 5 + 5;

/// One cell of a sender's latency row: what the sender knows of one of its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowEntry {
    /// The peer this entry is about.
    pub target: NodeId,
    /// The sender's view of the peer's liveness, as a one-byte [`PeerState`] code.
    pub state: PeerState,
    /// Round-trip loss in half-percent steps (0..=200), `None` before any probe settled.
    pub loss_half_pct: Option<u8>,
    /// Median RTT in microseconds, `None` before any sample.
    pub rtt_us: Option<u32>,
    /// Milliseconds between the sender last hearing the peer and building this entry;
    /// `None` if it never heard it.
    pub heard_ago_ms: Option<u32>,
}

/// A piece of the sender's latency row: some of its entries, with the row version they
/// come from so a receiver never lets an older piece overwrite a newer one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowChunk<'a> {
    /// The sender's row version (rebuilt every heartbeat interval; only grows).
    pub version: u32,
    /// Which piece of the row this is, `0..chunks`.
    pub index: u16,
    /// How many pieces the row has.
    pub chunks: u16,
    /// How many entries this piece holds.
    pub count: u16,
    /// The encoded entries; already checked when parsed.
    entries: &'a [u8],
}

impl<'a> RowChunk<'a> {
    /// A chunk over entries already encoded with [`RowEntry::emit`] (`count` of them).
    pub fn new(version: u32, index: u16, chunks: u16, count: u16, entries: &'a [u8]) -> Self {
        RowChunk {
            version,
            index,
            chunks,
            count,
            entries,
        }
    }

    /// Encoded length, header included.
    pub fn len(&self) -> usize {
        ROW_HEADER_LEN + self.entries.len()
    }

    /// Whether it holds no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries, decoded one by one.
    pub fn entries(&self) -> RowEntries<'a> {
        RowEntries {
            bytes: self.entries,
            left: self.count,
        }
    }

    fn parse(bytes: &'a [u8]) -> Result<RowChunk<'a>, DecodeError> {
        if bytes.len() < ROW_HEADER_LEN {
            return Err(DecodeError::Truncated {
                needed: PING_LEN + ROW_HEADER_LEN,
                got: PING_LEN + bytes.len(),
            });
        }
        let chunk = RowChunk {
            version: be_u32(bytes, 0),
            index: be_u16(bytes, 4),
            chunks: be_u16(bytes, 6),
            count: be_u16(bytes, 8),
            entries: &bytes[ROW_HEADER_LEN..],
        };
        if chunk.chunks == 0 || chunk.index >= chunk.chunks {
            return Err(DecodeError::BadField("row chunk index"));
        }
        // Walk every entry once now, so iterating later cannot fail. The walk only checks
        // (no entry is built); a chunk it refuses is walked again by the decoder, for the
        // exact error.
        if entries_are_valid(chunk.entries, chunk.count) {
            return Ok(chunk);
        }
        let mut at = 0;
        for _ in 0..chunk.count {
            RowEntry::parse(chunk.entries, &mut at)?;
        }
        if at != chunk.entries.len() {
            return Err(DecodeError::TrailingBytes {
                expected: PING_LEN + ROW_HEADER_LEN + at,
                got: PING_LEN + bytes.len(),
            });
        }
        Ok(chunk)
    }

    /// Writes the chunk into `out`, which is exactly [`len`](Self::len) bytes long.
    fn emit(&self, out: &mut [u8]) {
        let Some((head, entries)) = out.split_first_chunk_mut::<ROW_HEADER_LEN>() else {
            return;
        };
        head[0..4].copy_from_slice(&self.version.to_be_bytes());
        head[4..6].copy_from_slice(&self.index.to_be_bytes());
        head[6..8].copy_from_slice(&self.chunks.to_be_bytes());
        head[8..10].copy_from_slice(&self.count.to_be_bytes());
        entries.copy_from_slice(self.entries);
    }
}

/// Iterator over the entries of a [`RowChunk`].
#[derive(Clone, Debug)]
pub struct RowEntries<'a> {
    bytes: &'a [u8],
    left: u16,
}

impl Iterator for RowEntries<'_> {
    type Item = RowEntry;

    fn next(&mut self) -> Option<RowEntry> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (entry, len) = RowEntry::decode(self.bytes)?;
        self.bytes = self.bytes.get(len..)?;
        Some(entry)
    }
}

/// Whether `count` well-formed entries fill `bytes` exactly: what [`RowEntry::parse`]
/// accepts, checked without building the entries.
fn entries_are_valid(mut bytes: &[u8], count: u16) -> bool {
    for _ in 0..count {
        let Some((&[.., state, loss], rest)) = bytes.split_first_chunk::<10>() else {
            return false;
        };
        if PeerState::from_code(state).is_none() || !matches!(loss, 0..=200 | 255) {
            return false;
        }
        let mut at = 0;
        if read_varint(rest, &mut at).is_none() || read_varint(rest, &mut at).is_none() {
            return false;
        }
        match rest.get(at..) {
            Some(rest) => bytes = rest,
            None => return false,
        }
    }
    bytes.is_empty()
}

/// [`get_varint`] without the error detail, for the hot path: the same values accepted.
#[inline]
fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u32> {
    // One and two bytes (values below 16,384: RTTs in µs on a LAN, ages in ms) first.
    let first = *bytes.get(*at)?;
    if first < 0x80 {
        *at += 1;
        return Some(u32::from(first));
    }
    let second = *bytes.get(*at + 1)?;
    if second < 0x80 {
        *at += 2;
        return Some(u32::from(first & 0x7f) | u32::from(second) << 7);
    }
    let mut value = 0u32;
    for i in 0..5 {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            // The fifth byte holds the top 4 bits of a u32; more would overflow.
            return (i < 4 || byte < 0x10).then_some(value);
        }
    }
    None
}

/// Writes an unsigned LEB128 varint (at most 5 bytes for a u32) at `at` in an entry being
/// assembled; returns where it ends.
fn put_varint(out: &mut [u8; ROW_ENTRY_MAX_LEN], mut at: usize, mut v: u32) -> usize {
    while v >= 0x80 {
        out[at] = (v as u8 & 0x7f) | 0x80;
        v >>= 7;
        at += 1;
    }
    out[at] = v as u8;
    at + 1
}

/// Reads a LEB128 varint of at most 5 bytes that fits a u32.
fn get_varint(bytes: &[u8], at: &mut usize) -> Result<u32, DecodeError> {
    let mut value: u64 = 0;
    for i in 0..5 {
        let Some(&byte) = bytes.get(*at) else {
            return Err(DecodeError::Truncated {
                needed: *at + 1,
                got: bytes.len(),
            });
        };
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return u32::try_from(value).map_err(|_| DecodeError::BadField("varint"));
        }
    }
    Err(DecodeError::BadField("varint"))
}

/// `None` is 0 on the wire, `Some(v)` is `v + 1` (saturating).
fn put_optional(out: &mut [u8; ROW_ENTRY_MAX_LEN], at: usize, v: Option<u32>) -> usize {
    put_varint(out, at, v.map_or(0, |v| v.saturating_add(1)))
}

fn get_optional(bytes: &[u8], at: &mut usize) -> Result<Option<u32>, DecodeError> {
    Ok(get_varint(bytes, at)?.checked_sub(1))
}

impl RowEntry {
    /// Appends the encoding of this entry to `out` (at most [`ROW_ENTRY_MAX_LEN`] bytes).
    pub fn emit(&self, out: &mut Vec<u8>) {
        // Assembled on the stack and appended at once: one capacity check, not one a byte.
        let mut entry = [0u8; ROW_ENTRY_MAX_LEN];
        entry[..8].copy_from_slice(&self.target.0.to_be_bytes());
        entry[8] = self.state as u8;
        entry[9] = self.loss_half_pct.map_or(255, |l| l.min(200));
        let len = put_optional(&mut entry, 10, self.rtt_us);
        let len = put_optional(&mut entry, len, self.heard_ago_ms);
        // A fixed-size copy and a cut are cheaper than a copy of variable length.
        let start = out.len();
        out.extend_from_slice(&entry);
        out.truncate(start + len);
    }

    /// The entry at the start of `bytes` and its encoded length, or `None` if it is not
    /// well-formed: what [`RowEntry::parse`] returns, without the error detail.
    #[inline]
    fn decode(bytes: &[u8]) -> Option<(RowEntry, usize)> {
        let &[t0, t1, t2, t3, t4, t5, t6, t7, state, loss] = bytes.first_chunk::<10>()?;
        let mut at = 10;
        let entry = RowEntry {
            target: NodeId(u64::from_be_bytes([t0, t1, t2, t3, t4, t5, t6, t7])),
            state: PeerState::from_code(state)?,
            loss_half_pct: match loss {
                255 => None,
                l @ 0..=200 => Some(l),
                _ => return None,
            },
            rtt_us: read_varint(bytes, &mut at)?.checked_sub(1),
            heard_ago_ms: read_varint(bytes, &mut at)?.checked_sub(1),
        };
        Some((entry, at))
    }

    fn parse(bytes: &[u8], at: &mut usize) -> Result<RowEntry, DecodeError> {
        let fixed = *at + 10;
        if bytes.len() < fixed {
            return Err(DecodeError::Truncated {
                needed: fixed,
                got: bytes.len(),
            });
        }
        let target = NodeId(be_u64(bytes, *at));
        let state =
            PeerState::from_code(bytes[*at + 8]).ok_or(DecodeError::BadField("row state"))?;
        let loss_half_pct = match bytes[*at + 9] {
            255 => None,
            l @ 0..=200 => Some(l),
            _ => return Err(DecodeError::BadField("row loss")),
        };
        *at = fixed;
        let rtt_us = get_optional(bytes, at)?;
        let heard_ago_ms = get_optional(bytes, at)?;
        Ok(RowEntry {
            target,
            state,
            loss_half_pct,
            rtt_us,
            heard_ago_ms,
        })
    }
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(raw)
}

fn at_least(bytes: &[u8], needed: usize) -> Result<(), DecodeError> {
    if bytes.len() < needed {
        return Err(DecodeError::Truncated {
            needed,
            got: bytes.len(),
        });
    }
    Ok(())
}

fn parse_fragment(bytes: &[u8]) -> Result<Fragment<'_>, DecodeError> {
    at_least(bytes, FRAGMENT_OVERHEAD)?;
    let fragment = Fragment {
        message: be_u64(bytes, field::FRAG_MESSAGE),
        flags: bytes[field::FRAG_FLAGS],
        channel: bytes[field::FRAG_CHANNEL],
        index: be_u16(bytes, field::FRAG_INDEX),
        count: be_u16(bytes, field::FRAG_COUNT),
        total_len: be_u32(bytes, field::FRAG_TOTAL),
        data: &bytes[FRAGMENT_OVERHEAD..],
    };
    if fragment.flags & !(FRAG_CONFIRM | FRAG_ACK_NOW) != 0 {
        return Err(DecodeError::BadField("fragment flags"));
    }
    if fragment.count == 0 || fragment.index >= fragment.count {
        return Err(DecodeError::BadField("fragment index"));
    }
    if fragment.total_len as usize > MAX_MESSAGE_LEN {
        return Err(DecodeError::BadField("fragment length"));
    }
    let expected = fragment.span();
    exact(bytes, FRAGMENT_OVERHEAD + (expected.end - expected.start))?;
    Ok(fragment)
}

fn parse_ack(bytes: &[u8]) -> Result<Ack<'_>, DecodeError> {
    at_least(bytes, ACK_MIN_LEN)?;
    let complete = match bytes[field::ACK_FLAGS] {
        0 => false,
        1 => true,
        _ => return Err(DecodeError::BadField("ack flags")),
    };
    let count = be_u16(bytes, field::ACK_COUNT);
    exact(bytes, ACK_MIN_LEN + usize::from(count).div_ceil(8))?;
    Ok(Ack {
        message: be_u64(bytes, field::ACK_MESSAGE),
        complete,
        count,
        held: &bytes[ACK_MIN_LEN..],
    })
}

fn exact(bytes: &[u8], expected: usize) -> Result<(), DecodeError> {
    match bytes.len() {
        got if got < expected => Err(DecodeError::Truncated {
            needed: expected,
            got,
        }),
        got if got > expected => Err(DecodeError::TrailingBytes { expected, got }),
        _ => Ok(()),
    }
}

impl<'a> Packet<'a> {
    /// Decodes a datagram. Checks every length before reading; never panics, never allocates.
    pub fn parse(bytes: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        if bytes.len() < 4 {
            // Too short even to say whose it is.
            return Err(DecodeError::Truncated {
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        }
        if be_u16(bytes, field::MAGIC) != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if bytes[field::VERSION] != VERSION {
            return Err(DecodeError::UnsupportedVersion(bytes[field::VERSION]));
        }
        let kind = bytes[field::KIND];
        let kind = Kind::from_byte(kind).ok_or(DecodeError::UnknownKind(kind))?;
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::Truncated {
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        }
        let header = Header {
            from: NodeId(be_u64(bytes, field::FROM)),
            incarnation: be_u64(bytes, field::INCARNATION),
            to: NodeId(be_u64(bytes, field::TO)),
            to_incarnation: be_u64(bytes, field::TO_INCARNATION),
            seq: be_u32(bytes, field::SEQ),
        };
        let body = match kind {
            Kind::Ping => {
                if bytes.len() < PING_LEN {
                    return Err(DecodeError::Truncated {
                        needed: PING_LEN,
                        got: bytes.len(),
                    });
                }
                let row = match bytes.len() {
                    PING_LEN => None,
                    _ => Some(RowChunk::parse(&bytes[PING_LEN..])?),
                };
                Body::Ping {
                    probe: be_u32(bytes, field::PING_PROBE),
                    sent_ns: be_u64(bytes, field::PING_SENT_NS),
                    row,
                }
            }
            Kind::Pong => {
                at_least(bytes, PONG_LEN)?;
                let members = MemberUpdates::new(&bytes[PONG_LEN..])
                    .ok_or(DecodeError::BadField("members"))?;
                let coordinate = bytes[field::PONG_COORDINATE..]
                    .first_chunk::<COORDINATE_LEN>()
                    .and_then(WireCoordinate::parse)
                    .ok_or(DecodeError::BadField("coordinate"))?;
                Body::Pong {
                    probe: be_u32(bytes, field::PONG_PROBE),
                    echo_ns: be_u64(bytes, field::PONG_ECHO_NS),
                    hold_us: be_u32(bytes, field::PONG_HOLD_US),
                    coordinate,
                    members,
                }
            }
            Kind::Leave => {
                exact(bytes, LEAVE_LEN)?;
                Body::Leave
            }
            Kind::Fragment => Body::Fragment(parse_fragment(bytes)?),
            Kind::Ack => Body::Ack(parse_ack(bytes)?),
            Kind::Relay => {
                at_least(bytes, RELAY_OVERHEAD)?;
                exact(
                    bytes,
                    RELAY_OVERHEAD + usize::from(be_u16(bytes, field::RELAY_LEN)),
                )?;
                Body::Relay {
                    target: NodeId(be_u64(bytes, field::RELAY_TARGET)),
                    inner: &bytes[RELAY_OVERHEAD..],
                }
            }
        };
        Ok(Packet { header, body })
    }

    /// The kind of this datagram.
    pub fn kind(&self) -> Kind {
        match self.body {
            Body::Ping { .. } => Kind::Ping,
            Body::Pong { .. } => Kind::Pong,
            Body::Leave => Kind::Leave,
            Body::Fragment(_) => Kind::Fragment,
            Body::Ack(_) => Kind::Ack,
            Body::Relay { .. } => Kind::Relay,
        }
    }

    /// The encoded length of this datagram.
    pub fn len(&self) -> usize {
        match self.body {
            Body::Ping { row, .. } => PING_LEN + row.map_or(0, |r| r.len()),
            Body::Pong { members, .. } => PONG_LEN + members.as_bytes().len(),
            Body::Leave => LEAVE_LEN,
            Body::Fragment(f) => FRAGMENT_OVERHEAD + f.data.len(),
            Body::Ack(a) => ACK_MIN_LEN + a.held.len(),
            Body::Relay { inner, .. } => RELAY_OVERHEAD + inner.len(),
        }
    }

    /// Always false: a datagram has at least a header. (Pairs with [`Packet::len`].)
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Encodes into the front of `buf` and returns the length written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        match self.body {
            Body::Fragment(f) if f.data.len() > MAX_MESSAGE_LEN => {
                return Err(EncodeError::PayloadTooLarge(f.data.len()));
            }
            Body::Ack(a) if a.held.len() != usize::from(a.count).div_ceil(8) => {
                return Err(EncodeError::PayloadTooLarge(a.held.len()));
            }
            Body::Relay { inner, .. } if inner.len() > usize::from(u16::MAX) => {
                return Err(EncodeError::PayloadTooLarge(inner.len()));
            }
            Body::Ping { row: Some(row), .. } if row.entries.len() > usize::from(u16::MAX) => {
                return Err(EncodeError::PayloadTooLarge(row.entries.len()));
            }
            _ => {}
        }
        let len = self.len();
        if buf.len() < len {
            return Err(EncodeError::BufferTooSmall {
                needed: len,
                got: buf.len(),
            });
        }
        // Fixed-size parts are written through arrays: no bounds check per field.
        let too_small = EncodeError::BufferTooSmall {
            needed: len,
            got: buf.len(),
        };
        let Some((head, body)) = buf[..len].split_first_chunk_mut::<HEADER_LEN>() else {
            return Err(too_small);
        };
        let h = &self.header;
        head[field::MAGIC..field::VERSION].copy_from_slice(&MAGIC.to_be_bytes());
        head[field::VERSION] = VERSION;
        head[field::KIND] = self.kind() as u8;
        head[field::FROM..field::INCARNATION].copy_from_slice(&h.from.0.to_be_bytes());
        head[field::INCARNATION..field::TO].copy_from_slice(&h.incarnation.to_be_bytes());
        head[field::TO..field::TO_INCARNATION].copy_from_slice(&h.to.0.to_be_bytes());
        head[field::TO_INCARNATION..field::SEQ].copy_from_slice(&h.to_incarnation.to_be_bytes());
        head[field::SEQ..HEADER_LEN].copy_from_slice(&h.seq.to_be_bytes());
        match self.body {
            Body::Ping {
                probe,
                sent_ns,
                row,
            } => {
                let Some((fields, rest)) = body.split_first_chunk_mut::<12>() else {
                    return Err(too_small);
                };
                fields[0..4].copy_from_slice(&probe.to_be_bytes());
                fields[4..12].copy_from_slice(&sent_ns.to_be_bytes());
                if let Some(row) = row {
                    row.emit(rest);
                }
            }
            Body::Pong {
                probe,
                echo_ns,
                hold_us,
                coordinate,
                members,
            } => {
                let Some((fields, rest)) = body.split_first_chunk_mut::<16>() else {
                    return Err(too_small);
                };
                fields[0..4].copy_from_slice(&probe.to_be_bytes());
                fields[4..12].copy_from_slice(&echo_ns.to_be_bytes());
                fields[12..16].copy_from_slice(&hold_us.to_be_bytes());
                let Some((out, tail)) = rest.split_first_chunk_mut::<COORDINATE_LEN>() else {
                    return Err(too_small);
                };
                coordinate.emit(out);
                tail.copy_from_slice(members.as_bytes());
            }
            Body::Leave => {}
            Body::Fragment(f) => {
                let Some((fields, rest)) = body.split_first_chunk_mut::<18>() else {
                    return Err(too_small);
                };
                let at = |offset: usize| offset - HEADER_LEN;
                fields[at(field::FRAG_MESSAGE)..at(field::FRAG_FLAGS)]
                    .copy_from_slice(&f.message.to_be_bytes());
                fields[at(field::FRAG_FLAGS)] = f.flags;
                fields[at(field::FRAG_CHANNEL)] = f.channel;
                fields[at(field::FRAG_INDEX)..at(field::FRAG_COUNT)]
                    .copy_from_slice(&f.index.to_be_bytes());
                fields[at(field::FRAG_COUNT)..at(field::FRAG_TOTAL)]
                    .copy_from_slice(&f.count.to_be_bytes());
                fields[at(field::FRAG_TOTAL)..].copy_from_slice(&f.total_len.to_be_bytes());
                rest.copy_from_slice(f.data);
            }
            Body::Ack(a) => {
                let Some((fields, rest)) = body.split_first_chunk_mut::<11>() else {
                    return Err(too_small);
                };
                fields[0..8].copy_from_slice(&a.message.to_be_bytes());
                fields[8] = u8::from(a.complete);
                fields[9..11].copy_from_slice(&a.count.to_be_bytes());
                rest.copy_from_slice(a.held);
            }
            Body::Relay { target, inner } => {
                let Some((fields, rest)) = body.split_first_chunk_mut::<10>() else {
                    return Err(too_small);
                };
                fields[0..8].copy_from_slice(&target.0.to_be_bytes());
                // Checked above: fits in u16.
                fields[8..10].copy_from_slice(&(inner.len() as u16).to_be_bytes());
                rest.copy_from_slice(inner);
            }
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            from: NodeId(0x0102_0304_0506_0708),
            incarnation: 0x1112_1314_1516_1718,
            to: NodeId(0x2122_2324_2526_2728),
            to_incarnation: 0x2930_2a2b_2c2d_2e2f,
            seq: 0x3132_3334,
        }
    }

    fn round_trip(body: Body<'_>) {
        let packet = Packet {
            header: header(),
            body,
        };
        let mut buf = [0u8; 256];
        let n = packet.emit(&mut buf).unwrap();
        assert_eq!(n, packet.len());
        assert_eq!(Packet::parse(&buf[..n]).unwrap(), packet);
        // Every strict prefix is rejected, never misread; the one exception is a ping cut
        // right before its row chunk, which is a whole row-less ping.
        for cut in 0..n {
            if let Ok(p) = Packet::parse(&buf[..cut]) {
                // ...and a Pong cut after a whole membership update: a Pong with fewer.
                let fewer_updates = matches!(p.body, Body::Pong { .. })
                    && cut >= PONG_LEN
                    && (cut - PONG_LEN).is_multiple_of(crate::wire::MEMBER_UPDATE_LEN);
                assert!(
                    (cut == PING_LEN && matches!(p.body, Body::Ping { row: None, .. }))
                        || fewer_updates,
                    "prefix of {cut} accepted"
                );
            }
        }
        // A longer buffer is rejected too: lengths are exact.
        assert!(Packet::parse(&buf[..n + 1]).is_err());
    }

    /// A Pong with small numbers and the origin as its coordinate.
    fn small_pong() -> Packet<'static> {
        Packet {
            header: header(),
            body: Body::Pong {
                probe: 1,
                echo_ns: 2,
                hold_us: 3,
                coordinate: WireCoordinate::default(),
                members: MemberUpdates::EMPTY,
            },
        }
    }

    #[test]
    fn a_pong_whose_coordinate_is_not_finite_is_malformed() {
        let packet = small_pong();
        let mut buf = [0u8; PONG_LEN];
        packet.emit(&mut buf).unwrap();
        assert!(Packet::parse(&buf).is_ok());
        // The height is the fifth float after the 16 bytes of probe, echo and hold.
        let height = HEADER_LEN + 16 + 16;
        buf[height..height + 4].copy_from_slice(&f32::NAN.to_be_bytes());
        assert_eq!(
            Packet::parse(&buf),
            Err(DecodeError::BadField("coordinate"))
        );
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(Body::Ping {
            probe: 7,
            sent_ns: 123_456_789,
            row: None,
        });
        round_trip(Body::Pong {
            probe: 7,
            echo_ns: 123_456_789,
            hold_us: 42,
            coordinate: WireCoordinate {
                vec: [0.5, -0.25, 0.0, 0.125],
                height: 0.001,
                error: 1.0,
            },
            members: MemberUpdates::EMPTY,
        });
        let mut members = [0u8; 2 * crate::wire::MEMBER_UPDATE_LEN];
        members[20] = 1;
        members[crate::wire::MEMBER_UPDATE_LEN + 20] = 2;
        round_trip(Body::Pong {
            probe: 8,
            echo_ns: 5,
            hold_us: 1,
            coordinate: WireCoordinate::default(),
            members: MemberUpdates::new(&members).unwrap(),
        });
        round_trip(Body::Leave);
        round_trip(Body::Fragment(Fragment {
            message: 0x0a0b_0c0d_0e0f_1011,
            flags: FRAG_CONFIRM | FRAG_ACK_NOW,
            channel: 2,
            index: 3,
            count: 4,
            total_len: 23,
            data: b"hello",
        }));
        round_trip(Body::Fragment(Fragment {
            message: 1,
            flags: 0,
            channel: 0,
            index: 0,
            count: 1,
            total_len: 0,
            data: b"",
        }));
        round_trip(Body::Relay {
            target: NodeId(77),
            inner: b"an inner datagram",
        });
        round_trip(Body::Ack(Ack {
            message: 9,
            complete: false,
            count: 10,
            held: &[0b1010_0101, 0b10],
        }));
        round_trip(Body::Ack(Ack {
            message: 9,
            complete: true,
            count: 0,
            held: &[],
        }));
    }

    #[test]
    fn header_layout_is_big_endian_as_documented() {
        let packet = Packet {
            header: header(),
            body: Body::Ping {
                probe: 0x4142_4344,
                sent_ns: 0x5152_5354_5556_5758,
                row: None,
            },
        };
        let mut buf = [0u8; PING_LEN];
        packet.emit(&mut buf).unwrap();
        assert_eq!(&buf[0..4], &[b'P', b'M', 5, 1]);
        assert_eq!(&buf[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            &buf[28..36],
            &[0x29, 0x30, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f]
        );
        assert_eq!(&buf[36..40], &[0x31, 0x32, 0x33, 0x34]);
        assert_eq!(&buf[40..44], &[0x41, 0x42, 0x43, 0x44]);
        assert_eq!(buf[51], 0x58);
    }

    #[test]
    fn foreign_and_future_datagrams_are_told_apart() {
        let mut buf = [0u8; PING_LEN];
        Packet {
            header: header(),
            body: Body::Leave,
        }
        .emit(&mut buf)
        .unwrap();
        let mut other = buf;
        other[0] = b'X';
        assert_eq!(
            Packet::parse(&other[..LEAVE_LEN]),
            Err(DecodeError::BadMagic)
        );
        // Version 4 (the same datagrams but Pongs without membership updates), version 3
        // (a Pong without a coordinate),
        // version 2 (the same header, without messages: kind 4 was Data) and version 1 (a
        // 32-byte header without the receiver's incarnation) are all refused.
        for version in [4u8, 3, 2, 1] {
            let mut other = buf;
            other[2] = version;
            assert_eq!(
                Packet::parse(&other[..LEAVE_LEN]),
                Err(DecodeError::UnsupportedVersion(version))
            );
        }
        let mut retired = buf;
        retired[3] = 4;
        assert_eq!(
            Packet::parse(&retired[..LEAVE_LEN]),
            Err(DecodeError::UnknownKind(4))
        );
        let mut odd = buf;
        odd[3] = 99;
        assert_eq!(
            Packet::parse(&odd[..LEAVE_LEN]),
            Err(DecodeError::UnknownKind(99))
        );
    }

    #[test]
    fn a_ping_carries_a_row_chunk() {
        let entries = [
            RowEntry {
                target: NodeId(9),
                state: PeerState::Alive,
                loss_half_pct: Some(40),
                rtt_us: Some(1234),
                heard_ago_ms: Some(0),
            },
            RowEntry {
                target: NodeId(u64::MAX),
                state: PeerState::Unknown,
                loss_half_pct: None,
                rtt_us: None,
                heard_ago_ms: None,
            },
            RowEntry {
                target: NodeId(3),
                state: PeerState::Unreachable,
                loss_half_pct: Some(200),
                rtt_us: Some(u32::MAX - 1),
                heard_ago_ms: Some(70_000),
            },
        ];
        let mut encoded = Vec::new();
        for e in &entries {
            e.emit(&mut encoded);
        }
        let row = RowChunk::new(17, 1, 3, 3, &encoded);
        round_trip(Body::Ping {
            probe: 1,
            sent_ns: 2,
            row: Some(row),
        });
        let parsed: Vec<RowEntry> = row.entries().collect();
        assert_eq!(parsed, entries);
        // A chunk whose index is not below its count is refused.
        let mut buf = [0u8; 256];
        let bad = RowChunk::new(1, 3, 3, 3, &encoded);
        let packet = Packet {
            header: header(),
            body: Body::Ping {
                probe: 0,
                sent_ns: 0,
                row: Some(bad),
            },
        };
        let n = packet.emit(&mut buf).unwrap();
        assert_eq!(
            Packet::parse(&buf[..n]),
            Err(DecodeError::BadField("row chunk index"))
        );
    }

    /// The walk of [`RowChunk::parse`] and the decoder of its iterator agree with
    /// [`RowEntry::parse`] on every input, well-formed or not.
    #[test]
    fn fast_row_walk_and_decode_agree_with_parse() {
        let mut rng = crate::core::rng::Rng::new(3);
        let values = [0, 1, 126, 127, 128, 16_383, 16_384, u32::MAX - 1, u32::MAX];
        for _ in 0..20_000 {
            let mut bytes = Vec::new();
            let count = rng.below(4) as u16;
            for _ in 0..count {
                let pick = |rng: &mut crate::core::rng::Rng| {
                    (rng.below(4) > 0).then(|| values[rng.below(values.len() as u64) as usize])
                };
                RowEntry {
                    target: NodeId(rng.next_u64()),
                    state: PeerState::from_code(rng.below(6) as u8).unwrap(),
                    loss_half_pct: (rng.below(4) > 0).then(|| rng.below(201) as u8),
                    rtt_us: pick(&mut rng),
                    heard_ago_ms: pick(&mut rng),
                }
                .emit(&mut bytes);
            }
            // Corrupt some: flip bytes, cut, or append.
            match rng.below(4) {
                0 if !bytes.is_empty() => {
                    let i = rng.below(bytes.len() as u64) as usize;
                    bytes[i] = rng.next_u64() as u8;
                }
                1 if !bytes.is_empty() => bytes.truncate(rng.below(bytes.len() as u64) as usize),
                2 => bytes.push(rng.next_u64() as u8),
                _ => {}
            }
            let mut at = 0;
            let slow: Result<Vec<RowEntry>, DecodeError> = (0..count)
                .map(|_| RowEntry::parse(&bytes, &mut at))
                .collect();
            let slow_ok = slow.is_ok() && at == bytes.len();
            assert_eq!(entries_are_valid(&bytes, count), slow_ok, "{bytes:?}");
            let mut rest = &bytes[..];
            let mut at = 0;
            for _ in 0..count {
                let fast = RowEntry::decode(rest);
                let before = at;
                let slow = RowEntry::parse(&bytes, &mut at).ok();
                assert_eq!(fast.map(|(e, _)| e), slow, "{bytes:?}");
                let Some((_, len)) = fast else { break };
                assert_eq!(len, at - before);
                rest = &rest[len..];
            }
        }
    }

    #[test]
    fn emit_checks_the_buffer() {
        let packet = small_pong();
        let mut small = [0u8; PONG_LEN - 1];
        assert_eq!(
            packet.emit(&mut small),
            Err(EncodeError::BufferTooSmall {
                needed: PONG_LEN,
                got: PONG_LEN - 1
            })
        );
    }
}
