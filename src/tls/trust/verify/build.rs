//! Building a verifier from trust certificates and CRLs: sorting each certificate (CA, pin,
//! or refused), binding each CRL to the issuers whose key verifies it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::DistinguishedName;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateRevocationListDer, TrustAnchor};
use webpki::EndEntityCert;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Error};
use x509_parser::x509::X509Version;

use crate::tls::config::error::ConfigError;
use crate::tls::config::load::TrustCert;
use crate::tls::trust::crl::{Authority, Crl, Floating};
use crate::tls::trust::x509::{NameKey, Signed, serial_key};

use super::check::display_subject;
use super::report::{TrustNote, TrustSummary};
use super::{Anchor, ChainLimits, ClientAuth, ClientVerifier, PinnedLeaf};

/// What one trust certificate is.
enum Kind {
    Ca,
    Leaf,
    /// Cannot authenticate a client; the reason says why.
    Skip(String),
}

/// Sorts one trust certificate, refusing what cannot be decoded.
fn classify(cert: &TrustCert, parsed: &X509Certificate<'_>) -> Result<Kind, ConfigError> {
    let unusable = |reason: String| ConfigError::UnusableTrust {
        path: cert.path.clone(),
        index: cert.index,
        reason,
    };
    let mut seen = HashSet::new();
    for ext in parsed.extensions() {
        let name = match ext.oid.to_id_string().as_str() {
            "2.5.29.19" => "basicConstraints",
            "2.5.29.15" => "keyUsage",
            "2.5.29.37" => "extendedKeyUsage",
            _ => continue,
        };
        if !seen.insert(name) {
            return Err(unusable(format!("its {name} extension appears twice")));
        }
        if let ParsedExtension::ParseError { error } = ext.parsed_extension() {
            return Err(unusable(format!(
                "its {name} extension does not decode ({error})"
            )));
        }
        if ext.parsed_extension().unsupported() {
            return Err(unusable(format!("its {name} extension does not decode")));
        }
    }
    if parsed.version() != X509Version::V3 {
        return Err(unusable(format!(
            "it is an X.509 version {} certificate: without extensions it can be neither a CA \
             (no basicConstraints) nor a client certificate to pin; reissue it as version 3",
            parsed.version().0 + 1
        )));
    }
    let is_ca = parsed
        .basic_constraints()
        .map_err(|e| {
            unusable(format!(
                "its basicConstraints extension does not decode ({e})"
            ))
        })?
        .is_some_and(|bc| bc.value.ca);
    let key_usage = parsed
        .key_usage()
        .map_err(|e| unusable(format!("its keyUsage extension does not decode ({e})")))?;
    if is_ca {
        if key_usage.is_some_and(|ku| !ku.value.key_cert_sign()) {
            return Err(unusable(
                "a CA certificate whose keyUsage lacks keyCertSign cannot issue client \
                 certificates"
                    .into(),
            ));
        }
        return Ok(Kind::Ca);
    }
    let eku = parsed.extended_key_usage().map_err(|e| {
        unusable(format!(
            "its extendedKeyUsage extension does not decode ({e})"
        ))
    })?;
    if let Some(eku) = eku
        && !eku.value.client_auth
    {
        let mut has = Vec::new();
        if eku.value.server_auth {
            has.push("serverAuth");
        }
        if eku.value.any {
            has.push("anyExtendedKeyUsage");
        }
        if eku.value.code_signing || eku.value.email_protection || !eku.value.other.is_empty() {
            has.push("others");
        }
        return Ok(Kind::Skip(format!(
            "an end-entity certificate whose extendedKeyUsage lacks clientAuth (it has: {}); \
                 it cannot authenticate a client",
            has.join(", ")
        )));
    }
    // The same parse a chained leaf gets: unknown critical extensions and the like.
    EndEntityCert::try_from(&cert.der)
        .map_err(|e| unusable(format!("it cannot be pinned as a client certificate: {e}")))?;
    Ok(Kind::Leaf)
}

impl ClientVerifier {
    /// The verifier for `trust` and `crls`, with what it trusts and the notes worth logging.
    pub(crate) fn build(
        trust: &[TrustCert],
        crls: &[(PathBuf, CertificateRevocationListDer<'static>)],
        mode: ClientAuth,
        limits: ChainLimits,
        require_fresh: bool,
        provider: &Arc<CryptoProvider>,
    ) -> Result<(Arc<Self>, TrustSummary, Vec<TrustNote>), ConfigError> {
        let algorithms = provider.signature_verification_algorithms;
        let mut notes = Vec::new();
        let Sorted {
            mut anchors,
            webpki_anchors,
            mut pinned,
            hints,
        } = sort_trust(trust, &mut notes)?;
        find_pin_issuers(&mut pinned, &anchors, &algorithms);
        let floating = bind_crls(crls, &mut anchors, &mut pinned, &algorithms, &mut notes)?;

        let summary = TrustSummary {
            anchors: anchors.len(),
            pinned: pinned.len(),
            crls: crls.len(),
        };
        Ok((
            Arc::new(Self {
                anchors,
                webpki_anchors,
                pinned,
                floating,
                has_crls: !crls.is_empty(),
                require_fresh,
                hints: hints.0,
                mandatory: mode == ClientAuth::Required,
                algorithms,
                limits,
            }),
            summary,
            notes,
        ))
    }
}

/// The trust certificates sorted into CAs and pins, with the names to advertise.
#[derive(Default)]
struct Sorted {
    anchors: Vec<Anchor>,
    webpki_anchors: Vec<TrustAnchor<'static>>,
    pinned: Vec<PinnedLeaf>,
    hints: Hints,
}

/// Sorts every trust certificate (a duplicate counts once), noting what each became; fails on
/// one that cannot be decoded, a source that contributes nothing usable, or no trust at all.
fn sort_trust(trust: &[TrustCert], notes: &mut Vec<TrustNote>) -> Result<Sorted, ConfigError> {
    let mut sorted = Sorted::default();
    let mut sources = Sources::default();
    let mut seen = HashSet::new();
    for cert in trust {
        if !seen.insert(cert.der.as_ref().to_vec()) {
            sources.usable(cert);
            continue;
        }
        let parsed = parse_trust_cert(cert)?;
        let subject = display_subject(cert.der.as_ref());
        let not_after = parsed.validity().not_after.timestamp();
        match classify(cert, &parsed)? {
            Kind::Skip(reason) => {
                sources.skipped(cert, &reason);
                notes.push(TrustNote::Skipped {
                    path: cert.path.clone(),
                    index: cert.index,
                    subject,
                    reason,
                });
            }
            Kind::Ca => {
                let (anchor, webpki_anchor) = anchor(cert, &parsed, subject.clone())?;
                sources.usable(cert);
                sorted.anchors.push(anchor);
                sorted.webpki_anchors.push(webpki_anchor);
                sorted.hints.add(parsed.subject().as_raw());
                if cert.from_directory {
                    sources.mixed.entry(&cert.source).or_default().1 = Some(subject.clone());
                }
                notes.push(TrustNote::Anchor {
                    subject,
                    not_after,
                    path: cert.path.clone(),
                });
            }
            Kind::Leaf => {
                sources.usable(cert);
                sorted.pinned.push(pin(cert, &parsed));
                sorted.hints.add(parsed.issuer().as_raw());
                sorted.hints.add(parsed.subject().as_raw());
                if cert.from_directory {
                    sources.mixed.entry(&cert.source).or_default().0 = Some(subject.clone());
                }
                notes.push(TrustNote::Pinned {
                    subject,
                    not_after,
                    path: cert.path.clone(),
                });
            }
        }
    }
    sources.finish(notes)?;
    if sorted.anchors.is_empty() && sorted.pinned.is_empty() {
        return Err(ConfigError::EmptyTrustSource {
            path: trust.first().map(|c| c.path.clone()).unwrap_or_default(),
            reason: "no certificate found that can authenticate a client".into(),
        });
    }
    Ok(sorted)
}

/// Decodes a trust certificate; an extension that appears twice makes it unusable, any other
/// decoding error invalid.
fn parse_trust_cert(cert: &TrustCert) -> Result<X509Certificate<'_>, ConfigError> {
    match X509Certificate::from_der(cert.der.as_ref()) {
        Ok((_, parsed)) => Ok(parsed),
        Err(
            x509_parser::nom::Err::Error(X509Error::DuplicateExtensions)
            | x509_parser::nom::Err::Failure(X509Error::DuplicateExtensions),
        ) => Err(ConfigError::UnusableTrust {
            path: cert.path.clone(),
            index: cert.index,
            reason: "an extension appears twice".into(),
        }),
        Err(e) => Err(ConfigError::InvalidCertificate {
            path: cert.path.clone(),
            index: cert.index,
            reason: e.to_string(),
        }),
    }
}

/// A CA certificate as the verifier's anchor and as webpki's.
fn anchor(
    cert: &TrustCert,
    parsed: &X509Certificate<'_>,
    subject: String,
) -> Result<(Anchor, TrustAnchor<'static>), ConfigError> {
    let anchor = webpki::anchor_from_trusted_cert(&cert.der)
        .map_err(|e| ConfigError::UnusableTrust {
            path: cert.path.clone(),
            index: cert.index,
            reason: format!("not a usable trust anchor: {e}"),
        })?
        .to_owned();
    let key_id = parsed
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
    let ours = Anchor {
        spki: webpki::spki_for_anchor(&anchor).as_ref().to_vec(),
        name: NameKey::of(parsed.subject()),
        subject,
        key_id,
        crls: None,
    };
    Ok((ours, anchor))
}

/// An end-entity trust certificate as a pinned leaf (its issuer and CRLs found later).
fn pin(cert: &TrustCert, parsed: &X509Certificate<'_>) -> PinnedLeaf {
    let validity = parsed.validity();
    let authority_key_id =
        parsed
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            });
    PinnedLeaf {
        der: cert.der.clone(),
        not_before: u64::try_from(validity.not_before.timestamp()).unwrap_or(0),
        not_after: u64::try_from(validity.not_after.timestamp()).unwrap_or(0),
        serial: serial_key(parsed.raw_serial()).to_vec(),
        issuer: NameKey::of(parsed.issuer()),
        authority_key_id,
        issued_by: None,
        crls: None,
    }
}

/// The CertificateRequest's `certificate_authorities`: each name once, in the order the trust
/// certificates gave them.
#[derive(Default)]
struct Hints(Vec<DistinguishedName>);

impl Hints {
    fn add(&mut self, raw: &[u8]) {
        if !self.0.iter().any(|h| h.as_ref() == raw) {
            self.0.push(DistinguishedName::from(raw.to_vec()));
        }
    }
}

/// What each trust source contributed.
#[derive(Default)]
struct Sources<'a> {
    /// Per source: how many certificates were usable, and why the others were not.
    usable: HashMap<&'a PathBuf, (usize, Vec<String>)>,
    /// Per directory source: a pinned subject and a CA subject it contributed.
    mixed: HashMap<&'a PathBuf, (Option<String>, Option<String>)>,
}

impl<'a> Sources<'a> {
    fn usable(&mut self, cert: &'a TrustCert) {
        self.usable.entry(&cert.source).or_default().0 += 1;
    }

    fn skipped(&mut self, cert: &'a TrustCert, reason: &str) {
        self.usable.entry(&cert.source).or_default().1.push(format!(
            "certificate #{} of {}: {reason}",
            cert.index,
            cert.path.display()
        ));
    }

    /// Every source must contribute something (the error says why one did not); a directory
    /// that mixes pins and CAs gets a note.
    fn finish(self, notes: &mut Vec<TrustNote>) -> Result<(), ConfigError> {
        let mut sources: Vec<_> = self.usable.into_iter().collect();
        sources.sort_by(|a, b| a.0.cmp(b.0));
        for (source, (count, reasons)) in sources {
            if count == 0 {
                return Err(ConfigError::EmptyTrustSource {
                    path: source.clone(),
                    reason: format!(
                        "no certificate here can authenticate a client: {}",
                        reasons.join("; ")
                    ),
                });
            }
        }
        let mut mixed: Vec<_> = self.mixed.into_iter().collect();
        mixed.sort_by(|a, b| a.0.cmp(b.0));
        for (directory, pair) in mixed {
            if let (Some(pinned_subject), Some(ca_subject)) = pair {
                notes.push(TrustNote::MixedDirectory {
                    directory: directory.clone(),
                    ca_subject,
                    pinned_subject,
                });
            }
        }
        Ok(())
    }
}

/// Which configured CA signed each pinned leaf, if any: its CRLs are that CA's.
fn find_pin_issuers(
    pinned: &mut [PinnedLeaf],
    anchors: &[Anchor],
    algorithms: &WebPkiSupportedAlgorithms,
) {
    for pin in pinned {
        if let Some(signed) = Signed::parse(pin.der.as_ref()) {
            pin.issued_by = anchors
                .iter()
                .position(|a| a.name == pin.issuer && signed.verified_by(&a.spki, algorithms));
        }
    }
}

/// Binds each CRL to the issuers whose key verifies it (see [`crate::tls::trust::crl`]), and
/// gives each anchor and pin its revocation index; returns the CRLs no configured issuer
/// verifies.
fn bind_crls(
    crls: &[(PathBuf, CertificateRevocationListDer<'static>)],
    anchors: &mut [Anchor],
    pinned: &mut [PinnedLeaf],
    algorithms: &WebPkiSupportedAlgorithms,
    notes: &mut Vec<TrustNote>,
) -> Result<Floating, ConfigError> {
    let mut anchor_crls: Vec<Vec<Arc<Crl>>> = anchors.iter().map(|_| Vec::new()).collect();
    let mut pinned_crls: Vec<Vec<Arc<Crl>>> = pinned.iter().map(|_| Vec::new()).collect();
    let mut floating = Floating::default();
    for (path, der) in crls {
        let crl = Arc::new(Crl::parse(path, der.as_ref())?);
        note_crl(&crl, path, notes);
        let mut bound = false;
        let mut same_name = false;
        for (anchor, bound_here) in anchors.iter().zip(&mut anchor_crls) {
            if anchor.name == crl.issuer {
                same_name = true;
                if crl.verified_by(&anchor.spki, algorithms) {
                    bound_here.push(crl.clone());
                    bound = true;
                }
            }
        }
        for (pin, bound_here) in pinned.iter().zip(&mut pinned_crls) {
            let compatible = match (&pin.authority_key_id, &crl.authority_key_id) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            if pin.issued_by.is_none() && pin.issuer == crl.issuer && compatible {
                bound_here.push(crl.clone());
                bound = true;
            }
        }
        if bound {
            continue;
        }
        // Not a trusted CA's CRL. It can revoke nothing of theirs, so it never blocks a
        // configuration (a leftover CRL of a retired CA must not keep that CA trusted by
        // failing the reload that removes it); it is kept for an intermediate whose key
        // verifies it, like any CRL of an unknown issuer.
        notes.push(if same_name {
            TrustNote::UnverifiedCrl {
                issuer: crl.issuer_display.clone(),
                path: path.clone(),
            }
        } else {
            TrustNote::FloatingCrl {
                issuer: crl.issuer_display.clone(),
                path: path.clone(),
            }
        });
        floating.push(crl);
    }
    for (anchor, crls) in anchors.iter_mut().zip(&anchor_crls) {
        anchor.crls = Authority::select(crls);
    }
    for (pin, crls) in pinned.iter_mut().zip(&pinned_crls) {
        pin.crls = match pin.issued_by {
            Some(i) => anchors.get(i).and_then(|a| a.crls.clone()),
            None => Authority::select(crls),
        };
    }
    Ok(floating)
}

/// What a CRL says, and why it cannot be used if it cannot.
fn note_crl(crl: &Crl, path: &Path, notes: &mut Vec<TrustNote>) {
    notes.push(TrustNote::Crl {
        issuer: crl.issuer_display.clone(),
        number: crl.number_display(),
        this_update: crl.this_update,
        next_update: crl.next_update,
        scope: crl.scope_display(),
        path: path.to_path_buf(),
    });
    if let Some(defect) = crl.defect() {
        notes.push(TrustNote::UnusableCrl {
            issuer: crl.issuer_display.clone(),
            reason: defect.to_owned(),
            path: path.to_path_buf(),
        });
    }
}
