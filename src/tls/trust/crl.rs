//! Certificate revocation lists, indexed so that no order of files, sources or PEM blocks can
//! change a verdict, and applied only within their scope and from their time.
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
//!   indirect CRLs, no reason partitions, no unknown critical extensions), its signature
//!   verified against the configured CAs of that name, and bound to the one whose key
//!   verifies it;
//! * a CRL speaks only within its **scope** (RFC 5280 §5.2.5): one with an
//!   issuingDistributionPoint covers the certificates whose CRLDistributionPoints name one of
//!   its URIs (or that name none, as rustls-webpki decides), and only the roles it admits
//!   (onlyContainsUserCerts / onlyContainsCACerts); one without covers all its issuer issued.
//!   CRLs of different scopes never displace each other: a certificate is checked against
//!   every scope that covers it;
//! * a CRL speaks only from its **time**: until its thisUpdate has come (give or take
//!   [`CLOCK_SKEW`]) it is set aside, and it takes over when its time comes, without a reload;
//! * of the CRLs in force for one issuer and scope, the one with the highest CRLNumber (then
//!   the latest thisUpdate) is authoritative; CRLs that tie on both are merged (union of
//!   revocations).
//!
//! A CRL whose issuer is no configured CA may belong to an intermediate CA that clients
//! present; it is kept aside and applied to such an intermediate only after its signature
//! verifies against that intermediate's key.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::crypto::WebPkiSupportedAlgorithms;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::identity::DistinguishedName;
use crate::tls::config::error::ConfigError;

use crate::tls::trust::x509::{NameKey, Signed, serial_key};

/// How far ahead of this server's clock a CRL's thisUpdate may be and the CRL still count as
/// in force: CAs stamp a CRL when they sign it, and two clocks are never quite equal. A CRL
/// dated later is set aside until then.
pub(crate) const CLOCK_SKEW: u64 = 60;

/// Which certificates of its issuer a CRL speaks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Scope {
    /// `None`: no issuingDistributionPoint, every certificate of the issuer. `Some`: the
    /// URIs of its distribution point's full name, sorted.
    uris: Option<Vec<Vec<u8>>>,
    only_user: bool,
    only_ca: bool,
}

impl Scope {
    /// Whether a CRL of this scope speaks for `cert`.
    fn covers(&self, cert: &CertFacts<'_>) -> bool {
        if (self.only_user && cert.is_ca) || (self.only_ca && !cert.is_ca) {
            return false;
        }
        let Some(uris) = &self.uris else {
            return true;
        };
        // A certificate that names no distribution point: any scope of its issuer may speak
        // for it (rustls-webpki's rule; it is also the stricter one).
        match cert.distribution_points() {
            None => true,
            Some(points) => points.iter().any(|p| uris.contains(p)),
        }
    }

    /// For messages: `whole issuer`, or the distribution point's URIs.
    fn describe(&self) -> String {
        match &self.uris {
            None => "every certificate of the issuer".into(),
            Some(uris) => format!(
                "distribution point {}",
                uris.iter()
                    .map(|u| String::from_utf8_lossy(u).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        }
    }
}

/// What revocation checking needs of one certificate: its serial, its role, and — only when a
/// scoped CRL asks — the URIs its CRLDistributionPoints name.
pub(crate) struct CertFacts<'a> {
    serial: &'a [u8],
    is_ca: bool,
    der: &'a [u8],
    points: OnceCell<Option<Vec<Vec<u8>>>>,
}

impl<'a> CertFacts<'a> {
    /// `der` is the certificate, `serial` its serial's content octets; `is_ca` when it stands
    /// as an issuer in the path.
    pub(crate) fn new(der: &'a [u8], serial: &'a [u8], is_ca: bool) -> Self {
        Self {
            serial,
            is_ca,
            der,
            points: OnceCell::new(),
        }
    }

    /// The full-name URIs of the certificate's direct, unpartitioned distribution points;
    /// `None` when it has no CRLDistributionPoints extension. Parsed once, on first use.
    fn distribution_points(&self) -> Option<&[Vec<u8>]> {
        self.points
            .get_or_init(|| distribution_points(self.der))
            .as_deref()
    }
}

/// See [`CertFacts::distribution_points`]. A certificate that does not parse here names no
/// usable point (`Some(empty)`): no scoped CRL speaks for it, and the chain verifier refuses it
/// anyway.
pub(crate) fn distribution_points(der: &[u8]) -> Option<Vec<Vec<u8>>> {
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der) else {
        return Some(Vec::new());
    };
    let mut found = None;
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            let uris = found.get_or_insert_with(Vec::new);
            for point in points.iter() {
                // Indirect or reason-partitioned points cannot match (as rustls-webpki).
                if point.crl_issuer.is_some() || point.reasons.is_some() {
                    continue;
                }
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    uris.extend(names.iter().filter_map(uri));
                }
            }
        }
    }
    found
}

fn uri(name: &GeneralName<'_>) -> Option<Vec<u8>> {
    match name {
        GeneralName::URI(u) => Some(u.as_bytes().to_vec()),
        _ => None,
    }
}

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
    scope: Scope,
    /// Why rustls-webpki's profile refuses it, when it does: see [`Crl::parse`].
    defect: Option<String>,
    signed: Signed,
}

impl Crl {
    /// Parses a CRL read from `path`. A file that does not decode as a signed CRL at all is an
    /// error naming it: nobody can tell whose revocations it holds. One that decodes but breaks
    /// rustls-webpki's profile (a delta, indirect or reason-partitioned CRL, an unknown
    /// critical extension, trailing data, …) is kept as **unusable** with the reason: it is
    /// bound to its issuer like any CRL, and that issuer's certificates are then refused
    /// ([`Revoked::Unknown`]) rather than the whole configuration.
    pub(crate) fn parse(path: &Path, der: &[u8]) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::InvalidCrl {
            path: path.to_owned(),
            reason,
        };
        let (rest, crl) =
            CertificateRevocationList::from_der(der).map_err(|e| invalid(e.to_string()))?;
        let signed = Signed::parse(&der[..der.len() - rest.len()])
            .ok_or_else(|| invalid("not a signed CRL structure".into()))?;
        let issuer_display = DistinguishedName::from_x509(crl.issuer(), "issuer")
            .map_err(|e| invalid(e.to_string()))?
            .to_string();
        let mut defects = Vec::new();
        if let Err(e) = webpki::OwnedCertRevocationList::from_der(der) {
            defects.push(format!("not a CRL rustls can use: {e}"));
        }
        if !rest.is_empty() {
            defects.push("trailing data after the CRL".into());
        }
        let mut authority_key_id = None;
        let mut scope = Scope::default();
        for ext in crl.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::IssuingDistributionPoint(idp) => {
                    if idp.only_contains_attribute_certs
                        || idp.only_some_reasons.is_some()
                        || idp.indirect_crl
                    {
                        defects.push(
                            "an indirect CRL, or one partitioned by revocation reason or for \
                             attribute certificates, is not supported"
                                .into(),
                        );
                    }
                    let mut uris: Vec<Vec<u8>> = match &idp.distribution_point {
                        Some(DistributionPointName::FullName(names)) => {
                            names.iter().filter_map(uri).collect()
                        }
                        _ => Vec::new(),
                    };
                    uris.sort();
                    uris.dedup();
                    scope = Scope {
                        uris: Some(uris),
                        only_user: idp.only_contains_user_certs,
                        only_ca: idp.only_contains_ca_certs,
                    };
                }
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    authority_key_id = aki.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                ParsedExtension::ParseError { error } => {
                    defects.push(format!("extension {} does not decode: {error}", ext.oid));
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
        defects.dedup();
        Ok(Self {
            path: path.to_owned(),
            issuer: NameKey::of(crl.issuer()),
            issuer_display,
            number,
            this_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|t| t.timestamp()),
            revoked,
            authority_key_id,
            scope,
            defect: (!defects.is_empty()).then(|| defects.join("; ")),
            signed,
        })
    }

    /// Why this CRL cannot be used, when it cannot.
    pub(crate) fn defect(&self) -> Option<&str> {
        self.defect.as_deref()
    }

    pub(crate) fn verified_by(&self, spki: &[u8], algorithms: &WebPkiSupportedAlgorithms) -> bool {
        self.signed.verified_by(spki, algorithms)
    }

    /// What orders CRLs of one issuer and scope: CRLNumber (absent lowest, compared as an
    /// unsigned integer), then thisUpdate.
    fn rank(&self) -> (usize, &[u8], i64) {
        let number = self.number.as_deref().unwrap_or(&[]);
        (
            usize::from(self.number.is_some()) + number.len(),
            number,
            self.this_update,
        )
    }

    /// Whether this CRL is in force at `now` (Unix seconds): its thisUpdate has come, give or
    /// take [`CLOCK_SKEW`].
    pub(crate) fn in_force(&self, now: u64) -> bool {
        self.this_update <= to_i64(now.saturating_add(CLOCK_SKEW))
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

    /// Its scope, for messages.
    pub(crate) fn scope_display(&self) -> String {
        self.scope.describe()
    }
}

fn to_i64(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn to_u64(secs: i64) -> u64 {
    u64::try_from(secs).unwrap_or(0)
}

/// The CRLs of one issuer and one scope, best first.
#[derive(Debug)]
struct ScopeCrls {
    scope: Scope,
    crls: Vec<Arc<Crl>>,
}

/// The revocation information that speaks for one issuer (name and key): its CRLs, by scope.
/// Which of them is in force is decided at each check, so a CRL dated in the future takes
/// over when its time comes.
#[derive(Debug)]
pub(crate) struct Authority {
    scopes: Vec<ScopeCrls>,
    /// CRLs of this issuer that cannot be used: while there is one, no certificate of the
    /// issuer can be judged, so each is refused.
    unusable: Vec<Arc<Crl>>,
}

/// A certificate the revocation information lets through, and until when that holds.
pub(crate) struct NotRevoked {
    /// Unix seconds: the earliest moment a check could answer otherwise (a required-fresh
    /// CRL's nextUpdate, a CRL that comes into force); `u64::MAX` when nothing can change.
    pub(crate) until: u64,
}

impl Authority {
    /// The revocation information in `crls` (all of one issuer); `None` when empty. The
    /// result depends only on the set of CRLs, never on their order.
    pub(crate) fn select(crls: &[Arc<Crl>]) -> Option<Arc<Self>> {
        if crls.is_empty() {
            return None;
        }
        let mut by_scope: HashMap<&Scope, Vec<Arc<Crl>>> = HashMap::new();
        let mut unusable = Vec::new();
        for crl in crls {
            if crl.defect.is_some() {
                unusable.push(crl.clone());
            } else {
                by_scope.entry(&crl.scope).or_default().push(crl.clone());
            }
        }
        unusable.sort_by(|a: &Arc<Crl>, b| a.path.cmp(&b.path));
        let mut scopes: Vec<ScopeCrls> = by_scope
            .into_iter()
            .map(|(scope, mut crls)| {
                crls.sort_by(|a, b| b.rank().cmp(&a.rank()).then_with(|| a.path.cmp(&b.path)));
                ScopeCrls {
                    scope: scope.clone(),
                    crls,
                }
            })
            .collect();
        scopes.sort_by(|a, b| a.scope.cmp(&b.scope));
        Some(Arc::new(Self { scopes, unusable }))
    }

    /// Judges one certificate at `now` (Unix seconds) against every scope that covers it:
    /// revoked if any CRL in force there lists it. With fresh CRLs required, a stale CRL in
    /// force refuses every certificate of its scope, listed or not (as rustls-webpki checks
    /// expiry first).
    pub(crate) fn check(
        &self,
        cert: &CertFacts<'_>,
        now: u64,
        require_fresh: bool,
    ) -> Result<NotRevoked, Revoked> {
        if let Some(crl) = self.unusable.first() {
            return Err(Revoked::Unknown {
                reason: format!(
                    "the CRL in {} of issuer {} cannot be used ({}): the revocation status of \
                     its certificates is unknown, so they are refused until it is fixed or removed",
                    crl.path.display(),
                    crl.issuer_display,
                    crl.defect.as_deref().unwrap_or_default()
                ),
            });
        }
        let mut until = u64::MAX;
        for group in &self.scopes {
            if !group.scope.covers(cert) {
                continue;
            }
            // Best first: the first CRL in force is authoritative, with those that tie on it.
            let Some(best) = group.crls.iter().find(|c| c.in_force(now)) else {
                // Nothing in force yet: the earliest to come decides from its time on.
                if let Some(first) = group.crls.iter().map(|c| c.this_update).min() {
                    until = until.min(to_u64(first).saturating_sub(CLOCK_SKEW + 1));
                }
                continue;
            };
            // A better CRL that is not yet in force takes over when its time comes: what a
            // session verified now must be decided again then.
            for later in group.crls.iter().take_while(|c| c.rank() > best.rank()) {
                until = until.min(to_u64(later.this_update).saturating_sub(CLOCK_SKEW + 1));
            }
            let winners: Vec<&Arc<Crl>> = group
                .crls
                .iter()
                .filter(|c| c.rank() == best.rank() && c.in_force(now))
                .collect();
            let files = || {
                let mut files: Vec<String> = winners
                    .iter()
                    .map(|c| c.path.display().to_string())
                    .collect();
                files.sort();
                files.dedup();
                files.join(", ")
            };
            if require_fresh && let Some(next) = winners.iter().filter_map(|c| c.next_update).min()
            {
                let now_i = to_i64(now);
                if now_i >= next {
                    return Err(Revoked::Stale {
                        next_update: to_u64(next),
                        reason: format!(
                            "the CRL of issuer {} in {} is stale (nextUpdate passed {} s \
                                 ago) and fresh CRLs are required",
                            best.issuer_display,
                            files(),
                            now_i - next
                        ),
                    });
                }
                until = until.min(to_u64(next - 1));
            }
            let key = serial_key(cert.serial);
            if winners.iter().any(|c| c.revoked.contains(key)) {
                return Err(Revoked::Listed {
                    reason: format!(
                        "revoked by the CRL in {} (issuer {}, CRL number {}, scope: {})",
                        files(),
                        best.issuer_display,
                        best.number_display(),
                        group.scope.describe()
                    ),
                });
            }
        }
        Ok(NotRevoked { until })
    }
}

/// Why revocation checking refused a certificate.
#[derive(Debug, Clone)]
pub(crate) enum Revoked {
    /// The authoritative CRL lists it.
    Listed { reason: String },
    /// The authoritative CRL is past its nextUpdate and fresh CRLs are required.
    Stale { next_update: u64, reason: String },
    /// A CRL of its issuer cannot be used: its status cannot be told.
    Unknown { reason: String },
}

impl Revoked {
    pub(crate) fn reason(&self) -> &str {
        match self {
            Self::Listed { reason } | Self::Stale { reason, .. } | Self::Unknown { reason } => {
                reason
            }
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
        let verified: Vec<Arc<Crl>> = candidates
            .iter()
            .filter(|crl| crl.verified_by(spki, algorithms))
            .cloned()
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
