//! `Crl::parse` (`tls/crl.rs`): no panic on any bytes, and what it keeps can be shown, its
//! signature checked (against the fixture root's SubjectPublicKeyInfo).
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tower_mtls::__fuzz as f;

/// The fixture root's SubjectPublicKeyInfo (the seventh field of its TBSCertificate).
fn root_spki() -> &'static [u8] {
    static SPKI: OnceLock<Vec<u8>> = OnceLock::new();
    SPKI.get_or_init(|| {
        let der = &tower_mtls_fuzz::fixture().ca.der[..];
        let (_, body, _, _) = f::tlv(der).expect("cert");
        let (_, tbs, _, _) = f::tlv(body).expect("tbs");
        // version, serial, signature, issuer, validity, subject, then the key.
        let mut rest = tbs;
        for _ in 0..6 {
            rest = f::tlv(rest).expect("field").3;
        }
        f::tlv(rest).expect("spki").2.to_vec()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(crl) = f::crl(Path::new("fuzz.crl"), data) {
        let _ = crl.defect();
        let _ = crl.describe();
        let _ = crl.in_force(0);
        let _ = crl.in_force(u64::MAX);
        let _ = crl.verified_by(root_spki());
    }
});
