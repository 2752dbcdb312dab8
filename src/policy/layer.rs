//! [`ClientCertLayer`]: the configuration users build, and the decision it shares with every
//! service it wraps.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Extensions, Request, Response};
use http_body_util::Full;
use tower_layer::Layer;

use super::log;
use super::response::{RejectReason, Rejection};
use super::rules::{ClientCertPolicy, DnsPattern, Rule};
use super::service::ClientCert;
use super::{AllowedClient, MatchedRule};
use crate::connection::{PeerCertificates, TlsInfo};
use crate::identity::{ClientIdentity, Fingerprint, SpiffeId};

type OnReject = Arc<dyn Fn(&Rejection) -> Response<Full<Bytes>> + Send + Sync + 'static>;

/// A tower [`Layer`] that lets a request through only if its client certificate passes the
/// allow rules. See the [module documentation](crate::policy).
///
/// Cloning is cheap: the configuration sits behind an `Arc`. Build it completely before
/// handing it to a router; every builder method returns the layer.
#[derive(Clone)]
pub struct ClientCertLayer {
    shared: Arc<Shared>,
}

impl ClientCertLayer {
    /// Only requests with a verified client certificate pass (and, when rules are added, one
    /// that matches a rule).
    pub fn require() -> Self {
        Self::new(true)
    }

    /// Requests without a client certificate pass; a presented certificate must match a rule,
    /// when there are rules. Requests without any connection information are still rejected.
    pub fn optional() -> Self {
        Self::new(false)
    }

    fn new(required: bool) -> Self {
        Self {
            shared: Arc::new(Shared {
                required,
                policy: ClientCertPolicy::new(),
                on_reject: None,
                miswired_warned: AtomicBool::new(false),
                denials: log::DenialLog::default(),
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    /// Adds an allow rule; the request passes when any rule matches.
    pub fn allow(mut self, rule: Rule) -> Self {
        self.shared_mut().policy.extend([rule]);
        self
    }

    /// Adds every rule of `policy`, e.g. one parsed from a configuration value.
    pub fn with_policy(mut self, policy: ClientCertPolicy) -> Self {
        self.shared_mut().policy.extend(policy);
        self
    }

    /// Allows a subject common name (`CN`), exactly. See [`Rule::subject_cn`].
    pub fn allow_subject_cn(self, cn: impl Into<String>) -> Self {
        self.allow(Rule::new().subject_cn(cn))
    }

    /// Allows a subject organization (`O`), exactly. See [`Rule::subject_o`].
    pub fn allow_subject_o(self, o: impl Into<String>) -> Self {
        self.allow(Rule::new().subject_o(o))
    }

    /// Allows a subject organizational unit (`OU`), exactly. See [`Rule::subject_ou`].
    pub fn allow_subject_ou(self, ou: impl Into<String>) -> Self {
        self.allow(Rule::new().subject_ou(ou))
    }

    /// Allows a subject attribute by dotted OID, exactly. See [`Rule::subject_attribute`].
    pub fn allow_subject_attribute(self, oid: impl Into<String>, value: impl Into<String>) -> Self {
        self.allow(Rule::new().subject_attribute(oid, value))
    }

    /// Allows certificates whose issuer name has this common name. See [`Rule::issuer_cn`].
    pub fn allow_issuer_cn(self, cn: impl Into<String>) -> Self {
        self.allow(Rule::new().issuer_cn(cn))
    }

    /// Allows certificates whose issuer name has this organization. See [`Rule::issuer_o`].
    pub fn allow_issuer_o(self, o: impl Into<String>) -> Self {
        self.allow(Rule::new().issuer_o(o))
    }

    /// Allows certificates whose issuer name has this organizational unit. See
    /// [`Rule::issuer_ou`].
    pub fn allow_issuer_ou(self, ou: impl Into<String>) -> Self {
        self.allow(Rule::new().issuer_ou(ou))
    }

    /// Allows certificates whose issuer name has this attribute. See
    /// [`Rule::issuer_attribute`].
    pub fn allow_issuer_attribute(self, oid: impl Into<String>, value: impl Into<String>) -> Self {
        self.allow(Rule::new().issuer_attribute(oid, value))
    }

    /// Allows a SAN DNS name or wildcard. See [`DnsPattern`].
    pub fn allow_dns_name(self, pattern: DnsPattern) -> Self {
        self.allow(Rule::new().dns_name(pattern))
    }

    /// Allows a SAN URI, exactly. See [`Rule::uri`].
    pub fn allow_uri(self, uri: impl Into<String>) -> Self {
        self.allow(Rule::new().uri(uri))
    }

    /// Allows a SAN email address. See [`Rule::email`].
    pub fn allow_email(self, address: impl Into<String>) -> Self {
        self.allow(Rule::new().email(address))
    }

    /// Allows a SAN IP address. See [`Rule::ip_address`].
    pub fn allow_ip_address(self, ip: std::net::IpAddr) -> Self {
        self.allow(Rule::new().ip_address(ip))
    }

    /// Allows a SPIFFE ID, exactly. See [`Rule::spiffe_id`].
    pub fn allow_spiffe_id(self, id: SpiffeId) -> Self {
        self.allow(Rule::new().spiffe_id(id))
    }

    /// Allows every SPIFFE ID of a trust domain. See [`Rule::spiffe_trust_domain`].
    pub fn allow_spiffe_trust_domain(self, trust_domain: impl Into<String>) -> Self {
        self.allow(Rule::new().spiffe_trust_domain(trust_domain))
    }

    /// Allows the certificate with this SHA-256 fingerprint. See [`Rule::sha256`].
    pub fn allow_sha256(self, fingerprint: Fingerprint) -> Self {
        self.allow(Rule::new().sha256(fingerprint))
    }

    /// Allows any certificate for the public key with this SHA-256 SPKI fingerprint. See
    /// [`Rule::spki_sha256`].
    pub fn allow_spki_sha256(self, fingerprint: Fingerprint) -> Self {
        self.allow(Rule::new().spki_sha256(fingerprint))
    }

    /// Allows certificates for which `predicate` returns `true`. See [`Rule::predicate`].
    pub fn allow_if<F>(self, predicate: F) -> Self
    where
        F: Fn(&ClientIdentity) -> bool + Send + Sync + 'static,
    {
        self.allow(Rule::new().predicate(predicate))
    }

    /// Replaces the response sent for a rejected request; the default is
    /// [`Rejection::default_response`], which a replacement may fall back to (for gRPC calls,
    /// say).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use tower_mtls::{ClientCertLayer, policy::Rejection};
    ///
    /// let layer = ClientCertLayer::require().on_reject(|rejection: &Rejection| {
    ///     if rejection.is_grpc() {
    ///         return rejection.default_response();
    ///     }
    ///     let mut response = http::Response::new(Full::new(Bytes::from_static(b"go away\n")));
    ///     *response.status_mut() = rejection.status();
    ///     response
    /// });
    /// ```
    pub fn on_reject<F>(mut self, respond: F) -> Self
    where
        F: Fn(&Rejection) -> Response<Full<Bytes>> + Send + Sync + 'static,
    {
        self.shared_mut().on_reject = Some(Arc::new(respond));
        self
    }

    /// The rules, in the order they are tried.
    pub fn policy(&self) -> &ClientCertPolicy {
        &self.shared.policy
    }

    /// Whether a client certificate is required ([`require`](Self::require)) or optional.
    pub fn is_required(&self) -> bool {
        self.shared.required
    }
}

impl fmt::Debug for ClientCertLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertLayer")
            .field("required", &self.shared.required)
            .field("policy", &format_args!("{}", self.shared.policy))
            .field("on_reject", &self.shared.on_reject.is_some())
            .finish()
    }
}

impl<S> Layer<S> for ClientCertLayer {
    type Service = ClientCert<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientCert::new(inner, self.shared.clone())
    }
}

/// The configuration and state a layer shares with every service it made.
pub(crate) struct Shared {
    pub(super) required: bool,
    pub(super) policy: ClientCertPolicy,
    on_reject: Option<OnReject>,
    miswired_warned: AtomicBool,
    denials: log::DenialLog,
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
            denials: log::DenialLog::default(),
        }
    }
}

impl Shared {
    /// The decision for one request: who was let in, or why not (logged here).
    pub(crate) fn authorize<B>(&self, req: &Request<B>) -> Result<AllowedClient, Rejection> {
        self.decide(req.extensions())
            .map_err(|reason| self.reject(req, reason))
    }

    /// Not generic, so the rule loop is compiled once, here, whatever the request body.
    fn decide(&self, extensions: &Extensions) -> Result<AllowedClient, RejectReason> {
        let Some(peer) = extensions.get::<PeerCertificates>() else {
            return match extensions.get::<TlsInfo>() {
                Some(_) if !self.required => Ok(AllowedClient {
                    peer: None,
                    rule: None,
                }),
                Some(_) => Err(RejectReason::CertificateRequired),
                None => Err(RejectReason::NoTlsConnection),
            };
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
        let extensions = req.extensions();
        let rejection = Rejection::new(
            reason,
            req.headers(),
            extensions.get::<PeerCertificates>().cloned(),
            extensions.get::<TlsInfo>().and_then(TlsInfo::remote_addr),
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
