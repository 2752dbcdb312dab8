//! One rate limit for warnings a flood could repeat: a burst per window, then a count.
//!
//! Refused handshakes and policy denials both warn about single clients; a client (or a
//! thousand) that repeats itself must not fill the log. Each warning site owns a
//! [`LogLimiter`]; what it holds back is reported with the next line it lets through.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Admits a burst of log lines per window and counts the rest.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    window: Duration,
    burst: u32,
    state: Mutex<LimiterState>,
}

#[derive(Debug)]
struct LimiterState {
    window_start: Option<Instant>,
    admitted: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub(crate) fn new(burst: u32, window: Duration) -> Self {
        Self {
            window,
            burst,
            state: Mutex::new(LimiterState {
                window_start: None,
                admitted: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be logged, `n` being how many were suppressed since the last
    /// admitted one; `None` when this one is suppressed.
    pub(crate) fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    /// [`admit`](Self::admit) at a given moment.
    pub(crate) fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = state
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if fresh {
            state.window_start = Some(now);
            state.admitted = 0;
        }
        if state.admitted < self.burst {
            state.admitted += 1;
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self::new(10, Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_admits_a_burst_then_counts() {
        let limiter = LogLimiter::new(3, Duration::from_secs(3600));
        assert_eq!(limiter.admit(), Some(0));
        assert_eq!(limiter.admit(), Some(0));
        assert_eq!(limiter.admit(), Some(0));
        for _ in 0..5 {
            assert_eq!(limiter.admit(), None);
        }
        // A zero-length window opens a new one each time and reports what was suppressed.
        let limiter = LogLimiter {
            window: Duration::ZERO,
            ..limiter
        };
        assert_eq!(limiter.admit(), Some(5));
        assert_eq!(limiter.admit(), Some(0));
    }
}
