use rustls::pki_types::CertificateDer;

use super::*;

#[test]
fn hostname_verification_parses_the_three_values() {
    assert_eq!("strict".parse(), Ok(HostnameVerification::Strict));
    assert_eq!("unsafe".parse(), Ok(HostnameVerification::Unsafe));
    assert_eq!(
        "unsafe_ip_addresses".parse(),
        Ok(HostnameVerification::UnsafeIpAddresses)
    );
    assert_eq!(" STRICT ".parse(), Ok(HostnameVerification::Strict));
    for mode in [
        HostnameVerification::Strict,
        HostnameVerification::Unsafe,
        HostnameVerification::UnsafeIpAddresses,
    ] {
        assert_eq!(mode.as_str().parse(), Ok(mode));
    }
}

#[test]
fn hostname_verification_refuses_anything_else() {
    for bad in ["", "none", "unsafe-ip-addresses", "true", "strictly"] {
        let err = bad.parse::<HostnameVerification>().unwrap_err();
        assert_eq!(err.value, bad);
        assert!(
            err.to_string()
                .contains("strict, unsafe or unsafe_ip_addresses")
        );
    }
}

#[test]
fn hostname_verification_defaults_to_unsafe_ip_addresses() {
    assert_eq!(
        HostnameVerification::default(),
        HostnameVerification::UnsafeIpAddresses
    );
    assert_eq!(
        AgentTls::new().hostname_verification_mode(),
        HostnameVerification::UnsafeIpAddresses
    );
}

#[test]
fn a_bad_hostname_verification_variable_is_named() {
    let err = AgentTls::from_lookup(|name| {
        (name == vars::HOSTNAME_VERIFICATION).then(|| "sometimes".to_owned())
    })
    .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with(vars::HOSTNAME_VERIFICATION), "{text}");
    assert!(text.contains("\"sometimes\""), "{text}");
}

#[test]
fn only_the_modes_that_say_so_forgive_a_name_mismatch() {
    let ip = ServerName::try_from("127.0.0.1").unwrap();
    let dns = ServerName::try_from("extension.example").unwrap();
    use HostnameVerification::*;
    assert!(!Strict.forgives_name_mismatch(&ip));
    assert!(!Strict.forgives_name_mismatch(&dns));
    assert!(Unsafe.forgives_name_mismatch(&ip));
    assert!(Unsafe.forgives_name_mismatch(&dns));
    assert!(UnsafeIpAddresses.forgives_name_mismatch(&ip));
    assert!(!UnsafeIpAddresses.forgives_name_mismatch(&dns));
}

#[test]
fn the_agent_variables_are_read_and_empty_means_unset() {
    let tls = AgentTls::from_lookup(|name| match name {
        vars::CLIENT_CERT_CHAIN_FILE => Some("/a/tls.crt".into()),
        vars::CLIENT_CERT_KEY_FILE => Some(" /a/tls.key ".into()),
        vars::CLIENT_CERT_PASSWORD => Some(" secret ".into()),
        vars::SERVER_CERT => Some(String::new()),
        vars::HOSTNAME_VERIFICATION => Some("strict".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(tls.client_cert_chain_path(), Some(Path::new("/a/tls.crt")));
    assert_eq!(tls.client_key_path(), Some(Path::new("/a/tls.key")));
    assert_eq!(tls.key_password.as_deref(), Some(" secret "));
    assert_eq!(tls.server_cert_path(), None);
    assert_eq!(
        tls.hostname_verification_mode(),
        HostnameVerification::Strict
    );
    assert!(!format!("{tls:?}").contains("secret"));
    // No server certificate means the platform's trust store, not an error; the missing
    // chain file is (or, on a host without a trust store, the empty store).
    let err = tls.client_config().unwrap_err().to_string();
    assert!(
        err.contains("/a/tls.crt") || err.contains("platform's trust store"),
        "{err}"
    );
}

/// `SEQUENCE { SET { SEQUENCE { OID 2.5.4.3, UTF8String cn } } }`.
fn cn_name(cn: &str) -> Vec<u8> {
    let mut atv = vec![0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, cn.len() as u8];
    atv.extend_from_slice(cn.as_bytes());
    let mut seq = vec![0x30, atv.len() as u8];
    seq.extend(atv);
    let mut set = vec![0x31, seq.len() as u8];
    set.extend(seq);
    let mut name = vec![0x30, set.len() as u8];
    name.extend(set);
    name
}

/// A certificate for `subject` signed by a throwaway CA named `issuer`.
fn cert_issued_by(issuer: &str, subject: &str) -> CertificateDer<'static> {
    let ca = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, issuer);
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca_params, ca);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, subject);
    params.signed_by(&key, &issuer).unwrap().der().clone()
}

#[test]
fn the_jvm_offers_a_chain_whose_leaf_issuer_is_listed() {
    let leaf = cert_issued_by("Agent CA", "agent");
    let names = [cn_name("Other CA"), cn_name("Agent CA")];
    let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    let choice = jvm_key_manager_choice(&[leaf], &names);
    assert_eq!(
        choice,
        JvmChoice::Offers {
            index: 0,
            issuer: "CN=Agent CA".into()
        }
    );
    assert!(choice.offers());
}

#[test]
fn the_jvm_offers_a_chain_whose_intermediate_issuer_is_listed() {
    let leaf = cert_issued_by("Agent Intermediate", "agent");
    let intermediate = cert_issued_by("Agent Root", "Agent Intermediate");
    let names = [cn_name("Agent Root")];
    let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    assert!(matches!(
        jvm_key_manager_choice(&[leaf, intermediate], &names),
        JvmChoice::Offers { index: 1, .. }
    ));
}

#[test]
fn the_jvm_compares_names_canonically_not_byte_for_byte() {
    let leaf = cert_issued_by("Agent CA", "agent");
    let names = [cn_name("agent  ca")];
    let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    assert!(jvm_key_manager_choice(&[leaf], &names).offers());
}

#[test]
fn the_jvm_sends_nothing_without_a_match_or_without_names() {
    let leaf = cert_issued_by("Agent CA", "agent");
    // The leaf's own subject is not its issuer: listing it does not help.
    let names = [cn_name("agent"), cn_name("Server CA")];
    let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    assert_eq!(
        jvm_key_manager_choice(std::slice::from_ref(&leaf), &names),
        JvmChoice::NoMatch
    );
    assert_eq!(jvm_key_manager_choice(&[leaf], &[]), JvmChoice::NoCaNames);
    assert_eq!(jvm_key_manager_choice(&[], &names), JvmChoice::NoMatch);
    // Garbage names and certificates match nothing, and do not panic.
    let junk: &[u8] = b"\x30\x03\x01\x02";
    assert_eq!(
        jvm_key_manager_choice(&[CertificateDer::from(vec![1, 2, 3])], &[junk]),
        JvmChoice::NoMatch
    );
}

#[test]
fn names_are_shown_as_rfc_4514() {
    assert_eq!(name_text(&cn_name("Agent CA")), "CN=Agent CA");
    assert_eq!(name_text(b"junk"), "<undecodable name>");
}
