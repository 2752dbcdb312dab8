//! CRL selection (`Authority::select` + `check`, `tls/crl.rs`) over several fuzzed CRLs.
//!
//! Input: `params | cert | crl | crl | …` split at `tower_mtls_fuzz::SEP`. `params` gives the
//! time, whether fresh CRLs are required, whether the certificate is a CA, and its serial.
//! Properties: no panic; the verdict is the same for every order of the CRLs (here: as given,
//! reversed, rotated by one) — the crate's "revocation is order-proof" invariant.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use tower_mtls::__fuzz as f;

fuzz_target!(|data: &[u8]| {
    let parts = tower_mtls_fuzz::split(data);
    if parts.len() < 3 {
        return;
    }
    let params = parts[0];
    let byte = |i: usize| params.get(i).copied().unwrap_or(0);
    // Around the fixture's dates (2024 … 2090), or anywhere.
    let now = u64::from(u32::from_be_bytes([byte(0), byte(1), byte(2), byte(3)])) * 2;
    let require_fresh = byte(4) & 1 == 1;
    let is_ca = byte(4) & 2 == 2;
    let serial = params.get(5..).unwrap_or(&[]);
    let cert = parts[1];
    // Each CRL's file name is derived from its bytes, so that a reordering never renames one.
    let crls: Vec<f::Crl> = parts[2..]
        .iter()
        .take(8)
        .filter_map(|der| {
            let name = format!("{:016x}.crl", fnv(der));
            f::crl(&PathBuf::from(name), der).ok()
        })
        .collect();
    let _ = f::distribution_points(cert);
    if crls.is_empty() {
        assert_eq!(
            f::crl_check(&crls, cert, serial, is_ca, now, require_fresh),
            None
        );
        return;
    }
    let verdict = f::crl_check(&crls, cert, serial, is_ca, now, require_fresh);
    let mut reversed = crls.clone();
    reversed.reverse();
    assert_eq!(
        verdict,
        f::crl_check(&reversed, cert, serial, is_ca, now, require_fresh),
        "reversed"
    );
    let mut rotated = crls.clone();
    rotated.rotate_left(1);
    assert_eq!(
        verdict,
        f::crl_check(&rotated, cert, serial, is_ca, now, require_fresh),
        "rotated"
    );
});

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}
