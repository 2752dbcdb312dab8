//! Two replicas behind a round-robin client: what shared session ticket keys save the servers.
//!
//! `cargo bench --bench replicas` (add `-- --test` for a quick run, as CI does).
//!
//! Two servers built from two `TlsConfig`s, as two pods of one Deployment would build them
//! (the same certificate, trust and — in the shared case — ticket key file), and one client
//! that connects to them in turn, A, B, A, B, …, always offering its newest session, as an
//! agent behind a Kubernetes Service does (kube-proxy picks a replica per connection; strict
//! alternation is the worst case for per-process sessions). In memory, no sockets; only the
//! servers' work is timed (building the connection, reading, processing and writing records,
//! dropping it), each handshake inside its own [`handshake_scope_sync`].
//!
//! Cases, interleaved in rounds so that drift on a busy machine hits all alike:
//!
//! * `one replica` — the client always reaches the server that issued its session (the crate's
//!   default stateful store): what resumption costs at best;
//! * `two replicas, own sessions` — no shared keys: a session from A is unknown to B;
//! * `one replica, shared keys` — stateless tickets from the key file, on the issuing server;
//! * `two replicas, shared keys` — `session_ticket_keys` on both, from one key file.
//!
//! Printed per case and TLS version: the share of resumed handshakes, server µs per connection,
//! connections per second of one server core, and each case's cost against `own sessions`.

use tower_mtls_test_kit as support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, ServerConfig};
use support::{Pki, floor};
use tower_mtls::tls::{handshake_scope_sync, new_session_ticket_key};

/// Server time and whether the server resumed, for one connection.
fn connect(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> (Duration, bool) {
    let name = ServerName::try_from("localhost").expect("name");
    let mut client = ClientConnection::new(client.clone(), name).expect("client");
    handshake_scope_sync(|| {
        let started = Instant::now();
        let mut server = rustls::ServerConnection::new(server.clone()).expect("server");
        let mut spent = started.elapsed();
        let mut buf = Vec::with_capacity(8192);
        loop {
            buf.clear();
            while client.wants_write() {
                client.write_tls(&mut buf).expect("client writes");
            }
            let started = Instant::now();
            let mut records = &buf[..];
            while !records.is_empty() {
                server.read_tls(&mut records).expect("server reads");
                server.process_new_packets().expect("server accepts");
            }
            let mut out = Vec::with_capacity(8192);
            while server.wants_write() {
                server.write_tls(&mut out).expect("server writes");
            }
            spent += started.elapsed();
            let mut records = &out[..];
            while !records.is_empty() {
                client.read_tls(&mut records).expect("client reads");
                client.process_new_packets().expect("client accepts");
            }
            if out.is_empty()
                && !client.wants_write()
                && !client.is_handshaking()
                && !server.is_handshaking()
            {
                break;
            }
        }
        let resumed = server.handshake_kind() == Some(HandshakeKind::Resumed);
        let started = Instant::now();
        drop(server);
        (spent + started.elapsed(), resumed)
    })
}

struct Case {
    name: &'static str,
    servers: Vec<Arc<ServerConfig>>,
    client: Arc<ClientConfig>,
    next: usize,
    spent: Duration,
    connections: u32,
    resumed: u32,
}

impl Case {
    fn run(&mut self, n: u32) {
        for _ in 0..n {
            let server = &self.servers[self.next % self.servers.len()];
            self.next += 1;
            let (spent, resumed) = connect(server, &self.client);
            self.spent += spent;
            self.connections += 1;
            self.resumed += u32::from(resumed);
        }
    }

    fn per_connection(&self) -> f64 {
        self.spent.as_secs_f64() * 1e6 / f64::from(self.connections.max(1))
    }
}

fn client(
    pki: &Pki,
    leaf: &support::Leaf,
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.der.clone()).expect("CA");
    let mut config = ClientConfig::builder_with_provider(floor::client_provider())
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![leaf.der.clone()],
            PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("client key"),
        )
        .expect("client cert");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn server(pki: &Pki, tls12: bool, keys: Option<&std::path::Path>) -> Arc<ServerConfig> {
    let mut builder = pki.builder().client_trust(&pki.ca_path).tls12(tls12);
    if let Some(keys) = keys {
        builder = builder.session_ticket_keys(keys);
    }
    builder.build().expect("config").server_config()
}

fn main() {
    let test_mode =
        std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    let (rounds, per_round) = if test_mode { (2, 4) } else { (40, 50) };
    let pki = Pki::new();
    let leaf = pki.ca.client("steadybit-agent");
    let keys = pki.path("ticket-keys");
    std::fs::write(
        &keys,
        format!(
            "{}\n{}\n",
            new_session_ticket_key().expect("key"),
            new_session_ticket_key().expect("key")
        ),
    )
    .expect("key file");

    println!(
        "two replicas, round-robin client, P-256, X25519; {} connections per case",
        rounds * per_round
    );
    println!(
        "| version | case | resumed | server µs / connection | connections / s / core | cost vs own sessions |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, version, tls12) in [
        ("TLS 1.3", &rustls::version::TLS13, false),
        ("TLS 1.2", &rustls::version::TLS12, true),
    ] {
        // Each case its own client (its own session cache) and its own servers.
        let mut cases = [
            Case {
                name: "one replica",
                servers: vec![server(&pki, tls12, None)],
                client: client(&pki, &leaf, version),
                next: 0,
                spent: Duration::ZERO,
                connections: 0,
                resumed: 0,
            },
            Case {
                name: "two replicas, own sessions",
                servers: vec![server(&pki, tls12, None), server(&pki, tls12, None)],
                client: client(&pki, &leaf, version),
                next: 0,
                spent: Duration::ZERO,
                connections: 0,
                resumed: 0,
            },
            Case {
                name: "one replica, shared keys",
                servers: vec![server(&pki, tls12, Some(&keys))],
                client: client(&pki, &leaf, version),
                next: 0,
                spent: Duration::ZERO,
                connections: 0,
                resumed: 0,
            },
            Case {
                name: "two replicas, shared keys",
                servers: vec![
                    server(&pki, tls12, Some(&keys)),
                    server(&pki, tls12, Some(&keys)),
                ],
                client: client(&pki, &leaf, version),
                next: 0,
                spent: Duration::ZERO,
                connections: 0,
                resumed: 0,
            },
        ];
        // Warm-up: the first (full) handshake of each client, caches filled.
        for case in &mut cases {
            case.run(4);
            (case.spent, case.connections, case.resumed) = (Duration::ZERO, 0, 0);
        }
        for _ in 0..rounds {
            for case in &mut cases {
                case.run(per_round);
            }
        }
        let baseline = cases[1].per_connection();
        for case in &cases {
            let us = case.per_connection();
            println!(
                "| {label} | {} | {:.0} % | {us:.1} | {:.0} | {:.2}× |",
                case.name,
                100.0 * f64::from(case.resumed) / f64::from(case.connections),
                1e6 / us,
                us / baseline
            );
        }
        // What the numbers mean only holds if resumption happened where it should.
        assert_eq!(
            cases[0].resumed, cases[0].connections,
            "one replica resumes"
        );
        assert_eq!(cases[1].resumed, 0, "own sessions never resume across");
        assert_eq!(cases[2].resumed, cases[2].connections, "shared keys resume");
        assert_eq!(cases[3].resumed, cases[3].connections, "shared keys resume");
    }
}
