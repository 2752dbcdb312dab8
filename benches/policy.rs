//! Per-request cost of `ClientCertLayer`, against the same stack without it, in one run.
//!
//! Every request is built the same way for every stack — a `Request<()>` carrying the
//! connection's `ConnectionInfo` (one `Arc` clone), as the acceptor attaches it — and sent through `poll_ready` + `call` + one poll of the future (the inner
//! `service_fn` answers at once). The leaf is parsed before timing starts, as it is after the
//! first request on a connection; the one-time parse is measured on its own. Each stack sends
//! its requests on a connection of its own, so a layer without predicates runs its rules on
//! the first request only and then reuses the verdict it kept with the connection, as on a
//! keep-alive connection: the "matching alone" rows give what a connection's first request
//! adds. The predicate row and the denial run the rules on every request.
//!
//! `cargo bench --bench policy` runs criterion and then prints a summary table measured in the
//! same process (best of several interleaved rounds of `Instant`-timed loops);
//! `cargo bench --bench policy -- --test` runs each benchmark once.

#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;

use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use tower::service_fn;
use tower_layer::Layer;
use tower_mtls::Rule;
use tower_mtls::rustls::pki_types::CertificateDer;
use tower_mtls::{
    ClientCertLayer, ClientCertPolicy, ClientIdentity, ConnectionInfo, PeerCertificates,
};
use tower_service::Service;

/// One connection's worth of peer information, as the acceptor captures it.
struct Connection {
    der: CertificateDer<'static>,
    info: ConnectionInfo,
}

impl Connection {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "steadybit-agent");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Steadybit");
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "agents");
        params.subject_alt_names = vec![
            SanType::DnsName("node-1.agents.example.com".try_into().unwrap()),
            SanType::URI(
                "spiffe://prod.example.org/ns/steadybit/sa/agent"
                    .try_into()
                    .unwrap(),
            ),
        ];
        let der = params.self_signed(&key).unwrap().der().clone();
        let peer = PeerCertificates::assume_verified(vec![der.clone()]).unwrap();
        let info = ConnectionInfo::assume_verified(
            Some(peer),
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_000)),
        );
        Self { der, info }
    }

    /// Another connection of the same client: the same parsed certificate, no verdicts kept.
    fn another(&self) -> ConnectionInfo {
        ConnectionInfo::assume_verified(self.info.peer().cloned(), self.info.tls().remote_addr())
    }
}

/// A request on the connection `info`, as the acceptor attaches it.
fn request(info: &ConnectionInfo) -> Request<()> {
    let mut req = Request::new(());
    req.extensions_mut().insert(info.clone());
    req
}

type Inner =
    tower::util::ServiceFn<fn(Request<()>) -> Ready<Result<Response<Empty<Bytes>>, Infallible>>>;

fn inner() -> Inner {
    fn answer(_req: Request<()>) -> Ready<Result<Response<Empty<Bytes>>, Infallible>> {
        ready(Ok(Response::new(Empty::new())))
    }
    service_fn(answer as fn(_) -> _)
}

const OTHER_SHA256: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Five one-matcher rules of different kinds; only the last matches, so all five run.
fn five_rules() -> ClientCertLayer {
    ClientCertLayer::require()
        .allow(Rule::new().subject_cn("admin"))
        .allow(Rule::new().issuer_o("Other CA"))
        .allow(Rule::new().dns_name("*.other.example.com".parse().unwrap()))
        .allow(Rule::new().sha256(OTHER_SHA256.parse().unwrap()))
        .allow(Rule::new().spiffe_trust_domain("prod.example.org"))
}

/// Five named rules with nine matchers in all; the last (four matchers) matches.
fn five_named_rules_nine_matchers() -> ClientCertLayer {
    ClientCertLayer::require()
        .allow(
            Rule::named("admins")
                .subject_cn("admin")
                .subject_o("Steadybit"),
        )
        .allow(Rule::named("other-ca").issuer_o("Other CA"))
        .allow(Rule::named("other-dns").dns_name("*.other.example.com".parse().unwrap()))
        .allow(Rule::named("pinned").sha256(OTHER_SHA256.parse().unwrap()))
        .allow(
            Rule::named("agents")
                .subject_o("Steadybit")
                .subject_ou("agents")
                .dns_name("*.agents.example.com".parse().unwrap())
                .spiffe_trust_domain("prod.example.org"),
        )
}

/// The first four of [`five_rules`], as text: a certificate that matches none of them.
fn four_rules_text() -> ClientCertPolicy {
    format!(
        "cn=admin
         issuer.o=Other CA
         dns=*.other.example.com
         sha256={OTHER_SHA256}"
    )
    .parse()
    .unwrap()
}

fn predicate() -> ClientCertLayer {
    ClientCertLayer::require().allow(Rule::new().predicate(|id: &ClientIdentity| {
        id.common_name() == Some("steadybit-agent")
            && id
                .dns_names()
                .iter()
                .any(|n| n.ends_with(".agents.example.com"))
    }))
}

/// `poll_ready`, `call` and one poll, as hyper drives a service.
fn send<S, B>(service: &mut S, req: Request<()>) -> Response<B>
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let future = pin!(service.call(req));
    match future.poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        _ => unreachable!("the stack answers without waiting"),
    }
}

/// A named stack, boxed as a closure so the summary can loop over all of them.
struct Stack {
    name: &'static str,
    run: Box<dyn FnMut(&Connection) -> StatusCode>,
}

fn stack<S, B>(name: &'static str, mut service: S) -> Stack
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible> + 'static,
    B: 'static,
{
    // Each stack on a connection of its own, as a keep-alive connection through one layer: the
    // first request runs the rules, the others reuse the verdict kept with the connection.
    let mut own: Option<ConnectionInfo> = None;
    Stack {
        name,
        run: Box::new(move |conn| {
            let info = own.get_or_insert_with(|| conn.another());
            let response = send(&mut service, request(info));
            black_box(response).status()
        }),
    }
}

const BASELINE: &str = "baseline (no layer)";
const FIVE_RULES: &str = "five rules, last matches";
const DENIED: &str = "denied (403), four rules tried";

/// The stacks compared; the first is the baseline. The denial runs with no `tracing`
/// subscriber, as the allowed rows do, so its log lines cost only the level check.
fn stacks() -> Vec<Stack> {
    vec![
        stack(BASELINE, inner()),
        stack("require()", ClientCertLayer::require().layer(inner())),
        stack(FIVE_RULES, five_rules().layer(inner())),
        stack(
            "five named rules, nine matchers",
            five_named_rules_nine_matchers().layer(inner()),
        ),
        stack("predicate", predicate().layer(inner())),
        stack(
            DENIED,
            ClientCertLayer::require()
                .with_policy(four_rules_text())
                .layer(inner()),
        ),
    ]
}

fn criterion_benches(c: &mut Criterion, conn: &Connection) {
    let mut group = c.benchmark_group("per_request");
    for mut stack in stacks() {
        group.bench_function(stack.name, |b| b.iter(|| (stack.run)(conn)));
    }
    group.finish();

    c.bench_function(
        "once_per_connection/parse leaf (ClientIdentity::parse)",
        |b| b.iter(|| ClientIdentity::parse(black_box(conn.der.as_ref())).unwrap()),
    );
}

/// Best-of-`rounds` ns per request for each stack. Rounds are short (a few ms, less than a
/// scheduler slice) and interleaved across stacks, so the best round of each is one that ran
/// undisturbed, and drift hits all stacks alike.
fn summary(conn: &Connection, iterations: u32, rounds: u32) {
    let mut stacks = stacks();
    let mut best = vec![f64::INFINITY; stacks.len()];
    for _ in 0..rounds {
        for (stack, best) in stacks.iter_mut().zip(&mut best) {
            let expected = if stack.name == DENIED {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::OK
            };
            assert_eq!((stack.run)(conn), expected, "{}", stack.name);
            let ns = best_of(1, iterations, || {
                black_box((stack.run)(conn));
            });
            *best = best.min(ns);
        }
    }

    // The rule evaluation alone, on the cached identity: what a connection's first request
    // adds (every request's, with a predicate).
    let id = conn.info.peer().unwrap().identity().unwrap();
    let matching = [
        ("  matching alone, five rules", five_rules()),
        (
            "  matching alone, nine matchers",
            five_named_rules_nine_matchers(),
        ),
    ]
    .map(|(name, layer)| {
        let policy = layer.policy().clone();
        let ns = best_of(rounds, iterations, || {
            black_box(policy.first_match(black_box(id)));
        });
        (name, ns)
    });

    let parse_ns = best_of(rounds.min(20), (iterations / 100).max(10), || {
        black_box(ClientIdentity::parse(black_box(conn.der.as_ref())).unwrap());
    });

    let baseline = best[0];
    println!();
    println!(
        "ClientCertLayer per-request summary: best of {rounds} interleaved rounds x {iterations} \
         requests; every row builds the request with one ConnectionInfo as the acceptor does"
    );
    println!(
        "{:<34} {:>10} {:>14} {:>8}",
        "stack", "ns/request", "overhead (ns)", "ratio"
    );
    for (stack, ns) in stacks.iter().zip(&best) {
        println!(
            "{:<34} {:>10.1} {:>14.1} {:>8.3}",
            stack.name,
            ns,
            ns - baseline,
            ns / baseline
        );
    }
    for (name, ns) in matching {
        println!("{name:<34} {ns:>10.1}   (a connection's first request; predicates: every one)");
    }
    println!(
        "{:<34} {:>10.1}   (once per connection, never per request)",
        "parse leaf (ClientIdentity::parse)", parse_ns
    );
    let five = stacks
        .iter()
        .zip(&best)
        .find(|(stack, _)| stack.name == FIVE_RULES)
        .map_or(f64::NAN, |(_, ns)| ns - baseline);
    if rounds == 1 {
        println!("(test mode: one short round, a smoke test rather than a measurement)");
        return;
    }
    println!(
        "target: {FIVE_RULES} < 100 ns/request over baseline: {five:.1} ns ({})",
        if five < 100.0 { "met" } else { "NOT met" }
    );
}

/// The lowest ns per call of `f` over `rounds` timed loops of `iterations` calls.
fn best_of(rounds: u32, iterations: u32, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..iterations {
            f();
        }
        best = best.min(start.elapsed().as_nanos() as f64 / f64::from(iterations));
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    // Mirrors criterion: `--bench` without `--test` measures; anything else only checks.
    let measuring = flag("--bench") && !flag("--test") && !flag("--list");

    let conn = Connection::new();
    // Parsed once, as after a connection's first request.
    conn.info.peer().unwrap().identity().unwrap();

    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion, &conn);
    criterion.final_summary();

    if flag("--list") {
        return;
    }
    if measuring {
        summary(&conn, 20_000, 200);
    } else {
        summary(&conn, 1_000, 1);
    }
}
