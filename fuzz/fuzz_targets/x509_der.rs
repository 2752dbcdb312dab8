//! The DER/TLV reader, `Signed::parse` (and its signature check), the notAfter reader and
//! `NameKey` (`tls/x509.rs`). Properties: no panic; the reader's parts add up to its input;
//! a Name's key from its contents equals its key as a whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_mtls::__fuzz as f;

/// Walks every element, descending into constructed ones, checking the reader's arithmetic.
fn walk(input: &[u8], depth: usize) {
    let mut rest = input;
    while let Some((tag, contents, whole, next)) = f::tlv(rest) {
        assert_eq!(whole.len() + next.len(), rest.len());
        assert!(whole.ends_with(contents));
        assert_eq!(whole[0], tag);
        if tag & 0x20 != 0 && depth < 16 {
            walk(contents, depth + 1);
        }
        rest = next;
    }
}

fuzz_target!(|data: &[u8]| {
    walk(data, 0);
    let parts = tower_mtls_fuzz::split(data);
    if let Some(signed) = f::signed(parts[0]) {
        // The second part as a SubjectPublicKeyInfo (or the fixture's CA key).
        let spki = parts.get(1).copied().unwrap_or(&[]);
        let _ = signed.verified_by(spki);
    }
    if let Some(secs) = f::cert_not_after(data) {
        let text = f::utc(secs);
        assert!(text.ends_with('Z'), "{text}");
    }
    let _ = f::serial_key(data);
    let whole = f::name_key(data);
    if let Some((0x30, contents, all, [])) = f::tlv(data) {
        if let Some(from_contents) = f::name_key_from_contents(contents) {
            assert_eq!(Some(from_contents), whole, "{all:02x?}");
        }
    }
});
