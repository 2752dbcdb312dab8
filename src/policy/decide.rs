//! The decision a layer shares with every service it wraps: who passes, or why not, and the
//! rejection's log line and response.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http::{Extensions, Request, Response};

use super::log;
use super::response::{RejectReason, Rejection};
use super::rules::{ClientCertPolicy, Rule};
use crate::peer::{self, AllowedClient, ConnectionInfo, MatchedRule, PeerCertificates};
use crate::rate_limit::LogLimiter;

/// What answers a rejected request instead of the default 401/403 (see
/// [`ClientCertLayer::on_reject`](crate::ClientCertLayer::on_reject)).
pub(super) type OnReject = Arc<dyn Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static>;

/// The configuration and state a layer shares with every service it made.
pub(crate) struct Shared {
    pub(super) required: bool,
    pub(super) policy: ClientCertPolicy,
    /// This configuration's id among all layers of the process, under which a connection
    /// caches the verdict (a new one whenever the rules change).
    id: u64,
    /// No rule has a predicate: a verdict holds for the whole connection, and is cached.
    cacheable: bool,
    pub(super) on_reject: Option<OnReject>,
    miswired_warned: AtomicBool,
    denials: LogLimiter,
    /// Peers of tonic's own TLS (`ServerTlsConfig`), adopted once per connection.
    #[cfg(feature = "tonic")]
    foreign: peer::ForeignPeers,
}

/// A fresh layer id (see [`Shared::id`]).
fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Clone for Shared {
    /// A copy of the configuration with fresh logging state (used while a shared layer is
    /// still being built).
    fn clone(&self) -> Self {
        Self {
            required: self.required,
            policy: self.policy.clone(),
            id: next_id(),
            cacheable: self.cacheable,
            on_reject: self.on_reject.clone(),
            miswired_warned: AtomicBool::new(false),
            denials: log::limiter(),
            #[cfg(feature = "tonic")]
            foreign: peer::ForeignPeers::default(),
        }
    }
}

impl Shared {
    pub(super) fn new(required: bool) -> Self {
        Self {
            required,
            policy: ClientCertPolicy::new(),
            id: next_id(),
            cacheable: true,
            on_reject: None,
            miswired_warned: AtomicBool::new(false),
            denials: log::limiter(),
            #[cfg(feature = "tonic")]
            foreign: peer::ForeignPeers::default(),
        }
    }

    /// Adds rules to the policy.
    pub(super) fn allow(&mut self, rules: impl IntoIterator<Item = Rule>) {
        self.id = next_id();
        for rule in rules {
            self.cacheable &= rule.reads_only_certificate();
            self.policy.extend([rule]);
        }
    }

    /// The decision for one request: records who was let in in the request's
    /// [`ConnectionInfo`](crate::ConnectionInfo), or says why not (logged here).
    pub(crate) fn authorize<B>(&self, req: &mut Request<B>) -> Result<(), Rejection> {
        let decision = self.decide(req.extensions_mut());
        // Behind tonic's own TLS: adopt the chain its verifier accepted, then decide again.
        #[cfg(feature = "tonic")]
        let decision = match decision {
            Err(RejectReason::NoTlsConnection) if self.foreign.adopt(req.extensions_mut()) => {
                self.decide(req.extensions_mut())
            }
            decision => decision,
        };
        #[cfg(feature = "metrics")]
        crate::tls::accept::metrics::policy_decision(decision.as_ref().err().map(|r| r.as_str()));
        decision.map_err(|reason| self.reject(req, reason))
    }

    /// Not generic, so the rule loop is compiled once, here, whatever the request body. The
    /// verdict goes into the request's `ConnectionInfo`: no extension, no allocation of its
    /// own.
    fn decide(&self, extensions: &mut Extensions) -> Result<(), RejectReason> {
        if let Some(info) = extensions.get_mut::<ConnectionInfo>() {
            let allowed = self.kept_or_decided(info)?;
            info.set_allowed_client(allowed);
            return Ok(());
        }
        // Found elsewhere (axum's `ConnectInfo<ConnectionInfo>`): the request gets a copy of
        // its own to carry the verdict, found first by every reader.
        let Some(info) = peer::lookup(extensions) else {
            return Err(RejectReason::NoTlsConnection);
        };
        let mut info = info.clone();
        let allowed = self.kept_or_decided(&info)?;
        info.set_allowed_client(allowed);
        extensions.insert(info);
        Ok(())
    }

    /// The verdict this layer kept for the connection, or a new one (kept when the rules read
    /// only the certificate).
    fn kept_or_decided(&self, info: &ConnectionInfo) -> Result<AllowedClient, RejectReason> {
        if let Some(allowed) = info.cached_verdict(self.id) {
            return Ok(allowed.clone());
        }
        let allowed = self.verdict(info.peer())?;
        if self.cacheable {
            info.cache_verdict(self.id, &allowed);
        }
        Ok(allowed)
    }

    fn verdict(&self, peer: Option<&PeerCertificates>) -> Result<AllowedClient, RejectReason> {
        let peer = match peer {
            Some(peer) => peer,
            None if !self.required => return Ok(AllowedClient::new(None, None)),
            None => return Err(RejectReason::CertificateRequired),
        };
        let identity = peer
            .identity()
            .map_err(|_| RejectReason::CertificateUnparsable)?;
        let rule = if self.policy.is_empty() {
            None
        } else {
            let (index, rule) = self
                .policy
                .rules()
                .iter()
                .enumerate()
                .find(|(_, rule)| rule.matches(identity))
                .ok_or(RejectReason::CertificateNotAllowed)?;
            Some(MatchedRule::new(index, rule.shared_name().cloned()))
        };
        Ok(AllowedClient::new(Some(peer.clone()), rule))
    }

    #[cold]
    fn reject<B>(&self, req: &Request<B>, reason: RejectReason) -> Rejection {
        let found = peer::lookup(req.extensions());
        let rejection = Rejection::new(
            reason,
            req.headers(),
            found.and_then(|info| info.peer().cloned()),
            found.and_then(|info| info.tls().remote_addr()),
        );
        if reason == RejectReason::NoTlsConnection {
            let first = !self.miswired_warned.swap(true, Ordering::Relaxed);
            log::miswired(first, req);
        } else {
            log::denial(&self.denials, &self.policy, req, &rejection);
        }
        rejection
    }

    /// The response for a rejected request.
    pub(crate) fn respond(&self, rejection: &Rejection) -> Response<Bytes> {
        match &self.on_reject {
            Some(respond) => respond(rejection),
            None => rejection.default_response(),
        }
    }
}
