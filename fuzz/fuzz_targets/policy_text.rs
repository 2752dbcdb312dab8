//! The policy text form (`policy/text.rs`): no panic on any input; parse → `Display` → parse
//! gives an equal policy (same text form, same rules), and an error points inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_mtls::ClientCertPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<ClientCertPolicy>() {
        Ok(policy) => {
            let shown = policy.to_string();
            let again: ClientCertPolicy = match shown.parse() {
                Ok(again) => again,
                Err(e) => panic!("{text:?} displays as {shown:?}, which does not parse: {e}"),
            };
            assert_eq!(again.to_string(), shown, "from {text:?}");
            assert_eq!(again.rules().len(), policy.rules().len());
            assert_eq!(format!("{again:?}"), format!("{policy:?}"));
        }
        Err(e) => {
            assert!(e.position() <= text.len(), "{text:?}: {e}");
            assert!(e.line() >= 1 && e.column() >= 1);
            let _ = e.to_string();
        }
    }
});
