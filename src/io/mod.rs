//! The I/O layer: the core put on real sockets, in one `mio` event loop.
//!
//! [`driver`] is one UDP socket and one core for any mio loop; [`control`] the local control
//! socket and [`control_protocol`] what is said over it; [`handlers`] runs the event handler
//! program; [`daemon`] is `peermesh run`, the whole node with its signals. No protocol logic
//! lives here.

pub mod control;
pub mod control_protocol;
pub mod daemon;
pub mod driver;
pub mod handlers;
