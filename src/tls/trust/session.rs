//! Session resumption that never outlives what the full handshake verified.
//!
//! rustls restores a resumed session's client chain without verifying it again. Every built
//! configuration has its own session store, so a change of trust (a CA or CRL reload) already
//! orphans older sessions; what can change within one configuration is **time**: the client
//! certificate (or an intermediate) expires, or — with fresh CRLs required — its issuer's CRL
//! goes stale. So each stored session carries the moment until which its verification holds,
//! and a session past it is not resumed: the client falls back to a full handshake, which
//! refuses the certificate with the proper TLS alert (`certificate_expired`, …) instead of the
//! connection being cut after a resumption.
//!
//! The verifier learns the bound during the handshake and hands it to the store through a
//! task-local slot that the acceptor opens around each handshake
//! ([`scope`](crate::tls::trust::scope)). A handshake run outside that
//! slot (someone using the `ServerConfig` with their own acceptor) stores no session at all:
//! resumption is then lost, never unbounded.
//!
//! A **resumed** handshake runs no verifier, yet TLS 1.3 issues new tickets on it. Those
//! descend from the session that was resumed, so opening a stored session writes its bound
//! into the slot: the new tickets inherit it, and a chain of resumptions never outlives the
//! full handshake it started from. The slot only ever tightens (the earlier of two bounds
//! wins), so a session looked up but not resumed can shorten, never lengthen, what the full
//! handshake that follows stores.
//!
//! With shared session ticket keys ([`tickets`](crate::tls::trust::tickets)) TLS 1.3 sessions and TLS 1.2
//! tickets are not kept here but sealed into the tickets themselves; the ticketer reads the
//! bound from the same slot ([`verified_until`]) and writes an opened ticket's bound back
//! ([`note_verified`]), so the rules above hold across replicas too.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::server::StoresServerSessions;

use crate::tls::trust::scope::{note_verified, verified_until};

/// Sessions the store keeps (rustls's default).
pub(crate) const SESSIONS: usize = 256;

/// Now, in Unix seconds.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A session store whose entries expire with the client verification they were made from.
pub(crate) struct BoundedSessions {
    inner: Arc<dyn StoresServerSessions>,
}

impl BoundedSessions {
    pub(crate) fn new() -> Self {
        Self {
            inner: rustls::server::ServerSessionMemoryCache::new(SESSIONS),
        }
    }
}

impl fmt::Debug for BoundedSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSessions").finish_non_exhaustive()
    }
}

/// Unwraps a stored session, or `None` once its bound has passed. A session handed out passes
/// its bound on to the handshake resuming it, and so to every ticket that handshake issues.
fn open(stored: Vec<u8>) -> Option<Vec<u8>> {
    let (bound, value) = stored.split_first_chunk::<8>()?;
    let until = u64::from_be_bytes(*bound);
    if now() > until {
        tracing::debug!(
            "not resuming a session whose client certificate verification has run out; \
             the client gets a full handshake"
        );
        return None;
    }
    if until != u64::MAX {
        note_verified(until);
    }
    Some(value.to_vec())
}

impl StoresServerSessions for BoundedSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        // Outside an acceptor's handshake the bound is unknown: store nothing.
        let Some(verified) = verified_until() else {
            return false;
        };
        // No bound: no client certificate was verified nor a bounded session resumed, so the
        // session carries no client identity that could expire (optional client auth).
        let until = verified.unwrap_or(u64::MAX);
        let mut stored = Vec::with_capacity(8 + value.len());
        stored.extend_from_slice(&until.to_be_bytes());
        stored.extend_from_slice(&value);
        self.inner.put(key, stored)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(key).and_then(open)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.take(key).and_then(open)
    }

    fn can_cache(&self) -> bool {
        self.inner.can_cache()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::trust::scope::handshake_scope;

    #[tokio::test]
    async fn sessions_are_kept_until_their_bound_and_only_inside_a_handshake() {
        let store = BoundedSessions::new();
        assert!(!store.put(b"outside".to_vec(), b"v".to_vec()));
        handshake_scope(async {
            assert!(store.put(b"anonymous".to_vec(), b"a".to_vec()));
            note_verified(now() + 3600);
            assert!(store.put(b"valid".to_vec(), b"b".to_vec()));
            note_verified(now().saturating_sub(1));
            assert!(store.put(b"expired".to_vec(), b"c".to_vec()));
        })
        .await;
        assert_eq!(store.get(b"anonymous"), Some(b"a".to_vec()));
        assert_eq!(store.take(b"valid"), Some(b"b".to_vec()));
        assert_eq!(store.take(b"valid"), None);
        assert_eq!(store.get(b"expired"), None);
        assert_eq!(store.get(b"outside"), None);
    }

    #[tokio::test]
    async fn a_session_stored_on_a_resumed_handshake_inherits_the_bound_it_resumed() {
        let store = BoundedSessions::new();
        let bound = now() + 3600;
        handshake_scope(async {
            note_verified(bound);
            assert!(store.put(b"first".to_vec(), b"1".to_vec()));
        })
        .await;
        // A resumed handshake: no verifier runs, the store hands out the first session and
        // the handshake issues a new ticket.
        handshake_scope(async {
            assert_eq!(store.take(b"first"), Some(b"1".to_vec()));
            assert!(store.put(b"second".to_vec(), b"2".to_vec()));
        })
        .await;
        let stored = store.inner.get(b"second").expect("stored");
        assert_eq!(stored[..8], bound.to_be_bytes(), "the bound is inherited");
        // Chained once more: still the first handshake's bound.
        handshake_scope(async {
            assert_eq!(store.take(b"second"), Some(b"2".to_vec()));
            assert!(store.put(b"third".to_vec(), b"3".to_vec()));
        })
        .await;
        let stored = store.inner.get(b"third").expect("stored");
        assert_eq!(stored[..8], bound.to_be_bytes());
    }

    #[tokio::test]
    async fn the_slot_keeps_the_earlier_bound() {
        let store = BoundedSessions::new();
        handshake_scope(async {
            note_verified(now() + 100);
            note_verified(now() + 5000);
            assert!(store.put(b"k".to_vec(), b"v".to_vec()));
        })
        .await;
        let stored = store.inner.get(b"k").expect("stored");
        assert!(u64::from_be_bytes(stored[..8].try_into().expect("8 bytes")) <= now() + 100);
    }
}
