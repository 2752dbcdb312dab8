//! Property tests: whatever bytes arrive from files or the network, the parsers return errors,
//! never panic.

use tower_mtls_test_kit as support;

use std::sync::OnceLock;

use proptest::prelude::*;
use support::*;
use tower_mtls::{
    ClientCertPolicy, ClientIdentity, TlsConfig, identity::Fingerprint, identity::SpiffeId,
};

/// A valid certificate and key to mutate, made once.
fn sample() -> &'static (Leaf, String) {
    static SAMPLE: OnceLock<(Leaf, String)> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let ca = Ca::new("Proptest CA");
        let leaf = ca.issue(
            &LeafSpec::client("agent")
                .org("Steadybit")
                .dns("agent.example")
                .uri("spiffe://example.org/agent")
                .email("a@example.org"),
        );
        (leaf, ca.cert_pem.clone())
    })
}

fn pem_like() -> impl Strategy<Value = Vec<u8>> {
    let labels = prop_oneof![
        Just("CERTIFICATE"),
        Just("PRIVATE KEY"),
        Just("RSA PRIVATE KEY"),
        Just("EC PRIVATE KEY"),
        Just("X509 CRL"),
        Just("ENCRYPTED PRIVATE KEY"),
        Just("GARBAGE"),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (
            labels,
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<bool>()
        )
            .prop_map(|(label, body, close)| {
                let b64 = String::from_utf8_lossy(&body)
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .collect::<String>();
                let mut text = format!("-----BEGIN {label}-----\n{b64}\n");
                if close {
                    text.push_str(&format!("-----END {label}-----\n"));
                }
                text.into_bytes()
            }),
    ]
}

/// `bytes` with a few positions overwritten.
fn mutated(bytes: &[u8]) -> impl Strategy<Value = Vec<u8>> {
    let len = bytes.len();
    let original = bytes.to_vec();
    proptest::collection::vec((0..len, any::<u8>()), 1..8).prop_map(move |edits| {
        let mut out = original.clone();
        for (i, b) in edits {
            out[i] = b;
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn identity_parser_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = ClientIdentity::parse(&bytes);
    }

    #[test]
    fn identity_parser_never_panics_on_damaged_certificates(bytes in mutated(sample().0.der.as_ref())) {
        if let Ok(id) = ClientIdentity::parse(&bytes) {
            // Whatever parsed must also display.
            let _ = id.subject().to_string();
            let _ = id.issuer().to_string();
        }
    }

    #[test]
    fn server_identity_loader_never_panics(cert in pem_like(), key in pem_like()) {
        prop_assert!(TlsConfig::from_pem(cert, key).build().is_err());
    }

    #[test]
    fn trust_and_crl_loaders_never_panic(trust in pem_like(), crl in pem_like()) {
        let (leaf, _) = sample();
        let result = TlsConfig::from_pem(leaf.cert_pem.clone(), leaf.key_pem.clone())
            .client_trust_pem(trust)
            .client_crl_bytes(crl)
            .build();
        prop_assert!(result.is_err());
    }

    #[test]
    fn damaged_pem_trust_never_panics(bytes in mutated(sample().1.as_bytes())) {
        let (leaf, _) = sample();
        let _ = TlsConfig::from_pem(leaf.cert_pem.clone(), leaf.key_pem.clone())
            .client_trust_pem(bytes)
            .build();
    }

    #[test]
    fn trust_directories_of_garbage_never_panic(files in proptest::collection::vec(pem_like(), 0..4)) {
        let (leaf, _) = sample();
        let dir = tempfile::tempdir().expect("tempdir");
        for (i, content) in files.iter().enumerate() {
            std::fs::write(dir.path().join(format!("f{i}.pem")), content).expect("write");
        }
        let _ = TlsConfig::from_pem(leaf.cert_pem.clone(), leaf.key_pem.clone())
            .client_trust(dir.path())
            .build();
    }

    #[test]
    fn policy_parser_never_panics(text in "\\PC{0,200}") {
        let _ = text.parse::<ClientCertPolicy>();
    }

    #[test]
    fn policy_parser_never_panics_on_policy_shaped_text(
        text in "((cn|o|ou|issuer\\.cn|issuer\\.o|dns|uri|email|ip|spiffe|spiffe-domain|sha256|spki-sha256|x)=(\"[^\"]{0,10}\"?|[a-z0-9.:*/-]{0,12})( ?[&|\n] ?)?){0,6}"
    ) {
        if let Err(error) = text.parse::<ClientCertPolicy>() {
            // Errors point inside (or just past) the text.
            prop_assert!(error.position() <= text.len(), "{error}");
        }
    }

    #[test]
    fn spiffe_and_fingerprint_parsers_never_panic(text in "\\PC{0,100}") {
        let _ = SpiffeId::parse(&text);
        let _ = text.parse::<Fingerprint>();
    }
}
