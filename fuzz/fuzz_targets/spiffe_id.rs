//! SPIFFE IDs (`identity/spiffe.rs`): no panic; a valid ID displays as given, splits into
//! `spiffe://` + trust domain + path, and parses back to an equal ID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_mtls::identity::SpiffeId;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match SpiffeId::parse(text) {
        Ok(id) => {
            assert_eq!(id.to_string(), text);
            assert_eq!(format!("spiffe://{}{}", id.trust_domain(), id.path()), text);
            assert!(!id.trust_domain().is_empty());
            assert!(id.path().is_empty() || id.path().starts_with('/'));
            assert_eq!(SpiffeId::parse(id.as_str()), Ok(id.clone()));
            assert_eq!(text.parse::<SpiffeId>(), Ok(id));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
