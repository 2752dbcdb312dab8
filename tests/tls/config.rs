//! Misconfiguration stops startup with an error that names the culprit; the environment
//! contract behaves like Steadybit's extension-kit (and stricter where it is lenient).

use tower_mtls_test_kit as support;

use std::collections::HashMap;
use std::path::Path;

use support::*;
use tower_mtls::steadybit::vars;
use tower_mtls::{ClientAuth, ConfigError, TlsConfig, steadybit::ExtensionEnv};

fn lookup(vars: &[(&str, &Path)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_string_lossy().into_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

fn lookup_str(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

fn err(result: Result<TlsConfig, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("expected a configuration error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn no_tls_variables_means_plain_http() {
    let env = ExtensionEnv::from_lookup(lookup_str(&[(vars::PORT, "8085")])).expect("env");
    assert!(env.tls.is_none());
    assert_eq!(env.port_or(8080), 8085);
    assert_eq!(env.health_port_or(8081), 8081);
    assert!(env.unix_socket.is_none());
    // Empty values count as unset.
    let env = ExtensionEnv::from_lookup(lookup_str(&[
        (vars::TLS_SERVER_CERT, ""),
        (vars::TLS_CLIENT_CAS, " , "),
    ]))
    .expect("env");
    assert!(env.tls.is_none());
}

#[test]
fn cert_and_key_make_https_and_client_cas_make_client_auth_required() {
    let pki = Pki::new();
    let tls = tower_mtls::steadybit::ExtensionEnv::from_lookup(lookup(&[
        (vars::TLS_SERVER_CERT, &pki.server_cert),
        (vars::TLS_SERVER_KEY, &pki.server_key),
    ]))
    .map(|env| env.tls)
    .expect("config")
    .expect("TLS on");
    assert_eq!(tls.client_auth(), ClientAuth::None);

    let other = Ca::new("Other CA");
    let other_path = other.write(pki.dir.path(), "other.crt");
    let cas = format!("{}, {}", pki.ca_path.display(), other_path.display());
    let tls = tower_mtls::steadybit::ExtensionEnv::from_lookup(lookup_str(&[
        (vars::TLS_SERVER_CERT, &pki.server_cert.to_string_lossy()),
        (vars::TLS_SERVER_KEY, &pki.server_key.to_string_lossy()),
        (vars::TLS_CLIENT_CAS, &cas),
    ]))
    .map(|env| env.tls)
    .expect("config")
    .expect("TLS on");
    assert_eq!(tls.client_auth(), ClientAuth::Required);
    assert_eq!(tls.trust_summary().anchors, 2);
    assert_eq!(tls.watched_paths().len(), 4);
}

#[test]
fn half_a_server_identity_names_the_missing_variable() {
    let pki = Pki::new();
    let e = tower_mtls::steadybit::ExtensionEnv::from_lookup(lookup(&[(
        vars::TLS_SERVER_CERT,
        &pki.server_cert,
    )]))
    .map(|env| env.tls)
    .expect_err("no key");
    let text = e.to_string();
    assert!(text.starts_with(vars::TLS_SERVER_KEY), "{text}");
    assert!(text.contains(vars::TLS_SERVER_CERT), "{text}");

    let e = tower_mtls::steadybit::ExtensionEnv::from_lookup(lookup(&[(
        vars::TLS_SERVER_KEY,
        &pki.server_key,
    )]))
    .map(|env| env.tls)
    .expect_err("no cert");
    assert!(e.to_string().starts_with(vars::TLS_SERVER_CERT), "{e}");

    // Client CAs alone turn TLS on, and then a certificate and key are required.
    let e = tower_mtls::steadybit::ExtensionEnv::from_lookup(lookup(&[(
        vars::TLS_CLIENT_CAS,
        &pki.ca_path,
    )]))
    .map(|env| env.tls)
    .expect_err("CAs alone");
    let text = e.to_string();
    assert!(text.starts_with(vars::TLS_SERVER_CERT), "{text}");
    assert!(text.contains(vars::TLS_CLIENT_CAS), "{text}");

    // The builder cannot be in that state: it starts from a certificate and its key
    // (`TlsConfig::from_pem_files`, `from_pem`).
}

#[test]
fn invalid_port_numbers_name_the_variable() {
    let e = ExtensionEnv::from_lookup(lookup_str(&[(vars::PORT, "eighty")])).expect_err("bad port");
    assert!(e.to_string().starts_with(vars::PORT), "{e}");
    let e = ExtensionEnv::from_lookup(lookup_str(&[(vars::HEALTH_PORT, "70000")]))
        .expect_err("bad port");
    assert!(e.to_string().starts_with(vars::HEALTH_PORT), "{e}");
}

#[test]
fn unix_socket_with_tls_keeps_tls() {
    let pki = Pki::new();
    let env = ExtensionEnv::from_lookup(lookup_str(&[
        (vars::UNIX_SOCKET, "/tmp/ext.sock"),
        (vars::TLS_SERVER_CERT, &pki.server_cert.to_string_lossy()),
        (vars::TLS_SERVER_KEY, &pki.server_key.to_string_lossy()),
    ]))
    .expect("env");
    assert_eq!(env.unix_socket.as_deref(), Some(Path::new("/tmp/ext.sock")));
    assert!(
        env.tls.is_some(),
        "a unix socket never downgrades to plain HTTP"
    );
}

#[test]
fn missing_and_unreadable_files_are_named() {
    let pki = Pki::new();
    let missing = pki.path("nope.crt");
    let text = err(pki.builder().client_trust(&missing).build());
    assert!(
        text.contains("nope.crt") && text.contains("no such file"),
        "{text}"
    );

    let text = err(TlsConfig::from_pem_files(&missing, &pki.server_key).build());
    assert!(text.contains("nope.crt"), "{text}");

    // A path through a regular file cannot be read (root reads anything chmod forbids).
    let through_file = pki.server_cert.join("tls.key");
    let text = err(TlsConfig::from_pem_files(&pki.server_cert, &through_file).build());
    assert!(
        text.contains("server.crt/tls.key") && text.contains("cannot read"),
        "{text}"
    );

    // A directory where a file is expected.
    let text = err(TlsConfig::from_pem_files(pki.dir.path(), &pki.server_key).build());
    assert!(text.contains("is a directory"), "{text}");
}

#[test]
fn files_without_pem_blocks_are_named() {
    let pki = Pki::new();
    let garbage = pki.path("garbage.crt");
    std::fs::write(&garbage, "this is not PEM\n").expect("write");
    let text = err(TlsConfig::from_pem_files(&garbage, &pki.server_key).build());
    assert!(
        text.contains("garbage.crt") && text.contains("no PEM block"),
        "{text}"
    );

    // Go's kit only logs this and starts with an empty trust pool; we refuse to start.
    let text = err(pki.builder().client_trust(&garbage).build());
    assert!(
        text.contains("garbage.crt") && text.contains("no PEM block"),
        "{text}"
    );

    // A key file where the certificate should be.
    let text = err(TlsConfig::from_pem_files(&pki.server_key, &pki.server_key).build());
    assert!(
        text.contains("server.key: holds no CERTIFICATE (it holds: PRIVATE KEY)"),
        "{text}"
    );

    // A certificate where the key should be.
    let text = err(TlsConfig::from_pem_files(&pki.server_cert, &pki.server_cert).build());
    assert!(
        text.contains("server.crt: holds no PRIVATE KEY")
            && text.contains("(it holds: CERTIFICATE)"),
        "{text}"
    );

    // Damaged base64.
    let damaged = pki.path("damaged.crt");
    std::fs::write(
        &damaged,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let text = err(pki.builder().client_trust(&damaged).build());
    assert!(
        text.contains("damaged.crt") && text.contains("malformed PEM"),
        "{text}"
    );

    // A PEM certificate block that is not X.509.
    let bogus = pki.path("bogus.crt");
    std::fs::write(
        &bogus,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let text = err(pki.builder().client_trust(&bogus).build());
    assert!(
        text.contains("bogus.crt") && text.contains("not valid X.509"),
        "{text}"
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_named() {
    let pki = Pki::new();
    let other = pki.ca.server();
    let (_, other_key) = other.write(pki.dir.path(), "other");
    let text = err(TlsConfig::from_pem_files(&pki.server_cert, &other_key).build());
    assert!(
        text.contains("other.key")
            && text.contains("does not match")
            && text.contains("server.crt"),
        "{text}"
    );
}

#[test]
fn empty_trust_sources_are_refused() {
    let pki = Pki::new();
    let empty = pki.path("empty-dir");
    std::fs::create_dir(&empty).expect("dir");
    let text = err(pki.builder().client_trust(&empty).build());
    assert!(
        text.contains("empty-dir") && text.contains("no certificate found"),
        "{text}"
    );

    // A secret directory holding only a key.
    let key_only = pki.path("key-only");
    pki::write_secret_dir(&key_only, &[("tls.key", &pki.server.key_pem)]);
    let text = err(pki.builder().client_trust(&key_only).build());
    assert!(
        text.contains("key-only") && text.contains("no certificate found"),
        "{text}"
    );

    // A file of nothing but a key.
    let text = err(pki.builder().client_trust(&pki.server_key).build());
    assert!(
        text.contains("server.key") && text.contains("PRIVATE KEY"),
        "{text}"
    );
}

#[test]
fn client_auth_follows_from_the_trust_and_optional_is_the_one_explicit_step() {
    let pki = Pki::new();
    let none = pki.builder().build().expect("no trust");
    assert_eq!(none.client_auth(), ClientAuth::None);
    let required = pki
        .builder()
        .client_trust(&pki.ca_path)
        .build()
        .expect("trust");
    assert_eq!(required.client_auth(), ClientAuth::Required);
    let text = err(pki.builder().optional_client_auth().build());
    assert!(
        text.contains("optional") && text.contains("no client trust"),
        "{text}"
    );
    let ok = pki
        .builder()
        .optional_client_auth()
        .client_trust(&pki.ca_path)
        .build()
        .expect("optional");
    assert_eq!(ok.client_auth(), ClientAuth::Optional);
}

#[test]
fn encrypted_keys_and_unsupported_keys_are_explained() {
    let pki = Pki::new();
    let encrypted = pki.path("encrypted.key");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .expect("write");
    let text = err(TlsConfig::from_pem_files(&pki.server_cert, &encrypted).build());
    assert!(
        text.contains("encrypted.key") && text.contains("encrypted"),
        "{text}"
    );

    let two = pki.path("two.key");
    std::fs::write(
        &two,
        format!("{}{}", pki.server.key_pem, pki.server.key_pem),
    )
    .expect("write");
    let text = err(TlsConfig::from_pem_files(&pki.server_cert, &two).build());
    assert!(
        text.contains("two.key") && text.contains("more than one private key"),
        "{text}"
    );
}

#[test]
fn trust_directories_load_each_certificate_once_and_skip_keys() {
    let pki = Pki::new();
    let dir = pki.path("cas");
    std::fs::create_dir(&dir).expect("dir");
    let a = Ca::new("A");
    let b = Ca::new("B");
    std::fs::write(dir.join("a.crt"), &a.cert_pem).expect("write");
    std::fs::write(dir.join("b.pem"), &b.cert_pem).expect("write");
    // The same CA twice, under another name: loaded once.
    std::fs::write(dir.join("a-again.crt"), &a.cert_pem).expect("write");
    std::fs::write(dir.join("notes.txt"), "not a certificate").expect("write");
    std::fs::write(dir.join("tls.key"), &pki.server.key_pem).expect("write");
    let nested = dir.join("nested");
    std::fs::create_dir(&nested).expect("nested");
    std::fs::write(nested.join("c.crt"), Ca::new("C").cert_pem).expect("write");
    let tls = pki.builder().client_trust(&dir).build().expect("config");
    assert_eq!(tls.trust_summary().anchors, 3);
}

// ---- Loaders read only regular files of sane size ----

/// Runs `build` on another thread and fails the test if it has not returned in time: a loader
/// that opens a FIFO blocks forever.
fn within_patience<T: Send + 'static>(build: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(build());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the loader returned instead of blocking")
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn devices_fifos_and_sockets_are_refused_naming_them() {
    let pki = Pki::new();
    // /dev/zero would be read until memory runs out.
    let text = err(pki.builder().client_trust("/dev/zero").build());
    assert!(
        text.contains("/dev/zero") && text.contains("a device") && text.contains("regular files"),
        "{text}"
    );
    let text = err(pki
        .builder()
        .client_trust(&pki.ca_path)
        .client_crl("/dev/zero")
        .build());
    assert!(
        text.contains("/dev/zero") && text.contains("a device"),
        "{text}"
    );

    // A FIFO would block the load (and a watch's reload) forever.
    let fifo = pki.path("trust.fifo");
    mkfifo(&fifo);
    let builder = pki.builder().client_trust(&fifo);
    let text = err(within_patience(move || builder.build()));
    assert!(
        text.contains("trust.fifo") && text.contains("a FIFO"),
        "{text}"
    );

    let socket_path = pki.path("trust.sock");
    let _socket = std::os::unix::net::UnixListener::bind(&socket_path).expect("bind");
    let text = err(pki.builder().client_trust(&socket_path).build());
    assert!(
        text.contains("trust.sock") && text.contains("a socket"),
        "{text}"
    );
}

#[test]
fn a_secret_directory_skips_fifos_and_links_that_lead_nowhere() {
    let pki = Pki::new();
    let dir = pki.path("client-cas");
    std::fs::create_dir(&dir).expect("dir");
    std::fs::write(dir.join("ca.crt"), &pki.ca.cert_pem).expect("write");
    mkfifo(&dir.join("pipe.crt"));
    std::os::unix::fs::symlink(dir.join("loop-b.crt"), dir.join("loop-a.crt")).expect("link");
    std::os::unix::fs::symlink(dir.join("loop-a.crt"), dir.join("loop-b.crt")).expect("link");
    std::os::unix::fs::symlink(dir.join("gone.crt"), dir.join("dangling.crt")).expect("link");
    let builder = pki.builder().client_trust(&dir);
    let tls = within_patience(move || builder.build()).expect("the CA in the directory loads");
    assert_eq!(tls.trust_summary().anchors, 1);
}

#[test]
fn files_larger_than_the_limit_are_refused_naming_size_and_limit() {
    let pki = Pki::new();
    let big = pki.path("huge-bundle.pem");
    // A valid certificate padded past 4 MiB with comment lines.
    let mut text = pki.ca.cert_pem.clone();
    let filler = format!("# {}\n", "x".repeat(1021));
    while text.len() <= 4 << 20 {
        text.push_str(&filler);
    }
    std::fs::write(&big, &text).expect("write");
    let message = err(pki.builder().client_trust(&big).build());
    assert!(
        message.contains("huge-bundle.pem") && message.contains("more than the 4194304 bytes"),
        "{message}"
    );
    // CRLs may be larger (those of large CAs reach tens of MiB): the same file is no error
    // of size there (it holds no CRL, which is what it is refused for).
    let message = err(pki
        .builder()
        .client_trust(&pki.ca_path)
        .client_crl(&big)
        .build());
    assert!(!message.contains("more than"), "{message}");
}

#[test]
fn an_unterminated_pem_names_its_end_line_as_text() {
    let pki = Pki::new();
    let cut = pki.path("cut.pem");
    let pem = &pki.ca.cert_pem;
    std::fs::write(&cut, &pem[..pem.len() - 30]).expect("write");
    let message = err(pki.builder().client_trust(&cut).build());
    assert!(
        message.contains("cut.pem") && message.contains("-----END CERTIFICATE-----"),
        "{message}"
    );
    assert!(!message.contains("[45, 45"), "{message}");
}

#[test]
fn builders_printed_with_debug_never_show_in_memory_keys() {
    let pki = Pki::new();
    let leaf = pki.ca.client("agent");
    let key_body: String = leaf
        .key_pem
        .lines()
        .find(|l| !l.starts_with("-----"))
        .expect("a base64 line")
        .to_owned();
    let server = format!(
        "{:?}",
        TlsConfig::from_pem(pki.server.cert_pem.clone(), pki.server.key_pem.clone())
            .client_trust_pem(pki.ca.cert_pem.clone())
    );
    let client = format!(
        "{:?}",
        tower_mtls_test_kit::client::Client::builder()
            .identity_pem(leaf.chain_pem.clone(), leaf.key_pem.clone())
    );
    for text in [&server, &client] {
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains(&key_body) && text.contains("redacted"),
            "{text}"
        );
    }
}
