//! Faults on purpose: the `extension` example killed mid-load, its secret files failing under the
//! watch, its process out of file descriptors, and clients that stall mid-request. Each fault
//! has a defined outcome, and the server serves again as soon as the fault is gone.
//!
//! Real processes where the fault is a process's (SIGKILL, RLIMIT_NOFILE, another uid); real
//! file systems where it is the disk's (a small tmpfs filled up). Bounded in time and count,
//! loopback only; every wait polls for a condition under a deadline.

use tower_mtls_test_kit as support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::extension::{Extension, metric, scrape};
use support::pki::{write_secret_dir, write_secret_generation};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_mtls::{MtlsAcceptor, MtlsServer};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls `check` every 20 ms until it holds; panics with `what` after [`PATIENCE`].
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One plain-HTTP request over a Unix socket; the status code.
async fn unix_get(socket: &Path, path: &str) -> std::io::Result<u16> {
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    Ok(text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

/// Requests in a loop from four tasks until `stop`, counting the answered ones.
fn load<F, Fut>(request: F) -> (Arc<AtomicBool>, Arc<AtomicU64>)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let (stop, served) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    for _ in 0..4 {
        let (stop, served, request) = (stop.clone(), served.clone(), request.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + PATIENCE;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if request().await {
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
    }
    (stop, served)
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_load_the_extension_restarts_on_its_stale_unix_socket_and_serves_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("run/extension.sock");
    let vars = [(
        "STEADYBIT_EXTENSION_UNIX_SOCKET",
        socket.display().to_string(),
    )];
    let ext = Extension::start_unix(&vars).await;
    let target = socket.clone();
    let (stop, served) = load(move || {
        let target = target.clone();
        async move { matches!(unix_get(&target, "/").await, Ok(200)) }
    });
    until("requests are served", || async {
        served.load(Ordering::Relaxed) >= 50
    })
    .await;

    ext.signal("-KILL");
    let (code, _, _) = ext.wait().await;
    assert_eq!(code, None, "killed by the signal");
    // SIGKILL runs no destructor: the socket file is left behind, and nothing listens on it.
    assert!(is_socket(&socket), "the stale socket is left");
    assert!(unix_get(&socket, "/").await.is_err(), "nobody listens");
    stop.store(true, Ordering::Relaxed);

    // Nothing to repair: the new process replaces the stale socket and serves its first request.
    let ext = Extension::start_unix(&vars).await;
    assert_eq!(
        unix_get(&socket, "/health/readiness").await.expect("probe"),
        200
    );
    assert_eq!(unix_get(&socket, "/").await.expect("request"), 200);
    let (code, log) = ext.terminate().await;
    assert_eq!(code, Some(143), "{log:#?}");
    assert!(!socket.exists(), "a clean stop removes the socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_mtls_load_the_extension_restarts_on_the_same_port_and_serves_at_once() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let mut vars = tls_vars(
        &pki.server_cert,
        &pki.server_key,
        &pki.ca_path.display().to_string(),
    );
    let ext = Extension::start(&vars).await;
    let port = ext.port;
    let client = pki.client(Some(&agent));
    let (stop, served) = load(move || {
        let client = client.clone();
        async move {
            client
                .get(addr(port), "localhost", "/")
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    });
    until("mTLS requests are served", || async {
        served.load(Ordering::Relaxed) >= 20
    })
    .await;
    ext.signal("-KILL");
    let (code, _, _) = ext.wait().await;
    assert_eq!(code, None);
    stop.store(true, Ordering::Relaxed);

    // The killed process's connections linger in TIME_WAIT on this port: binding it again must
    // still work at once (SO_REUSEADDR).
    vars.push(("STEADYBIT_EXTENSION_PORT", port.to_string()));
    let ext = Extension::start(&vars).await;
    assert_eq!(ext.port, port);
    let response = pki
        .client(Some(&agent))
        .get(addr(port), "localhost", "/")
        .await
        .expect("served at once");
    assert_eq!(response.status(), 200);
    let (code, log) = ext.terminate().await;
    assert_eq!(code, Some(143), "{log:#?}");
}

fn tls_vars(cert: &Path, key: &Path, cas: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "STEADYBIT_EXTENSION_TLS_SERVER_CERT",
            cert.display().to_string(),
        ),
        (
            "STEADYBIT_EXTENSION_TLS_SERVER_KEY",
            key.display().to_string(),
        ),
        ("STEADYBIT_EXTENSION_TLS_CLIENT_CAS", cas.to_owned()),
    ]
}

/// The reload metrics of a running extension: (applied, rejected, the rejected gauge).
async fn reloads(ext: &Extension) -> (f64, f64, f64) {
    let text = scrape(ext.health_port).await;
    (
        metric(&text, "tower_mtls_reloads_total", &[("outcome", "applied")]),
        metric(
            &text,
            "tower_mtls_reloads_total",
            &[("outcome", "rejected")],
        ),
        metric(&text, "tower_mtls_reload_rejected", &[]),
    )
}

/// A new connection from `agent` gets a 200; returns the server certificate it was shown.
async fn serves(pki: &Pki, agent: &Leaf, port: u16) -> Vec<u8> {
    let conn = pki
        .client(Some(agent))
        .connect(addr(port), "localhost")
        .await
        .expect("handshake with the configuration in use");
    assert_eq!(conn.get("/").await.expect("request").status(), 200);
    conn.server_certificates()[0].as_ref().to_vec()
}

/// The extension rejects the files on disk (counted once, the gauge up, an error logged), and
/// keeps serving with the last good configuration.
async fn rejected_and_still_serving(
    ext: &Extension,
    pki: &Pki,
    agent: &Leaf,
    before: (f64, f64, f64),
    reason: &str,
) {
    until("the reload is rejected", || async {
        let (_, rejected, gauge) = reloads(ext).await;
        rejected == before.1 + 1.0 && gauge == 1.0
    })
    .await;
    let lines = ext.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("keeping the previous configuration")
                && l.contains("ERROR")
                && l.contains(reason)),
        "{lines:#?}"
    );
    assert_eq!(serves(pki, agent, ext.port).await, pki.server.der.as_ref());
    assert_eq!(reloads(ext).await.0, before.0, "nothing applied");
}

/// The server's secret as a kubelet mounts it, under `dir`.
fn server_secret(pki: &Pki, dir: &Path) -> (PathBuf, PathBuf) {
    write_secret_dir(
        dir,
        &[
            ("tls.crt", &pki.server.chain_pem),
            ("tls.key", &pki.server.key_pem),
        ],
    );
    (dir.join("tls.crt"), dir.join("tls.key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_secret_directory_keeps_the_last_good_configuration_until_it_comes_back() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let secret = pki.path("server-secret");
    let (cert, key) = server_secret(&pki, &secret);
    let ext = Extension::start(&tls_vars(&cert, &key, &pki.ca_path.display().to_string())).await;
    let before = reloads(&ext).await;

    std::fs::remove_dir_all(&secret).expect("remove the secret directory");
    rejected_and_still_serving(&ext, &pki, &agent, before, "no such file or directory").await;

    // The secret comes back, rotated: applied, the gauge down, the new certificate served.
    let rotated = pki.ca.server();
    write_secret_generation(
        &secret,
        "..2026_12_07_10_00_00.000000001",
        &[
            ("tls.crt", &rotated.chain_pem),
            ("tls.key", &rotated.key_pem),
        ],
    );
    until("the secret is back and applied", || async {
        let (applied, _, gauge) = reloads(&ext).await;
        applied == before.0 + 1.0 && gauge == 0.0
    })
    .await;
    assert_eq!(serves(&pki, &agent, ext.port).await, rotated.der.as_ref());
    let (code, log) = ext.terminate().await;
    assert_eq!(code, Some(143), "{log:#?}");
}

/// The effective uid of this process.
fn euid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1)?.parse().ok())
        })
        .expect("Uid in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_key_keeps_the_last_good_configuration_until_it_is_readable_again() {
    use std::os::unix::fs::PermissionsExt;
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let secret = pki.path("server-secret");
    let (cert, key) = server_secret(&pki, &secret);
    // Root reads a file whatever its mode says, so as root the extension runs as `nobody`
    // (setpriv, util-linux): then a mode of 000 is a real EACCES, the error a mis-set
    // `defaultMode` or fsGroup gives a pod. Everything on the way stays readable to it.
    let wrapper: &[&str] = if euid() == 0 {
        &[
            "/usr/bin/setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ]
    } else {
        &[]
    };
    std::fs::set_permissions(pki.dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let ext = Extension::start_wrapped(
        wrapper,
        &tls_vars(&cert, &key, &pki.ca_path.display().to_string()),
    )
    .await;
    let before = reloads(&ext).await;
    let real_key = std::fs::canonicalize(&key).expect("the key behind ..data");

    std::fs::set_permissions(&real_key, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    rejected_and_still_serving(&ext, &pki, &agent, before, "Permission denied").await;

    // Readable again, unchanged: back to the configuration in use, nothing to apply.
    std::fs::set_permissions(&real_key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    until("the gauge is down again", || async {
        reloads(&ext).await.2 == 0.0
    })
    .await;
    assert!(
        ext.lines()
            .iter()
            .any(|l| l.contains("TLS files are back to the configuration in use")),
        "{:#?}",
        ext.lines()
    );
    assert_eq!(reloads(&ext).await.0, before.0);
    assert_eq!(
        serves(&pki, &agent, ext.port).await,
        pki.server.der.as_ref()
    );
    let (code, log) = ext.terminate().await;
    assert_eq!(code, Some(143), "{log:#?}");
}

/// A small tmpfs, unmounted on drop; `None` where this sandbox may not mount.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).expect("mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_full_mid_write_keeps_the_last_good_configuration_until_the_files_are_whole() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let mount = pki.path("disk");
    let disk = SmallDisk::mount(&mount, "64k");
    let (cert, key) = (mount.join("tls.crt"), mount.join("tls.key"));
    std::fs::write(&cert, &pki.server.chain_pem).expect("write");
    std::fs::write(&key, &pki.server.key_pem).expect("write");
    let ext = Extension::start(&tls_vars(&cert, &key, &pki.ca_path.display().to_string())).await;
    let before = reloads(&ext).await;

    // A rotation written in place (no ..data swap) onto a disk that fills up on the way: the
    // certificate file keeps only what fitted.
    let rotated = pki.ca.server();
    let long_chain = format!("{}{}", rotated.chain_pem, pki.ca.cert_pem.repeat(12));
    let filler = mount.join("filler");
    match &disk {
        Some(_) => {
            let mut file = std::fs::File::create(&filler).expect("filler");
            let chunk = [0u8; 4096];
            while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
            let written = std::fs::write(&cert, &long_chain);
            let error = written.expect_err("the disk is full");
            assert_eq!(error.raw_os_error(), Some(28), "ENOSPC: {error}");
        }
        None => {
            // This sandbox may not mount: leave what a full disk leaves, a truncated file.
            eprintln!("no tmpfs here: simulating the disk-full write with a truncated one");
            std::fs::write(&cert, &long_chain.as_bytes()[..4096]).expect("write");
        }
    }
    let on_disk = std::fs::read(&cert).expect("read");
    assert!(on_disk.len() < long_chain.len(), "{} bytes", on_disk.len());
    rejected_and_still_serving(&ext, &pki, &agent, before, "").await;

    // Space again, and the writer finishes its job: the rotation is applied.
    let _ = std::fs::remove_file(&filler);
    std::fs::write(&cert, &rotated.chain_pem).expect("write");
    std::fs::write(&key, &rotated.key_pem).expect("write");
    until("the whole files are applied", || async {
        let (applied, _, gauge) = reloads(&ext).await;
        applied == before.0 + 1.0 && gauge == 0.0
    })
    .await;
    assert_eq!(serves(&pki, &agent, ext.port).await, rotated.der.as_ref());
    let (code, log) = ext.terminate().await;
    assert_eq!(code, Some(143), "{log:#?}");
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_accept_loop_backs_off_logs_once_and_serves_afterwards() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    // 64 file descriptors in all: a few dozen connections exhaust them.
    let ext = Extension::start_wrapped(
        &["/usr/bin/prlimit", "--nofile=64:64", "--"],
        &tls_vars(
            &pki.server_cert,
            &pki.server_key,
            &pki.ca_path.display().to_string(),
        ),
    )
    .await;
    let before = reloads(&ext).await;
    assert_eq!(
        serves(&pki, &agent, ext.port).await,
        pki.server.der.as_ref()
    );

    // A storm of silent connections: the server accepts until EMFILE, the kernel queues the
    // rest in the listen backlog.
    let started = Instant::now();
    let mut storm = Vec::new();
    for _ in 0..200 {
        storm.push(TcpStream::connect(addr(ext.port)).await.expect("connect"));
    }
    let accept_errors = |ext: &Extension| {
        ext.lines()
            .iter()
            .filter(|l| l.contains("accept failed"))
            .count()
    };
    until("the server runs out of file descriptors", || async {
        accept_errors(&ext) >= 1
    })
    .await;
    // Out of descriptors for three seconds more: thirty back-offs of 100 ms, and more than two
    // polls of the watch.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lines = ext.lines();
    let logged = accept_errors(&ext);
    // One line per 10 s at most, however many attempts failed since the storm began.
    let allowed = 1 + started.elapsed().as_secs() as usize / 10;
    assert!(
        logged <= allowed,
        "{logged} accept-error lines in {:?}: {lines:#?}",
        started.elapsed()
    );
    assert!(
        lines.iter().any(|l| l.contains("Too many open files")),
        "{lines:#?}"
    );
    drop(storm);

    // Served again. The watch could not open the files for seconds, but they never changed:
    // no rejected reload is counted or reported.
    let response = pki
        .client(Some(&agent))
        .get(addr(ext.port), "localhost", "/")
        .await
        .expect("served after the storm");
    assert_eq!(response.status(), 200);
    assert_eq!(reloads(&ext).await, before, "{:#?}", ext.lines());
    assert!(
        !ext.lines()
            .iter()
            .any(|l| l.contains("keeping the previous configuration")),
        "{:#?}",
        ext.lines()
    );
    let (code, log) = ext.terminate().await;
    assert_eq!(code, Some(143), "{log:#?}");
}

/// The kernel's cap on a listen backlog (`net.core.somaxconn`, 4096 by default since Linux
/// 5.4): the bursts below stay within it.
fn somaxconn() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_waits_in_the_listen_backlog_not_in_syn_retransmits() {
    // A server that accepts nothing yet (busy, or out of descriptors as above): the kernel
    // completes connections into the listen backlog. Beyond it, Linux drops the SYNs, and
    // those clients wait for retransmits (1 s, 3 s, 7 s, …) or never connect at all.
    let server = MtlsServer::bind("127.0.0.1:0").await.expect("bind");
    let tower_mtls::serve::ListenAddr::Tcp(at) = server.local_addr().expect("addr") else {
        panic!("a TCP listener");
    };
    let mut burst = Vec::new();
    for i in 0..somaxconn().min(600) {
        let connected = tokio::time::timeout(PATIENCE, TcpStream::connect(at)).await;
        burst.push(
            connected
                .unwrap_or_else(|_| panic!("connection {i} still waits for the kernel"))
                .expect("connect"),
        );
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connections_on_a_unix_socket_waits_in_the_backlog_not_refused() {
    // On a Unix socket a full backlog is worse than on TCP: the client's connect fails at once
    // (EAGAIN), it is not retried by the kernel. (tokio's Unix listener already listens with
    // the kernel's maximum on Linux; this keeps it so.)
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("extension.sock");
    let server = MtlsServer::bind_unix(&socket).await.expect("bind");
    let mut burst = Vec::new();
    for i in 0..somaxconn().min(600) {
        let connected = tokio::time::timeout(PATIENCE, tokio::net::UnixStream::connect(&socket))
            .await
            .unwrap_or_else(|_| panic!("connection {i} still waits"));
        burst.push(connected.unwrap_or_else(|e| panic!("connection {i}: {e}")));
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_stalled_mid_request_hold_their_connection_never_a_handshake_slot() {
    use http_body_util::BodyExt;
    use tower_mtls::rustls;
    let pki = Pki::new();
    let acceptor = MtlsAcceptor::new(pki.required_config()).max_concurrent_handshakes(2);
    // The app reads the whole body: a client that stops sending it stalls the request.
    let app = tower::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
        let body = req.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>(json_response(serde_json::json!({ "read": body.len() })))
    });
    let server = TestServer::spawn(
        MtlsServer::bind("127.0.0.1:0").await.expect("bind"),
        Some(acceptor.clone()),
        app,
    );

    // Three times as many stalled clients as handshake slots, half in the request head, half
    // in the body.
    let leaf = pki.ca.client("staller");
    let mut config = (**pki.client(Some(&leaf)).tls_config()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut stalled = Vec::new();
    for i in 0..6 {
        let tcp = TcpStream::connect(server.addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut tls = connector.connect(name, tcp).await.expect("handshake");
        let partial: &[u8] = if i % 2 == 0 {
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Stalled: "
        } else {
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nonly a part"
        };
        tls.write_all(partial).await.expect("write");
        tls.flush().await.expect("flush");
        stalled.push(tls);
    }
    until("the stalled connections are established", || async {
        acceptor.stats().active_connections == 6
    })
    .await;
    assert_eq!(
        acceptor.stats().handshakes_in_progress,
        0,
        "{}",
        acceptor.stats()
    );

    // Both handshake slots are free: new clients get in while the stalled ones wait.
    for i in 0..4 {
        let response = pki
            .client(Some(&pki.ca.client("fresh")))
            .get(server.addr, "localhost", &format!("/fresh/{i}"))
            .await
            .expect("served next to the stalled clients");
        assert_eq!(response.status(), 200);
    }
    assert_eq!(acceptor.stats().handshakes_in_progress, 0);
    assert!(
        acceptor.stats().active_connections >= 6,
        "{}",
        acceptor.stats()
    );
    drop(stalled);
    server.stop().await;
}
