//! Resumption across replicas: two `extension` processes mount one session ticket key file
//! (`TOWER_MTLS_SESSION_TICKET_KEYS`), and a ticket one issues resumes on the other — only with
//! a key still in the file, only under the same trust, only while the client verification it
//! descends from holds. Python's `ssl` module is the client (it keeps sessions across
//! connections to different ports); TLS 1.3 and TLS 1.2. The JVM (`java.net.http.HttpClient`,
//! as the Steadybit agent connects) resumes too once both replicas stand behind one address,
//! as behind a Service: its session cache is keyed by host and port.

use tower_mtls_test_kit as support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use support::extension::{Extension, http_get};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/resume_across.py"
);

const FULL: &str = "RESUMED False STATUS 200";
const RESUMED: &str = "RESUMED True STATUS 200";

/// The Python client, one command per line (see the script).
struct Client {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Client {
    fn start(pki: &Pki, leaf: &(PathBuf, PathBuf), version: &str) -> Client {
        let mut child = Command::new("python3")
            .arg(SCRIPT)
            .arg(&pki.ca_path)
            .arg(&leaf.0)
            .arg(&leaf.1)
            .arg(version)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Client {
            _child: child,
            stdin,
            stdout,
        }
    }

    /// Connects to `port` offering the session `offer` ("-": none) and keeps the newest
    /// session as `keep`; the script's answer.
    async fn connect(&mut self, port: u16, offer: &str, keep: &str) -> String {
        self.stdin
            .write_all(format!("connect {port} {offer} {keep}\n").as_bytes())
            .await
            .expect("command");
        tokio::time::timeout(PATIENCE, self.stdout.next_line())
            .await
            .expect("the client answers in time")
            .expect("read")
            .expect("a line")
    }
}

/// A fresh key line.
fn key() -> String {
    tower_mtls::tls::new_session_ticket_key().expect("random")
}

/// Writes a key file as a mounted secret: `dir/keys` through the kubelet's `..data` link.
fn write_keys(dir: &Path, generation: &str, keys: &[&str]) -> PathBuf {
    let text = keys.join("\n") + "\n";
    pki::write_secret_generation(dir, generation, &[("keys", &text)]);
    dir.join("keys")
}

/// The extension's variables: this PKI's server identity, `cas` trusted for clients, and
/// the ticket key file if any.
fn vars(pki: &Pki, cas: &str, keys: Option<&Path>) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        (
            "STEADYBIT_EXTENSION_TLS_SERVER_CERT",
            pki.server_cert.display().to_string(),
        ),
        (
            "STEADYBIT_EXTENSION_TLS_SERVER_KEY",
            pki.server_key.display().to_string(),
        ),
        ("STEADYBIT_EXTENSION_TLS_CLIENT_CAS", cas.to_owned()),
    ];
    if let Some(keys) = keys {
        vars.push(("TOWER_MTLS_SESSION_TICKET_KEYS", keys.display().to_string()));
    }
    vars
}

/// Waits until `ext` has logged `n` applied reloads that changed the key file.
async fn keys_reloaded(ext: &Extension, n: usize) {
    let seen = || {
        ext.lines()
            .iter()
            .filter(|l| {
                l.contains("TLS configuration reloaded")
                    && l.contains("session_ticket_keys_changed=true")
            })
            .count()
    };
    tokio::time::timeout(PATIENCE, async {
        while seen() < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the watch applies the new key file");
}

/// Waits until `ext` has logged `n` applied reloads that changed the trust.
async fn trust_reloaded(ext: &Extension, n: usize) {
    let seen = || {
        ext.lines()
            .iter()
            .filter(|l| {
                l.contains("TLS configuration reloaded") && l.contains("trust_changed=true")
            })
            .count()
    };
    tokio::time::timeout(PATIENCE, async {
        while seen() < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the watch applies the new trust");
}

/// One line of the extension's Prometheus text: the value of `series`, 0 when absent.
async fn metric(ext: &Extension, series: &str) -> u64 {
    let (status, body) = http_get(ext.health_port, "/metrics")
        .await
        .expect("metrics");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

const ACCEPTED: &str = r#"tower_mtls_session_tickets_total{outcome="accepted",reason="none"}"#;

fn refused(reason: &str) -> String {
    format!(r#"tower_mtls_session_tickets_total{{outcome="refused",reason="{reason}"}}"#)
}

async fn a_ticket_from_one_replica_resumes_on_the_other(version: &str) {
    let pki = Pki::new();
    let leaf = pki.write_leaf(&pki.ca.client("steadybit-agent"), "agent");
    let keys = write_keys(&pki.path("tickets"), "..g1", &[&key()]);
    let ca = pki.ca_path.display().to_string();
    let a = Extension::start(&vars(&pki, &ca, Some(&keys))).await;
    let b = Extension::start(&vars(&pki, &ca, Some(&keys))).await;
    let mut client = Client::start(&pki, &leaf, version);

    assert_eq!(client.connect(a.port, "-", "s1").await, FULL);
    assert_eq!(client.connect(b.port, "s1", "s2").await, RESUMED);
    // Chained: B's ticket, issued on a resumed connection, resumes on A.
    assert_eq!(client.connect(a.port, "s2", "s3").await, RESUMED);
    assert_eq!(metric(&b, ACCEPTED).await, 1);
    assert_eq!(
        metric(&b, r#"tower_mtls_sessions_total{kind="resumed"}"#).await,
        1
    );
    assert_eq!(
        metric(&a, r#"tower_mtls_sessions_total{kind="full"}"#).await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_a_ticket_from_one_replica_resumes_on_the_other() {
    a_ticket_from_one_replica_resumes_on_the_other("1.3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_a_ticket_from_one_replica_resumes_on_the_other() {
    a_ticket_from_one_replica_resumes_on_the_other("1.2").await;
}

async fn rotation_keeps_old_tickets_until_their_key_is_dropped(version: &str) {
    let pki = Pki::new();
    let leaf = pki.write_leaf(&pki.ca.client("steadybit-agent"), "agent");
    let dir = pki.path("tickets");
    let (old, new) = (key(), key());
    let keys = write_keys(&dir, "..g1", &[&old]);
    let ca = pki.ca_path.display().to_string();
    let a = Extension::start(&vars(&pki, &ca, Some(&keys))).await;
    let b = Extension::start(&vars(&pki, &ca, Some(&keys))).await;
    let mut client = Client::start(&pki, &leaf, version);
    // Two tickets sealed with the old key, each offered once below.
    assert_eq!(client.connect(a.port, "-", "old1").await, FULL);
    assert_eq!(client.connect(a.port, "old1", "old2").await, RESUMED);

    // Rotation, step 1: a new key first, the old one still opens.
    write_keys(&dir, "..g2", &[&new, &old]);
    keys_reloaded(&a, 1).await;
    keys_reloaded(&b, 1).await;
    assert_eq!(client.connect(b.port, "old1", "-").await, RESUMED);
    assert_eq!(client.connect(a.port, "-", "new").await, FULL);

    // Step 2: the old key dropped. Its tickets get a full handshake, never an error; the
    // new key's resume.
    write_keys(&dir, "..g3", &[&new]);
    keys_reloaded(&a, 2).await;
    keys_reloaded(&b, 2).await;
    assert_eq!(client.connect(b.port, "old2", "-").await, FULL);
    assert_eq!(metric(&b, &refused("unknown_key")).await, 1);
    assert_eq!(client.connect(b.port, "new", "-").await, RESUMED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_rotation_keeps_old_tickets_until_their_key_is_dropped() {
    rotation_keeps_old_tickets_until_their_key_is_dropped("1.3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_rotation_keeps_old_tickets_until_their_key_is_dropped() {
    rotation_keeps_old_tickets_until_their_key_is_dropped("1.2").await;
}

async fn other_trust_or_no_keys_never_resumes(version: &str) {
    let pki = Pki::new();
    let leaf = pki.write_leaf(&pki.ca.client("steadybit-agent"), "agent");
    let keys = write_keys(&pki.path("tickets"), "..g1", &[&key()]);
    let other_ca = Ca::new("Other CA").write(pki.dir.path(), "other-ca.crt");
    let ca = pki.ca_path.display().to_string();
    let a = Extension::start(&vars(&pki, &ca, Some(&keys))).await;
    // Same keys, but it trusts one more CA: the client still passes, yet not by A's verdict.
    let wider = format!("{ca},{}", other_ca.display());
    let b = Extension::start(&vars(&pki, &wider, Some(&keys))).await;
    // No keys: its own session store only.
    let c = Extension::start(&vars(&pki, &ca, None)).await;
    let mut client = Client::start(&pki, &leaf, version);

    assert_eq!(client.connect(a.port, "-", "s1").await, FULL);
    assert_eq!(client.connect(a.port, "s1", "s2").await, RESUMED);
    assert_eq!(client.connect(b.port, "s2", "-").await, FULL);
    assert_eq!(metric(&b, &refused("other_trust")).await, 1);
    assert_eq!(client.connect(c.port, "s1", "-").await, FULL);
    assert_eq!(metric(&c, ACCEPTED).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_a_replica_with_other_trust_or_without_keys_never_resumes() {
    other_trust_or_no_keys_never_resumes("1.3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_a_replica_with_other_trust_or_without_keys_never_resumes() {
    other_trust_or_no_keys_never_resumes("1.2").await;
}

/// How long the first connections get before the client certificate expires; they need a
/// fraction of it, the rest is room for a loaded machine.
const WINDOW: Duration = Duration::from_secs(8);

async fn an_expired_client_never_resumes_also_chained(version: &str) {
    let pki = Pki::new();
    let not_after = SystemTime::now() + WINDOW;
    let short = Ca::new("Short Issuer")
        .issue(&pki::LeafSpec::client("short-lived").not_after_time(not_after));
    let leaf = pki.write_leaf(&short, "short");
    // The leaf pinned as its own trust, as the Steadybit Helm chart does.
    let keys = write_keys(&pki.path("tickets"), "..g1", &[&key()]);
    let pinned = leaf.0.display().to_string();
    let a = Extension::start(&vars(&pki, &pinned, Some(&keys))).await;
    let b = Extension::start(&vars(&pki, &pinned, Some(&keys))).await;
    let mut client = Client::start(&pki, &leaf, version);

    assert_eq!(client.connect(a.port, "-", "s1").await, FULL);
    // Chained on the other replica: B's ticket inherits the leaf's notAfter.
    assert_eq!(client.connect(b.port, "s1", "s2").await, RESUMED);
    assert!(
        SystemTime::now() < not_after,
        "the machine was too slow to connect twice within the certificate's validity"
    );
    // Waiting for the wall clock to pass the certificate's notAfter, not for an event.
    let past = not_after + Duration::from_millis(1500);
    if let Ok(left) = past.duration_since(SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
    let line = client.connect(a.port, "s2", "-").await;
    assert!(
        line.starts_with("ERROR") && line.to_lowercase().contains("certificate expired"),
        "past the bound a full handshake decides, and refuses: {line}"
    );
    assert_eq!(metric(&a, &refused("bound_passed")).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_an_expired_client_never_resumes_on_any_replica_also_chained() {
    an_expired_client_never_resumes_also_chained("1.3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_an_expired_client_never_resumes_on_any_replica_also_chained() {
    an_expired_client_never_resumes_also_chained("1.2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_applied_on_the_replicas_ends_the_tickets_issued_before() {
    let pki = Pki::new();
    let agent = pki.ca.client("steadybit-agent");
    let leaf = pki.write_leaf(&agent, "agent");
    let keys = write_keys(&pki.path("tickets"), "..g1", &[&key()]);
    let crls = pki.path("crls");
    pki::write_secret_dir(&crls, &[("ca.crl", &pki.ca.crl(&[]))]);
    let ca = pki.ca_path.display().to_string();
    let mut env = vars(&pki, &ca, Some(&keys));
    env.push(("TOWER_MTLS_CLIENT_CRLS", crls.display().to_string()));
    let a = Extension::start(&env).await;
    let b = Extension::start(&env).await;
    let mut client = Client::start(&pki, &leaf, "1.3");
    assert_eq!(client.connect(a.port, "-", "s1").await, FULL);
    assert_eq!(client.connect(b.port, "s1", "s2").await, RESUMED);

    pki::write_secret_generation(
        &crls,
        "..2026_11_28_00_00_00.000000001",
        &[("ca.crl", &pki.ca.crl(&[&agent]))],
    );
    trust_reloaded(&a, 1).await;
    trust_reloaded(&b, 1).await;
    let line = client.connect(b.port, "s2", "-").await;
    assert!(
        line.starts_with("ERROR") && line.to_lowercase().contains("revoked"),
        "after the revocation a full handshake decides, and refuses: {line}"
    );
    assert_eq!(metric(&b, &refused("other_trust")).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_key_file_stops_startup_naming_file_and_line() {
    let pki = Pki::new();
    let keys = pki.path("ticket-keys");
    let secret_looking = "bm90LWEta2V5LWJ1dC1sb29rcy1saWtlLW9uZQ";
    std::fs::write(&keys, format!("{}\n\n{secret_looking}\n", key())).expect("write");
    let ca = pki.ca_path.display().to_string();
    let output = Command::new(example_binary("extension"))
        .env_clear()
        .env("STEADYBIT_EXTENSION_PORT", "0")
        .env("STEADYBIT_EXTENSION_HEALTH_PORT", "0")
        .envs(vars(&pki, &ca, Some(&keys)))
        .output()
        .await
        .expect("run extension");
    assert_eq!(output.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        all.contains(&format!("{}: line 3: not valid base64", keys.display())),
        "{all}"
    );
    assert!(!all.contains(secret_looking), "never echoes a line: {all}");

    std::fs::write(&keys, "\n\n").expect("write");
    let output = Command::new(example_binary("extension"))
        .env_clear()
        .env("STEADYBIT_EXTENSION_PORT", "0")
        .envs(vars(&pki, &ca, Some(&keys)))
        .output()
        .await
        .expect("run extension");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no session ticket key"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_is_reported_and_a_malformed_key_file_is_refused_by_a_reload() {
    let pki = Pki::new();
    let keys = pki.path("ticket-keys");
    let (old, new) = (key(), key());
    std::fs::write(&keys, format!("{old}\n")).expect("write");
    let tls = pki
        .builder()
        .client_trust(&pki.ca_path)
        .session_ticket_keys(&keys)
        .build()
        .expect("config");
    assert!(tls.watched_paths().contains(&keys));

    std::fs::write(&keys, format!("{new}\n{old}\n")).expect("write");
    match tls.reload().await {
        tower_mtls::tls::ReloadOutcome::Applied(report) => assert!(
            report.session_ticket_keys_changed && !report.trust_changed && !report.identity_changed,
            "{report:?}"
        ),
        other => panic!("the rotation applies: {other:?}"),
    }

    std::fs::write(&keys, format!("{new}\n{}\n", &old[..20])).expect("write");
    match tls.reload().await {
        tower_mtls::tls::ReloadOutcome::Rejected(error) => {
            let message = error.to_string();
            assert!(
                matches!(
                    *error,
                    tower_mtls::ConfigError::InvalidSessionTicketKey { line: 2, .. }
                ),
                "{message}"
            );
            assert!(
                !message.contains(&old[..20]) && !message.contains(&new),
                "{message}"
            );
        }
        other => panic!("a malformed key file is refused: {other:?}"),
    }
    assert_eq!(tls.session_ticket_stats().refused_total(), 0);
}

#[test]
fn the_variable_needs_tls() {
    let lookup =
        |name: &str| (name == "TOWER_MTLS_SESSION_TICKET_KEYS").then(|| "/etc/keys".to_owned());
    let error = tower_mtls::steadybit::ExtensionEnv::from_lookup(lookup)
        .map(|env| env.tls)
        .expect_err("refused");
    assert!(
        error
            .to_string()
            .starts_with("TOWER_MTLS_SESSION_TICKET_KEYS: set, but TLS is not configured"),
        "{error}"
    );
}

#[derive(Default, Clone)]
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<tower_mtls::tls::HandshakeEvent>>>);

impl tower_mtls::tls::TlsObserver for Recorder {
    fn on_handshake(&self, event: &tower_mtls::tls::HandshakeEvent) {
        self.0.lock().expect("lock").push(event.clone());
    }
}

impl Recorder {
    /// The last handshake seen: the observer is told before the server reads a request, so
    /// it has been told once the client has its answer.
    fn last(&self) -> tower_mtls::tls::HandshakeEvent {
        self.0
            .lock()
            .expect("lock")
            .last()
            .expect("a handshake")
            .clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_and_counters_see_resumptions_and_refused_tickets() {
    use tower_mtls::MtlsAcceptor;
    use tower_mtls::tls::TicketRefusal;

    let pki = Pki::new();
    let keys = pki.path("ticket-keys");
    std::fs::write(&keys, key()).expect("write");
    let build = |wider: bool| {
        let mut builder = pki
            .builder()
            .client_trust(&pki.ca_path)
            .session_ticket_keys(&keys);
        if wider {
            builder = builder.client_trust_pem(Ca::new("Other CA").cert_pem);
        }
        builder.build().expect("config")
    };
    let a = TestServer::start(MtlsAcceptor::new(build(false))).await;
    let (b_tls, b_seen) = (build(false), Recorder::default());
    let b_acceptor = MtlsAcceptor::new(b_tls.clone()).observer(b_seen.clone());
    let b = TestServer::start(b_acceptor.clone()).await;
    let c_seen = Recorder::default();
    let c = TestServer::start(MtlsAcceptor::new(build(true)).observer(c_seen.clone())).await;

    // One client, one session cache, one server name: a Service in front of three pods.
    let client = pki.client(Some(&pki.ca.client("steadybit-agent")));
    let mut resumed = Vec::new();
    for server in [&a, &b, &c] {
        let conn = client
            .connect(server.addr, "localhost")
            .await
            .expect("connect");
        resumed.push(conn.is_resumed());
        // Reading the answer also reads the tickets sent after the handshake.
        conn.get("/").await.expect("served");
    }
    assert_eq!(resumed, [false, true, false]);
    let on_b = b_seen.last();
    assert!(on_b.resumed && on_b.ticket_refused.is_none(), "{on_b:?}");
    assert_eq!(b_acceptor.stats().handshakes_resumed, 1);
    assert_eq!(b_tls.session_ticket_stats().accepted, 1);
    let on_c = c_seen.last();
    assert!(!on_c.resumed, "{on_c:?}");
    assert_eq!(on_c.ticket_refused, Some(TicketRefusal::OtherTrust));
}

/// A Kubernetes Service in miniature: one address, each new connection to the next replica.
async fn round_robin(backends: [u16; 2]) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let backend = backends[n % 2];
            tokio::spawn(async move {
                if let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    port
}

const JAVA_CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/ResumeAcross.java"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jvm_client_behind_one_service_address_resumes_on_both_replicas() {
    let pki = Pki::new();
    let agent = pki.ca.client("steadybit-agent");
    let (cert, key_file) = pki.write_leaf(&agent, "agent");
    let keystore = pki.path("agent.p12");
    let status = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:changeit", "-in"])
        .arg(&cert)
        .arg("-inkey")
        .arg(&key_file)
        .arg("-out")
        .arg(&keystore)
        .status()
        .expect("openssl");
    assert!(status.success());
    let keys = write_keys(&pki.path("tickets"), "..g1", &[&key()]);
    let ca = pki.ca_path.display().to_string();
    let a = Extension::start(&vars(&pki, &ca, Some(&keys))).await;
    let b = Extension::start(&vars(&pki, &ca, Some(&keys))).await;
    let service = round_robin([a.port, b.port]).await;

    let out = tokio::time::timeout(
        PATIENCE * 4,
        Command::new("java")
            .arg(JAVA_CLIENT)
            .arg(format!("https://127.0.0.1:{service}/"))
            .arg(&pki.ca_path)
            .arg(&keystore)
            .arg("changeit")
            .arg("4")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("java finishes")
    .expect("java runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let resumed = r#"tower_mtls_sessions_total{kind="resumed"}"#;
    let full = r#"tower_mtls_sessions_total{kind="full"}"#;
    // A, B, A, B: one full handshake, then three resumptions, two of them on B.
    assert_eq!(
        (metric(&a, full).await, metric(&a, resumed).await),
        (1, 1),
        "{text}"
    );
    assert_eq!(
        (metric(&b, full).await, metric(&b, resumed).await),
        (0, 2),
        "{text}"
    );
}
