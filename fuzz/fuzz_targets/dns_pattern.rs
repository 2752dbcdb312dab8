//! DNS name patterns (`policy/dns.rs`): input `pattern | name`. No panic; a pattern's
//! normal form parses back to an equal pattern; a plain name matches itself in any case
//! and with a trailing dot; a wildcard never matches its bare parent nor a name two labels
//! deeper.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_mtls::policy::DnsPattern;

fuzz_target!(|data: &[u8]| {
    let parts = tower_mtls_fuzz::split(data);
    let Ok(text) = std::str::from_utf8(parts[0]) else {
        return;
    };
    let name = parts
        .get(1)
        .and_then(|n| std::str::from_utf8(n).ok())
        .unwrap_or("");
    let Ok(pattern) = DnsPattern::new(text) else {
        return;
    };
    let _ = pattern.matches(name);
    assert_eq!(DnsPattern::new(pattern.as_str()).as_ref(), Ok(&pattern));
    assert_eq!(pattern.to_string(), pattern.as_str());
    let normal = pattern.as_str();
    if pattern.is_wildcard() {
        let parent = normal
            .strip_prefix("*.")
            .expect("a wildcard starts with *.");
        assert!(!pattern.matches(parent));
        assert!(pattern.matches(&format!("x.{parent}")));
        assert!(!pattern.matches(&format!("x.y.{parent}")));
        if pattern.matches(name) {
            let name = name.strip_suffix('.').unwrap_or(name);
            assert!(name.len() > parent.len() + 1);
            assert!(name.to_ascii_lowercase().ends_with(&format!(".{parent}")));
        }
    } else {
        assert!(pattern.matches(normal));
        assert!(pattern.matches(&normal.to_ascii_uppercase()));
        assert!(pattern.matches(&format!("{normal}.")));
        if pattern.matches(name) {
            let name = name.strip_suffix('.').unwrap_or(name);
            assert!(name.eq_ignore_ascii_case(normal));
        }
    }
});
