//! Accepting connections: one handshake per connection within a deadline, its failure classes,
//! the counters, the telemetry hook and the metrics table.

pub(crate) mod acceptor;
pub(crate) mod error;
pub mod metrics;
pub(crate) mod observe;
pub(crate) mod stats;
