//! Host names resolved off the event loop: one helper thread calls the system resolver
//! (`getaddrinfo`, which honours `/etc/hosts`, `/etc/resolv.conf` and nsswitch, and has no
//! non-blocking form) and hands each answer back through a [`mio::Waker`].
//!
//! The loop only queues lookups ([`Resolver::lookup`], never blocking: a full queue refuses
//! the lookup, which is asked again at the next turn of its schedule) and drains answers
//! ([`Resolver::poll_answer`]) when the waker's token is ready. No protocol work happens on
//! the thread. A lookup of a name that is already on its way is not queued twice.

use log::{debug, warn};
use mio::{Registry, Token, Waker};
use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread;

/// Lookups waiting for the thread, at most: more than any mesh has names
/// ([`crate::config::MAX_NODES`]).
pub const QUEUE_LIMIT: usize = 2048;

/// One host name to resolve, with the port the answer is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Lookup {
    /// The host name, as the config gives it.
    pub host: String,
    /// The node's UDP port.
    pub port: u16,
}

/// What the system resolver said of one [`Lookup`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The lookup answered.
    pub lookup: Lookup,
    /// Every address it gave, in the resolver's order, or why it gave none.
    pub result: Result<Vec<SocketAddr>, String>,
}

/// The resolver thread, seen from the loop.
pub struct Resolver {
    requests: SyncSender<Lookup>,
    answers: Receiver<Answer>,
    /// Lookups queued or being resolved.
    in_flight: HashSet<Lookup>,
    token: Token,
    // Kept so the waker lives as long as the loop's side.
    _waker: Arc<Waker>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("in_flight", &self.in_flight.len())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Starts the thread; its answers wake `registry`'s poll with `token`.
    ///
    /// The thread ends by itself once the `Resolver` is dropped and its current lookup
    /// returns (it is never joined: a lookup may take the resolver's whole timeout).
    pub fn start(registry: &Registry, token: Token) -> io::Result<Resolver> {
        let waker = Arc::new(Waker::new(registry, token)?);
        let (requests, inbox) = mpsc::sync_channel::<Lookup>(QUEUE_LIMIT);
        let (outbox, answers) = mpsc::channel::<Answer>();
        let thread_waker = Arc::clone(&waker);
        thread::Builder::new()
            .name("peermesh-resolver".into())
            .spawn(move || {
                while let Ok(lookup) = inbox.recv() {
                    let result = resolve(&lookup);
                    if outbox.send(Answer { lookup, result }).is_err() {
                        break; // the loop is gone
                    }
                    if let Err(e) = thread_waker.wake() {
                        warn!("resolver: cannot wake the event loop: {e}");
                    }
                }
            })?;
        Ok(Resolver {
            requests,
            answers,
            in_flight: HashSet::new(),
            token,
            _waker: waker,
        })
    }

    /// The token its answers wake the loop with.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Queues `lookup` unless the same one is on its way; never blocks. Returns whether it
    /// is on its way now.
    pub fn lookup(&mut self, lookup: Lookup) -> bool {
        if self.in_flight.contains(&lookup) {
            return true;
        }
        match self.requests.try_send(lookup.clone()) {
            Ok(()) => {
                debug!("resolving {}", lookup.host);
                self.in_flight.insert(lookup);
                true
            }
            Err(TrySendError::Full(_)) => {
                debug!(
                    "resolver queue full: {} waits for its next turn",
                    lookup.host
                );
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                warn!(
                    "the resolver thread is gone: {} is not resolved",
                    lookup.host
                );
                false
            }
        }
    }

    /// The next answer, if one came.
    pub fn poll_answer(&mut self) -> Option<Answer> {
        match self.answers.try_recv() {
            Ok(answer) => {
                self.in_flight.remove(&answer.lookup);
                Some(answer)
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
        }
    }

    /// Lookups queued or being resolved.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

/// The system resolver's answer for `lookup`: every address, or the error's text.
fn resolve(lookup: &Lookup) -> Result<Vec<SocketAddr>, String> {
    match (lookup.host.as_str(), lookup.port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err("no address".to_string())
            } else {
                Ok(addrs)
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::time::{Duration, Instant};

    #[test]
    fn an_answer_wakes_the_loop_and_a_name_on_its_way_is_asked_once() {
        let mut poll = Poll::new().expect("poll");
        let mut resolver = Resolver::start(poll.registry(), Token(9)).expect("thread");
        let lookup = Lookup {
            host: "localhost".into(),
            port: 1313,
        };
        assert!(resolver.lookup(lookup.clone()));
        assert!(resolver.lookup(lookup.clone()));
        assert_eq!(resolver.in_flight(), 1);
        let mut events = Events::with_capacity(4);
        let deadline = Instant::now() + Duration::from_secs(20);
        let answer = loop {
            assert!(Instant::now() < deadline, "no answer within 20 s");
            poll.poll(&mut events, Some(Duration::from_millis(500)))
                .expect("poll");
            if let Some(answer) = resolver.poll_answer() {
                break answer;
            }
        };
        assert!(events.iter().any(|e| e.token() == Token(9)) || events.is_empty());
        assert_eq!(answer.lookup, lookup);
        let addrs = answer.result.expect("localhost resolves");
        assert!(addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 1313));
        assert_eq!(resolver.in_flight(), 0);
    }
}
