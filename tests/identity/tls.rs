//! One identity through real TLS handshakes: what a policy rule matches is what the handler
//! reads. Certificates with several common names, and certificates whose names are not DER,
//! generated at run time.

use tower_mtls::Rule;
use tower_mtls_test_kit as support;

use axum::Router;

use axum::routing::get;
use rcgen::DnType;
use support::*;
use tower_mtls::{AllowedClient, ClientCertLayer, ClientCertPolicy, MtlsAcceptor, identity::oid};

/// `cn=<common_name() as Debug> cns=<every CN, joined by |>`.
async fn who(client: AllowedClient) -> String {
    let id = client.identity();
    let cn = id.and_then(|id| id.common_name());
    let cns = id
        .map(|id| id.subject().values(oid::COMMON_NAME).collect::<Vec<_>>())
        .unwrap_or_default()
        .join("|");
    format!("cn={cn:?} cns={cns}")
}

fn app() -> Router {
    let text: ClientCertPolicy = "cn=steadybit-agent".parse().expect("policy");
    Router::new()
        .route(
            "/by-cn",
            get(who)
                .layer(ClientCertLayer::require().allow(Rule::new().subject_cn("steadybit-agent"))),
        )
        .route(
            "/by-text",
            get(who).layer(ClientCertLayer::require().with_policy(text)),
        )
        .route(
            "/by-org",
            get(who).layer(ClientCertLayer::require().allow(Rule::new().subject_o("Steadybit"))),
        )
        .route("/optional", get(who).layer(ClientCertLayer::optional()))
}

async fn start(tls: tower_mtls::TlsConfig) -> TestServer {
    TestServer::start_service(Some(MtlsAcceptor::new(tls)), app()).await
}

/// `GET path` with the test kit's client presenting `leaf`: (status, body).
async fn fetch(pki: &Pki, server: &TestServer, leaf: &Leaf, path: &str) -> (u16, String) {
    let response = pki
        .client(Some(leaf))
        .get(server.addr, "localhost", path)
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let body = String::from_utf8_lossy(response.body()).into_owned();
    (response.status().as_u16(), body)
}

/// A CA-issued client certificate whose subject has two CN attributes, `first` then `second`
/// (rcgen keeps one value per `DnType`: the first goes in as a custom type with the CN's OID).
fn two_cns(pki: &Pki, first: &str, second: &str) -> Leaf {
    let mut spec = LeafSpec::client(second).org("Steadybit");
    spec.subject.insert(
        0,
        (DnType::CustomDnType(vec![2, 5, 4, 3]), first.to_owned()),
    );
    pki.ca.issue(&spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_with_two_common_names_has_none_and_matches_no_cn_rule() {
    let pki = Pki::new();
    let tls = pki.required_config();
    let server = start(tls).await;

    let single = pki
        .ca
        .issue(&LeafSpec::client("steadybit-agent").org("Steadybit"));
    for path in ["/by-cn", "/by-text", "/by-org", "/optional"] {
        let (code, body) = fetch(&pki, &server, &single, path).await;
        assert_eq!(
            (code, body.as_str()),
            (200, r#"cn=Some("steadybit-agent") cns=steadybit-agent"#),
            "{path}"
        );
    }

    for (first, second) in [("steadybit-agent", "other"), ("other", "steadybit-agent")] {
        let leaf = two_cns(&pki, first, second);
        for path in ["/by-cn", "/by-text"] {
            let (code, body) = fetch(&pki, &server, &leaf, path).await;
            assert_eq!(code, 403, "{first},{second} {path}: {body}");
            assert!(
                body.contains("\"error\":\"client_certificate_not_allowed\""),
                "{body}"
            );
        }
        // Let in by another rule, or by an optional layer: the handler reads no common name
        // (neither the first nor the last), and every CN is still listed.
        for path in ["/by-org", "/optional"] {
            let (code, body) = fetch(&pki, &server, &leaf, path).await;
            assert_eq!(
                (code, body),
                (200, format!("cn=None cns={first}|{second}")),
                "{first},{second} {path}"
            );
        }
    }
    server.stop().await;
}

/// The DER bytes of an `OBJECT IDENTIFIER` 2.5.4.99.1 (`06 04 55 04 63 01`).
const CUSTOM_OID: [u8; 6] = [0x06, 0x04, 0x55, 0x04, 0x63, 0x01];

/// A self-signed client certificate for `steadybit-agent` with a custom attribute 2.5.4.99.1,
/// whose attribute type OID is then rewritten — in the issuer and the subject — as `content`
/// (same length, so no enclosing length changes). The signature no longer verifies, which a
/// pinned leaf does not need: the client still proves possession of its key.
fn patched_leaf(content: [u8; 4]) -> Leaf {
    let mut spec = LeafSpec::client("steadybit-agent");
    spec.subject.push((
        DnType::CustomDnType(vec![2, 5, 4, 99, 1]),
        "steadybit-agent".into(),
    ));
    let leaf = spec.self_signed();
    let mut der = leaf.der.to_vec();
    let at: Vec<usize> = (0..der.len() - CUSTOM_OID.len())
        .filter(|&i| der[i..i + CUSTOM_OID.len()] == CUSTOM_OID)
        .collect();
    assert_eq!(at.len(), 2, "the OID appears in the issuer and the subject");
    for i in at {
        der[i + 2..i + 6].copy_from_slice(&content);
    }
    let cert_pem = pem("CERTIFICATE", &der);
    Leaf {
        chain_pem: cert_pem.clone(),
        cert_pem,
        der: der.into(),
        key_pem: leaf.key_pem,
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_leaf_with_a_non_minimal_oid_is_403_unparsable() {
    let pki = Pki::new();
    // The unpatched twin passes, so the 403 below is the OID's doing.
    let honest = patched_leaf([0x55, 0x04, 0x63, 0x01]);
    let cases = [
        // 2.5.4.3, the CN type, with the sub-identifier 4 padded as `80 04`: without the check
        // it would read as a second common name.
        ("padded", patched_leaf([0x55, 0x80, 0x04, 0x03])),
        // 2.5.4.99.x whose last sub-identifier is truncated.
        ("truncated", patched_leaf([0x55, 0x04, 0x63, 0x81])),
    ];
    let mut builder = pki.builder();
    let (path, _) = pki.write_leaf(&honest, "honest");
    builder = builder.client_trust(path);
    for (name, leaf) in &cases {
        let (path, _) = pki.write_leaf(leaf, name);
        builder = builder.client_trust(path);
    }
    let server = start(builder.build().expect("config")).await;

    let (code, body) = fetch(&pki, &server, &honest, "/by-cn").await;
    assert_eq!(
        (code, body.as_str()),
        (200, r#"cn=Some("steadybit-agent") cns=steadybit-agent"#)
    );
    for (name, leaf) in &cases {
        for path in ["/by-cn", "/optional"] {
            let (code, body) = fetch(&pki, &server, leaf, path).await;
            assert_eq!(code, 403, "{name} {path}: {body}");
            assert!(
                body.contains("\"error\":\"client_certificate_unparsable\""),
                "{name} {path}: {body}"
            );
        }
    }
    server.stop().await;
}
