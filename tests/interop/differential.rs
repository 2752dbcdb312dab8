//! Differential tests (issue 18, "the method, not just the cases"): the crate's trust verdicts
//! against independent verifiers, on generated scenario families.
//!
//! Each scenario is drawn from a seeded generator: one or two root CAs (sometimes two sharing
//! one subject name with different keys, sometimes a "retired" one that is no longer trusted),
//! an optional intermediate, a leaf (sometimes itself trusted: a pin) whose validity lies in
//! the past, present or future of a fixed time T, and 0–3 CRLs per CA with CRL numbers,
//! thisUpdate/nextUpdate before or after T, listed serials, sometimes sharded by an
//! issuingDistributionPoint (the leaf's CRLDistributionPoints names shard A, B or nothing),
//! sometimes signed by a key that is not the named issuer's (a stray), in random file order.
//!
//! The crate's verdict (`TlsConfig::verify_client_chain` at T, fresh CRLs required) is compared
//! with:
//!
//! * **OpenSSL** (`openssl verify -attime T -crl_check_all -purpose sslclient`), the oracle for
//!   every scenario. Where the crate's documented semantics differ from OpenSSL's, OpenSSL is
//!   run a second time on an input normalized by exactly those documented differences
//!   ([`ACCEPTED`]); the crate must agree with that run. A difference from the first run that
//!   the normalized run explains is counted under its class; anything else fails the test.
//! * **rustls-webpki alone**, where it is a valid reference (no pins, no same-name CAs, no
//!   stray or not-yet-valid CRLs, at most one CRL per issuer name): its verdict must equal the
//!   crate's exactly.
//!
//! A sample of scenarios also goes through real handshakes (the crate's server and client);
//! the handshake must end as the offline verdict says.
//!
//! Size: `TOWER_MTLS_DIFF_CASES` (default 200, a few seconds) scenarios from
//! `TOWER_MTLS_DIFF_SEED` (default fixed); the summary prints the size, the agreements and
//! every accepted-difference class with its count. The full sweep (about 2 minutes for 5000;
//! longer than nextest's 3-minute limit on a loaded machine, so through `cargo test`):
//!
//! ```text
//! TOWER_MTLS_DIFF_CASES=5000 cargo test --all-features --test interop_differential verdicts_agree -- --nocapture
//! ```
//!
//! A failing scenario prints its seed: `TOWER_MTLS_DIFF_SEED=<seed> TOWER_MTLS_DIFF_CASES=1`
//! reruns it alone (same structure; keys are fresh each run). `TOWER_MTLS_DIFF_KEEP=<dir>`
//! keeps every scenario's files (the PEMs the printed OpenSSL commands name) there;
//! `TOWER_MTLS_DIFF_EXAMPLES=<n>` prints n examples per kind of difference (default 3).
//! Private keys are generated at run time, never written to the repository.

use tower_mtls_test_kit as support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    CrlIssuingDistributionPoint, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};
use support::{Leaf, Pki};
use tower_mtls::TlsConfig;
use tower_mtls::rustls::pki_types::{CertificateDer, UnixTime};
use tower_mtls::tls::HandshakeFailure;

/// The fixed verification time of the offline sweep: 2030-01-01T00:00:00Z.
const T_FIXED: u64 = 1_893_456_000;
const DAY: i64 = 86_400;
/// Every CRL time is a whole number of days plus this from T: never within 10 minutes of it.
const CRL_TIME_SHIFT: i64 = 3 * 3600;
const SHARD_A: &str = "http://crl.example.test/shard-a.crl";
const SHARD_B: &str = "http://crl.example.test/shard-b.crl";
const LEAF_SERIAL: u64 = 0x1001;
const INTERMEDIATE_SERIAL: u64 = 0x2002;
const UNRELATED_SERIAL: u64 = 0x7777;
const DEFAULT_SEED: u64 = 0x7d1f_f5e7_0018_0001;
const DEFAULT_CASES: usize = 200;

/// The documented, intended differences between the crate and `openssl verify
/// -crl_check_all`. Each is a normalization of OpenSSL's input that, by the crate's documented
/// semantics, changes nothing for the crate; a difference the normalized run explains is
/// accepted under the names of the normalizations that applied.
const ACCEPTED: &[(&str, &str)] = &[
    (
        "future-crl",
        "a CRL whose thisUpdate is after now (+60 s skew) is not in force: the crate sets it \
         aside until its time; OpenSSL may select it and refuse (CRL not yet valid). Normalized: \
         such CRLs are removed.",
    ),
    (
        "unverifiable-crl",
        "a CRL that no configured CA key (nor the presented intermediate, nor a pin's issuer) \
         verifies revokes nothing and is skipped; OpenSSL may select it and refuse (unable to \
         get CRL issuer / signature failure). Normalized: such CRLs are removed.",
    ),
    (
        "unchecked-issuer",
        "a CA with no CRL in force that applies to a certificate it issued does not check that \
         certificate (unknown status allowed); -crl_check_all refuses (unable to get \
         certificate CRL, different CRL scope). Normalized: an empty, fresh, full CRL of that \
         CA is added.",
    ),
    (
        "pin",
        "a trusted end-entity certificate is accepted as itself within its validity period, \
         revoked by its issuer's CRL; OpenSSL cannot check the revocation of a trust anchor \
         (unable to get CRL issuer). Normalized: the pin's issuer is the (partial-chain) \
         anchor and only the leaf is revocation-checked (-crl_check).",
    ),
    (
        "shard-without-dp",
        "a sharded CRL (issuingDistributionPoint with a distributionPoint) applies to a \
         certificate without CRLDistributionPoints, as in rustls-webpki; OpenSSL (RFC 5280 \
         6.3.3) finds it out of scope (different CRL scope). Normalized: one OpenSSL run per \
         shard, that shard's CRLs without the extension; the crate's refusal must be one of \
         theirs, or all accept.",
    ),
    (
        "anchor-not-checked",
        "-crl_check_all also checks each trust anchor against its own CRL (a root with only \
         sharded CRLs is then out of scope, a stale root CRL refuses); the crate, as \
         rustls-webpki, checks the certificates below the anchor only. Normalized: the leaf \
         and the intermediate are each verified with -crl_check, their errors counted \
         together.",
    ),
    (
        "webpki-revocation-order",
        "(against rustls-webpki) two certificates of the path fail revocation differently \
         (one revoked, one with a stale CRL): rustls-webpki reports the one nearer the anchor, \
         the crate and OpenSSL the one nearer the leaf; OpenSSL agrees with the crate.",
    ),
    (
        "precedence",
        "both refuse, the crate names a validity-period failure the scenario has (leaf or \
         intermediate expired / not yet valid) where OpenSSL, which checks revocation before \
         validity periods and stops at an unknown issuer, names another reason.",
    ),
];

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

/// SplitMix64: small, seeded, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with `percent` % probability.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An index drawn with these weights.
    fn weighted(&mut self, weights: &[u64]) -> usize {
        let mut x = self.below(weights.iter().sum());
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    Past,
    Present,
    Future,
}

impl Window {
    /// (notBefore, notAfter) as offsets from T.
    fn offsets(self) -> (i64, i64) {
        match self {
            Window::Past => (-800 * DAY, -30 * DAY),
            Window::Present => (-365 * DAY, 365 * DAY),
            Window::Future => (30 * DAY, 800 * DAY),
        }
    }

    fn draw(rng: &mut Rng, present_percent: u64) -> Window {
        if rng.chance(present_percent) {
            Window::Present
        } else if rng.chance(50) {
            Window::Past
        } else {
            Window::Future
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Window::Past => "expired",
            Window::Present => "valid",
            Window::Future => "not yet valid",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Shard {
    A,
    B,
}

impl Shard {
    fn uri(self) -> &'static str {
        match self {
            Shard::A => SHARD_A,
            Shard::B => SHARD_B,
        }
    }
}

#[derive(Clone, Debug)]
struct CaPlan {
    label: &'static str,
    name: &'static str,
    /// Roots: in the trust bundle. The intermediate: never (the client presents it).
    configured: bool,
    validity: Window,
    serial: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signer {
    /// The key of the CA at this index (whose name the CRL carries).
    Ca(usize),
    /// A key of no CA in the scenario (index into the stray keys).
    Stray(usize),
}

#[derive(Clone, Debug)]
struct CrlPlan {
    /// The CA whose subject is the CRL's issuer name.
    named: usize,
    signer: Signer,
    number: u64,
    /// Offsets from T, seconds.
    this_update: i64,
    next_update: i64,
    listed: Vec<u64>,
    shard: Option<Shard>,
}

#[derive(Clone, Debug)]
struct Scenario {
    seed: u64,
    /// Roots first (R0, maybe R1), then the intermediate if any.
    cas: Vec<CaPlan>,
    path_root: usize,
    intermediate: Option<usize>,
    leaf_validity: Window,
    leaf_dp: Option<Shard>,
    pinned: bool,
    /// In file order.
    crls: Vec<CrlPlan>,
    strays: usize,
}

impl Scenario {
    fn leaf_issuer(&self) -> usize {
        self.intermediate.unwrap_or(self.path_root)
    }

    fn twins(&self) -> bool {
        self.cas.len() >= 2 && self.cas[0].name == self.cas[1].name && self.intermediate != Some(1)
    }

    fn generate(seed: u64) -> Scenario {
        let mut rng = Rng(seed);
        let mut cas = vec![CaPlan {
            label: "R0",
            name: "Diff Root 0",
            configured: true,
            validity: Window::Present,
            serial: 0x3000,
        }];
        if rng.chance(40) {
            let twin = rng.chance(50);
            cas.push(CaPlan {
                label: "R1",
                name: if twin { "Diff Root 0" } else { "Diff Root 1" },
                configured: rng.chance(70),
                validity: Window::Present,
                serial: 0x3001,
            });
        }
        let path_root = rng.below(cas.len() as u64) as usize;
        let pinned = rng.chance(20);
        let intermediate = if rng.chance(40) {
            let validity = if pinned {
                Window::Present
            } else {
                Window::draw(&mut rng, 80)
            };
            cas.push(CaPlan {
                label: "I",
                name: "Diff Issuing CA",
                configured: false,
                validity,
                serial: INTERMEDIATE_SERIAL,
            });
            Some(cas.len() - 1)
        } else {
            None
        };
        let leaf_validity = Window::draw(&mut rng, 70);
        let leaf_dp = match rng.weighted(&[4, 3, 3]) {
            0 => None,
            1 => Some(Shard::A),
            _ => Some(Shard::B),
        };
        let leaf_issuer = intermediate.unwrap_or(path_root);
        let mut crls = Vec::new();
        for ca in 0..cas.len() {
            // Only the leaf's issuer shards its CRLs; the others publish full CRLs.
            let sharded = ca == leaf_issuer && rng.chance(35);
            let count = rng.weighted(&[25, 35, 25, 15]);
            let scopes: Vec<Option<Shard>> = (0..count)
                .map(|_| sharded.then(|| if rng.chance(50) { Shard::A } else { Shard::B }))
                .collect();
            for scope in [None, Some(Shard::A), Some(Shard::B)] {
                let k = scopes.iter().filter(|s| **s == scope).count();
                if k == 0 {
                    continue;
                }
                // One issuer and scope: CRLs numbered in the order of issue, one period.
                let period = [7, 30, 90, 400][rng.below(4) as usize];
                let mut days: Vec<i64> = (0..k).map(|_| crl_day(&mut rng)).collect();
                days.sort_unstable();
                days.dedup();
                let mut number = 1 + rng.below(4);
                for day in days {
                    let this_update = day * DAY + CRL_TIME_SHIFT;
                    let listed = listed(&mut rng, intermediate.is_some());
                    crls.push(CrlPlan {
                        named: ca,
                        signer: Signer::Ca(ca),
                        number,
                        this_update,
                        next_update: this_update + period * DAY,
                        listed,
                        shard: scope,
                    });
                    number += 1 + rng.below(3);
                }
            }
        }
        let mut strays = 0;
        if rng.chance(25) {
            let named = rng.below(cas.len() as u64) as usize;
            let this_update = -(1 + rng.below(60) as i64) * DAY + CRL_TIME_SHIFT;
            let listed = listed(&mut rng, intermediate.is_some());
            let shard = if named == leaf_issuer && rng.chance(30) {
                Some(Shard::A)
            } else {
                None
            };
            crls.push(CrlPlan {
                named,
                signer: Signer::Stray(0),
                number: 1 + rng.below(20),
                this_update,
                next_update: this_update + 90 * DAY,
                listed,
                shard,
            });
            strays = 1;
        }
        // Random file order (Fisher–Yates).
        for i in (1..crls.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            crls.swap(i, j);
        }
        Scenario {
            seed,
            cas,
            path_root,
            intermediate,
            leaf_validity,
            leaf_dp,
            pinned,
            crls,
            strays,
        }
    }

    fn describe(&self) -> String {
        let mut out = String::new();
        for (i, ca) in self.cas.iter().enumerate() {
            let role = if Some(i) == self.intermediate {
                format!("intermediate issued by {}", self.cas[self.path_root].label)
            } else if ca.configured {
                "root, trusted".into()
            } else {
                "root, NOT trusted (retired)".into()
            };
            let same = self
                .cas
                .iter()
                .take(i)
                .find(|o| o.name == ca.name)
                .map(|o| format!(", same name as {} with another key", o.label))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {} \"{}\": {role}{same}, {}\n",
                ca.label,
                ca.name,
                ca.validity.describe()
            ));
        }
        out.push_str(&format!(
            "  leaf (serial {LEAF_SERIAL:#x}) issued by {}: {}, CRL DP {}, {}\n",
            self.cas[self.leaf_issuer()].label,
            self.leaf_validity.describe(),
            self.leaf_dp.map_or("none", |s| s.uri()),
            if self.pinned {
                "PINNED (its own certificate is in the trust bundle)"
            } else {
                "not pinned"
            }
        ));
        if self.crls.is_empty() {
            out.push_str("  no CRLs\n");
        }
        for (i, crl) in self.crls.iter().enumerate() {
            out.push_str(&format!("  crl{i}: {}\n", self.describe_crl(crl)));
        }
        out
    }

    fn describe_crl(&self, crl: &CrlPlan) -> String {
        let signer = match crl.signer {
            Signer::Ca(i) => format!("signed by {}", self.cas[i].label),
            Signer::Stray(_) => "signed by a STRAY key".into(),
        };
        let listed: Vec<String> = crl
            .listed
            .iter()
            .map(|s| match *s {
                LEAF_SERIAL => "leaf".to_owned(),
                INTERMEDIATE_SERIAL => "intermediate".to_owned(),
                other => format!("{other:#x}"),
            })
            .collect();
        format!(
            "issuer name of {}, {signer}, #{} , {}, thisUpdate T{:+}d, nextUpdate T{:+}d, lists [{}]",
            self.cas[crl.named].label,
            crl.number,
            crl.shard
                .map_or("full".to_owned(), |s| format!("IDP {}", s.uri())),
            days_of(crl.this_update),
            days_of(crl.next_update),
            listed.join(", ")
        )
    }
}

fn days_of(offset: i64) -> f64 {
    (offset as f64 / DAY as f64 * 10.0).round() / 10.0
}

/// A CRL's thisUpdate, in days from T: mostly in the past, sometimes in the future.
fn crl_day(rng: &mut Rng) -> i64 {
    if rng.chance(80) {
        -(1 + rng.below(400) as i64)
    } else {
        rng.below(60) as i64
    }
}

fn listed(rng: &mut Rng, has_intermediate: bool) -> Vec<u64> {
    let mut out = Vec::new();
    if rng.chance(35) {
        out.push(LEAF_SERIAL);
    }
    if has_intermediate && rng.chance(30) {
        out.push(INTERMEDIATE_SERIAL);
    }
    if rng.chance(50) {
        out.push(UNRELATED_SERIAL);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Materialization with rcgen
// ---------------------------------------------------------------------------------------------

struct CaBuilt {
    params: CertificateParams,
    key: KeyPair,
    der: CertificateDer<'static>,
    pem: String,
}

struct Built {
    t: u64,
    cas: Vec<CaBuilt>,
    strays: Vec<KeyPair>,
    leaf: Leaf,
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "tower-mtls differential");
    dn
}

fn set_validity(params: &mut CertificateParams, t: u64, (from, to): (i64, i64)) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(t.checked_add_signed(from).expect("time"));
    params.not_after = epoch + Duration::from_secs(t.checked_add_signed(to).expect("time"));
}

fn ca_params(plan: &CaPlan, t: u64) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(plan.name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from(plan.serial));
    let window = if plan.configured || plan.label.starts_with('R') {
        (-3650 * DAY, 3650 * DAY)
    } else {
        plan.validity.offsets()
    };
    set_validity(&mut params, t, window);
    params
}

impl Built {
    fn new(sc: &Scenario, t: u64) -> Built {
        let mut cas: Vec<CaBuilt> = Vec::new();
        for (i, plan) in sc.cas.iter().enumerate() {
            let key = KeyPair::generate().expect("key");
            let params = ca_params(plan, t);
            let cert = if Some(i) == sc.intermediate {
                let root = &cas[sc.path_root];
                params
                    .signed_by(&key, &Issuer::from_params(&root.params, &root.key))
                    .expect("intermediate")
            } else {
                params.self_signed(&key).expect("root")
            };
            cas.push(CaBuilt {
                pem: cert.pem(),
                der: cert.der().clone(),
                params,
                key,
            });
        }
        let strays = (0..sc.strays)
            .map(|_| KeyPair::generate().expect("key"))
            .collect();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("diff client {:#x}", sc.seed));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(SerialNumber::from(LEAF_SERIAL));
        if let Some(shard) = sc.leaf_dp {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![shard.uri().to_owned()],
            }];
        }
        set_validity(&mut params, t, sc.leaf_validity.offsets());
        let key = KeyPair::generate().expect("key");
        let issuer = &cas[sc.leaf_issuer()];
        let cert = params
            .signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key))
            .expect("leaf");
        let mut chain_pem = cert.pem();
        if let Some(i) = sc.intermediate {
            chain_pem.push_str(&cas[i].pem);
        }
        let leaf = Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            chain_pem,
        };
        Built {
            t,
            cas,
            strays,
            leaf,
        }
    }

    fn crl(&self, crl: &CrlPlan) -> (String, Vec<u8>) {
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let at = |offset: i64| {
            epoch + Duration::from_secs(self.t.checked_add_signed(offset).expect("time"))
        };
        let params = CertificateRevocationListParams {
            this_update: at(crl.this_update),
            next_update: at(crl.next_update),
            crl_number: SerialNumber::from(crl.number),
            issuing_distribution_point: crl.shard.map(|s| CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint {
                    uris: vec![s.uri().to_owned()],
                },
                scope: None,
            }),
            revoked_certs: crl
                .listed
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: at(crl.this_update),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let named = &self.cas[crl.named].params;
        let key = match crl.signer {
            Signer::Ca(i) => &self.cas[i].key,
            Signer::Stray(i) => &self.strays[i],
        };
        let signed = params
            .signed_by(&Issuer::from_params(named, key))
            .expect("CRL");
        (signed.pem().expect("CRL PEM"), signed.der().to_vec())
    }

    fn chain(&self, sc: &Scenario) -> Vec<CertificateDer<'static>> {
        let mut chain = vec![self.leaf.der.clone()];
        if let Some(i) = sc.intermediate {
            chain.push(self.cas[i].der.clone());
        }
        chain
    }
}

// ---------------------------------------------------------------------------------------------
// Verdicts
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Accepted,
    Revoked,
    StaleCrl,
    Expired,
    NotYetValid,
    UnknownCa,
    BadSignature,
    /// OpenSSL could not decide the revocation status (its error number).
    CrlProblem(u32),
    /// The configuration did not build.
    BuildError(String),
    Other(String),
}

impl Class {
    fn refused(&self) -> bool {
        *self != Class::Accepted
    }
}

fn crate_verdict(pki: &Pki, sc: &Scenario, b: &Built) -> (Class, String, Option<TlsConfig>) {
    let mut builder = pki.builder().require_fresh_crls(true);
    for (plan, ca) in sc.cas.iter().zip(&b.cas) {
        if plan.configured {
            builder = builder.client_trust_pem(ca.pem.clone());
        }
    }
    if sc.pinned {
        builder = builder.client_trust_pem(b.leaf.cert_pem.clone());
    }
    for crl in &sc.crls {
        builder = builder.client_crl_bytes(b.crl(crl).0.into_bytes());
    }
    let tls = match builder.build() {
        Ok(tls) => tls,
        Err(e) => {
            let text = e.to_string();
            return (Class::BuildError(text.clone()), text, None);
        }
    };
    let at = UNIX_EPOCH + Duration::from_secs(b.t);
    let (class, reason) = match tls.verify_client_chain(&b.chain(sc), at) {
        Ok(_) => (Class::Accepted, String::new()),
        Err(refused) => {
            let class = match refused.kind {
                HandshakeFailure::Revoked => Class::Revoked,
                HandshakeFailure::StaleCrl => Class::StaleCrl,
                HandshakeFailure::Expired => Class::Expired,
                HandshakeFailure::NotYetValid => Class::NotYetValid,
                HandshakeFailure::UnknownCa => Class::UnknownCa,
                HandshakeFailure::BadSignature => Class::BadSignature,
                other => Class::Other(format!("{other:?}")),
            };
            (class, refused.reason)
        }
    };
    (class, reason, Some(tls))
}

/// One `openssl verify` run: its inputs, command line and the errors it printed.
struct OpensslRun {
    command: String,
    errors: Vec<(u32, u32, String)>,
    status: Option<i32>,
    output: String,
}

struct OpensslInput<'a> {
    /// The certificate to verify.
    target: &'a str,
    /// Added to the depths OpenSSL reports (1 when the target is the intermediate).
    depth_offset: u32,
    anchors: Vec<&'a str>,
    untrusted: Option<&'a str>,
    crls: Vec<String>,
    partial_chain: bool,
    check_all: bool,
}

fn run_openssl(dir: &Path, t: u64, input: &OpensslInput<'_>) -> OpensslRun {
    std::fs::create_dir_all(dir).expect("case dir");
    std::fs::write(dir.join("target.pem"), input.target).expect("write");
    std::fs::write(dir.join("anchors.pem"), input.anchors.concat()).expect("write");
    let mut args: Vec<String> = vec![
        "verify".into(),
        "-attime".into(),
        t.to_string(),
        if input.check_all {
            "-crl_check_all".into()
        } else {
            "-crl_check".into()
        },
        "-CAfile".into(),
        "anchors.pem".into(),
    ];
    if input.depth_offset == 0 {
        args.extend(["-purpose".into(), "sslclient".into()]);
    }
    if input.partial_chain {
        args.push("-partial_chain".into());
    }
    if let Some(pem) = input.untrusted {
        std::fs::write(dir.join("untrusted.pem"), pem).expect("write");
        args.extend(["-untrusted".into(), "untrusted.pem".into()]);
    }
    if !input.crls.is_empty() {
        std::fs::write(dir.join("crls.pem"), input.crls.concat()).expect("write");
        args.extend(["-CRLfile".into(), "crls.pem".into()]);
    }
    args.push("target.pem".into());
    let output = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("run openssl verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut errors = Vec::new();
    for line in text.lines() {
        // "error 23 at 0 depth lookup: certificate revoked"
        let Some(rest) = line.split("error ").nth(1) else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(code), Some("at"), Some(depth)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let (Ok(code), Ok(depth)) = (code.parse::<u32>(), depth.parse::<u32>()) else {
            continue;
        };
        let what = line.split(": ").nth(1).unwrap_or("").to_owned();
        errors.push((code, depth + input.depth_offset, what));
    }
    OpensslRun {
        command: format!("(cd {} && openssl {})", dir.display(), args.join(" ")),
        errors,
        status: output.status.code(),
        output: text,
    }
}

/// OpenSSL's verdict over one or more runs (their errors together), with the crate's
/// precedence where OpenSSL reported several errors: validity periods first, then the path,
/// then revocation (lowest depth first; a stale CRL before its listing).
fn class_of(runs: &[OpensslRun]) -> Class {
    let errors: Vec<&(u32, u32, String)> = runs.iter().flat_map(|r| &r.errors).collect();
    if errors.is_empty() && runs.iter().all(|r| r.status == Some(0)) {
        return Class::Accepted;
    }
    let lowest = |codes: &[u32]| {
        errors
            .iter()
            .filter(|e| codes.contains(&e.0))
            .min_by_key(|e| (e.1, e.0 != 12))
            .map(|e| e.0)
    };
    if let Some(code) = lowest(&[9, 10]) {
        return if code == 10 {
            Class::Expired
        } else {
            Class::NotYetValid
        };
    }
    if lowest(&[2, 20, 21]).is_some() {
        return Class::UnknownCa;
    }
    if lowest(&[7]).is_some() {
        return Class::BadSignature;
    }
    match lowest(&[3, 8, 11, 12, 23, 33, 44]) {
        Some(23) => Class::Revoked,
        Some(12) => Class::StaleCrl,
        Some(code) => Class::CrlProblem(code),
        None => Class::Other(format!(
            "openssl: {}",
            runs.iter()
                .map(|r| format!("exit {:?}: {}", r.status, r.output.trim()))
                .collect::<Vec<_>>()
                .join(" / ")
        )),
    }
}

impl OpensslRun {
    fn describe(&self) -> String {
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(c, d, w)| format!("error {c} at depth {d} ({w})"))
            .collect();
        format!(
            "{}\n      -> {:?} [{}]",
            self.command,
            class_of(std::slice::from_ref(self)),
            if errors.is_empty() {
                "no errors".to_owned()
            } else {
                errors.join("; ")
            }
        )
    }
}

/// The raw OpenSSL input: the scenario as configured for the crate.
fn raw_input<'a>(sc: &Scenario, b: &'a Built) -> OpensslInput<'a> {
    let mut anchors: Vec<&str> = configured_roots(sc, b);
    if sc.pinned {
        anchors.push(&b.leaf.cert_pem);
    }
    OpensslInput {
        target: &b.leaf.cert_pem,
        depth_offset: 0,
        anchors,
        untrusted: sc.intermediate.map(|i| b.cas[i].pem.as_str()),
        crls: sc.crls.iter().map(|c| b.crl(c).0).collect(),
        partial_chain: sc.pinned,
        check_all: true,
    }
}

fn configured_roots<'a>(sc: &Scenario, b: &'a Built) -> Vec<&'a str> {
    sc.cas
        .iter()
        .zip(&b.cas)
        .filter(|(plan, _)| plan.configured)
        .map(|(_, ca)| ca.pem.as_str())
        .collect()
}

/// The certificates the crate checks for revocation: (issuer index, the certificate's CRL
/// distribution point).
fn checked(sc: &Scenario) -> Vec<(usize, Option<Shard>)> {
    let mut out = vec![(sc.leaf_issuer(), sc.leaf_dp)];
    if !sc.pinned && sc.intermediate.is_some() {
        out.push((sc.path_root, None));
    }
    out
}

/// OpenSSL inputs normalized by the accepted differences, and which of them applied: a list of
/// alternatives (one per shard for "shard-without-dp", else one), each a list of runs whose
/// errors count together (the leaf, and the intermediate on its own).
fn normalized_inputs<'a>(
    sc: &Scenario,
    b: &'a Built,
) -> (Vec<Vec<OpensslInput<'a>>>, BTreeSet<&'static str>) {
    let mut applied = BTreeSet::new();
    // Keys whose CRLs can revoke something.
    let usable: Vec<usize> = if sc.pinned {
        vec![sc.leaf_issuer()]
    } else {
        let mut keys: Vec<usize> = (0..sc.cas.len())
            .filter(|i| sc.cas[*i].configured)
            .collect();
        keys.extend(sc.intermediate);
        keys
    };
    // Keys the crate can verify a CRL with at all.
    let verifiable = |i: usize| {
        sc.cas[i].configured || Some(i) == sc.intermediate || (sc.pinned && i == sc.leaf_issuer())
    };
    let mut kept: Vec<CrlPlan> = Vec::new();
    for crl in &sc.crls {
        if crl.this_update > 60 {
            applied.insert("future-crl");
            continue;
        }
        match crl.signer {
            Signer::Ca(i) if usable.contains(&i) => kept.push(crl.clone()),
            // A pin is checked against its issuer's CRLs only ("pin").
            Signer::Ca(i) if verifiable(i) => {}
            _ => {
                applied.insert("unverifiable-crl");
            }
        }
    }
    // Each checked certificate needs a CRL in force that applies to it.
    let mut added: Vec<CrlPlan> = Vec::new();
    let mut shard_split: Option<(usize, BTreeSet<Shard>)> = None;
    for (issuer, dp) in checked(sc) {
        let applicable: Vec<&CrlPlan> = kept
            .iter()
            .filter(|c| c.signer == Signer::Ca(issuer))
            .filter(|c| c.shard.is_none() || dp.is_none() || c.shard == dp)
            .collect();
        if applicable.is_empty() {
            applied.insert("unchecked-issuer");
            added.push(CrlPlan {
                named: issuer,
                signer: Signer::Ca(issuer),
                number: 1,
                this_update: -2000 * DAY,
                next_update: 2000 * DAY,
                listed: Vec::new(),
                shard: None,
            });
            continue;
        }
        let shards: BTreeSet<Shard> = applicable.iter().filter_map(|c| c.shard).collect();
        if dp.is_none() && !shards.is_empty() {
            // Only the leaf's issuer shards its CRLs, and then all of them.
            applied.insert("shard-without-dp");
            shard_split = Some((issuer, shards));
        }
    }
    let variants: Vec<Vec<CrlPlan>> = match shard_split {
        None => vec![kept.iter().chain(&added).cloned().collect()],
        Some((issuer, shards)) => shards
            .into_iter()
            .map(|shard| {
                kept.iter()
                    .filter(|c| c.signer != Signer::Ca(issuer) || c.shard == Some(shard))
                    .chain(&added)
                    .map(|c| {
                        let mut c = c.clone();
                        if c.signer == Signer::Ca(issuer) {
                            c.shard = None;
                        }
                        c
                    })
                    .collect()
            })
            .collect(),
    };
    if sc.pinned {
        applied.insert("pin");
    } else {
        // -crl_check_all also checks each trust anchor against its own CRL; the crate (as
        // rustls-webpki) never checks an anchor. Normalized: the leaf and the intermediate
        // are each checked alone (-crl_check).
        applied.insert("anchor-not-checked");
    }
    let inputs = variants
        .into_iter()
        .map(|crls| {
            let pems: Vec<String> = crls.iter().map(|c| b.crl(c).0).collect();
            if sc.pinned {
                return vec![OpensslInput {
                    target: &b.leaf.cert_pem,
                    depth_offset: 0,
                    anchors: vec![b.cas[sc.leaf_issuer()].pem.as_str()],
                    untrusted: None,
                    crls: pems,
                    partial_chain: true,
                    check_all: false,
                }];
            }
            let mut runs = vec![OpensslInput {
                target: &b.leaf.cert_pem,
                depth_offset: 0,
                anchors: configured_roots(sc, b),
                untrusted: sc.intermediate.map(|i| b.cas[i].pem.as_str()),
                crls: pems.clone(),
                partial_chain: false,
                check_all: false,
            }];
            if let Some(i) = sc.intermediate {
                runs.push(OpensslInput {
                    target: &b.cas[i].pem,
                    depth_offset: 1,
                    anchors: configured_roots(sc, b),
                    untrusted: None,
                    crls: pems,
                    partial_chain: false,
                    check_all: false,
                });
            }
            runs
        })
        .collect();
    (inputs, applied)
}

/// rustls-webpki's verdict, where it is a valid reference.
fn webpki_verdict(sc: &Scenario, b: &Built) -> Option<Class> {
    if sc.pinned || sc.twins() || sc.strays > 0 || sc.crls.iter().any(|c| c.this_update > 0) {
        return None;
    }
    for ca in &sc.cas {
        if sc
            .crls
            .iter()
            .filter(|c| sc.cas[c.named].name == ca.name)
            .count()
            > 1
        {
            return None;
        }
    }
    let anchors: Vec<_> = sc
        .cas
        .iter()
        .zip(&b.cas)
        .filter(|(plan, _)| plan.configured)
        .map(|(_, ca)| webpki::anchor_from_trusted_cert(&ca.der).expect("anchor"))
        .collect();
    let owned: Vec<webpki::CertRevocationList<'static>> = sc
        .crls
        .iter()
        .map(|c| {
            webpki::OwnedCertRevocationList::from_der(&b.crl(c).1)
                .expect("CRL")
                .into()
        })
        .collect();
    let refs: Vec<&webpki::CertRevocationList<'_>> = owned.iter().collect();
    let revocation = webpki::RevocationOptionsBuilder::new(&refs).ok().map(|o| {
        o.with_depth(webpki::RevocationCheckDepth::Chain)
            .with_status_policy(webpki::UnknownStatusPolicy::Allow)
            .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
            .build()
    });
    let intermediates: Vec<CertificateDer<'_>> = sc
        .intermediate
        .map(|i| b.cas[i].der.clone())
        .into_iter()
        .collect();
    let ee = webpki::EndEntityCert::try_from(&b.leaf.der).expect("leaf");
    let provider = tower_mtls::tls::default_provider();
    let result = ee.verify_for_usage(
        provider.signature_verification_algorithms.all,
        &anchors,
        &intermediates,
        UnixTime::since_unix_epoch(Duration::from_secs(b.t)),
        webpki::KeyUsage::client_auth(),
        revocation,
        None,
    );
    Some(match result {
        Ok(_) => Class::Accepted,
        Err(webpki::Error::CertRevoked) => Class::Revoked,
        Err(webpki::Error::CrlExpired { .. }) => Class::StaleCrl,
        Err(webpki::Error::CertExpired { .. }) => Class::Expired,
        Err(webpki::Error::CertNotValidYet { .. }) => Class::NotYetValid,
        Err(webpki::Error::UnknownIssuer) => Class::UnknownCa,
        Err(webpki::Error::InvalidSignatureForPublicKey) => Class::BadSignature,
        Err(other) => Class::Other(format!("webpki: {other:?}")),
    })
}

/// Whether the scenario has the validity failure the crate named (for "precedence").
fn has_validity_failure(sc: &Scenario, class: &Class) -> bool {
    let window = match class {
        Class::Expired => Window::Past,
        Class::NotYetValid => Window::Future,
        _ => return false,
    };
    sc.leaf_validity == window
        || (!sc.pinned
            && sc
                .intermediate
                .is_some_and(|i| sc.cas[i].validity == window))
}

// ---------------------------------------------------------------------------------------------
// One case
// ---------------------------------------------------------------------------------------------

enum Outcome {
    Agreement,
    Accepted(String),
    /// A short key (for grouping) and the full report.
    Failure(String, String),
}

impl Class {
    /// Without a build error's text (for grouping).
    fn short(&self) -> String {
        match self {
            Class::BuildError(_) => "BuildError".to_owned(),
            other => format!("{other:?}"),
        }
    }
}

struct Case {
    outcome: Outcome,
    spawns: usize,
    webpki_compared: bool,
    crate_class: Class,
    tls: Option<TlsConfig>,
    built: Built,
}

fn run_case(pki: &Pki, sc: &Scenario, t: u64, dir: &Path) -> Case {
    let b = Built::new(sc, t);
    let (crate_class, reason, tls) = crate_verdict(pki, sc, &b);
    let raw = run_openssl(&dir.join("raw"), t, &raw_input(sc, &b));
    let (inputs, applied) = normalized_inputs(sc, &b);
    // Always at least one normalization ("pin" or "anchor-not-checked").
    let normalized: Vec<Vec<OpensslRun>> = inputs
        .iter()
        .enumerate()
        .map(|(k, parts)| {
            parts
                .iter()
                .enumerate()
                .map(|(p, input)| run_openssl(&dir.join(format!("normalized-{k}-{p}")), t, input))
                .collect()
        })
        .collect();
    let spawns = 1 + normalized.iter().map(Vec::len).sum::<usize>();
    let raw_class = class_of(std::slice::from_ref(&raw));
    // The oracle: the normalized runs; with one run per shard, all accept or the crate's
    // refusal is one of theirs.
    let classes: Vec<Class> = normalized.iter().map(|runs| class_of(runs)).collect();
    let oracle: BTreeSet<Class> = if classes.iter().all(|c| *c == Class::Accepted) {
        BTreeSet::from([Class::Accepted])
    } else {
        classes.into_iter().filter(Class::refused).collect()
    };
    let webpki = webpki_verdict(sc, &b);
    let mut problems = Vec::new();
    let mut keys = Vec::new();
    let outcome_openssl = if oracle.contains(&crate_class) {
        if crate_class == raw_class {
            None
        } else {
            Some(applied.iter().copied().collect::<Vec<_>>().join("+"))
        }
    } else if crate_class.refused()
        && oracle.iter().all(Class::refused)
        && has_validity_failure(sc, &crate_class)
    {
        Some("precedence".to_owned())
    } else {
        keys.push(format!(
            "crate {} / OpenSSL {:?}",
            crate_class.short(),
            oracle
        ));
        problems.push(format!(
            "the crate says {crate_class:?}, OpenSSL (normalized: {}) says {:?}",
            if applied.is_empty() {
                "nothing to normalize".to_owned()
            } else {
                applied.iter().copied().collect::<Vec<_>>().join(", ")
            },
            oracle
        ));
        None
    };
    let mut webpki_order = false;
    if let Some(w) = &webpki {
        let revocation = |c: &Class| matches!(c, Class::Revoked | Class::StaleCrl);
        if *w == crate_class {
        } else if revocation(w) && revocation(&crate_class) && problems.is_empty() {
            // Two revocation failures at different depths: rustls-webpki checks from the
            // anchor down, the crate (and OpenSSL) from the leaf up; OpenSSL agreed above.
            webpki_order = true;
        } else {
            keys.push(format!("crate {} / webpki {w:?}", crate_class.short()));
            problems.push(format!(
                "the crate says {crate_class:?}, rustls-webpki says {w:?}"
            ));
        }
    }
    let outcome = if !problems.is_empty() {
        let mut text = format!(
            "seed {:#x} (TOWER_MTLS_DIFF_SEED={:#x} TOWER_MTLS_DIFF_CASES=1), T = {t}:\n{}",
            sc.seed,
            sc.seed,
            sc.describe()
        );
        for p in &problems {
            text.push_str(&format!("  DIFFERENCE: {p}\n"));
        }
        if !reason.is_empty() {
            text.push_str(&format!("  crate's reason: {reason}\n"));
        }
        text.push_str(&format!("  openssl (raw): {}\n", raw.describe()));
        for run in normalized.iter().flatten() {
            text.push_str(&format!("  openssl (normalized): {}\n", run.describe()));
        }
        Outcome::Failure(keys.join("; "), text)
    } else if outcome_openssl.is_some() || webpki_order {
        let mut classes: Vec<String> = outcome_openssl.into_iter().collect();
        if webpki_order {
            classes.push("webpki-revocation-order".to_owned());
        }
        Outcome::Accepted(classes.join("+"))
    } else {
        Outcome::Agreement
    };
    Case {
        outcome,
        spawns,
        webpki_compared: webpki.is_some(),
        crate_class,
        tls,
        built: b,
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        }
        Err(_) => default,
    }
}

/// The seed of case `k` of a sweep from `base` (case 0 is `base` itself, so a printed seed
/// reruns alone with `TOWER_MTLS_DIFF_CASES=1`).
fn case_seed(base: u64, k: u64) -> u64 {
    base.wrapping_add(k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

struct Workdir {
    _temp: Option<tempfile::TempDir>,
    path: PathBuf,
    keep: bool,
}

fn workdir() -> Workdir {
    match std::env::var_os("TOWER_MTLS_DIFF_KEEP") {
        Some(dir) => {
            let path = PathBuf::from(dir);
            std::fs::create_dir_all(&path).expect("TOWER_MTLS_DIFF_KEEP dir");
            Workdir {
                _temp: None,
                path,
                keep: true,
            }
        }
        None => {
            let temp = tempfile::tempdir().expect("tempdir");
            let path = temp.path().to_owned();
            Workdir {
                _temp: Some(temp),
                path,
                keep: false,
            }
        }
    }
}

#[test]
fn verdicts_agree_with_openssl_and_webpki() {
    let started = Instant::now();
    let cases = env_u64("TOWER_MTLS_DIFF_CASES", DEFAULT_CASES as u64);
    let base = env_u64("TOWER_MTLS_DIFF_SEED", DEFAULT_SEED);
    let examples = env_u64("TOWER_MTLS_DIFF_EXAMPLES", 3) as usize;
    let pki = Pki::new();
    let work = workdir();
    let mut agreements = 0;
    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unclassified = 0;
    let mut spawns = 0;
    let mut webpki_compared = 0;
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    for k in 0..cases {
        let seed = case_seed(base, k);
        let sc = Scenario::generate(seed);
        let dir = work.path.join(format!("{seed:016x}"));
        let case = run_case(&pki, &sc, T_FIXED, &dir);
        if !work.keep {
            std::fs::remove_dir_all(&dir).expect("remove the case's files");
        }
        spawns += case.spawns;
        webpki_compared += usize::from(case.webpki_compared);
        *verdicts.entry(case.crate_class.short()).or_default() += 1;
        match case.outcome {
            Outcome::Agreement => agreements += 1,
            Outcome::Accepted(class) => *accepted.entry(class).or_default() += 1,
            Outcome::Failure(key, text) => {
                unclassified += 1;
                failures.entry(key).or_default().push(text);
            }
        }
    }
    let mut summary = format!(
        "differential suite: {cases} cases from seed {base:#x} at T = {T_FIXED}, {:.1} s, \
         {spawns} openssl runs, {webpki_compared} also compared with rustls-webpki\n  \
         the crate's verdicts: {verdicts:?}\n  agreements (raw OpenSSL and the crate): \
         {agreements}\n  accepted differences, by the normalizations that explain them:\n",
        started.elapsed().as_secs_f64()
    );
    let mut per_class: BTreeMap<&str, usize> = BTreeMap::new();
    for (classes, n) in &accepted {
        summary.push_str(&format!("    {classes}: {n}\n"));
        for class in classes.split('+') {
            *per_class.entry(class).or_default() += n;
        }
    }
    summary.push_str("  accepted differences, per class (a case may count in several):\n");
    for (name, why) in ACCEPTED {
        summary.push_str(&format!(
            "    {name}: {} case(s) -- {why}\n",
            per_class.get(name).copied().unwrap_or(0)
        ));
    }
    summary.push_str(&format!("  unclassified differences: {unclassified}\n"));
    for (key, texts) in &failures {
        summary.push_str(&format!("    {}x  {key}\n", texts.len()));
    }
    eprintln!("{summary}");
    if unclassified > 0 {
        let mut report = String::new();
        for (key, texts) in &failures {
            report.push_str(&format!(
                "==== {key}: {} case(s), the first {}:\n",
                texts.len(),
                examples.min(texts.len())
            ));
            for text in texts.iter().take(examples) {
                report.push_str(text);
                report.push('\n');
            }
        }
        panic!("{unclassified} unclassified difference(s):\n\n{report}\n{summary}");
    }
}

/// Scenarios at T = now, so that real handshakes see the time the offline verdict was asked
/// for (every time in a scenario is days away from T): the handshake must end as the offline
/// verdict says. (How that verdict compares with the oracles is the sweep's business; it is
/// printed here for information.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_agree_with_offline_verdicts() {
    const SAMPLE: usize = 10;
    let pki = Pki::new();
    let work = workdir();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let base = env_u64("TOWER_MTLS_DIFF_SEED", DEFAULT_SEED) ^ 0x4841_4e44_5348_414b;
    let mut wrong = Vec::new();
    let mut done = 0;
    let mut by_class: BTreeMap<String, usize> = BTreeMap::new();
    let mut oracle_differences = 0;
    for k in 0..SAMPLE as u64 * 10 {
        if done == SAMPLE {
            break;
        }
        let seed = case_seed(base, k);
        let sc = Scenario::generate(seed);
        let dir = work.path.join(format!("handshake-{seed:016x}"));
        let case = tokio::task::block_in_place(|| run_case(&pki, &sc, now, &dir));
        if let Outcome::Failure(key, _) = &case.outcome {
            oracle_differences += 1;
            eprintln!("note: seed {seed:#x} at T = now differs from the oracles: {key}");
        }
        let Some(tls) = case.tls else {
            continue;
        };
        done += 1;
        let offline = tls
            .verify_client_chain(&case.built.chain(&sc), SystemTime::now())
            .err()
            .map(|r| r.kind);
        let handshake = support::handshake_verdicts(&pki, tls, &[&case.built.leaf]).await;
        *by_class.entry(case.crate_class.short()).or_default() += 1;
        if handshake[0].kind() != offline {
            wrong.push(format!(
                "seed {seed:#x}: the handshake ended {:?}, the offline verdict is {offline:?}\n{}",
                handshake[0],
                sc.describe()
            ));
        }
    }
    eprintln!(
        "handshake sample: {done} scenarios through real handshakes, offline verdicts \
         {by_class:?}; {oracle_differences} of the scenarios tried differ from the oracles"
    );
    assert_eq!(done, SAMPLE, "enough scenarios built a configuration");
    assert!(
        wrong.is_empty(),
        "{} problem(s):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
