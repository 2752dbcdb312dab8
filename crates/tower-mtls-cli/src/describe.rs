//! Certificates and dates as the reports show them.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tower_mtls::ClientIdentity;
use tower_mtls::rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// Certificates and trust expiring sooner than this are warned about.
pub(crate) const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// `--time`: RFC 3339, with `Z` or a numeric offset.
pub(crate) fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| format!("not an RFC 3339 time (like 2030-01-01T00:00:00Z): {e}"))
}

/// RFC 3339 in UTC, whole seconds.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let t = OffsetDateTime::from(t);
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| format!("{t}"))
}

/// Whole days from `now` to `t` (negative when `t` has passed).
pub(crate) fn days_until(t: SystemTime, now: SystemTime) -> i64 {
    match t.duration_since(now) {
        Ok(d) => i64::try_from(d.as_secs() / 86_400).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs().div_ceil(86_400)).unwrap_or(i64::MAX),
    }
}

/// "expires in 12 days" / "expired 3 days ago".
pub(crate) fn expiry_phrase(not_after: SystemTime, now: SystemTime) -> String {
    match not_after.duration_since(now) {
        Ok(_) => format!("expires in {} days", days_until(not_after, now)),
        Err(_) => format!("EXPIRED {} days ago", -days_until(not_after, now)),
    }
}

/// The expiry warning for `what` (a certificate's role and subject), if it is due.
pub(crate) fn expiry_warning(what: &str, not_after: SystemTime, now: SystemTime) -> Option<String> {
    match not_after.duration_since(now) {
        Err(_) => Some(format!(
            "{what} expired on {} ({} days ago)",
            rfc3339(not_after),
            -days_until(not_after, now)
        )),
        Ok(left) if left < EXPIRY_WARNING => Some(format!(
            "{what} expires on {} (in {} days)",
            rfc3339(not_after),
            days_until(not_after, now)
        )),
        Ok(_) => None,
    }
}

/// One certificate, as the reports show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CertInfo {
    pub(crate) subject: String,
    pub(crate) issuer: String,
    pub(crate) serial: String,
    pub(crate) sans: Vec<String>,
    pub(crate) key_type: String,
    pub(crate) is_ca: bool,
    pub(crate) not_before: String,
    pub(crate) not_after: String,
    pub(crate) expires_in_days: i64,
    pub(crate) sha256: String,
    /// Whether the next certificate of the chain is this one's issuer (by name and, when both
    /// carry them, key identifier); `None` for the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) issued_by_next: Option<bool>,
    #[serde(skip)]
    pub(crate) not_after_time: SystemTime,
    #[serde(skip)]
    pub(crate) not_before_time: SystemTime,
}

impl CertInfo {
    /// `None` when the certificate does not parse.
    pub(crate) fn of(der: &CertificateDer<'_>, now: SystemTime) -> Option<CertInfo> {
        let id = ClientIdentity::parse(der.as_ref()).ok()?;
        let (_, x509) = X509Certificate::from_der(der.as_ref()).ok()?;
        let mut sans = Vec::new();
        sans.extend(id.dns_names().iter().map(|n| format!("DNS:{n}")));
        sans.extend(id.ip_addresses().iter().map(|ip| format!("IP:{ip}")));
        sans.extend(id.uris().iter().map(|u| format!("URI:{u}")));
        sans.extend(id.emails().iter().map(|e| format!("email:{e}")));
        Some(CertInfo {
            subject: id.subject().to_string(),
            issuer: id.issuer().to_string(),
            serial: id.serial_hex(),
            sans,
            key_type: key_type(&x509),
            is_ca: x509
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|bc| bc.value.ca),
            not_before: rfc3339(id.not_before()),
            not_after: rfc3339(id.not_after()),
            expires_in_days: days_until(id.not_after(), now),
            sha256: id.sha256().to_string(),
            issued_by_next: None,
            not_after_time: id.not_after(),
            not_before_time: id.not_before(),
        })
    }

    /// Every certificate of a chain, with `issued_by_next` filled in; unparsable ones are
    /// left out (the library refuses them before this runs).
    pub(crate) fn chain(chain: &[CertificateDer<'_>], now: SystemTime) -> Vec<CertInfo> {
        let mut infos: Vec<CertInfo> = chain.iter().filter_map(|c| Self::of(c, now)).collect();
        for i in 0..chain.len().saturating_sub(1) {
            if let Some(info) = infos.get_mut(i) {
                info.issued_by_next = Some(issued_by(&chain[i], &chain[i + 1]));
            }
        }
        infos
    }

    /// A few indented lines.
    pub(crate) fn write(&self, out: &mut String, indent: &str, now: SystemTime) {
        let _ = writeln!(out, "{indent}subject:  {}", self.subject);
        let _ = writeln!(out, "{indent}issuer:   {}", self.issuer);
        if !self.sans.is_empty() {
            let _ = writeln!(out, "{indent}SANs:     {}", self.sans.join(", "));
        }
        let _ = writeln!(
            out,
            "{indent}key:      {}{}",
            self.key_type,
            if self.is_ca { " (CA certificate)" } else { "" }
        );
        let _ = writeln!(
            out,
            "{indent}valid:    {} .. {} ({})",
            self.not_before,
            self.not_after,
            if self.not_before_time > now {
                "NOT YET VALID".to_owned()
            } else {
                expiry_phrase(self.not_after_time, now)
            }
        );
        let _ = writeln!(out, "{indent}sha256:   {}", self.sha256);
    }
}

/// Whether `issuer` issued `cert`: `cert`'s issuer name is `issuer`'s subject, and the key
/// identifiers agree when both are present.
fn issued_by(cert: &CertificateDer<'_>, issuer: &CertificateDer<'_>) -> bool {
    let (Ok((_, c)), Ok((_, i))) = (
        X509Certificate::from_der(cert.as_ref()),
        X509Certificate::from_der(issuer.as_ref()),
    ) else {
        return false;
    };
    let (Ok(c_id), Ok(i_id)) = (
        ClientIdentity::parse(cert.as_ref()),
        ClientIdentity::parse(issuer.as_ref()),
    ) else {
        return false;
    };
    if c_id.issuer().attributes() != i_id.subject().attributes() {
        return false;
    }
    let aki = c
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    let ski = i
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ski) => {
                Some(ski.0.to_vec())
            }
            _ => None,
        });
    match (aki, ski) {
        (Some(a), Some(s)) => a == s,
        _ => true,
    }
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {} bits", rsa.key_size()),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| match oid.to_id_string().as_str() {
                    "1.2.840.10045.3.1.7" => "P-256".to_owned(),
                    "1.3.132.0.34" => "P-384".to_owned(),
                    "1.3.132.0.35" => "P-521".to_owned(),
                    other => other.to_owned(),
                })
                .unwrap_or_else(|| "unknown curve".into());
            format!("ECDSA {curve}")
        }
        _ => match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.3.101.112" => "Ed25519".into(),
            "1.3.101.113" => "Ed448".into(),
            other => format!("unknown ({other})"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_with_offsets() {
        let utc = parse_rfc3339("2030-01-01T00:00:00Z").unwrap();
        let offset = parse_rfc3339("2030-01-01T01:00:00+01:00").unwrap();
        assert_eq!(utc, offset);
        assert_eq!(rfc3339(utc), "2030-01-01T00:00:00Z");
        assert!(parse_rfc3339("2030-01-01").is_err());
        assert!(parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn days_round_towards_the_warning() {
        let now = parse_rfc3339("2030-01-01T00:00:00Z").unwrap();
        let later = parse_rfc3339("2030-01-11T12:00:00Z").unwrap();
        let earlier = parse_rfc3339("2029-12-31T12:00:00Z").unwrap();
        assert_eq!(days_until(later, now), 10);
        assert_eq!(days_until(earlier, now), -1);
        assert!(
            expiry_warning("x", later, now)
                .unwrap()
                .contains("in 10 days")
        );
        assert!(
            expiry_warning("x", earlier, now)
                .unwrap()
                .contains("expired")
        );
        let far = parse_rfc3339("2031-01-01T00:00:00Z").unwrap();
        assert!(expiry_warning("x", far, now).is_none());
    }
}
