//! PEM loading from bytes (`tls/load.rs`): `certificates`, `private_key`,
//! `trust_certificates` and `crls` of one file's bytes. No panic; every error names the
//! file; what loads as a trust source loads as certificates too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_mtls::__fuzz as f;

fuzz_target!(|data: &[u8]| {
    let certs = f::certificates(data);
    let _ = f::private_key(data).map_err(|e| e.to_string());
    let trust = f::trust_certificates(data);
    if let (Ok(certs), Ok(trust)) = (&certs, &trust) {
        assert_eq!(certs, trust);
    }
    if let Err(e) = &certs {
        assert!(e.to_string().contains("<fuzz>"), "{e}");
    }
    let _ = f::crls(data).map(|c| c.len()).map_err(|e| e.to_string());
});
