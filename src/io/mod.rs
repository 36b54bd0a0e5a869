//! The I/O layer: the core put on real sockets, in one `mio` event loop.
//!
//! [`driver`] is one UDP socket and one core for any mio loop; [`control`] the local control
//! socket and [`control_protocol`] what is said over it ([`control_answer`] answers the
//! application-data requests, [`control_pending`] keeps those answered later,
//! [`control_watch`] the backlog of a watcher); [`handlers`] runs the event handler
//! program; [`daemon`] is `peermesh run`, the whole node with its signals, and
//! [`tags_file`] its `--tags-file`; [`resolver`] resolves host names on
//! a helper thread and [`host_names`] keeps when each is due and what it resolved to;
//! [`http`] serves `/metrics`, the JSON reports and the status page; [`reload`] re-reads
//! the config. No protocol logic lives here.

pub mod control;
pub mod control_answer;
pub mod control_pending;
pub mod control_protocol;
pub mod control_watch;
pub mod daemon;
pub mod driver;
pub mod handlers;
pub mod host_names;
pub mod http;
pub mod notify;
pub mod reload;
pub mod resolver;
pub mod tags_file;
