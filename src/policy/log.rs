//! Denial logging: one useful line per denial, without letting a retrying client flood the log.
//!
//! Each layer (and its clones) logs at most [`WARNINGS_PER_WINDOW`] denials per [`WINDOW`] at
//! `WARN`; further denials in the window go to `DEBUG`, and the next `WARN` line carries how
//! many were held back (`suppressed`). A client that retries in a tight loop thus costs a few
//! lines every ten seconds, and the first denial — the one that explains "the agent cannot
//! connect" — is always there.
//!
//! Nothing certificate-derived reaches a line raw: names use their RFC 4514 form (which escapes
//! control characters), SANs are written quoted with [`write_quoted`], and every other text
//! goes through [`escape_control`].

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::Request;

use super::response::{RejectReason, Rejection};
use super::rules::ClientCertPolicy;
use crate::identity::{Fingerprint, escape_control, write_quoted};
use crate::rate_limit::LogLimiter;

/// Length of a rate-limiting window.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// Denials logged at `WARN` per window and layer.
pub(crate) const WARNINGS_PER_WINDOW: u32 = 10;

/// A layer's denial limiter: [`WARNINGS_PER_WINDOW`] lines at `WARN` per [`WINDOW`].
pub(crate) fn limiter() -> LogLimiter {
    LogLimiter::new(WARNINGS_PER_WINDOW, WINDOW)
}

macro_rules! warn_or_debug {
    ($warn:expr, $($arg:tt)+) => {
        if $warn {
            tracing::warn!($($arg)+)
        } else {
            tracing::debug!($($arg)+)
        }
    };
}

/// Logs a denial (other than [`RejectReason::NoTlsConnection`], which the layer reports once).
pub(crate) fn denial<B>(
    log: &LogLimiter,
    policy: &ClientCertPolicy,
    req: &Request<B>,
    rejection: &Rejection,
) {
    let admitted = log.admit();
    let warn = admitted.is_some();
    let suppressed = admitted.unwrap_or(0);
    let reason = rejection.reason().as_str();
    let remote_addr = Addr(rejection.remote_addr());
    let method = req.method().as_str();
    // The path only: a query string may carry secrets.
    let path = req.uri().path();
    let peer = rejection.peer_certificates();
    match (rejection.reason(), peer.map(|p| p.identity())) {
        (RejectReason::CertificateNotAllowed, Some(Ok(id))) => warn_or_debug!(
            warn,
            reason,
            %remote_addr,
            method,
            path,
            subject = %id.subject(),
            issuer = %id.issuer(),
            dns = %Quoted(id.dns_names()),
            uri = %Quoted(id.uris()),
            email = %Quoted(id.emails()),
            ip = ?id.ip_addresses(),
            sha256 = %id.sha256(),
            spki_sha256 = %id.spki_sha256(),
            serial = %id.serial_hex(),
            rules_tried = %RulesTried(policy),
            suppressed,
            "client certificate matches no allow rule; request denied"
        ),
        (_, Some(Err(error))) => {
            let sha256 = peer
                .map(|p| Fingerprint::of(p.leaf().as_ref()).to_string())
                .unwrap_or_default();
            let error = escape_control(&error.to_string()).into_owned();
            warn_or_debug!(
                warn,
                reason,
                %remote_addr,
                method,
                path,
                %error,
                %sha256,
                suppressed,
                "client certificate verified but cannot be parsed; request denied"
            )
        }
        _ => warn_or_debug!(
            warn,
            reason,
            %remote_addr,
            method,
            path,
            suppressed,
            "no client certificate presented; request denied"
        ),
    }
}

/// Logs the first request without any connection information; later ones at `DEBUG`.
pub(crate) fn miswired<B>(first: bool, req: &Request<B>) {
    let method = req.method().as_str();
    let path = req.uri().path();
    if first {
        tracing::warn!(
            method,
            path,
            "ClientCertLayer got a request without TlsInfo or PeerCertificates: the service is \
             not served through tower-mtls's acceptor (MtlsServer::tls, or AddConnectionInfo in a \
             hand-written accept loop), so no client certificate can be checked and every such \
             request is rejected with 401 no_tls_connection. This warning is logged once per layer."
        );
    } else {
        tracing::debug!(
            method,
            path,
            reason = RejectReason::NoTlsConnection.as_str(),
            "request without connection information denied"
        );
    }
}

struct Addr(Option<SocketAddr>);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("unknown"),
        }
    }
}

/// `["a.example.com", "b.example.com"]`: each value quoted, control characters escaped.
struct Quoted<'a>(&'a [String]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, value) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write_quoted(f, value)?;
        }
        f.write_str("]")
    }
}

/// `#0 cn=a & o=b; #1 "agents" dns=*.example.com`, control characters escaped (a quoted rule
/// value may hold a new line).
struct RulesTried<'a>(&'a ClientCertPolicy);

impl fmt::Display for RulesTried<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rule) in self.0.rules().iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "#{i} ")?;
            if let Some(name) = rule.name() {
                write_quoted(f, name)?;
                f.write_str(" ")?;
            }
            f.write_str(&escape_control(&rule.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::Rule;

    #[test]
    fn warnings_are_limited_per_window_and_report_what_was_held_back() {
        let log = limiter();
        let t0 = Instant::now();
        for _ in 0..WARNINGS_PER_WINDOW {
            assert_eq!(log.admit_at(t0), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(log.admit_at(t0 + Duration::from_secs(9)), None);
        }
        // A new window: the first warning says five were suppressed.
        assert_eq!(log.admit_at(t0 + WINDOW), Some(5));
        assert_eq!(log.admit_at(t0 + WINDOW), Some(0));
        // A clock that goes backwards does not panic and does not reset the window.
        assert_eq!(log.admit_at(t0), Some(0));
    }

    #[test]
    fn rules_tried_lists_index_name_and_matchers() {
        let policy = ClientCertPolicy::new()
            .allow(Rule::new().subject_cn("a").subject_o("b"))
            .allow(Rule::named("agents").uri("spiffe://x/y"));
        assert_eq!(
            RulesTried(&policy).to_string(),
            "#0 cn=a & o=b; #1 \"agents\" uri=spiffe://x/y"
        );
    }

    #[test]
    fn rules_tried_escapes_control_characters_in_names_and_values() {
        let policy =
            ClientCertPolicy::new().allow(Rule::named("a\nb\"c").subject_cn("x\ny\u{1b}[31m"));
        let text = RulesTried(&policy).to_string();
        assert_eq!(text, "#0 \"a\\0ab\\\"c\" cn=\"x\\0ay\\1b[31m\"");
        assert!(!text.contains(['\n', '\u{1b}']));
    }

    #[test]
    fn san_lists_are_quoted_with_control_characters_escaped() {
        let values = vec![
            "a.example.com".to_owned(),
            "evil\r\nFAKE \"line\"\u{85}".to_owned(),
        ];
        assert_eq!(
            Quoted(&values).to_string(),
            r#"["a.example.com", "evil\0d\0aFAKE \"line\"\c2\85"]"#
        );
        assert_eq!(Quoted(&[]).to_string(), "[]");
    }
}
