//! The identity from a leaf (`ClientIdentity::parse`, `identity/certificate.rs`): no panic on
//! any bytes, every accessor callable, and parsing the same bytes twice gives the same facts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_mtls::ClientIdentity;

fn facts(id: &ClientIdentity) -> String {
    format!(
        "{} | {} | {:?} | {:?} | {:?} | {:?} | {:?} | {:?} | {:?} | {} | {:?} | {:?} | {} | {}",
        id.subject(),
        id.issuer(),
        id.common_name(),
        id.dns_names(),
        id.uris(),
        id.emails(),
        id.ip_addresses(),
        id.spiffe_id()
            .map(|s| (s.trust_domain().to_owned(), s.path().to_owned())),
        id.serial(),
        id.serial_hex(),
        id.not_before(),
        id.not_after(),
        id.sha256(),
        id.spki_sha256(),
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(id) = ClientIdentity::parse(data) else {
        return;
    };
    let once = facts(&id);
    for name in [id.subject(), id.issuer()] {
        let _ = name.as_der();
        let _: Vec<_> = name.organizations().collect();
        let _: Vec<_> = name.organizational_units().collect();
        for attr in name.attributes() {
            let _ = (
                attr.oid(),
                attr.short_name(),
                attr.value(),
                attr.rdn_index(),
            );
            assert!(name.contains(attr.oid(), attr.value()));
        }
        // The display never carries a raw control character into a log line.
        assert!(!name.to_string().chars().any(|c| c.is_control()), "{name}");
    }
    let again = ClientIdentity::parse(data).expect("parsed once, parses again");
    assert_eq!(once, facts(&again));
});
