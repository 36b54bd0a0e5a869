//! Placeholder until the service-integration branch lands: systemd readiness notification.

/// The node is ready (or done reloading).
pub fn ready() {}

/// The node is reloading its config.
pub fn reloading() {}
