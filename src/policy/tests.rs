//! The layer on synthetic requests: certificates generated with rcgen, wrapped in
//! one `ConnectionInfo` as the acceptor would, sent through `oneshot`.

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName as RcgenName, DnType, IsCa, Issuer,
    KeyPair, SanType,
};
use rustls::pki_types::CertificateDer;
use tower::{ServiceBuilder, ServiceExt};
use tracing_subscriber::fmt::MakeWriter;

use super::*;
use crate::identity::ClientIdentity;
use crate::identity::{SpiffeId, oid};
use crate::{
    AllowedClient, ClientCertLayer, ClientCertPolicy, ConnectionInfo, PeerCertificates, PeerExt,
    Rule,
};

const REMOTE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 40_000);

// ---- certificates ------------------------------------------------------------------------

fn params(subject: &[(DnType, &str)], sans: Vec<SanType>) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = RcgenName::new();
    for (ty, value) in subject {
        params.distinguished_name.push(ty.clone(), *value);
    }
    params.subject_alt_names = sans;
    params
}

fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

fn uri(uri: &str) -> SanType {
    SanType::URI(uri.try_into().unwrap())
}

fn email(address: &str) -> SanType {
    SanType::Rfc822Name(address.try_into().unwrap())
}

struct Ca {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(subject: &[(DnType, &str)]) -> Ca {
    let mut params = params(subject, vec![]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let der = params.self_signed(&key).unwrap().der().clone();
    Ca {
        der,
        issuer: Issuer::new(params, key),
    }
}

fn issued(ca: &Ca, params: &CertificateParams, key: &KeyPair) -> CertificateDer<'static> {
    params.signed_by(key, &ca.issuer).unwrap().der().clone()
}

fn self_signed(params: &CertificateParams) -> CertificateDer<'static> {
    params
        .self_signed(&KeyPair::generate().unwrap())
        .unwrap()
        .der()
        .clone()
}

fn peer(chain: Vec<CertificateDer<'static>>) -> PeerCertificates {
    PeerCertificates::assume_verified(chain).unwrap()
}

/// A self-signed client certificate with this subject and these SANs.
fn client(subject: &[(DnType, &str)], sans: Vec<SanType>) -> PeerCertificates {
    peer(vec![self_signed(&params(subject, sans))])
}

fn agent() -> PeerCertificates {
    client(&[(DnType::CommonName, "agent")], vec![])
}

fn identity(peer: &PeerCertificates) -> &ClientIdentity {
    peer.identity().unwrap()
}

// ---- requests ----------------------------------------------------------------------------

/// A request as the acceptor hands it on: the connection's info, with the chain if there is one.
fn request(peer: Option<&PeerCertificates>) -> Request<()> {
    let mut req = Request::builder()
        .uri("/api/attack?token=secret")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectionInfo::assume_verified(peer.cloned(), Some(REMOTE)));
    req
}

fn grpc(mut req: Request<()>) -> Request<()> {
    req.headers_mut()
        .insert(CONTENT_TYPE, "application/grpc+proto".parse().unwrap());
    req
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// The `error` code of a default JSON rejection.
    fn code(&self) -> &str {
        let rest = self.body.strip_prefix("{\"error\":\"").unwrap_or("");
        rest.split('"').next().unwrap_or("")
    }
}

/// Sends `req` through `layer` around a handler that reports the `AllowedClient` it got as
/// `<common name>|<matched rule>`.
async fn send(layer: &ClientCertLayer, req: Request<()>) -> Answer {
    // Before any of the layer's log callsites is reached (see `baseline_subscriber`).
    baseline_subscriber();
    let service =
        ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|req: Request<()>| async move {
                let body = match req.allowed_client() {
                    Some(client) => format!(
                        "{}|{}",
                        client
                            .identity()
                            .and_then(ClientIdentity::common_name)
                            .unwrap_or("-"),
                        client
                            .matched_rule()
                            .map_or("-".to_owned(), ToString::to_string)
                    ),
                    None => "no AllowedClient".to_owned(),
                };
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
            });
    let response = service.oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

#[track_caller]
fn assert_allowed(answer: &Answer, body: &str) {
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body, body);
}

#[track_caller]
fn assert_rejected(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(answer.headers[CONTENT_TYPE], "application/json");
    assert_eq!(answer.code(), code, "{answer:?}");
}

// ---- log capture -------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

/// A process-wide subscriber that keeps nothing, installed before any capture or request.
///
/// tracing caches each callsite's interest for the whole process, computed by the thread that
/// reaches the callsite first; while a capture's scoped subscriber is the only one registered,
/// that computation asks the *registering* thread's subscriber (tokio-rs/tracing#3611). A
/// sibling test's thread has none, caches `never`, and the capture on this thread then misses
/// the event (seen once in CI: "one denial, one line", 0 lines). With this baseline every
/// thread has a subscriber interested in everything, and each capture decides what it keeps.
fn baseline_subscriber() {
    static BASELINE: std::sync::Once = std::sync::Once::new();
    BASELINE.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry())
            .expect("the library's tests install no other global subscriber");
    });
}

impl Logs {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        baseline_subscriber();
        let logs = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        (logs.clone(), tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Logs {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// ---- modes -------------------------------------------------------------------------------

#[tokio::test]
async fn require_without_certificate_is_401() {
    let answer = send(&ClientCertLayer::require(), request(None)).await;
    assert_rejected(
        &answer,
        StatusCode::UNAUTHORIZED,
        "client_certificate_required",
    );
}

#[tokio::test]
async fn require_without_rules_lets_any_verified_certificate_pass() {
    let answer = send(&ClientCertLayer::require(), request(Some(&agent()))).await;
    assert_allowed(&answer, "agent|-");
}

#[tokio::test]
async fn optional_passes_clients_without_certificate_but_checks_presented_ones() {
    let layer = ClientCertLayer::optional().allow(Rule::new().subject_cn("agent"));
    assert!(!layer.is_required());
    assert_allowed(&send(&layer, request(None)).await, "-|-");
    assert_allowed(&send(&layer, request(Some(&agent()))).await, "agent|#0");
    let other = client(&[(DnType::CommonName, "intruder")], vec![]);
    assert_rejected(
        &send(&layer, request(Some(&other))).await,
        StatusCode::FORBIDDEN,
        "client_certificate_not_allowed",
    );
    // Without rules, any presented certificate passes.
    assert_allowed(
        &send(&ClientCertLayer::optional(), request(Some(&other))).await,
        "intruder|-",
    );
}

#[tokio::test(flavor = "current_thread")]
async fn requests_without_connection_information_fail_closed_and_warn_once() {
    let (logs, _guard) = Logs::capture();
    for layer in [ClientCertLayer::require(), ClientCertLayer::optional()] {
        for _ in 0..3 {
            let answer = send(&layer, Request::new(())).await;
            assert_rejected(&answer, StatusCode::UNAUTHORIZED, "no_tls_connection");
        }
    }
    let text = logs.text();
    // Once per layer: two layers, three requests each.
    assert_eq!(text.matches("WARN").count(), 2, "{text}");
    assert_eq!(
        text.matches("is not served through tower-mtls's acceptor")
            .count(),
        2
    );
    assert_eq!(text.matches("DEBUG").count(), 4, "{text}");
}

#[tokio::test]
async fn a_bare_chain_in_the_extensions_is_not_a_connection() {
    // Only a ConnectionInfo carries a peer: a chain inserted on its own (a hand-made stack, a
    // header parsed into one) is not trusted.
    let layer = ClientCertLayer::require().allow(Rule::new().subject_cn("agent"));
    let mut req = Request::new(());
    req.extensions_mut().insert(agent());
    assert_rejected(
        &send(&layer, req).await,
        StatusCode::UNAUTHORIZED,
        "no_tls_connection",
    );
    // The same chain as connection info passes.
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(ConnectionInfo::assume_verified(Some(agent()), Some(REMOTE)));
    assert_allowed(&send(&layer, req).await, "agent|#0");
}

#[tokio::test]
async fn unparsable_certificates_are_403() {
    let garbage = peer(vec![CertificateDer::from(vec![
        0x30, 0x03, 0x01, 0x01, 0xff,
    ])]);
    for layer in [ClientCertLayer::require(), ClientCertLayer::optional()] {
        assert_rejected(
            &send(&layer, request(Some(&garbage))).await,
            StatusCode::FORBIDDEN,
            "client_certificate_unparsable",
        );
    }
}

// ---- matchers ----------------------------------------------------------------------------

#[test]
fn subject_attributes_match_exactly_and_by_oid() {
    let peer = client(
        &[
            (DnType::CommonName, "steadybit-agent"),
            (DnType::OrganizationName, "Steadybit"),
            (DnType::OrganizationalUnitName, "agents"),
            (DnType::LocalityName, "Solingen"),
            (DnType::CustomDnType(vec![2, 5, 4, 5]), "42"),
        ],
        vec![],
    );
    let id = identity(&peer);
    let yes = [
        Rule::new().subject_cn("steadybit-agent"),
        Rule::new().subject_o("Steadybit"),
        Rule::new().subject_ou("agents"),
        Rule::new().subject_attribute(oid::LOCALITY, "Solingen"),
        Rule::new().subject_attribute(oid::SERIAL_NUMBER, "42"),
    ];
    let no = [
        Rule::new().subject_cn("Steadybit-Agent"),
        Rule::new().subject_cn("steadybit-agent "),
        Rule::new().subject_cn("steadybit"),
        Rule::new().subject_o("steadybit"),
        Rule::new().subject_ou("Steadybit"),
        Rule::new().subject_attribute(oid::LOCALITY, "solingen"),
        Rule::new().subject_attribute(oid::COUNTRY, "DE"),
        // The subject is not the issuer.
        Rule::new().issuer_cn("steadybit-agent").issuer_o("x"),
    ];
    for rule in yes {
        assert!(rule.matches(id), "{rule}");
    }
    for rule in no {
        assert!(!rule.matches(id), "{rule}");
    }
}

#[test]
fn issuer_attributes_match_the_leafs_issuer() {
    let ca = ca(&[
        (DnType::CommonName, "Steadybit Agent CA"),
        (DnType::OrganizationName, "Steadybit"),
        (DnType::OrganizationalUnitName, "platform"),
    ]);
    let key = KeyPair::generate().unwrap();
    let leaf = issued(&ca, &params(&[(DnType::CommonName, "agent")], vec![]), &key);
    let peer = peer(vec![leaf, ca.der.clone()]);
    let id = identity(&peer);
    for rule in [
        Rule::new().issuer_cn("Steadybit Agent CA"),
        Rule::new().issuer_o("Steadybit"),
        Rule::new().issuer_ou("platform"),
        Rule::new().issuer_attribute(oid::ORGANIZATION, "Steadybit"),
    ] {
        assert!(rule.matches(id), "{rule}");
    }
    for rule in [
        Rule::new().issuer_cn("agent"),
        Rule::new().issuer_o("steadybit"),
        Rule::new().subject_o("Steadybit"),
    ] {
        assert!(!rule.matches(id), "{rule}");
    }
}

#[tokio::test]
async fn issuer_rules_ignore_certificates_appended_to_the_chain() {
    let trusted = ca(&[
        (DnType::CommonName, "Steadybit CA"),
        (DnType::OrganizationName, "Steadybit"),
    ]);
    let other = ca(&[
        (DnType::CommonName, "Other CA"),
        (DnType::OrganizationName, "Other"),
    ]);
    let key = KeyPair::generate().unwrap();
    let leaf_params = params(&[(DnType::CommonName, "agent")], vec![]);
    let layer = ClientCertLayer::require()
        .allow(Rule::new().issuer_o("Steadybit"))
        .allow(Rule::new().issuer_cn("Steadybit CA"));

    // Issued by Other CA, with the Steadybit CA certificate appended: proves nothing.
    let spoof = peer(vec![
        issued(&other, &leaf_params, &key),
        trusted.der.clone(),
        other.der.clone(),
    ]);
    assert_rejected(
        &send(&layer, request(Some(&spoof))).await,
        StatusCode::FORBIDDEN,
        "client_certificate_not_allowed",
    );

    let genuine = peer(vec![issued(&trusted, &leaf_params, &key)]);
    assert_allowed(&send(&layer, request(Some(&genuine))).await, "agent|#0");
}

#[tokio::test]
async fn a_comma_in_a_common_name_is_no_organization() {
    // One CN whose value is "agent, O=Steadybit": RFC 4514 shows it as CN=agent\, O=Steadybit.
    let spoof = client(&[(DnType::CommonName, "agent, O=Steadybit")], vec![]);
    assert_eq!(
        identity(&spoof).subject().to_string(),
        r"CN=agent\, O=Steadybit"
    );

    let by_builder = ClientCertLayer::require().allow(Rule::new().subject_o("Steadybit"));
    let by_text =
        ClientCertLayer::require().with_policy("o=Steadybit | issuer.o=Steadybit".parse().unwrap());
    for layer in [by_builder, by_text] {
        assert_rejected(
            &send(&layer, request(Some(&spoof))).await,
            StatusCode::FORBIDDEN,
            "client_certificate_not_allowed",
        );
    }
    // The whole value, quoted, is its common name.
    let exact =
        ClientCertLayer::require().with_policy(r#"cn="agent, O=Steadybit""#.parse().unwrap());
    assert_allowed(
        &send(&exact, request(Some(&spoof))).await,
        "agent, O=Steadybit|#0",
    );
}

#[test]
fn dns_names_match_case_insensitively_with_single_label_wildcards() {
    let peer = client(
        &[(DnType::CommonName, "agent")],
        vec![dns("Node-1.Agents.Example.com"), dns("agent.internal")],
    );
    let id = identity(&peer);
    let rule = |p: &str| Rule::new().dns_name(p.parse().unwrap());
    for yes in [
        "node-1.agents.example.com",
        "NODE-1.agents.example.com.",
        "*.agents.example.com",
        "agent.internal",
    ] {
        assert!(rule(yes).matches(id), "{yes}");
    }
    for no in [
        "agents.example.com",
        "*.example.com",
        "node-1.agents.example",
        "*.internal.example",
    ] {
        assert!(!rule(no).matches(id), "{no}");
    }
}

#[test]
fn uris_emails_and_ips() {
    let peer = client(
        &[(DnType::CommonName, "agent")],
        vec![
            uri("https://agents.example.com/Node-1"),
            email("Agent.One@Example.COM"),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
            SanType::IpAddress(IpAddr::V6(Ipv4Addr::new(198, 51, 100, 1).to_ipv6_mapped())),
        ],
    );
    let id = identity(&peer);
    let ip = |s: &str| Rule::new().ip_address(s.parse().unwrap());
    for yes in [
        Rule::new().uri("https://agents.example.com/Node-1"),
        Rule::new().email("Agent.One@example.com"),
        Rule::new().email("Agent.One@EXAMPLE.com"),
        ip("192.0.2.7"),
        ip("2001:db8::1"),
        ip("198.51.100.1"),
        ip("::ffff:198.51.100.1"),
        ip("::ffff:192.0.2.7"),
    ] {
        assert!(yes.matches(id), "{yes}");
    }
    for no in [
        Rule::new().uri("https://agents.example.com/node-1"),
        Rule::new().uri("https://agents.example.com/Node-1/"),
        Rule::new().email("agent.one@example.com"),
        Rule::new().email("Agent.One@example.org"),
        ip("192.0.2.8"),
        ip("2001:db8::2"),
    ] {
        assert!(!no.matches(id), "{no}");
    }
}

#[test]
fn spiffe_ids_and_trust_domains() {
    let svid = client(
        &[],
        vec![uri("spiffe://prod.example.org/ns/steadybit/sa/agent")],
    );
    let id = identity(&svid);
    let spiffe = |s: &str| Rule::new().spiffe_id(SpiffeId::parse(s).unwrap());
    for yes in [
        spiffe("spiffe://prod.example.org/ns/steadybit/sa/agent"),
        Rule::new().spiffe_trust_domain("prod.example.org"),
        Rule::new().spiffe_trust_domain("Prod.Example.org"),
        Rule::new().spiffe_trust_domain("spiffe://prod.example.org"),
    ] {
        assert!(yes.matches(id), "{yes}");
    }
    for no in [
        spiffe("spiffe://prod.example.org/ns/steadybit/sa/Agent"),
        spiffe("spiffe://prod.example.org/ns/steadybit"),
        spiffe("spiffe://dev.example.org/ns/steadybit/sa/agent"),
        Rule::new().spiffe_trust_domain("example.org"),
    ] {
        assert!(!no.matches(id), "{no}");
    }

    // Two URI SANs: no SPIFFE ID (X.509-SVIDs carry exactly one), though each URI matches.
    let two = client(
        &[],
        vec![
            uri("spiffe://prod.example.org/agent"),
            uri("https://example.org"),
        ],
    );
    let id = identity(&two);
    assert!(
        !Rule::new()
            .spiffe_trust_domain("prod.example.org")
            .matches(id)
    );
    assert!(!spiffe("spiffe://prod.example.org/agent").matches(id));
    assert!(
        Rule::new()
            .uri("spiffe://prod.example.org/agent")
            .matches(id)
    );
}

#[test]
fn fingerprints_pin_the_certificate_or_its_key() {
    let key = KeyPair::generate().unwrap();
    let first = params(&[(DnType::CommonName, "agent")], vec![]);
    let mut renewed = first.clone();
    renewed.not_after = rcgen::date_time_ymd(3000, 1, 1);
    let first = peer(vec![first.self_signed(&key).unwrap().der().clone()]);
    let renewed = peer(vec![renewed.self_signed(&key).unwrap().der().clone()]);
    let rekeyed = agent();

    let sha256 = Rule::new().sha256(identity(&first).sha256());
    let spki = Rule::new().spki_sha256(identity(&first).spki_sha256());
    assert!(sha256.matches(identity(&first)));
    assert!(spki.matches(identity(&first)));
    // Re-issued for the same key: the certificate pin breaks, the key pin holds.
    assert!(!sha256.matches(identity(&renewed)));
    assert!(spki.matches(identity(&renewed)));
    assert!(!spki.matches(identity(&rekeyed)));

    // The text form takes what `openssl x509 -fingerprint -sha256` prints.
    let openssl_style = identity(&first)
        .sha256()
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let policy: ClientCertPolicy = format!("sha256={openssl_style}").parse().unwrap();
    assert_eq!(policy.first_match(identity(&first)), Some(0));
    assert_eq!(policy.first_match(identity(&renewed)), None);
}

#[tokio::test]
async fn predicates_see_the_whole_identity() {
    let layer = ClientCertLayer::require().allow(Rule::new().predicate(|id| {
        id.dns_names()
            .iter()
            .any(|n| n.ends_with(".agents.example.com"))
    }));
    let ok = client(
        &[(DnType::CommonName, "a")],
        vec![dns("n1.agents.example.com")],
    );
    let no = client(&[(DnType::CommonName, "b")], vec![dns("n1.example.com")]);
    assert_allowed(&send(&layer, request(Some(&ok))).await, "a|#0");
    assert_rejected(
        &send(&layer, request(Some(&no))).await,
        StatusCode::FORBIDDEN,
        "client_certificate_not_allowed",
    );
}

#[test]
fn an_empty_rule_matches_nothing() {
    assert!(!Rule::new().matches(identity(&agent())));
}

// ---- any-of / all-of ---------------------------------------------------------------------

#[tokio::test]
async fn all_matchers_of_a_rule_must_hold_and_any_rule_may_match() {
    let layer = ClientCertLayer::require()
        .allow(Rule::new().subject_cn("agent").subject_o("Steadybit"))
        .allow(
            Rule::named("platform")
                .subject_ou("platform")
                .dns_name("*.platform.example.com".parse().unwrap()),
        )
        .allow(Rule::new().subject_cn("admin"));
    let cases = [
        (
            client(
                &[
                    (DnType::CommonName, "agent"),
                    (DnType::OrganizationName, "Steadybit"),
                ],
                vec![],
            ),
            Some("agent|#0"),
        ),
        // CN matches rule 0 but O does not.
        (
            client(
                &[
                    (DnType::CommonName, "agent"),
                    (DnType::OrganizationName, "Other"),
                ],
                vec![],
            ),
            None,
        ),
        (
            client(
                &[
                    (DnType::CommonName, "p"),
                    (DnType::OrganizationalUnitName, "platform"),
                ],
                vec![dns("x.platform.example.com")],
            ),
            Some("p|#1 \"platform\""),
        ),
        // OU without the DNS name.
        (
            client(
                &[
                    (DnType::CommonName, "p"),
                    (DnType::OrganizationalUnitName, "platform"),
                ],
                vec![dns("x.example.com")],
            ),
            None,
        ),
        (
            client(&[(DnType::CommonName, "admin")], vec![]),
            Some("admin|#2"),
        ),
    ];
    for (peer, expected) in cases {
        let answer = send(&layer, request(Some(&peer))).await;
        match expected {
            Some(body) => assert_allowed(&answer, body),
            None => assert_rejected(
                &answer,
                StatusCode::FORBIDDEN,
                "client_certificate_not_allowed",
            ),
        }
    }
}

#[tokio::test]
async fn the_first_matching_rule_is_reported() {
    let layer = ClientCertLayer::require()
        .allow(Rule::new().subject_cn("nobody"))
        .allow(Rule::named("by-cn").subject_cn("agent"))
        .allow(Rule::new().predicate(|_| true));
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let service = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |req: Request<()>| {
            *record.lock().unwrap() = req.allowed_client().cloned();
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
        });
    service.oneshot(request(Some(&agent()))).await.unwrap();
    let client = seen.lock().unwrap().take().unwrap();
    let rule = client.matched_rule().unwrap();
    assert_eq!((rule.index(), rule.name()), (1, Some("by-cn")));
    assert_eq!(client.identity().unwrap().common_name(), Some("agent"));
    assert!(client.peer_certificates().is_some());
}

// ---- responses ---------------------------------------------------------------------------

#[tokio::test]
async fn grpc_calls_get_grpc_statuses() {
    let layer = ClientCertLayer::require().allow(Rule::new().subject_cn("someone-else"));
    for (req, code) in [
        (grpc(request(None)), "16"),
        (grpc(request(Some(&agent()))), "7"),
        (grpc(Request::new(())), "16"),
    ] {
        let answer = send(&layer, req).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers["grpc-status"], code);
        assert_eq!(answer.headers[CONTENT_TYPE], "application/grpc");
        assert!(answer.headers.contains_key("grpc-message"));
        assert!(answer.body.is_empty());
    }
}

#[tokio::test]
async fn the_rejection_response_is_replaceable() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let layer = ClientCertLayer::require()
        .allow(Rule::new().subject_cn("someone-else"))
        .on_reject(move |rejection: &Rejection| {
            record.lock().unwrap().push((
                rejection.reason(),
                rejection
                    .identity()
                    .and_then(|id| id.common_name().map(str::to_owned)),
                rejection.remote_addr(),
                rejection.is_grpc(),
            ));
            if rejection.is_grpc() {
                return rejection.default_response();
            }
            let mut response = Response::new(Bytes::from_static(b"<h1>no</h1>"));
            *response.status_mut() = StatusCode::IM_A_TEAPOT;
            response
        });

    let answer = send(&layer, request(Some(&agent()))).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::IM_A_TEAPOT, "<h1>no</h1>")
    );
    let answer = send(&layer, grpc(request(None))).await;
    assert_eq!(answer.headers["grpc-status"], "16");
    assert_allowed(
        &send(
            &layer.clone().allow(Rule::new().subject_cn("agent")),
            request(Some(&agent())),
        )
        .await,
        "agent|#1",
    );

    assert_eq!(
        *seen.lock().unwrap(),
        [
            (
                RejectReason::CertificateNotAllowed,
                Some("agent".to_owned()),
                Some(REMOTE),
                false
            ),
            (RejectReason::CertificateRequired, None, Some(REMOTE), true),
        ]
    );
}

// ---- cost and wiring ---------------------------------------------------------------------

#[tokio::test]
async fn the_leaf_is_parsed_at_most_once_per_connection() {
    let connection = agent();
    assert!(
        format!("{connection:?}").contains("identity: None"),
        "not parsed before the first request"
    );
    let layer = ClientCertLayer::require()
        .allow(Rule::new().subject_o("nobody"))
        .allow(Rule::new().subject_cn("agent"));
    let addresses = Arc::new(Mutex::new(Vec::new()));
    let record = addresses.clone();
    let service = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |req: Request<()>| {
            let client = req.allowed_client().unwrap();
            let address = std::ptr::from_ref(client.identity().unwrap()) as usize;
            record.lock().unwrap().push(address);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
        });
    for _ in 0..100 {
        let response = service
            .clone()
            .oneshot(request(Some(&connection)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let addresses = addresses.lock().unwrap();
    assert_eq!(addresses.len(), 100);
    // Every request saw the one identity cached in the connection's PeerCertificates.
    let cached = std::ptr::from_ref(connection.identity().unwrap()) as usize;
    assert!(addresses.iter().all(|&a| a == cached));
}

#[tokio::test(flavor = "current_thread")]
async fn denials_are_logged_with_what_explains_them() {
    let (logs, _guard) = Logs::capture();
    let layer = ClientCertLayer::require()
        .allow(Rule::named("agents").subject_cn("steadybit-agent"))
        .allow(Rule::new().spiffe_trust_domain("prod.example.org"));
    let intruder = client(
        &[(DnType::CommonName, "intruder, O=Steadybit")],
        vec![dns("intruder.example.com")],
    );
    let _ = send(&layer, request(Some(&intruder))).await;
    let _ = send(&layer, request(None)).await;
    let text = logs.text();
    let sha256 = identity(&intruder).sha256().to_string();
    for expected in [
        "WARN",
        "reason=\"client_certificate_not_allowed\"",
        "remote_addr=10.1.2.3:40000",
        "path=\"/api/attack\"",
        r"subject=CN=intruder\, O=Steadybit",
        "intruder.example.com",
        &sha256,
        r#"rules_tried=#0 "agents" cn=steadybit-agent; #1 spiffe-domain=prod.example.org"#,
        "reason=\"client_certificate_required\"",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    assert!(
        !text.contains("token=secret"),
        "query strings stay out of logs"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_denial_flood_is_rate_limited() {
    let (logs, _guard) = Logs::capture();
    let layer = ClientCertLayer::require();
    for _ in 0..25 {
        let _ = send(&layer, request(None)).await;
    }
    let text = logs.text();
    assert_eq!(text.matches(" WARN ").count(), 10, "{text}");
    assert_eq!(text.matches(" DEBUG ").count(), 15, "{text}");
}

#[test]
fn building_a_clone_leaves_the_original_alone() {
    let base = ClientCertLayer::require().allow(Rule::new().subject_cn("a"));
    let extended = base.clone().allow(Rule::new().subject_cn("b"));
    assert_eq!(base.policy().to_string(), "cn=a");
    assert_eq!(extended.policy().to_string(), "cn=a | cn=b");
    assert_eq!(
        format!("{extended:?}"),
        "ClientCertLayer { required: true, policy: cn=a | cn=b, on_reject: false }"
    );
}

#[tokio::test]
async fn works_as_an_axum_layer_and_route_layer() {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;

    // Through `PeerExt`, not the `AllowedClient` extractor: this test runs without the `axum`
    // feature too.
    async fn whoami(req: Request<Body>) -> String {
        req.allowed_client()
            .and_then(AllowedClient::identity)
            .and_then(ClientIdentity::common_name)
            .unwrap_or("-")
            .to_owned()
    }

    let axum_request = |peer: Option<&PeerCertificates>, path: &str| {
        let (parts, ()) = request(peer).into_parts();
        let mut req = Request::from_parts(parts, Body::empty());
        *req.uri_mut() = path.parse().unwrap();
        req
    };

    let guarded = Router::new()
        .route("/whoami", get(whoami))
        .layer(ClientCertLayer::require().allow(Rule::new().subject_cn("agent")));
    let response = guarded
        .clone()
        .oneshot(axum_request(Some(&agent()), "/whoami"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "agent");
    let response = guarded
        .oneshot(axum_request(None, "/whoami"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let mixed = Router::new()
        .route("/whoami", get(whoami))
        .route_layer(ClientCertLayer::require())
        .route("/health", get(|| async { "ok" }));
    let response = mixed
        .clone()
        .oneshot(axum_request(None, "/health"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = mixed.oneshot(axum_request(None, "/whoami")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn fits_the_crate_server() {
    let app = ServiceBuilder::new()
        .layer(ClientCertLayer::require())
        .service_fn(|_req: Request<hyper::body::Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hi"))))
        });
    let server = crate::MtlsServer::bind("127.0.0.1:0").await.unwrap();
    // Type-checks the layered service against `serve`'s bounds; never polled.
    drop(server.serve(app));
}

// ---- one identity ------------------------------------------------------------------------

#[tokio::test]
async fn several_common_names_match_no_cn_rule_and_the_handler_reads_none() {
    // rcgen keeps one value per `DnType`: the first CN goes in as a custom attribute type
    // with the CN's OID, the second as `CommonName`.
    let cn_rules = || {
        [
            Rule::new().subject_cn("steadybit-agent"),
            Rule::new().subject_cn("other"),
            Rule::new().subject_attribute(oid::COMMON_NAME, "steadybit-agent"),
            "cn=steadybit-agent"
                .parse::<ClientCertPolicy>()
                .unwrap()
                .into_iter()
                .next()
                .unwrap(),
            "2.5.4.3=other"
                .parse::<ClientCertPolicy>()
                .unwrap()
                .into_iter()
                .next()
                .unwrap(),
        ]
    };
    for (first, second) in [("steadybit-agent", "other"), ("other", "steadybit-agent")] {
        let peer = client(
            &[
                (DnType::CustomDnType(vec![2, 5, 4, 3]), first),
                (DnType::CommonName, second),
                (DnType::OrganizationName, "Steadybit"),
            ],
            vec![],
        );
        let id = identity(&peer);
        assert_eq!(id.common_name(), None);
        assert_eq!(
            id.subject().values(oid::COMMON_NAME).collect::<Vec<_>>(),
            [first, second]
        );
        for rule in cn_rules() {
            assert!(!rule.matches(id), "{rule} must not match {}", id.subject());
        }
        assert!(Rule::new().subject_o("Steadybit").matches(id));

        let layer = ClientCertLayer::require().allow(Rule::new().subject_cn("steadybit-agent"));
        assert_rejected(
            &send(&layer, request(Some(&peer))).await,
            StatusCode::FORBIDDEN,
            "client_certificate_not_allowed",
        );
        // Let in by another rule: the handler reads no common name, not one of the two.
        let layer = layer.allow(Rule::new().subject_o("Steadybit"));
        assert_allowed(&send(&layer, request(Some(&peer))).await, "-|#1");
    }
    let single = client(&[(DnType::CommonName, "steadybit-agent")], vec![]);
    for rule in cn_rules()
        .into_iter()
        .filter(|r| r.to_string().contains("steadybit-agent"))
    {
        assert!(rule.matches(identity(&single)), "{rule}");
    }
}

#[test]
fn other_attribute_types_keep_any_of_semantics() {
    let peer = client(
        &[
            (DnType::OrganizationalUnitName, "agents"),
            (DnType::CustomDnType(vec![2, 5, 4, 11]), "platform"),
            (DnType::OrganizationName, "Steadybit"),
            (DnType::CustomDnType(vec![2, 5, 4, 10]), "Other"),
            (DnType::CommonName, "agent"),
        ],
        vec![],
    );
    let id = identity(&peer);
    for rule in [
        Rule::new().subject_ou("agents"),
        Rule::new().subject_ou("platform"),
        Rule::new().subject_o("Steadybit"),
        Rule::new().subject_o("Other"),
        Rule::new().subject_cn("agent").subject_ou("platform"),
    ] {
        assert!(rule.matches(id), "{rule}");
    }
}

#[test]
fn an_issuer_with_several_common_names_matches_no_issuer_cn_rule() {
    let ca = ca(&[
        (DnType::CustomDnType(vec![2, 5, 4, 3]), "Steadybit CA"),
        (DnType::CommonName, "Evil CA"),
        (DnType::OrganizationName, "Steadybit"),
    ]);
    let key = KeyPair::generate().unwrap();
    let leaf = issued(&ca, &params(&[(DnType::CommonName, "agent")], vec![]), &key);
    let peer = peer(vec![leaf]);
    let id = identity(&peer);
    assert_eq!(id.issuer().common_name(), None);
    for rule in [
        Rule::new().issuer_cn("Steadybit CA"),
        Rule::new().issuer_cn("Evil CA"),
        Rule::new().issuer_attribute(oid::COMMON_NAME, "Steadybit CA"),
        "issuer.cn=Steadybit CA"
            .parse::<ClientCertPolicy>()
            .unwrap()
            .into_iter()
            .next()
            .unwrap(),
    ] {
        assert!(!rule.matches(id), "{rule}");
    }
    assert!(Rule::new().issuer_o("Steadybit").matches(id));
    assert!(Rule::new().subject_cn("agent").matches(id));
}

/// A self-signed certificate for `steadybit-agent` whose subject's custom attribute type OID
/// 2.5.4.99.1 (`06 04 55 04 63 01`) is rewritten as 2.5.4.3 with a padded sub-identifier
/// (`55 80 04 03`): the dotted form reads as a CN, the encoding is not DER.
fn with_non_minimal_oid() -> PeerCertificates {
    let der = self_signed(&params(
        &[
            (DnType::CommonName, "steadybit-agent"),
            (
                DnType::CustomDnType(vec![2, 5, 4, 99, 1]),
                "steadybit-agent",
            ),
        ],
        vec![],
    ));
    const OID: [u8; 6] = [0x06, 0x04, 0x55, 0x04, 0x63, 0x01];
    let mut patched = der.to_vec();
    let at: Vec<usize> = (0..patched.len() - OID.len())
        .filter(|&i| patched[i..i + OID.len()] == OID)
        .collect();
    assert_eq!(at.len(), 2);
    // The second occurrence is the subject's (the issuer comes first).
    patched[at[1] + 2..at[1] + 6].copy_from_slice(&[0x55, 0x80, 0x04, 0x03]);
    peer(vec![CertificateDer::from(patched)])
}

#[tokio::test]
async fn a_non_minimal_oid_in_a_name_is_403_unparsable() {
    let peer = with_non_minimal_oid();
    assert!(matches!(
        peer.identity(),
        Err(crate::identity::IdentityError::NonMinimalOid {
            name: "subject",
            ..
        })
    ));
    for layer in [
        ClientCertLayer::require().allow(Rule::new().subject_cn("steadybit-agent")),
        ClientCertLayer::require(),
        ClientCertLayer::optional(),
    ] {
        assert_rejected(
            &send(&layer, request(Some(&peer))).await,
            StatusCode::FORBIDDEN,
            "client_certificate_unparsable",
        );
    }
}

/// A thread without a subscriber of its own that reaches the denial's log line first, while a
/// capture runs on another thread, must not silence that line for the capture (see
/// `baseline_subscriber`). In a fresh process (nextest runs each test in one) the sibling is
/// the callsite's first visitor; without the baseline it caches `never` and this fails.
#[tokio::test(flavor = "current_thread")]
async fn a_denial_first_reached_on_a_thread_without_a_subscriber_still_reaches_a_capture() {
    let (logs, _guard) = Logs::capture();
    let layer = || ClientCertLayer::require().allow(Rule::new().subject_cn("steadybit-agent"));
    let stranger = client(&[(DnType::CommonName, "stranger")], vec![]);
    let sibling = {
        let (layer, req) = (layer(), request(Some(&stranger)));
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(send(&layer, req))
        })
    };
    let answer = sibling.join().unwrap();
    assert_rejected(
        &answer,
        StatusCode::FORBIDDEN,
        "client_certificate_not_allowed",
    );
    assert_eq!(logs.text(), "", "the sibling thread has no capture");

    // A layer of its own: the same first-in-window `WARN` line, on this thread.
    let answer = send(&layer(), request(Some(&stranger))).await;
    assert_rejected(
        &answer,
        StatusCode::FORBIDDEN,
        "client_certificate_not_allowed",
    );
    let text = logs.text();
    assert_eq!(text.lines().count(), 1, "one denial, one line:\n{text}");
    assert!(
        text.contains("WARN") && text.contains("CN=stranger"),
        "{text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn denial_logs_escape_control_characters_from_certificates() {
    let (logs, _guard) = Logs::capture();
    let layer =
        ClientCertLayer::require().allow(Rule::named("agents\nFAKE").subject_cn("steadybit-agent"));
    let evil = client(
        &[(DnType::CommonName, "agent\nFAKE LOG LINE\u{1b}[31m")],
        vec![
            dns("evil.example.com"),
            uri("spiffe://example.org/a\r\nFAKE"),
            email("a\u{1b}[2J@example.com"),
        ],
    );
    let answer = send(&layer, request(Some(&evil))).await;
    assert_rejected(
        &answer,
        StatusCode::FORBIDDEN,
        "client_certificate_not_allowed",
    );
    assert!(
        answer
            .headers
            .values()
            .all(|v| !v.as_bytes().iter().any(|b| b.is_ascii_control()))
    );
    assert!(!answer.body.trim_end().contains(['\n', '\r', '\u{1b}']));
    let text = logs.text();
    assert_eq!(text.lines().count(), 1, "one denial, one line:\n{text}");
    assert!(
        !text.trim_end().contains(['\n', '\r', '\u{1b}', '\u{85}']),
        "{text:?}"
    );
    for expected in [
        r"subject=CN=agent\0aFAKE LOG LINE\1b[31m",
        r#"uri=["spiffe://example.org/a\0d\0aFAKE"]"#,
        r#"email=["a\1b[2J@example.com"]"#,
        r#"rules_tried=#0 "agents\0aFAKE" cn=steadybit-agent"#,
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    // The unparsable-certificate line carries no certificate text at all, only the error.
    let _ = send(&layer, request(Some(&with_non_minimal_oid()))).await;
    let text = logs.text();
    assert!(text.contains("client_certificate_unparsable"), "{text}");
    assert!(text.contains("not minimally DER-encoded"), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");
}
