//! Live counters of an acceptor and the snapshot users read.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::tls::accept::error::{CLASSES, HandshakeFailure};

/// Live counters of one acceptor (shared by its clones).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    succeeded: AtomicU64,
    resumed: AtomicU64,
    failed: [AtomicU64; CLASSES],
    active: AtomicU64,
    in_progress: AtomicU64,
}

impl Counters {
    pub(crate) fn succeeded(&self, resumed: bool) {
        self.succeeded.fetch_add(1, Ordering::Relaxed);
        if resumed {
            self.resumed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn failed(&self, kind: HandshakeFailure) {
        self.failed[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> AcceptorStats {
        let mut failures = [0; CLASSES];
        for (slot, counter) in failures.iter_mut().zip(&self.failed) {
            *slot = counter.load(Ordering::Relaxed);
        }
        AcceptorStats {
            handshakes_succeeded: self.succeeded.load(Ordering::Relaxed),
            handshakes_resumed: self.resumed.load(Ordering::Relaxed),
            failures,
            active_connections: self.active.load(Ordering::Relaxed),
            handshakes_in_progress: self.in_progress.load(Ordering::Relaxed),
        }
    }
}

/// Counts one thing for as long as it lives.
#[derive(Debug)]
pub(crate) struct Gauge {
    counters: Arc<Counters>,
    which: GaugeKind,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum GaugeKind {
    Active,
    InProgress,
}

impl Gauge {
    pub(crate) fn new(counters: &Arc<Counters>, which: GaugeKind) -> Self {
        Self::counter(counters, which).fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::tls::accept::metrics::gauge(which.metric(), true);
        Self {
            counters: counters.clone(),
            which,
        }
    }

    fn counter(counters: &Counters, which: GaugeKind) -> &AtomicU64 {
        match which {
            GaugeKind::Active => &counters.active,
            GaugeKind::InProgress => &counters.in_progress,
        }
    }
}

#[cfg(feature = "metrics")]
impl GaugeKind {
    fn metric(self) -> &'static str {
        match self {
            Self::Active => crate::tls::accept::metrics::CONNECTIONS_OPEN,
            Self::InProgress => crate::tls::accept::metrics::HANDSHAKES_IN_PROGRESS,
        }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        Self::counter(&self.counters, self.which).fetch_sub(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::tls::accept::metrics::gauge(self.which.metric(), false);
    }
}

/// A snapshot of an acceptor's counters, from [`MtlsAcceptor::stats`](crate::MtlsAcceptor::stats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptorStats {
    /// Handshakes completed.
    pub handshakes_succeeded: u64,
    /// Of those, the handshakes that resumed a session (the others were full handshakes).
    pub handshakes_resumed: u64,
    failures: [u64; CLASSES],
    /// TLS connections open now (handshake done, stream not dropped yet).
    pub active_connections: u64,
    /// Handshakes running now.
    pub handshakes_in_progress: u64,
}

impl AcceptorStats {
    /// Handshakes that failed, all classes together.
    pub fn handshakes_failed(&self) -> u64 {
        self.failures.iter().sum()
    }

    /// Handshakes that failed with `kind`.
    pub fn failures(&self, kind: HandshakeFailure) -> u64 {
        self.failures[kind.index()]
    }

    /// Every class with its count, zeros included.
    pub fn failures_by_class(&self) -> impl Iterator<Item = (HandshakeFailure, u64)> + '_ {
        HandshakeFailure::ALL
            .iter()
            .map(|kind| (*kind, self.failures[kind.index()]))
    }
}

impl fmt::Display for AcceptorStats {
    /// One line: `handshakes ok=12 failed=3 (unknown_ca=2 timeout=1) active=4 in_progress=0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "handshakes ok={} failed={}",
            self.handshakes_succeeded,
            self.handshakes_failed()
        )?;
        let mut classes = self.failures_by_class().filter(|(_, n)| *n > 0).peekable();
        if classes.peek().is_some() {
            f.write_str(" (")?;
            let mut first = true;
            for (kind, n) in classes {
                if !first {
                    f.write_str(" ")?;
                }
                first = false;
                write!(f, "{kind}={n}")?;
            }
            f.write_str(")")?;
        }
        write!(
            f,
            " active={} in_progress={}",
            self.active_connections, self.handshakes_in_progress
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_display_lists_only_what_happened() {
        let counters = Arc::new(Counters::default());
        counters.succeeded(false);
        counters.failed(HandshakeFailure::UnknownCa);
        counters.failed(HandshakeFailure::UnknownCa);
        counters.failed(HandshakeFailure::Timeout);
        let active = Gauge::new(&counters, GaugeKind::Active);
        let stats = counters.snapshot();
        assert_eq!(stats.handshakes_failed(), 3);
        assert_eq!(stats.failures(HandshakeFailure::UnknownCa), 2);
        assert_eq!(
            stats.to_string(),
            "handshakes ok=1 failed=3 (unknown_ca=2 timeout=1) active=1 in_progress=0"
        );
        drop(active);
        assert_eq!(counters.snapshot().active_connections, 0);
    }
}
