//! The JVM key manager's rule for offering a client certificate, so a probe can say whether
//! the Steadybit agent would send one.

use rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::tls::trust::x509::NameKey;

/// What the JVM's default key manager does with a client certificate chain, given the CA names
/// of the server's CertificateRequest: see [`jvm_key_manager_choice`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JvmChoice {
    /// The server listed no CA names: the JVM sends no certificate.
    NoCaNames,
    /// The issuer of certificate `index` of the chain (0 is the leaf) is among the names: the
    /// JVM sends the chain.
    Offers {
        /// Position in the chain, from 0.
        index: usize,
        /// The matching issuer name, RFC 4514.
        issuer: String,
    },
    /// No certificate of the chain has an issuer among the names: the JVM sends no
    /// certificate.
    NoMatch,
}

impl JvmChoice {
    /// Whether the JVM would send the chain.
    pub fn offers(&self) -> bool {
        matches!(self, Self::Offers { .. })
    }
}

/// The JVM key manager's rule: a chain is offered only if the issuer of one of its
/// certificates is among `ca_names` (DER-encoded X.500 names, as rustls hands them to
/// [`ResolvesClientCert::resolve`](rustls::client::ResolvesClientCert::resolve)); an empty list
/// gets no certificate. Names compare as the JVM's `X500Principal` does, by their canonical
/// form (attribute values case-folded and whitespace-collapsed), not byte for byte.
/// Certificates and names that do not parse match nothing.
pub fn jvm_key_manager_choice(chain: &[CertificateDer<'_>], ca_names: &[&[u8]]) -> JvmChoice {
    if ca_names.is_empty() {
        return JvmChoice::NoCaNames;
    }
    let names: Vec<NameKey> = ca_names
        .iter()
        .filter_map(|der| X509Name::from_der(der).ok().map(|(_, n)| NameKey::of(&n)))
        .collect();
    for (index, cert) in chain.iter().enumerate() {
        let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else {
            continue;
        };
        if names.contains(&NameKey::of(parsed.issuer())) {
            return JvmChoice::Offers {
                index,
                issuer: name_text(parsed.issuer().as_raw()),
            };
        }
    }
    JvmChoice::NoMatch
}

/// A DER-encoded X.500 name (such as a CertificateRequest's CA name) in RFC 4514 form, with
/// control characters escaped; `<undecodable name>` when it does not parse.
pub fn name_text(der: &[u8]) -> String {
    X509Name::from_der(der)
        .ok()
        .and_then(|(_, name)| crate::identity::DistinguishedName::from_x509(&name, "name").ok())
        .map_or_else(|| "<undecodable name>".to_owned(), |n| n.to_string())
}
