//! Certificate revocation lists, indexed so that no order of files, sources or PEM blocks can
//! change a verdict.
//!
//! rustls-webpki consults the **first** CRL whose issuer name matches a certificate's issuer,
//! byte for byte. An older CRL read first then hides a newer one's revocations, a CRL that
//! spells its issuer with another string type is silently skipped, and the CRL of a same-named
//! CA signed by another key fails every client of the other CA. This module does the selection
//! itself:
//!
//! * an issuer is its **name**, compared by RFC 5280's rules ([`NameKey`]: attribute types by
//!   OID, string values case-folded and whitespace-folded whatever their ASN.1 string type,
//!   each RDN as a set), **and the key that verifies the CRL**;
//! * every CRL is checked at load: parsed by rustls-webpki's strict profile (no delta CRLs, no
//!   unknown critical extensions), its signature verified against the configured CAs of that
//!   name, and bound to the one whose key verifies it;
//! * of the CRLs bound to one issuer, the one with the highest CRLNumber (then the latest
//!   thisUpdate) is authoritative; CRLs that tie on both are merged (union of revocations).
//!
//! A CRL whose issuer is no configured CA may belong to an intermediate CA that clients
//! present; it is kept aside and applied to such an intermediate only after its signature
//! verifies against that intermediate's key.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::crypto::WebPkiSupportedAlgorithms;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::error::ConfigError;
use crate::identity::DistinguishedName;

use super::x509::{NameKey, Signed, serial_key};
/// One parsed, profile-checked CRL.
#[derive(Debug)]
pub(crate) struct Crl {
    pub(crate) path: PathBuf,
    pub(crate) issuer: NameKey,
    /// The issuer, RFC 4514, for logs.
    pub(crate) issuer_display: String,
    /// CRLNumber, big-endian without leading zeros; `None` when absent.
    number: Option<Vec<u8>>,
    pub(crate) this_update: i64,
    pub(crate) next_update: Option<i64>,
    revoked: HashSet<Vec<u8>>,
    /// The authorityKeyIdentifier's keyIdentifier, when present.
    pub(crate) authority_key_id: Option<Vec<u8>>,
    signed: Signed,
}

impl Crl {
    /// Parses a CRL read from `path`. Everything rustls-webpki would refuse is refused here,
    /// naming the file, and so is a CRL that covers only part of its issuer's certificates.
    pub(crate) fn parse(path: &Path, der: &[u8]) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::InvalidCrl {
            path: path.to_owned(),
            reason,
        };
        webpki::OwnedCertRevocationList::from_der(der)
            .map_err(|e| invalid(format!("not a CRL rustls can use: {e}")))?;
        let (rest, crl) =
            CertificateRevocationList::from_der(der).map_err(|e| invalid(e.to_string()))?;
        if !rest.is_empty() {
            return Err(invalid("trailing data after the CRL".into()));
        }
        let signed =
            Signed::parse(der).ok_or_else(|| invalid("not a signed CRL structure".into()))?;
        let mut authority_key_id = None;
        for ext in crl.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::IssuingDistributionPoint(idp)
                    if idp.only_contains_user_certs
                        || idp.only_contains_ca_certs
                        || idp.only_contains_attribute_certs
                        || idp.only_some_reasons.is_some()
                        || idp.indirect_crl =>
                {
                    return Err(invalid(
                        "a partitioned CRL (its issuingDistributionPoint limits its scope) \
                         cannot prove a certificate unrevoked; configure the issuer's full CRL"
                            .into(),
                    ));
                }
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    authority_key_id = aki.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                ParsedExtension::ParseError { error } => {
                    return Err(invalid(format!(
                        "extension {} does not decode: {error}",
                        ext.oid
                    )));
                }
                _ => {}
            }
        }
        let number = crl.crl_number().map(|n| {
            let bytes = n.to_bytes_be();
            serial_key(&bytes).to_vec()
        });
        let revoked = crl
            .iter_revoked_certificates()
            .map(|entry| serial_key(entry.raw_serial()).to_vec())
            .collect();
        Ok(Self {
            path: path.to_owned(),
            issuer: NameKey::of(crl.issuer()),
            issuer_display: DistinguishedName::from_x509(crl.issuer(), "issuer")
                .map_err(|e| invalid(e.to_string()))?
                .to_string(),
            number,
            this_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|t| t.timestamp()),
            revoked,
            authority_key_id,
            signed,
        })
    }

    pub(crate) fn verified_by(&self, spki: &[u8], algorithms: &WebPkiSupportedAlgorithms) -> bool {
        self.signed.verified_by(spki, algorithms)
    }

    /// What orders CRLs of one issuer: CRLNumber (absent lowest, compared as an unsigned
    /// integer), then thisUpdate.
    fn rank(&self) -> (usize, &[u8], i64) {
        let number = self.number.as_deref().unwrap_or(&[]);
        (
            usize::from(self.number.is_some()) + number.len(),
            number,
            self.this_update,
        )
    }

    /// The CRL number for messages.
    pub(crate) fn number_display(&self) -> String {
        match &self.number {
            None => "none".into(),
            Some(n) => format!(
                "0x{}",
                n.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
        }
    }
}

/// The revocation information that speaks for one issuer: its authoritative CRL (or the
/// merge of CRLs that tie for it).
#[derive(Debug)]
pub(crate) struct Authority {
    revoked: HashSet<Vec<u8>>,
    pub(crate) next_update: Option<i64>,
    /// The files of the authoritative CRL(s), sorted.
    pub(crate) files: Vec<PathBuf>,
    pub(crate) issuer: String,
    pub(crate) number: String,
}

impl Authority {
    /// The authoritative information among `crls` (all of one issuer); `None` when empty.
    /// The result depends only on the set of CRLs, never on their order.
    pub(crate) fn select(crls: &[&Crl]) -> Option<Arc<Self>> {
        let best = crls.iter().map(|c| c.rank()).max()?;
        let winners: Vec<&Crl> = crls.iter().copied().filter(|c| c.rank() == best).collect();
        let mut files: Vec<PathBuf> = winners.iter().map(|c| c.path.clone()).collect();
        files.sort();
        files.dedup();
        let mut issuers: Vec<&str> = winners.iter().map(|c| c.issuer_display.as_str()).collect();
        issuers.sort_unstable();
        Some(Arc::new(Self {
            revoked: winners
                .iter()
                .flat_map(|c| c.revoked.iter().cloned())
                .collect(),
            next_update: winners.iter().filter_map(|c| c.next_update).min(),
            files,
            issuer: issuers
                .first()
                .map_or_else(String::new, |s| (*s).to_owned()),
            number: winners
                .first()
                .map_or_else(|| "none".into(), |c| c.number_display()),
        }))
    }

    pub(crate) fn files_display(&self) -> String {
        self.files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Judges one certificate (by its serial) at `now` (Unix seconds). With fresh CRLs
    /// required, a stale CRL refuses every certificate of its issuer, listed or not (as
    /// rustls-webpki checks expiry first).
    pub(crate) fn check(
        &self,
        serial: &[u8],
        now: u64,
        require_fresh: bool,
    ) -> Result<(), Revoked> {
        if require_fresh {
            if let Some(next) = self.next_update {
                let now = i64::try_from(now).unwrap_or(i64::MAX);
                if now >= next {
                    return Err(Revoked::Stale {
                        next_update: u64::try_from(next).unwrap_or(0),
                        reason: format!(
                            "the CRL of issuer {} in {} is stale (nextUpdate passed {} s ago) and \
                             fresh CRLs are required",
                            self.issuer,
                            self.files_display(),
                            now - next
                        ),
                    });
                }
            }
        }
        if self.revoked.contains(serial_key(serial)) {
            return Err(Revoked::Listed {
                reason: format!(
                    "revoked by the CRL in {} (issuer {}, CRL number {})",
                    self.files_display(),
                    self.issuer,
                    self.number
                ),
            });
        }
        Ok(())
    }
}

/// Why revocation checking refused a certificate.
#[derive(Debug, Clone)]
pub(crate) enum Revoked {
    /// The authoritative CRL lists it.
    Listed { reason: String },
    /// The authoritative CRL is past its nextUpdate and fresh CRLs are required.
    Stale { next_update: u64, reason: String },
}

impl Revoked {
    pub(crate) fn reason(&self) -> &str {
        match self {
            Self::Listed { reason } | Self::Stale { reason, .. } => reason,
        }
    }
}

/// CRLs whose issuer is no configured CA, kept for intermediates that clients present; each is
/// applied to an intermediate only when its signature verifies against that intermediate.
#[derive(Debug, Default)]
pub(crate) struct Floating {
    by_name: HashMap<NameKey, Vec<Arc<Crl>>>,
    /// (issuer name, issuer SPKI) → what applies; signatures are checked once per key.
    cache: Mutex<FloatingCache>,
}

type FloatingCache = HashMap<(NameKey, Vec<u8>), Option<Arc<Authority>>>;

/// Entries the cache of [`Floating`] holds before it starts over.
const FLOATING_CACHE: usize = 256;

impl Floating {
    pub(crate) fn push(&mut self, crl: Arc<Crl>) {
        self.by_name
            .entry(crl.issuer.clone())
            .or_default()
            .push(crl);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The authority for certificates issued by the CA named `issuer` with key `spki`.
    pub(crate) fn authority(
        &self,
        issuer: &NameKey,
        spki: &[u8],
        algorithms: &WebPkiSupportedAlgorithms,
    ) -> Option<Arc<Authority>> {
        let candidates = self.by_name.get(issuer)?;
        let key = (issuer.clone(), spki.to_vec());
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return hit.clone();
        }
        let verified: Vec<&Crl> = candidates
            .iter()
            .filter(|crl| crl.verified_by(spki, algorithms))
            .map(|crl| &**crl)
            .collect();
        let authority = Authority::select(&verified);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= FLOATING_CACHE {
            cache.clear();
        }
        cache.insert(key, authority.clone());
        authority
    }
}
