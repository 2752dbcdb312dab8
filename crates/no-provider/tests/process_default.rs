//! Built with neither bundled provider and given none, the crate takes the process default
//! the application installed — and without one, refuses to build with an error that says how
//! to fix it. (One test: the process default is the process's, set once.)

mod common;

#[test]
fn without_a_provider_the_build_fails_and_with_a_process_default_it_works() {
    let pki = common::Pki::new();
    let error = pki.config(None).expect_err("no provider anywhere");
    let message = error.to_string();
    assert!(
        message.contains("no crypto provider")
            && message.contains("crypto_provider")
            && message.contains("install_default"),
        "the error names both fixes: {message}"
    );
    let agent = || {
        tower_mtls::steadybit::agent::AgentTls::new()
            .server_cert_file(&pki.ca_path)
            .client_config()
    };
    let error = agent().expect_err("no provider for the agent side either");
    assert!(
        error.to_string().contains("no crypto provider"),
        "the agent's error says what is missing: {error}"
    );

    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("installed first");
    pki.config(None).expect("builds on the process default");
    agent().expect("the agent side builds on the process default too");
}
