//! `Crl::parse` (`tls/crl.rs`): no panic on any bytes, and what it keeps can be shown.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tower_mtls::__fuzz as f;

fuzz_target!(|data: &[u8]| {
    if let Ok(crl) = f::crl(Path::new("fuzz.crl"), data) {
        let _ = crl.defect();
        let _ = crl.describe();
        let _ = crl.in_force(0);
        let _ = crl.in_force(u64::MAX);
        let fixture = tower_mtls_fuzz::fixture();
        let _ = crl.verified_by(&fixture.ca.der[..]);
    }
});
