//! [`ClientCertLayer`]: the configuration users build, and the decision it shares with every
//! service it wraps.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use tower_layer::Layer;

use super::decide::Shared;
use super::dns::DnsPattern;
use super::response::Rejection;
use super::rules::{ClientCertPolicy, Rule};
use super::service::ClientCertService;
use crate::identity::{ClientIdentity, Fingerprint, SpiffeId};

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
            shared: Arc::new(Shared::new(required)),
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
    type Service = ClientCertService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientCertService::new(inner, self.shared.clone())
    }
}
