//! What a TLS handshake costs the server: bare rustls against this crate's path, in memory.
//!
//! `cargo bench --bench handshake` (add `-- --test` to run each case once, as CI does).
//!
//! Every case runs a real client against a real server with no sockets: the client is driven
//! by hand, and only the server's work is timed (building the connection, reading, processing
//! and writing its records, capturing the peer, dropping the connection). Two levels:
//!
//! * `rustls`: a `rustls::ServerConnection` pumped by hand. *bare* uses a `ServerConfig` built
//!   as any rustls server would (`WebPkiClientVerifier` over the same CA); *crate* uses
//!   [`TlsConfig::server_config`] (its verifier, with one pinned leaf besides the CA so the
//!   pinned-leaf lookup runs) and then captures the peer ([`ConnectionInfo::from_connection`])
//!   and parses the leaf ([`PeerCertificates::identity`]), as the acceptor and the policy layer
//!   do once per connection.
//! * `acceptor`: the same over an in-memory `AsyncRead + AsyncWrite`: *bare* is
//!   `tokio_rustls::TlsAcceptor`, *crate* is [`MtlsAcceptor::accept`] (deadline, first-byte
//!   sniffing, peer capture, re-verification of resumed sessions) plus the identity parse.
//!
//! Cases: a full TLS 1.3 handshake with client authentication for ECDSA P-256, RSA-2048 and
//! Ed25519 (CA, server and client certificates all of that algorithm); the same without
//! client authentication; a resumed handshake (P-256, stateful resumption as the crate's
//! default `ServerConfig` does it). The client offers TLS 1.3 and X25519 only, as the loopback
//! comparison's load generator does.
//!
//! Before measuring, the bench checks that both server configurations really match: it
//! compares every `ServerConfig` setting that shapes a handshake and what the client observed
//! (version, suite, key exchange, ALPN, the CertificateRequest's signature schemes and CA
//! names, session tickets). After criterion's runs it prints the crate/bare ratio of each case
//! from an interleaved A/B run (bare, crate, bare, crate, …), which drift on a busy machine
//! cannot skew the way two separate criterion runs can.

use tower_mtls_test_kit::floor;
use tower_mtls_test_kit::pki;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::Future;
use std::hint::black_box;
use std::io;
use std::net::SocketAddr;
use std::ops::DerefMut;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, measurement::WallTime};
use pki::{Alg, Ca, Leaf, LeafSpec};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, HandshakeKind, RootCertStore, ServerConfig,
    ServerConnection, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower_mtls::{ConnectionInfo, MtlsAcceptor, TlsConfig, tls::default_provider};

/// The address the crate's path records as the peer's.
const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args();
    let test_mode =
        std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    // The timer behind the acceptor's deadline needs a runtime to register with; the futures
    // are polled by hand, so nothing ever runs on it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _context = runtime.enter();

    if let Ok(spec) = std::env::var("HANDSHAKE_PROFILE") {
        profile(&spec);
        return;
    }

    let mut cases = Vec::new();
    for alg in [Alg::EcdsaP256, Alg::Rsa2048, Alg::Ed25519] {
        let setup = Setup::new(alg);
        setup.check();
        cases.push(Case::new(&setup, Kind::Mtls));
        cases.push(Case::new(&setup, Kind::ServerAuthOnly));
        if alg == Alg::EcdsaP256 {
            cases.push(Case::new(&setup, Kind::Resumed));
        }
    }

    for case in &cases {
        let mut group = criterion.benchmark_group(case.name.clone());
        for level in [Level::Rustls, Level::Acceptor] {
            for path in [Path::Bare, Path::Crate] {
                bench(&mut group, case, level, path);
            }
        }
        group.finish();
    }
    criterion.final_summary();

    let rounds = if test_mode { 2 } else { 1500 };
    print_ratios(&cases, rounds);
    if test_mode {
        println!(
            "(test mode: two rounds of an unoptimised build, a smoke test, not a measurement)"
        );
    }
}

/// `HANDSHAKE_PROFILE="mtls/p256 acceptor crate 1000"`: runs that one case that many times
/// and nothing else, for a profiler (`perf record`, `valgrind --tool=callgrind`), and counts
/// the handshakes the client saw resumed (all of them must be, for `mtls-resumed`).
///
/// Server instructions per handshake, exactly: run it under `valgrind --tool=callgrind
/// --toggle-collect='*server_side*'` with N and with 2N iterations and divide the difference
/// by N (the setup, the warm-up handshake and the process's start cancel out).
fn profile(spec: &str) {
    let usage = "HANDSHAKE_PROFILE=\"<kind>/<alg> <rustls|acceptor> <bare|crate> <iterations>\"";
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [name, level, path, iterations] = parts[..] else {
        panic!("{usage}");
    };
    let (kind, alg) = name.split_once('/').expect(usage);
    let alg = match alg {
        "p256" => Alg::EcdsaP256,
        "rsa2048" => Alg::Rsa2048,
        "ed25519" => Alg::Ed25519,
        _ => panic!("{usage}"),
    };
    let kind = match kind {
        "mtls" => Kind::Mtls,
        "server-auth-only" => Kind::ServerAuthOnly,
        "mtls-resumed" => Kind::Resumed,
        _ => panic!("{usage}"),
    };
    let level = match level {
        "rustls" => Level::Rustls,
        "acceptor" => Level::Acceptor,
        _ => panic!("{usage}"),
    };
    let path = match path {
        "bare" => Path::Bare,
        "crate" => Path::Crate,
        _ => panic!("{usage}"),
    };
    let iterations: u32 = iterations.parse().expect(usage);
    let case = Case::new(&Setup::new(alg), kind);
    let mut timer = Timer::default();
    let resumed_before = RESUMED.with(std::cell::Cell::get);
    for _ in 0..iterations {
        case.run(level, path, &mut timer);
    }
    let resumed = RESUMED.with(std::cell::Cell::get) - resumed_before;
    println!(
        "{spec}: {:.1} µs server time per handshake; the client saw {resumed} of {iterations} \
         resumed",
        timer.spent.as_secs_f64() * 1e6 / f64::from(iterations)
    );
    if kind == Kind::Resumed {
        assert_eq!(resumed, u64::from(iterations), "every handshake resumed");
    }
}

fn bench(group: &mut BenchmarkGroup<'_, WallTime>, case: &Case, level: Level, path: Path) {
    let id = format!("{}/{}", level.name(), path.name());
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut timer = Timer::default();
            for _ in 0..iters {
                case.run(level, path, &mut timer);
            }
            timer.spent
        });
    });
}

/// Prints the crate/bare ratio of every case, from interleaved runs.
fn print_ratios(cases: &[Case], rounds: usize) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nserver time per handshake, interleaved A/B, {rounds} rounds each (µs, mean)"
    );
    let _ = writeln!(
        out,
        "{:<28} {:<9} {:>9} {:>9} {:>10}",
        "case", "level", "bare", "crate", "crate/bare"
    );
    for case in cases {
        for level in [Level::Rustls, Level::Acceptor] {
            let (mut bare, mut krate) = (Timer::default(), Timer::default());
            // Warm both paths (and the session cache for resumption) before counting.
            for _ in 0..rounds.min(50) {
                case.run(level, Path::Bare, &mut Timer::default());
                case.run(level, Path::Crate, &mut Timer::default());
            }
            for _ in 0..rounds {
                case.run(level, Path::Bare, &mut bare);
                case.run(level, Path::Crate, &mut krate);
            }
            let micros = |t: &Timer| t.spent.as_secs_f64() * 1e6 / rounds as f64;
            let _ = writeln!(
                out,
                "{:<28} {:<9} {:>9.1} {:>9.1} {:>10.3}",
                case.name,
                level.name(),
                micros(&bare),
                micros(&krate),
                micros(&krate) / micros(&bare)
            );
        }
    }
    println!("{out}");
}

/// Where the server's time goes: only what runs inside [`Timer::run`] is counted.
#[derive(Default)]
struct Timer {
    spent: Duration,
}

impl Timer {
    fn run<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = server_side(f);
        self.spent += start.elapsed();
        out
    }
}

/// Everything the server does, and nothing else, runs inside this function: callgrind counts
/// exactly the server's instructions with `--toggle-collect='*server_side*'`.
#[inline(never)]
fn server_side<T>(f: impl FnOnce() -> T) -> T {
    f()
}

thread_local! {
    /// Handshakes the client saw as `HandshakeKind::Resumed`, for the profile mode's check.
    static RESUMED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_client(client: &ClientConnection) {
    if client.handshake_kind() == Some(HandshakeKind::Resumed) {
        RESUMED.with(|n| n.set(n.get() + 1));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A full handshake with client authentication.
    Mtls,
    /// A full handshake, server authentication only.
    ServerAuthOnly,
    /// A resumed handshake (client authenticated in the original one).
    Resumed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Rustls,
    Acceptor,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Self::Rustls => "rustls",
            Self::Acceptor => "acceptor",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Bare,
    Crate,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::Crate => "crate",
        }
    }
}

/// One generated PKI and the configurations built from it.
struct Setup {
    alg: Alg,
    /// Client authentication required: bare rustls.
    bare_mtls: Arc<ServerConfig>,
    /// Client authentication required: this crate (CA plus one pinned leaf).
    crate_mtls: TlsConfig,
    /// No client authentication: bare rustls.
    bare_plain: Arc<ServerConfig>,
    /// No client authentication: this crate.
    crate_plain: TlsConfig,
    /// Presents the client certificate; never resumes.
    client_mtls: Arc<ClientConfig>,
    /// No client certificate; never resumes.
    client_plain: Arc<ClientConfig>,
    /// Presents the client certificate; resumes. One per server path, so that the two never
    /// share tickets.
    client_resuming: [Arc<ClientConfig>; 2],
    /// Presents the client certificate over TLS 1.2 only, for the configuration check.
    client_tls12: Arc<ClientConfig>,
    /// What the client saw of each server's CertificateRequest.
    seen: [Arc<SeenRequest>; 2],
    /// Each path's own client authentication client, recording the CertificateRequest.
    client_recording: [Arc<ClientConfig>; 2],
}

impl Setup {
    fn new(alg: Alg) -> Self {
        let ca = Ca::with_alg(&format!("Bench CA ({alg:?})"), alg);
        let server = ca.issue(&LeafSpec::server().alg(alg));
        let client = ca.issue(&LeafSpec::client("loadgen").alg(alg));
        // Another client, trusted as itself: the crate's verifier looks it up on every
        // handshake before it asks webpki.
        let pinned = ca.issue(&LeafSpec::client("pinned-agent").alg(alg));
        let provider = default_provider();

        let bare_mtls = bare_server_config(&provider, &server, Some(&ca));
        let bare_plain = bare_server_config(&provider, &server, None);
        let crate_mtls = TlsConfig::from_pem(server.chain_pem.clone(), server.key_pem.clone())
            .client_trust_pem(ca.cert_pem.clone())
            .client_trust_pem(pinned.cert_pem.clone())
            .build()
            .expect("crate config");
        let crate_plain = TlsConfig::from_pem(server.chain_pem.clone(), server.key_pem.clone())
            .build()
            .expect("crate config without client auth");

        let seen = [
            Arc::new(SeenRequest::default()),
            Arc::new(SeenRequest::default()),
        ];
        Self {
            alg,
            bare_mtls,
            crate_mtls,
            bare_plain,
            crate_plain,
            client_mtls: client_config(&ca, Some(&client), false, None),
            client_tls12: client_config_for(
                &rustls::version::TLS12,
                &ca,
                Some(&client),
                false,
                None,
            ),
            client_plain: client_config(&ca, None, false, None),
            client_resuming: [
                client_config(&ca, Some(&client), true, None),
                client_config(&ca, Some(&client), true, None),
            ],
            client_recording: [
                client_config(&ca, Some(&client), false, Some(seen[0].clone())),
                client_config(&ca, Some(&client), false, Some(seen[1].clone())),
            ],
            seen,
        }
    }

    fn server_config(&self, kind: Kind, path: Path) -> Arc<ServerConfig> {
        match (kind, path) {
            (Kind::ServerAuthOnly, Path::Bare) => self.bare_plain.clone(),
            (Kind::ServerAuthOnly, Path::Crate) => self.crate_plain.server_config(),
            (_, Path::Bare) => self.bare_mtls.clone(),
            (_, Path::Crate) => self.crate_mtls.server_config(),
        }
    }

    fn tls_config(&self, kind: Kind) -> &TlsConfig {
        match kind {
            Kind::ServerAuthOnly => &self.crate_plain,
            _ => &self.crate_mtls,
        }
    }

    fn client_config(&self, kind: Kind, path: Path) -> Arc<ClientConfig> {
        match kind {
            Kind::Mtls => self.client_mtls.clone(),
            Kind::ServerAuthOnly => self.client_plain.clone(),
            Kind::Resumed => self.client_resuming[path as usize].clone(),
        }
    }

    /// Asserts that the bare and crate server configurations make the same handshake, so that
    /// the comparison measures the crate's own work and nothing else.
    fn check(&self) {
        for (bare, krate) in [
            (&self.bare_mtls, self.crate_mtls.server_config()),
            (&self.bare_plain, self.crate_plain.server_config()),
        ] {
            assert_eq!(
                settings(bare),
                settings(&krate),
                "bare and crate ServerConfig differ"
            );
        }

        let mut facts = Vec::new();
        for path in [Path::Bare, Path::Crate] {
            let server = match path {
                Path::Bare => self.bare_mtls.clone(),
                Path::Crate => self.crate_mtls.server_config(),
            };
            let client = self.client_recording[path as usize].clone();
            let (server, client) = handshake_sync(&server, &client, &mut Timer::default());
            assert!(server.peer_certificates().is_some(), "client authenticated");
            assert_eq!(server.handshake_kind(), Some(HandshakeKind::Full));
            facts.push(HandshakeFacts::of(&server, &client));
        }
        assert_eq!(facts[0], facts[1], "bare and crate handshakes differ");
        let [bare_seen, crate_seen] = [&self.seen[0], &self.seen[1]].map(|s| {
            s.0.lock()
                .expect("lock")
                .clone()
                .expect("a CertificateRequest")
        });
        assert_eq!(bare_seen.schemes, crate_seen.schemes, "signature schemes");
        // The crate also names the pinned leaf's subject, so that JVM clients holding it offer
        // it; its issuer is the CA, already named.
        assert!(
            bare_seen.names.iter().all(|n| crate_seen.names.contains(n)),
            "the crate's CertificateRequest names every CA the bare one does"
        );
        assert_eq!(crate_seen.names.len(), bare_seen.names.len() + 1);

        // Both also speak TLS 1.2 (the crate's default, and rustls' safe default).
        for path in [Path::Bare, Path::Crate] {
            let server = self.server_config(Kind::Mtls, path);
            let (server, _) = handshake_sync(&server, &self.client_tls12, &mut Timer::default());
            assert_eq!(
                server.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_2)
            );
        }

        // Resumption really resumes, on both paths.
        for path in [Path::Bare, Path::Crate] {
            let server = self.server_config(Kind::Resumed, path);
            let client = self.client_config(Kind::Resumed, path);
            handshake_sync(&server, &client, &mut Timer::default());
            let (server, _) = handshake_sync(&server, &client, &mut Timer::default());
            assert_eq!(server.handshake_kind(), Some(HandshakeKind::Resumed));
            assert!(server.peer_certificates().is_some(), "chain restored");
        }
        println!(
            "{:?}: bare and crate configurations match: {}; CertificateRequest names {} CA(s) \
             bare, {} crate (+ the pinned leaf)",
            self.alg,
            facts[0],
            bare_seen.names.len(),
            crate_seen.names.len()
        );
    }
}

/// The floor's server configuration for this PKI (see [`floor::server_config`]).
fn bare_server_config(
    provider: &Arc<CryptoProvider>,
    server: &Leaf,
    client_ca: Option<&Ca>,
) -> Arc<ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(server.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("server chain");
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).expect("server key");
    let roots = client_ca.map(|ca| {
        let mut roots = RootCertStore::empty();
        roots.add(ca.der.clone()).expect("CA");
        roots
    });
    Arc::new(floor::server_config(provider, chain, key, roots).expect("bare server config"))
}

/// The `ServerConfig` settings that shape a handshake, as text for comparison.
fn settings(config: &ServerConfig) -> String {
    let provider = config.crypto_provider();
    let suites: Vec<_> = provider.cipher_suites.iter().map(|s| s.suite()).collect();
    let groups: Vec<_> = provider.kx_groups.iter().map(|g| g.name()).collect();
    format!(
        "suites={suites:?} groups={groups:?} alpn={:?} \
         tickets={} ticketer={} cache={} max_fragment={:?} ignore_client_order={} \
         early_data={} half_rtt={} ems={} compressors={} decompressors={} \
         extraction={} fips={}",
        config.alpn_protocols,
        config.send_tls13_tickets,
        config.ticketer.enabled(),
        config.session_storage.can_cache(),
        config.max_fragment_size,
        config.ignore_client_order,
        config.max_early_data_size,
        config.send_half_rtt_data,
        config.require_ems,
        config.cert_compressors.len(),
        config.cert_decompressors.len(),
        config.enable_secret_extraction,
        config.fips(),
    )
}

/// What a finished handshake negotiated, as both ends saw it.
#[derive(Debug, PartialEq, Eq)]
struct HandshakeFacts {
    version: Option<rustls::ProtocolVersion>,
    suite: Option<rustls::CipherSuite>,
    group: Option<rustls::NamedGroup>,
    alpn: Option<Vec<u8>>,
    client_chain_len: Option<usize>,
    tickets_sent: usize,
}

impl HandshakeFacts {
    fn of(server: &ServerConnection, client: &ClientConnection) -> Self {
        Self {
            version: server.protocol_version(),
            suite: server.negotiated_cipher_suite().map(|s| s.suite()),
            group: server.negotiated_key_exchange_group().map(|g| g.name()),
            alpn: server.alpn_protocol().map(<[u8]>::to_vec),
            client_chain_len: server.peer_certificates().map(<[_]>::len),
            tickets_sent: client.tls13_tickets_received() as usize,
        }
    }
}

impl std::fmt::Display for HandshakeFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} {:?} {:?} ALPN {} client chain {:?}, {} session tickets",
            self.version.unwrap_or(rustls::ProtocolVersion::Unknown(0)),
            self.suite.unwrap_or(rustls::CipherSuite::Unknown(0)),
            self.group.unwrap_or(rustls::NamedGroup::Unknown(0)),
            String::from_utf8_lossy(self.alpn.as_deref().unwrap_or(b"-")),
            self.client_chain_len,
            self.tickets_sent
        )
    }
}

/// The CertificateRequest as the client saw it.
#[derive(Debug, Default)]
struct SeenRequest(Mutex<Option<RequestContents>>);

#[derive(Debug, Clone)]
struct RequestContents {
    names: Vec<Vec<u8>>,
    schemes: Vec<SignatureScheme>,
}

/// A client certificate resolver that records what the server asked for.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ResolvesClientCert>,
    seen: Arc<SeenRequest>,
}

impl ResolvesClientCert for Recording {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        *self.seen.0.lock().expect("lock") = Some(RequestContents {
            names: root_hint_subjects.iter().map(|n| n.to_vec()).collect(),
            schemes: sigschemes.to_vec(),
        });
        self.inner.resolve(root_hint_subjects, sigschemes)
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

/// The load generator's client: TLS 1.3, X25519, ALPN `http/1.1`.
fn client_config(
    ca: &Ca,
    identity: Option<&Leaf>,
    resume: bool,
    record: Option<Arc<SeenRequest>>,
) -> Arc<ClientConfig> {
    client_config_for(&rustls::version::TLS13, ca, identity, resume, record)
}

fn client_config_for(
    version: &'static rustls::SupportedProtocolVersion,
    ca: &Ca,
    identity: Option<&Leaf>,
    resume: bool,
    record: Option<Arc<SeenRequest>>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).expect("CA");
    let builder = ClientConfig::builder_with_provider(floor::client_provider())
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("client key"),
            )
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    if let Some(seen) = record {
        config.client_auth_cert_resolver = Arc::new(Recording {
            inner: config.client_auth_cert_resolver.clone(),
            seen,
        });
    }
    Arc::new(config)
}

/// One benchmarked case: a kind of handshake for one PKI.
struct Case {
    name: String,
    server: [Arc<ServerConfig>; 2],
    client: [Arc<ClientConfig>; 2],
    acceptor: MtlsAcceptor,
}

impl Case {
    fn new(setup: &Setup, kind: Kind) -> Self {
        let alg = match setup.alg {
            Alg::EcdsaP256 => "p256",
            Alg::EcdsaP384 => "p384",
            Alg::Rsa2048 => "rsa2048",
            Alg::Ed25519 => "ed25519",
        };
        let kind_name = match kind {
            Kind::Mtls => "mtls",
            Kind::ServerAuthOnly => "server-auth-only",
            Kind::Resumed => "mtls-resumed",
        };
        let case = Self {
            name: format!("{kind_name}/{alg}"),
            server: [Path::Bare, Path::Crate].map(|p| setup.server_config(kind, p)),
            client: [Path::Bare, Path::Crate].map(|p| setup.client_config(kind, p)),
            acceptor: MtlsAcceptor::new(setup.tls_config(kind).clone()),
        };
        if kind == Kind::Resumed {
            // Give each client a session to resume; every resumption brings new tickets.
            for path in [Path::Bare, Path::Crate] {
                case.run(Level::Rustls, path, &mut Timer::default());
            }
        }
        case
    }

    /// One handshake, the server's part timed into `timer`.
    fn run(&self, level: Level, path: Path, timer: &mut Timer) {
        let server = &self.server[path as usize];
        let client = &self.client[path as usize];
        match (level, path) {
            (Level::Rustls, Path::Bare) => {
                let (server, _client) = handshake_sync(server, client, timer);
                timer.run(|| drop(server));
            }
            (Level::Rustls, Path::Crate) => {
                let (server, _client) = handshake_sync(server, client, timer);
                timer.run(|| {
                    let info = ConnectionInfo::from_connection(&server, Some(PEER));
                    if let Some(peer) = info.peer() {
                        black_box(peer.identity().expect("parsable leaf"));
                    }
                    drop(info);
                    drop(server);
                });
            }
            (Level::Acceptor, Path::Bare) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(server.clone());
                let stream = handshake_async(client, timer, |io| acceptor.accept(io))
                    .expect("bare handshake");
                timer.run(|| drop(stream));
            }
            (Level::Acceptor, Path::Crate) => {
                let stream =
                    handshake_async(client, timer, |io| self.acceptor.accept(io, Some(PEER)))
                        .expect("crate handshake");
                timer.run(|| {
                    if let Some(peer) = stream.info().peer() {
                        black_box(peer.identity().expect("parsable leaf"));
                    }
                    drop(stream);
                });
            }
        }
    }
}

/// A handshake between two rustls connections, pumped by hand. Returns both ends, done.
fn handshake_sync(
    server_config: &Arc<ServerConfig>,
    client_config: &Arc<ClientConfig>,
    timer: &mut Timer,
) -> (ServerConnection, ClientConnection) {
    // The crate stores a session only for handshakes run in its resumption scope (its acceptor
    // opens one per connection); the bare server's store takes any. Same work for both.
    tower_mtls::tls::handshake_scope_sync(|| {
        handshake_sync_unscoped(server_config, client_config, timer)
    })
}

fn handshake_sync_unscoped(
    server_config: &Arc<ServerConfig>,
    client_config: &Arc<ClientConfig>,
    timer: &mut Timer,
) -> (ServerConnection, ClientConnection) {
    let mut client =
        ClientConnection::new(client_config.clone(), server_name()).expect("client connection");
    let mut server =
        timer.run(|| ServerConnection::new(server_config.clone()).expect("server connection"));
    let mut wire = Vec::with_capacity(16 * 1024);
    loop {
        wire.clear();
        while client.wants_write() {
            client.write_tls(&mut wire).expect("client write");
        }
        if !wire.is_empty() {
            timer.run(|| feed(&mut server, &wire));
        }
        wire.clear();
        timer.run(|| {
            while server.wants_write() {
                server.write_tls(&mut wire).expect("server write");
            }
        });
        if !wire.is_empty() {
            feed(&mut client, &wire);
        }
        let done = !client.is_handshaking()
            && !server.is_handshaking()
            && !client.wants_write()
            && !server.wants_write();
        if done {
            count_client(&client);
            return (server, client);
        }
    }
}

fn feed<C, D>(conn: &mut C, mut bytes: &[u8])
where
    C: DerefMut<Target = ConnectionCommon<D>>,
{
    while !bytes.is_empty() {
        conn.read_tls(&mut bytes).expect("read_tls");
        conn.process_new_packets().expect("handshake");
    }
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("server name")
}

/// A handshake between a server-side acceptor future (polled by hand, timed) and a rustls
/// client (untimed), over an in-memory pipe.
fn handshake_async<F, S, E>(
    client_config: &Arc<ClientConfig>,
    timer: &mut Timer,
    accept: impl FnOnce(MemoryIo) -> F,
) -> io::Result<S>
where
    F: Future<Output = Result<S, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let wire = Rc::new(RefCell::new(Wire::default()));
    let mut client =
        ClientConnection::new(client_config.clone(), server_name()).expect("client connection");
    pump_client(&mut client, &wire);
    let io = MemoryIo { wire: wire.clone() };
    let mut accepting = pin!(timer.run(|| accept(io)));
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(result) = timer.run(|| accepting.as_mut().poll(&mut cx)) {
            // Let the client read the server's last flight (tickets), as a real one would.
            pump_client(&mut client, &wire);
            count_client(&client);
            return result.map_err(io::Error::other);
        }
        pump_client(&mut client, &wire);
    }
}

/// Hands the client what the server wrote and the server what the client writes.
fn pump_client(client: &mut ClientConnection, wire: &Rc<RefCell<Wire>>) {
    let mut wire = wire.borrow_mut();
    let incoming: Vec<u8> = wire.to_client.drain(..).collect();
    if !incoming.is_empty() {
        feed(client, &incoming);
    }
    let mut outgoing = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut outgoing).expect("client write");
    }
    wire.to_server.extend(outgoing);
}

#[derive(Default)]
struct Wire {
    to_server: VecDeque<u8>,
    to_client: VecDeque<u8>,
}

/// The server's end of the in-memory pipe: reads what the client wrote, `Pending` when there
/// is nothing (the driver polls again after the client's next flight).
struct MemoryIo {
    wire: Rc<RefCell<Wire>>,
}

impl AsyncRead for MemoryIo {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut wire = self.wire.borrow_mut();
        if wire.to_server.is_empty() {
            return Poll::Pending;
        }
        let n = wire.to_server.len().min(buf.remaining());
        let (front, back) = wire.to_server.as_slices();
        let from_front = n.min(front.len());
        buf.put_slice(&front[..from_front]);
        buf.put_slice(&back[..n - from_front]);
        wire.to_server.drain(..n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MemoryIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.wire.borrow_mut().to_client.extend(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
