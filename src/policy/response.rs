//! Why a request was turned away ([`Rejection`]) and the default responses that say so, for
//! HTTP clients (401/403 with a small JSON body) and gRPC clients (`grpc-status` 16/7).

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use crate::identity::ClientIdentity;
use crate::peer::PeerCertificates;

macro_rules! reasons {
    ($(
        $(#[$doc:meta])*
        $variant:ident => $code:literal, $status:ident, $grpc:literal, $message:literal;
    )*) => {
        /// Why a [`ClientCertLayer`](crate::ClientCertLayer) turned a request away.
        ///
        /// [`as_str`](Self::as_str) gives a stable, machine-readable code, which the default
        /// responses carry.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum RejectReason {
            $($(#[$doc])* $variant,)*
        }

        impl RejectReason {
            /// The stable code, e.g. `client_certificate_not_allowed`.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $code,)* }
            }

            /// The HTTP status: 401 when no verified certificate was presented, 403 when one
            /// was but does not pass.
            pub fn status(self) -> StatusCode {
                match self { $(Self::$variant => StatusCode::$status,)* }
            }

            /// The gRPC status code: 16 (`UNAUTHENTICATED`) for a 401, 7
            /// (`PERMISSION_DENIED`) for a 403.
            pub fn grpc_code(self) -> u8 {
                match self { $(Self::$variant => $grpc,)* }
            }

            /// A one-line explanation for people.
            pub fn message(self) -> &'static str {
                match self { $(Self::$variant => $message,)* }
            }

            fn json(self) -> &'static str {
                match self {
                    $(Self::$variant => concat!(
                        "{\"error\":\"", $code, "\",\"message\":\"", $message, "\"}\n"
                    ),)*
                }
            }

            fn grpc_status(self) -> HeaderValue {
                match self { $(Self::$variant => HeaderValue::from_static(stringify!($grpc)),)* }
            }
        }
    };
}

reasons! {
    /// The request carries no connection information at all: the service is not served
    /// through this crate's acceptor, so nothing about the client can be known (fail closed).
    NoTlsConnection => "no_tls_connection", UNAUTHORIZED, 16,
        "the request did not arrive over a TLS connection with client authentication";
    /// The client presented no certificate.
    CertificateRequired => "client_certificate_required", UNAUTHORIZED, 16,
        "a client certificate is required";
    /// The client's certificate verified during the handshake but cannot be parsed.
    CertificateUnparsable => "client_certificate_unparsable", FORBIDDEN, 7,
        "the client certificate could not be parsed";
    /// The client's certificate matches none of the allow rules.
    CertificateNotAllowed => "client_certificate_not_allowed", FORBIDDEN, 7,
        "the client certificate is not allowed to access this resource";
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the layer turned away: the reason and what is known about the client. Given to
/// the function set with [`ClientCertLayer::on_reject`](crate::ClientCertLayer::on_reject).
#[derive(Debug, Clone)]
pub struct Rejection {
    reason: RejectReason,
    grpc: bool,
    peer: Option<PeerCertificates>,
    remote_addr: Option<SocketAddr>,
}

impl Rejection {
    pub(crate) fn new(
        reason: RejectReason,
        headers: &HeaderMap,
        peer: Option<PeerCertificates>,
        remote_addr: Option<SocketAddr>,
    ) -> Self {
        Self {
            reason,
            grpc: is_grpc(headers),
            peer,
            remote_addr,
        }
    }

    /// Why the request was turned away.
    pub fn reason(&self) -> RejectReason {
        self.reason
    }

    /// The HTTP status that fits the reason (401 or 403); see [`RejectReason::status`].
    pub fn status(&self) -> StatusCode {
        self.reason.status()
    }

    /// Whether the request is a gRPC call (`content-type: application/grpc…`), whose client
    /// expects a gRPC status rather than an HTTP error.
    pub fn is_grpc(&self) -> bool {
        self.grpc
    }

    /// The client's certificate chain, when it presented one.
    pub fn peer_certificates(&self) -> Option<&PeerCertificates> {
        self.peer.as_ref()
    }

    /// The client's parsed leaf certificate, when it presented one that parses.
    pub fn identity(&self) -> Option<&ClientIdentity> {
        self.peer.as_ref()?.identity().ok()
    }

    /// The client's address, when the connection knew it.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The response the layer sends unless told otherwise.
    ///
    /// For HTTP: the [status](Self::status) with a JSON body such as
    /// `{"error":"client_certificate_not_allowed","message":"…"}`. For gRPC: HTTP 200 with
    /// `grpc-status` 16 (`UNAUTHENTICATED`) or 7 (`PERMISSION_DENIED`) and a `grpc-message`,
    /// which tonic clients surface as a proper `Status`.
    pub fn default_response(&self) -> Response<Bytes> {
        if self.grpc {
            let mut response = Response::new(Bytes::new());
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert("grpc-status", self.reason.grpc_status());
            // Percent-encoding leaves these plain ASCII messages as they are.
            headers.insert(
                "grpc-message",
                HeaderValue::from_static(self.reason.message()),
            );
            return response;
        }
        let mut response = Response::new(Bytes::from_static(self.reason.json().as_bytes()));
        *response.status_mut() = self.reason.status();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    headers.get(CONTENT_TYPE).is_some_and(|ct| {
        ct.as_bytes()
            .get(..GRPC.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(GRPC))
    })
}

#[cfg(test)]
mod tests {

    use super::*;

    const ALL: [RejectReason; 4] = [
        RejectReason::NoTlsConnection,
        RejectReason::CertificateRequired,
        RejectReason::CertificateUnparsable,
        RejectReason::CertificateNotAllowed,
    ];

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        h
    }

    #[test]
    fn codes_statuses_and_grpc_codes_are_stable() {
        let table: Vec<_> = ALL
            .iter()
            .map(|r| (r.as_str(), r.status().as_u16(), r.grpc_code()))
            .collect();
        assert_eq!(
            table,
            [
                ("no_tls_connection", 401, 16),
                ("client_certificate_required", 401, 16),
                ("client_certificate_unparsable", 403, 7),
                ("client_certificate_not_allowed", 403, 7),
            ]
        );
        assert_eq!(
            RejectReason::CertificateRequired.to_string(),
            "client_certificate_required"
        );
    }

    #[tokio::test]
    async fn http_responses_are_small_json() {
        for reason in ALL {
            let response = Rejection::new(reason, &HeaderMap::new(), None, None).default_response();
            assert_eq!(response.status(), reason.status());
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            let body = response.into_body();
            let expected = format!(
                "{{\"error\":\"{}\",\"message\":\"{}\"}}\n",
                reason.as_str(),
                reason.message()
            );
            assert_eq!(body, expected.as_bytes());
        }
    }

    #[tokio::test]
    async fn grpc_responses_carry_the_status_in_headers() {
        for reason in ALL {
            let rejection = Rejection::new(reason, &headers("application/grpc"), None, None);
            assert!(rejection.is_grpc());
            let response = rejection.default_response();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
            assert_eq!(
                response.headers()["grpc-status"],
                reason.grpc_code().to_string().as_str()
            );
            assert_eq!(response.headers()["grpc-message"], reason.message());
            assert!(response.into_body().is_empty());
        }
    }

    #[test]
    fn grpc_is_recognised_by_content_type_prefix() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+json",
            "application/grpc-web",
        ] {
            assert!(is_grpc(&headers(ct)), "{ct}");
        }
        for ct in ["application/json", "application/grp", "text/plain"] {
            assert!(!is_grpc(&headers(ct)), "{ct}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }
}
