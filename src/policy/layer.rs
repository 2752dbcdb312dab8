//! [`ClientCertLayer`]: the configuration users build, and the decision it shares with every
//! service it wraps.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use tower_layer::Layer;

use super::decide::Shared;
use super::response::Rejection;
use super::rules::{ClientCertPolicy, Rule};
use super::service::ClientCertService;

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
        self.shared_mut().allow([rule]);
        self
    }

    /// Adds every rule of `policy`, e.g. one parsed from a configuration value.
    pub fn with_policy(mut self, policy: ClientCertPolicy) -> Self {
        self.shared_mut().allow(policy);
        self
    }

    /// Replaces the response sent for a rejected request; the default is
    /// [`Rejection::default_response`], which a replacement may fall back to (for gRPC calls,
    /// say).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tower_mtls::{ClientCertLayer, policy::Rejection};
    ///
    /// let layer = ClientCertLayer::require().on_reject(|rejection: &Rejection| {
    ///     if rejection.is_grpc() {
    ///         return rejection.default_response();
    ///     }
    ///     let mut response = http::Response::new(Bytes::from_static(b"go away\n"));
    ///     *response.status_mut() = rejection.status();
    ///     response
    /// });
    /// ```
    pub fn on_reject<F>(mut self, respond: F) -> Self
    where
        F: Fn(&Rejection) -> Response<Bytes> + Send + Sync + 'static,
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
