//! The decision a layer shares with every service it wraps: who passes, or why not, and the
//! rejection's log line and response.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Extensions, Request, Response};
use http_body_util::Full;

use super::log;
use super::response::{RejectReason, Rejection};
use super::rules::ClientCertPolicy;
use super::{AllowedClient, MatchedRule};
use crate::connection::{ConnectionInfo, PeerCertificates};
use crate::rate_limit::LogLimiter;

/// What answers a rejected request instead of the default 401/403 (see
/// [`ClientCertLayer::on_reject`](crate::ClientCertLayer::on_reject)).
pub(super) type OnReject = Arc<dyn Fn(&Rejection) -> Response<Full<Bytes>> + Send + Sync + 'static>;

/// The configuration and state a layer shares with every service it made.
pub(crate) struct Shared {
    pub(super) required: bool,
    pub(super) policy: ClientCertPolicy,
    pub(super) on_reject: Option<OnReject>,
    miswired_warned: AtomicBool,
    denials: LogLimiter,
}

impl Clone for Shared {
    /// A copy of the configuration with fresh logging state (used while a shared layer is
    /// still being built).
    fn clone(&self) -> Self {
        Self {
            required: self.required,
            policy: self.policy.clone(),
            on_reject: self.on_reject.clone(),
            miswired_warned: AtomicBool::new(false),
            denials: log::limiter(),
        }
    }
}

impl Shared {
    pub(super) fn new(required: bool) -> Self {
        Self {
            required,
            policy: ClientCertPolicy::new(),
            on_reject: None,
            miswired_warned: AtomicBool::new(false),
            denials: log::limiter(),
        }
    }

    /// The decision for one request: who was let in, or why not (logged here).
    pub(crate) fn authorize<B>(&self, req: &Request<B>) -> Result<AllowedClient, Rejection> {
        let decision = self.decide(req.extensions());
        #[cfg(feature = "metrics")]
        crate::tls::accept::metrics::policy_decision(decision.as_ref().err().map(|r| r.as_str()));
        decision.map_err(|reason| self.reject(req, reason))
    }

    /// Not generic, so the rule loop is compiled once, here, whatever the request body.
    fn decide(&self, extensions: &Extensions) -> Result<AllowedClient, RejectReason> {
        // The common case first: the crate's own server put the peer there.
        let peer = match extensions.get::<PeerCertificates>() {
            Some(peer) => peer,
            None => match ConnectionInfo::find(extensions) {
                Some((_, Some(peer))) => peer,
                Some((_, None)) if !self.required => {
                    return Ok(AllowedClient {
                        peer: None,
                        rule: None,
                    });
                }
                Some((_, None)) => return Err(RejectReason::CertificateRequired),
                None => return Err(RejectReason::NoTlsConnection),
            },
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
            Some(MatchedRule {
                index,
                name: rule.shared_name().cloned(),
            })
        };
        Ok(AllowedClient {
            peer: Some(peer.clone()),
            rule,
        })
    }

    #[cold]
    fn reject<B>(&self, req: &Request<B>, reason: RejectReason) -> Rejection {
        let found = ConnectionInfo::find(req.extensions());
        let rejection = Rejection::new(
            reason,
            req.headers(),
            found.and_then(|(_, peer)| peer.cloned()),
            found.and_then(|(tls, _)| tls.remote_addr()),
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
    pub(crate) fn respond(&self, rejection: &Rejection) -> Response<Full<Bytes>> {
        match &self.on_reject {
            Some(respond) => respond(rejection),
            None => rejection.default_response(),
        }
    }
}
