//! Why datagrams were dropped, and how many for each reason.
//!
//! A datagram that is malformed, unauthenticated, replayed or otherwise unwelcome is no
//! error to the caller: it is dropped, counted here and logged at trace level.

/// Why a received datagram was dropped. Each has a counter ([`crate::Mesh::dropped`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a well-formed peermesh datagram (bad magic, truncated, bad lengths, unknown kind).
    Malformed,
    /// A peermesh datagram of another protocol version.
    WrongVersion,
    /// From an identity that is not in this node's config.
    UnknownSender,
    /// Addressed to another identity.
    Misdirected,
    /// Claims to come from this node itself.
    FromSelf,
    /// From an incarnation of the peer older than the one this node holds: a past process
    /// (incarnations never go backwards at a node), answered so a live one can refute.
    StaleIncarnation,
    /// From a peer's incarnation that already said `Leave`.
    AfterLeave,
    /// A pong that matches no outstanding ping (late beyond the window, duplicate, or forged).
    StalePong,
    /// Not sealed with a key of this node's keyring: forged, corrupted, a wrong key, or
    /// plain where sealed is required (and sealed where this node has no keyring).
    AuthFailed,
    /// A sequence number already seen, or older than the replay window.
    Replayed,
    /// Without a keyring: from an IP address that is no configured peer's.
    AddressNotAllowed,
    /// Did not prove it was sent during this node's current life: it names another
    /// incarnation of this node (and is no Pong to one of its recent Pings). A Ping is still
    /// answered, so its sender learns this incarnation (the first Ping naming none, 0, since
    /// the peer was last believed is the first step of that handshake: not counted). Normal:
    /// one or two per peer after this node restarts. About one per interval from one peer:
    /// it does not hear this node (a one-way path). More: replays of traffic from before
    /// this node started.
    NotFresh,
}

impl DropReason {
    /// Every reason, in the order counters are reported.
    pub const ALL: [DropReason; 12] = [
        DropReason::Malformed,
        DropReason::WrongVersion,
        DropReason::UnknownSender,
        DropReason::Misdirected,
        DropReason::FromSelf,
        DropReason::StaleIncarnation,
        DropReason::AfterLeave,
        DropReason::StalePong,
        DropReason::AuthFailed,
        DropReason::Replayed,
        DropReason::AddressNotAllowed,
        DropReason::NotFresh,
    ];

    /// The snake_case name used in logs, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::WrongVersion => "wrong_version",
            DropReason::UnknownSender => "unknown_sender",
            DropReason::Misdirected => "misdirected",
            DropReason::FromSelf => "from_self",
            DropReason::StaleIncarnation => "stale_incarnation",
            DropReason::AfterLeave => "after_leave",
            DropReason::StalePong => "stale_pong",
            DropReason::AuthFailed => "auth_failed",
            DropReason::Replayed => "replayed",
            DropReason::AddressNotAllowed => "address_not_allowed",
            DropReason::NotFresh => "not_fresh",
        }
    }
}

/// Counters of dropped datagrams, one per [`DropReason`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; DropReason::ALL.len()],
}

impl DropCounters {
    /// How many datagrams were dropped for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason as usize]
    }

    /// All datagrams dropped, whatever the reason.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(reason, count)` for every reason.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.get(r)))
    }

    pub(crate) fn bump(&mut self, reason: DropReason) {
        self.counts[reason as usize] += 1;
    }
}
