//! [`ClientCertLayer`]: a tower middleware that decides, per request, which clients may pass,
//! by the certificate they presented.
//!
//! Trusting a CA trusts every certificate it ever issued; in a cluster whose issuer signs
//! certificates for many workloads, verifying the chain lets all of them in. This layer narrows
//! that to the clients that belong: it reads the [`PeerCertificates`](crate::PeerCertificates) the acceptor put into the
//! request, checks the leaf against allow rules, and either passes the request on — with an
//! [`AllowedClient`](crate::AllowedClient) saying who and by which rule, recorded in the
//! request's [`ConnectionInfo`](crate::ConnectionInfo) ([`PeerExt::allowed_client`](crate::PeerExt::allowed_client)) — or answers 401/403
//! itself.
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::ServiceBuilder;
//! use tower_mtls::Rule;
//! use tower_mtls::{AllowedClient, ClientCertLayer, PeerExt};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = ClientCertLayer::require()
//!     // rule #0: the agent, by common name
//!     .allow(Rule::new().subject_cn("steadybit-agent"))
//!     // rule #1: both must hold
//!     .allow(Rule::named("platform").issuer_o("Steadybit CA").subject_ou("platform"))
//!     // rule #2, e.g. read from a configuration file or environment variable
//!     .with_policy("spiffe-domain=prod.example.org".parse()?);
//!
//! let app = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|req: http::Request<()>| async move {
//!         let client = req.allowed_client();
//!         let who = client
//!             .and_then(AllowedClient::identity)
//!             .and_then(|id| id.common_name())
//!             .unwrap_or("nobody");
//!         Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!("hi {who}")))))
//!     });
//! # drop(app);
//! # Ok(()) }
//! ```
//!
//! With axum: to guard a whole app, wrap the router — `ClientCertLayer::require().layer(router)`
//! (with [`tower_layer::Layer`] in scope) — and serve the result; that is cheaper per request
//! than `Router::layer`, which boxes and clones each route. `route_layer` (or `.layer` on a
//! single method router) guards only some routes.
//!
//! # Who passes
//!
//! * [`ClientCertLayer::require`](crate::ClientCertLayer::require): only requests with a verified client certificate. Without
//!   one: **401** `client_certificate_required`.
//! * [`ClientCertLayer::optional`](crate::ClientCertLayer::optional): requests without a certificate pass too; a certificate
//!   that is presented must satisfy the rules.
//! * Rules ([`Rule`]): with none, any verified certificate passes; with several, **any** may
//!   match, and the matchers inside one rule must **all** hold. A certificate that matches no
//!   rule: **403** `client_certificate_not_allowed`; one that verified but cannot be parsed:
//!   **403** `client_certificate_unparsable`. [`Rule`] documents how each kind of value
//!   compares (case sensitivity, wildcards); [`ClientCertPolicy`] the text form.
//! * **Fail closed**: a request without any connection information — the layer sits on a
//!   server that does not run this crate's acceptor — is rejected (**401** `no_tls_connection`)
//!   in both modes, and the first one logs a warning that explains the mis-wiring.
//!
//! Names are matched as structured (OID, value) pairs, and issuer rules read the leaf's own
//! issuer name: a certificate the client appends to its chain proves nothing. A name with
//! several common names has none: CN rules never match it, and
//! [`ClientIdentity::common_name`](crate::ClientIdentity::common_name) returns `None` for it, so what a rule matched is what the
//! handler reads. A name whose attribute type OIDs are not minimally DER-encoded makes the
//! certificate unparsable (**403** `client_certificate_unparsable`).
//!
//! # Rejections
//!
//! HTTP clients get the status and a small JSON body,
//! `{"error":"client_certificate_not_allowed","message":"…"}`. gRPC calls
//! (`content-type: application/grpc…`) get HTTP 200 with `grpc-status` 16 (`UNAUTHENTICATED`)
//! or 7 (`PERMISSION_DENIED`), which tonic clients see as a proper `Status`. Replace the
//! response with [`ClientCertLayer::on_reject`](crate::ClientCertLayer::on_reject); [`Rejection`] carries the
//! [reason](RejectReason) and the client's identity.
//!
//! Every denial is logged through `tracing` with the remote address, method and path, and —
//! when there is a certificate — its subject, issuer, SANs, fingerprints and the rules tried;
//! never key material. Control characters from certificates (C0, DEL, C1) are escaped as
//! `\XX` hex pairs, so a crafted name cannot forge a log line. At most ten denials per ten
//! seconds and layer are logged at `WARN`, the rest at `DEBUG`, so a client retrying in a loop
//! cannot flood the log.
//!
//! # Cost
//!
//! The leaf is parsed at most once per connection, by [`PeerCertificates::identity`](crate::PeerCertificates::identity); every
//! rule value is prepared when the rule is built. A layer's rules read only the certificate
//! (unless one has a [`predicate`](crate::Rule::predicate)), so its verdict holds for the
//! connection: the first request on a connection runs the rules, the others find the verdict
//! kept with the connection (for up to four layers on one connection; more decide anew). Per request the layer looks up the request's
//! [`ConnectionInfo`](crate::ConnectionInfo) and records the verdict in it — one reference
//! count, no allocation, no extension of its own (see `benches/policy.rs` and BENCHMARKS.md).
//! A rule with a predicate is asked again on every request, as what it reads may change.

#[macro_use]
mod text;
mod decide;
mod dns;
pub(crate) mod layer;
mod log;
mod parse_error;
mod response;
pub(crate) mod rules;
mod service;
#[cfg(test)]
mod tests;

pub use dns::{DnsPattern, InvalidDnsPattern};
pub use layer::ClientCertLayer;
pub use parse_error::{PolicyErrorKind, PolicyParseError};
pub use response::{RejectReason, Rejection};
pub use rules::{ClientCertPolicy, Rule};
pub use service::{ClientCertService, ResponseBody, ResponseFuture};
