//! Writes the seed corpora to `fuzz/seeds/<target>/` from a freshly generated test PKI:
//! certificates, CRLs (with and without issuingDistributionPoint), names, PEM files, policy
//! strings, and ClientHello flights recorded from a real rustls client.
//!
//! No seed holds a private key: key-parsing seeds are corrupted key-like PEM blocks, and
//! the recorded flights carry only public data (a client's Certificate message is public).
//!
//! The x509-limbo-style edge cases (`seeds/edge.rs`, files named `edge-*`) are generated here
//! too: certificates, chains, CRLs and names that exercise the corners of RFC 5280.
//!
//! `cargo run --release --bin seeds` (from `fuzz/`).

#[path = "seeds/der.rs"]
mod der;
#[path = "seeds/edge.rs"]
mod edge;

use std::fs;
use std::path::{Path, PathBuf};

use rustls::{ClientConnection, ServerConnection};
use tower_mtls_fuzz::{fixture, join, pem_body};
use tower_mtls_test_kit::pki::CrlSpec;

fn out(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&dir).expect("seed dir");
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    // No key of the generated PKI, in PEM or DER, may end up in a seed.
    let fx = fixture();
    for leaf in [&fx.server, &fx.client, &fx.revoked, &fx.scoped] {
        let der = pem_body(&leaf.key_pem, "PRIVATE KEY");
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains(leaf.key_pem.lines().nth(1).unwrap_or("-"))
                && !bytes.windows(der.len()).any(|w| w == der.as_slice()),
            "a seed must never hold a private key ({target}/{name})"
        );
    }
    // Nor any key the edge cases generated (their DER, or a line of their PEM).
    for secret in edge::secrets() {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_slice()),
            "a seed must never hold a private key ({target}/{name})"
        );
    }
    fs::write(out(target).join(name), bytes).expect("write seed");
}

/// The Name (whole DER SEQUENCE) at the subject position of a certificate.
fn subject(der: &[u8]) -> Vec<u8> {
    let f = tower_mtls::__fuzz::tlv;
    let (_, body, _, _) = f(der).expect("cert");
    let (_, tbs, _, _) = f(body).expect("tbs");
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = f(rest).expect("version").3;
    }
    // serial, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = f(rest).expect("field").3;
    }
    f(rest).expect("subject").2.to_vec()
}

/// `SEQUENCE { SET { SEQUENCE { OID 2.5.4.3, <tag> value } } }`.
fn cn(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut atv = vec![0x06, 0x03, 0x55, 0x04, 0x03, tag, value.len() as u8];
    atv.extend_from_slice(value);
    let mut seq = vec![0x30, atv.len() as u8];
    seq.extend(atv);
    let mut set = vec![0x31, seq.len() as u8];
    set.extend(seq);
    let mut name = vec![0x30, set.len() as u8];
    name.extend(set);
    name
}

/// Everything a real rustls client sends to the fixture's server, until the handshake ends.
fn record(
    versions: &[&'static rustls::SupportedProtocolVersion],
    leaf: &tower_mtls_test_kit::Leaf,
) -> (Vec<u8>, Vec<u8>) {
    let fx = fixture();
    let mut client = ClientConnection::new(
        fx.client_config(leaf, versions),
        "localhost".try_into().expect("name"),
    )
    .expect("client");
    let mut server = ServerConnection::new(fx.config.server_config()).expect("server");
    let mut sent = Vec::new();
    let mut first_flight = None;
    for _ in 0..16 {
        let mut from_client = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut from_client).expect("client write");
        }
        if first_flight.is_none() {
            first_flight = Some(from_client.clone());
        }
        sent.extend_from_slice(&from_client);
        let mut slice = &from_client[..];
        while !slice.is_empty() {
            server.read_tls(&mut slice).expect("server read");
            if server.process_new_packets().is_err() {
                break;
            }
        }
        let mut from_server = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut from_server).expect("server write");
        }
        let mut slice = &from_server[..];
        while !slice.is_empty() {
            client.read_tls(&mut slice).expect("client read");
            if client.process_new_packets().is_err() {
                // Refused (the revoked client): what it sent so far is the flight.
                return (first_flight.unwrap_or_default(), sent);
            }
        }
        if !client.is_handshaking() && !server.is_handshaking() && !client.wants_write() {
            break;
        }
    }
    (first_flight.unwrap_or_default(), sent)
}

/// The edge cases (`seeds/edge.rs`) for every target that reads certificates, CRLs, names or
/// client flights.
fn edge_seeds(flight12: &[u8]) {
    let fx = fixture();
    let e = edge::build(fx);
    for (name, der) in &e.certs {
        write("identity", &format!("edge-{name}"), der);
        write("x509_der", &format!("edge-cert-{name}"), der);
    }
    for (name, der) in &e.crls {
        write("crl_parse", &format!("edge-{name}"), der);
        write("x509_der", &format!("edge-crl-{name}"), der);
    }
    for (name, input) in &e.signed {
        write("x509_der", &format!("edge-signed-{name}"), input);
    }
    for (name, input) in &e.select {
        write("crl_select", &format!("edge-{name}"), input);
    }
    for (name, input) in &e.names {
        write("name_compare", &format!("edge-{name}"), input);
    }
    for (name, der) in e.names.iter().filter(|(n, _)| n.starts_with("single-")) {
        write("x509_der", &format!("edge-name-{name}"), der);
    }
    // handshake: the TLS 1.2 flight with its Certificate message replaced by each chain.
    for (name, chain) in &e.chains {
        let spliced = edge::splice_certificate(flight12, chain)
            .unwrap_or_else(|| panic!("no Certificate message to replace ({name})"));
        write("handshake", &format!("edge-{name}"), &spliced);
    }

    // pem_load: chains, bundles of the edge CAs, CRLs, and PEM framing oddities.
    let pem_cert = |der: &[u8]| der::pem("CERTIFICATE", der);
    let pem_crl = |der: &[u8]| der::pem("X509 CRL", der);
    let chain_pem = |name: &str| -> String {
        e.chains
            .iter()
            .find(|(n, _)| n == name)
            .expect("chain")
            .1
            .iter()
            .map(|c| pem_cert(c))
            .collect()
    };
    let crl_der = |name: &str| -> &[u8] { &e.crls.iter().find(|(n, _)| n == name).expect("crl").1 };
    // A few of the edge CAs (a name-constrained, a pathLen 0 and a v1 CA, RSA and Ed25519
    // roots) as the trust bundle of the secret trees.
    let roots: String = [0, 6, 11, 19, 20]
        .iter()
        .filter_map(|i| e.roots.get(*i))
        .map(|c| pem_cert(c))
        .collect();
    for name in [
        "nc-dns-outside",
        "pathlen0-exceeded",
        "ca-rsa2048",
        "ca-ed25519",
        "v1",
        "serial-negative",
    ] {
        write(
            "pem_load",
            &format!("edge-chain-{name}"),
            chain_pem(name).as_bytes(),
        );
    }
    // In bundles of at most 6 (libFuzzer's -max_len follows the largest seed).
    for (i, bundle) in e.roots.chunks(6).enumerate() {
        let text: String = bundle.iter().map(|c| pem_cert(c)).collect();
        write("pem_load", &format!("edge-roots-{i}"), text.as_bytes());
    }
    let crl_bundle: String = [
        "empty",
        "reasons",
        "delta",
        "idp-indirect",
        "no-next-update",
        "unknown-critical-entry-ext",
    ]
    .iter()
    .map(|n| pem_crl(crl_der(n)))
    .collect();
    write("pem_load", "edge-crls", crl_bundle.as_bytes());
    write(
        "pem_load",
        "edge-crl-der-trailing",
        crl_der("trailing-zeros"),
    );
    write(
        "pem_load",
        "edge-crl-pem-trailing",
        pem_crl(crl_der("trailing-crl")).as_bytes(),
    );
    let one = pem_cert(&e.chains.iter().find(|(n, _)| n == "v1").expect("v1").1[0]);
    let framing: Vec<(&str, String)> = vec![
        ("crlf", one.replace('\n', "\r\n")),
        ("no-final-newline", one.trim_end().to_owned()),
        (
            "headers",
            one.replacen(
                "-----\n",
                "-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n",
                1,
            ),
        ),
        (
            "trusted-label",
            one.replace("CERTIFICATE", "TRUSTED CERTIFICATE"),
        ),
        ("x509-label", one.replace("CERTIFICATE", "X509 CERTIFICATE")),
        (
            "mismatched-end",
            one.replace("END CERTIFICATE", "END X509 CRL"),
        ),
        (
            "unterminated",
            one.replace("-----END CERTIFICATE-----\n", ""),
        ),
        (
            "indented",
            one.lines().map(|l| format!("  \t{l}\n")).collect(),
        ),
        ("one-line", {
            let body: String = one.lines().filter(|l| !l.starts_with("-----")).collect();
            format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
        }),
        ("bad-base64", one.replacen('A', "!", 1)),
        (
            "text-between",
            format!(
                "subject=CN = v1\nissuer=CN = x\n{one}# comment\n{}",
                pem_crl(crl_der("empty"))
            ),
        ),
        ("utf8-bom", format!("\u{feff}{one}")),
        (
            "nested-begin",
            one.replacen("\n", "\n-----BEGIN CERTIFICATE-----\n", 1),
        ),
    ];
    for (name, text) in &framing {
        write("pem_load", &format!("edge-pem-{name}"), text.as_bytes());
    }

    // secret_dir: the kubelet layout with edge chains, CA bundles and CRLs.
    let crl_files: Vec<Vec<u8>> = ["reasons", "delta", "idp-some-reasons", "trailing-zeros"]
        .iter()
        .map(|n| crl_der(n).to_vec())
        .collect();
    write(
        "secret_dir",
        "edge-kubelet",
        &join(&[
            format!("..2026_01_01/tls.crt\0{}", chain_pem("nc-dns-outside")).as_bytes(),
            format!("..2026_01_01/ca.crt\0{roots}").as_bytes(),
            &[
                b"..2026_01_01/ca.crl\0".as_slice(),
                pem_crl(crl_der("idp-indirect")).as_bytes(),
            ]
            .concat(),
            b"@..data\0..2026_01_01",
            b"@ca.crt\0..data/ca.crt",
            b"@ca.crl\0..data/ca.crl",
        ]),
    );
    write(
        "secret_dir",
        "edge-crl-dir",
        &join(&[
            &[b"crls/a.crl\0".as_slice(), &crl_files[0]].concat(),
            &[b"crls/b.der\0".as_slice(), &crl_files[1]].concat(),
            &[
                b"crls/c.pem\0".as_slice(),
                pem_crl(&crl_files[2]).as_bytes(),
            ]
            .concat(),
            &[b"crls/d.crl\0".as_slice(), &crl_files[3]].concat(),
            format!("certs/ca.pem\0{}", chain_pem("pathlen0-exceeded")).as_bytes(),
        ]),
    );
    write(
        "secret_dir",
        "edge-odd-names",
        &join(&[
            format!(".hidden/ca.pem\0{}", chain_pem("ca-ed25519")).as_bytes(),
            format!("..old/ca.pem\0{}", chain_pem("ca-p384")).as_bytes(),
            format!("with space.pem\0{}", chain_pem("v1")).as_bytes(),
            format!("caf\u{e9}.pem\0{}", chain_pem("serial-negative")).as_bytes(),
            b"@link-to-hidden\0.hidden/ca.pem",
            b"empty.pem\0",
        ]),
    );
}

fn main() {
    let fx = fixture();
    let ca = &fx.ca;
    let certs: Vec<(&str, Vec<u8>)> = vec![
        ("root", ca.der.to_vec()),
        ("intermediate", fx.intermediate.der.to_vec()),
        ("server", fx.server.der.to_vec()),
        ("client", fx.client.der.to_vec()),
        ("scoped", fx.scoped.der.to_vec()),
    ];
    let crls: Vec<(&str, Vec<u8>)> = vec![
        ("plain", pem_body(&fx.crl_pem, "X509 CRL")),
        (
            "revoking",
            fx.crl_der(&CrlSpec::new(2, (2024, 6, 1)).revoking(&[&fx.client])),
        ),
        (
            "scoped",
            fx.crl_der(
                &CrlSpec::new(3, (2024, 6, 1))
                    .scoped("http://crl.example.com/a.crl")
                    .revoking(&[&fx.scoped]),
            ),
        ),
        ("stale", fx.crl_der(&CrlSpec::new(4, (2020, 1, 1)).stale())),
        ("future", fx.crl_der(&CrlSpec::new(5, (2080, 1, 1)))),
        (
            "intermediate",
            fx.intermediate.crl_der_with(&CrlSpec::new(1, (2024, 1, 1))),
        ),
    ];

    // x509_der: certificates, CRLs, names; Signed with the CA's SPKI as second part.
    let ca_spki = {
        let f = tower_mtls::__fuzz::tlv;
        let (_, body, _, _) = f(&ca.der).expect("cert");
        let (_, tbs, _, _) = f(body).expect("tbs");
        let mut rest = f(tbs).expect("version").3;
        for _ in 0..5 {
            rest = f(rest).expect("field").3;
        }
        f(rest).expect("spki").2.to_vec()
    };
    for (name, der) in &certs {
        write("x509_der", &format!("cert-{name}"), der);
        write(
            "x509_der",
            &format!("signed-{name}"),
            &join(&[der, &ca_spki]),
        );
        write("identity", name, der);
        write("name_compare", &format!("subject-{name}"), &subject(der));
    }
    for (name, der) in &crls {
        write("x509_der", &format!("crl-{name}"), der);
        write("crl_parse", name, der);
    }

    // crl_select: params | cert | CRLs. params: now (u32 BE, halved), flags, serial.
    let now = (1_750_000_000u32 / 2).to_be_bytes();
    let serial = tower_mtls::ClientIdentity::parse(&fx.client.der)
        .expect("client")
        .serial()
        .to_vec();
    let scoped_serial = tower_mtls::ClientIdentity::parse(&fx.scoped.der)
        .expect("scoped")
        .serial()
        .to_vec();
    for (i, (flags, cert, serial)) in [
        (0u8, &fx.client.der, &serial),
        (1, &fx.client.der, &serial),
        (0, &fx.scoped.der, &scoped_serial),
        (2, &fx.intermediate.der, &serial),
    ]
    .into_iter()
    .enumerate()
    {
        let mut params = now.to_vec();
        params.push(flags);
        params.extend_from_slice(serial);
        let mut parts: Vec<&[u8]> = vec![&params, cert];
        parts.extend(crls.iter().map(|(_, d)| d.as_slice()));
        write("crl_select", &format!("all-{i}"), &join(&parts));
        let few: Vec<&[u8]> = vec![&params, cert, &crls[0].1, &crls[2].1];
        write("crl_select", &format!("few-{i}"), &join(&few));
    }

    // name_compare: triples of names spelled differently.
    let bmp: Vec<u8> = "Test CA"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    let names = [
        cn(0x13, b"Test  CA"),
        cn(0x0c, b"test ca"),
        cn(0x1e, &bmp),
        cn(0x0c, b" TEST CA "),
        cn(0x04, b"Test CA"),
        cn(0x0c, b"#41"),
        cn(0x04, b"A"),
        cn(0x14, b"Caf\xe9"),
        cn(0x0c, "Café".as_bytes()),
    ];
    for (i, w) in names.windows(3).enumerate() {
        write(
            "name_compare",
            &format!("triple-{i}"),
            &join(&[&w[0], &w[1], &w[2]]),
        );
    }
    write(
        "name_compare",
        "subjects",
        &join(&[
            &subject(&fx.client.der),
            &subject(&ca.der),
            &subject(&fx.server.der),
        ]),
    );

    // spiffe_id, dns_pattern, policy_text.
    for (i, id) in [
        "spiffe://example.org/agent",
        "spiffe://example.org",
        "spiffe://prod.example-1_x.org/ns/default/sa/agent",
        "spiffe://Example.org/a",
        "spiffe://example.org//a",
        "spiffe://example.org/./a",
        "spiffe://example.org/a?b",
    ]
    .iter()
    .enumerate()
    {
        write("spiffe_id", &format!("id-{i}"), id.as_bytes());
    }
    for (i, (pattern, name)) in [
        ("*.agents.example.com", "node-1.agents.example.com"),
        ("agents.example.com.", "AGENTS.example.com"),
        ("*.com", "a.com"),
        ("foo.*.example.com", "foo.x.example.com"),
        ("xn--caf-dma.example", "xn--caf-dma.example."),
        ("*.a.b", "*.a.b"),
    ]
    .iter()
    .enumerate()
    {
        write(
            "dns_pattern",
            &format!("p-{i}"),
            &join(&[pattern.as_bytes(), name.as_bytes()]),
        );
    }
    for (i, policy) in [
        "cn=steadybit-agent",
        "cn=steadybit-agent & o=Steadybit | spiffe-domain=example.org",
        "cn=\"a&b\" & o=x | dns=*.k8s.example.com | ip=10.1.2.3 & email=\"q\\\"r@example.com\"",
        "spiffe=spiffe://example.org/agent\nuri=https://x.example/a",
        "issuer.cn=Fuzz Root CA & ou=ops",
        "2.5.4.5=1234 & issuer.2.5.4.10=Example",
        "sha256=AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89",
        "spki-sha256=abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
        "ip=::ffff:10.0.0.1 | email=ops@Example.COM",
        "CN = spaced value  \r\n| O=\"  quoted  \"",
        "cn=",
        "cn=a &",
        "| cn=a",
        "cn=\"unterminated",
    ]
    .iter()
    .enumerate()
    {
        write("policy_text", &format!("policy-{i}"), policy.as_bytes());
    }

    // pem_load and secret_dir: certificates and CRLs as PEM; garbage key-like blocks only.
    let garbage_keys = [
        "-----BEGIN PRIVATE KEY-----\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n-----END PRIVATE KEY-----\n",
        "-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n",
        "-----BEGIN RSA PRIVATE KEY-----\nMAMCAQA=\n-----END RSA PRIVATE KEY-----\n",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n",
    ];
    let chain = format!("{}{}", fx.client.cert_pem, ca.cert_pem);
    write("pem_load", "chain", chain.as_bytes());
    write("pem_load", "crl", fx.crl_pem.as_bytes());
    write("pem_load", "crl-der", &crls[1].1);
    write(
        "pem_load",
        "truncated",
        &chain.as_bytes()[..chain.len() / 2],
    );
    for (i, key) in garbage_keys.iter().enumerate() {
        write("pem_load", &format!("key-{i}"), key.as_bytes());
        write(
            "pem_load",
            &format!("cert-and-key-{i}"),
            format!("{}{key}", fx.client.cert_pem).as_bytes(),
        );
    }
    write(
        "secret_dir",
        "kubelet",
        &join(&[
            format!("..2024_01_01/tls.crt\0{}", fx.client.cert_pem).as_bytes(),
            format!("..2024_01_01/ca.crt\0{}", ca.cert_pem).as_bytes(),
            format!("..2024_01_01/tls.key\0{}", garbage_keys[0]).as_bytes(),
            b"@..data\0..2024_01_01",
            b"@tls.crt\0..data/tls.crt",
            b"@ca.crt\0..data/ca.crt",
            b"@tls.key\0..data/tls.key",
        ]),
    );
    write(
        "secret_dir",
        "nested",
        &join(&[
            format!("a/ca.pem\0{}", ca.cert_pem).as_bytes(),
            format!("b/crl.pem\0{}", fx.crl_pem).as_bytes(),
            b"@loop\0.",
            b"README\0not pem",
        ]),
    );

    // acceptor_sniff: read size byte, then a plain-HTTP request, a ClientHello, noise.
    let (hello12, flight12) = record(&[&rustls::version::TLS12], &fx.client);
    let (hello13, flight13) = record(&[&rustls::version::TLS13], &fx.client);
    let (_, revoked12) = record(&[&rustls::version::TLS12], &fx.revoked);
    write(
        "acceptor_sniff",
        "http",
        b"\x04GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    write(
        "acceptor_sniff",
        "hello13",
        &[&[0x40][..], &hello13].concat(),
    );
    write(
        "acceptor_sniff",
        "hello12-slow",
        &[&[0x01][..], &hello12].concat(),
    );
    write("acceptor_sniff", "ssl2", b"\x10\x80\x2e\x01\x00\x02");
    write("acceptor_sniff", "empty", b"\x01");

    // handshake: whole client flights (TLS 1.2 carries the Certificate in the clear).
    write("handshake", "hello13", &hello13);
    write("handshake", "flight13", &flight13);
    write("handshake", "hello12", &hello12);
    write("handshake", "flight12", &flight12);
    write("handshake", "flight12-revoked", &revoked12);

    edge_seeds(&flight12);
    eprintln!(
        "seeds written to {}",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("seeds")
            .display()
    );
}
