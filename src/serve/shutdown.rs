//! The one shutdown mechanism of both serving paths: a request ([`ServerHandle`] or a signal
//! future), then a drain — the server stops accepting, open connections finish within the grace
//! period — then what is left is closed. The phase every connection sees is one atomic load per
//! wake-up; the number of open connections is the number of connection slots taken (see
//! [`core`](super::core)).
//!
//! [`ServerHandle`]: super::ServerHandle

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

use super::core::Slots;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Running = 0,
    Draining = 1,
    Closing = 2,
}

impl Phase {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Running,
            1 => Self::Draining,
            _ => Self::Closing,
        }
    }
}

/// The server's phase as every connection sees it.
///
/// Cheaper than a `watch` channel on the hot path: a connection's task polls it on every
/// wake-up (each request), and that poll is one atomic load as long as the task's waker is the
/// one registered; the `Notify` wakes the tasks only when the phase changes.
#[derive(Clone)]
pub(super) struct PhaseSignal {
    phase: Arc<AtomicU8>,
    notify: Arc<Notify>,
}

impl PhaseSignal {
    pub(super) fn new() -> Self {
        Self {
            phase: Arc::new(AtomicU8::new(Phase::Running as u8)),
            notify: Arc::new(Notify::new()),
        }
    }

    /// Moves every connection to `phase` (never back).
    pub(super) fn set(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    pub(super) fn get(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// A listener for changes after `seen`.
    pub(super) fn listen(&self, seen: Phase) -> PhaseListener {
        PhaseListener {
            signal: self.clone(),
            seen,
            notified: armed(&self.notify),
            waker: None,
        }
    }
}

/// The server side's handle: dropping it (the `serve` future dropped, or finished) closes the
/// connections still open.
pub(super) struct PhaseSender(pub(super) PhaseSignal);

impl Drop for PhaseSender {
    fn drop(&mut self) {
        self.0.set(Phase::Closing);
    }
}

/// A `Notified` that counts from now: a `notify_waiters` after this call reaches it even
/// before it is first polled.
fn armed(notify: &Arc<Notify>) -> Pin<Box<OwnedNotified>> {
    let mut notified = Box::pin(notify.clone().notified_owned());
    notified.as_mut().enable();
    notified
}

/// One connection's view of the [`PhaseSignal`].
pub(super) struct PhaseListener {
    pub(super) signal: PhaseSignal,
    pub(super) seen: Phase,
    notified: Pin<Box<OwnedNotified>>,
    /// The waker `notified` holds; while the task's waker is this one, polling is a load.
    waker: Option<Waker>,
}

impl PhaseListener {
    /// Ready with the new phase when it changed since the last call.
    pub(super) fn poll_change(&mut self, cx: &mut Context<'_>) -> Poll<Phase> {
        loop {
            // `notified` was armed before this load: a change after it wakes us.
            let now = self.signal.get();
            if now != self.seen {
                self.seen = now;
                self.notified = armed(&self.signal.notify);
                self.waker = None;
                return Poll::Ready(now);
            }
            if self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                return Poll::Pending;
            }
            match self.notified.as_mut().poll(cx) {
                // Notified for a change the load above may have missed: look again.
                Poll::Ready(()) => self.notified = armed(&self.signal.notify),
                Poll::Pending => {
                    self.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
    }

    /// Resolves when the phase leaves `Running`.
    pub(super) async fn stopping(&mut self) {
        std::future::poll_fn(|cx| {
            loop {
                if self.seen != Phase::Running {
                    return Poll::Ready(());
                }
                if self.poll_change(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        })
        .await;
    }
}

/// Drains: connections are told to finish (`Draining`); after `grace`, or once none is
/// open, what is left is closed (`Closing`). Returns when no connection is open.
pub(super) async fn drain(phase: &PhaseSignal, slots: &Slots, grace: Duration) {
    tracing::info!(open_connections = slots.open(), grace = ?grace, "shutting down: no longer accepting");
    phase.set(Phase::Draining);
    if tokio::time::timeout(grace, slots.idle()).await.is_err() {
        tracing::warn!(
            open_connections = slots.open(),
            "grace period over; closing the remaining connections"
        );
        phase.set(Phase::Closing);
        slots.idle().await;
    }
    phase.set(Phase::Closing);
}

/// The phase's atomic, for streams handed out by a listener: at or above
/// [`CLOSED`](crate::tls::accept::acceptor::CLOSED) they fail their reads and writes.
impl PhaseSignal {
    pub(super) fn flag(&self) -> Arc<AtomicU8> {
        self.phase.clone()
    }
}
