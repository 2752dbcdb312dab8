//! A soak with rotation: the `extension` example, as a real process, holds thousands of idle
//! mutual-TLS connections while client processes keep full handshakes, resumptions and
//! keep-alive requests going, and its server certificate, client CA bundle and CRL are rotated
//! every few seconds — kubelet-style `..data` swaps and non-atomic in-place writes in turn.
//!
//! ```text
//! cargo run --release -p tower-mtls-bench --bin soak -- [--duration 10m] [--idle 10000]
//!     [--rotate-every 3s] [--warmup 60s] [--max-rss-growth-mib 32] [--fd-slack 8]
//!     [--extension PATH] [--keep DIR] [--json FILE]
//! ```
//!
//! The server under test is the `extension` example (built on demand next to this binary):
//! its configuration comes from the Steadybit variables and the runtime's
//! `TlsConfig::watch`, exactly the reload path a deployed extension runs, and as a process of
//! its own its resident memory (`/proc/PID/status` VmRSS) and file descriptors (`/proc/PID/fd`)
//! are the server's alone. The clients are this binary in client mode (`soak client ROLE …`),
//! one process per role:
//!
//! * `idle` (one process per 5,000): opens its share of the idle connections, half HTTP/1.1 and
//!   half HTTP/2, one request each. hyper closes an HTTP/1.1 connection that sends no request
//!   head for the header-read timeout (30 s), so each HTTP/1.1 one makes a request every 20 s;
//!   the HTTP/2 ones stay silent. At the end every one of them must still answer.
//! * `stream`: four keep-alive connections, a request every 20 ms on each; their latencies are
//!   split into those that started while a reload was under way — from 1.5 s before an applied
//!   reload's log line to 0.5 s after it: the watch (1 s) reads and builds a change at two
//!   checks in a row and swaps it in at the second — and the others.
//! * `handshake`: full handshakes (no resumption), two at a time, paced.
//! * `resume`: reconnects with a session cache, two at a time, paced; counts resumed and full
//!   handshakes (every reload starts a fresh session cache, so some must be full).
//! * `revoked`: a client whose certificate every CRL revokes; each attempt must be refused with
//!   `certificate_revoked`. Any other outcome is a failure.
//!
//! It fails (exit 1) on any request or handshake that failed other than the revoked client's,
//! on resident-memory growth after the warm-up beyond `--max-rss-growth-mib` (median of the
//! last tenth of the samples against the first tenth), on file descriptors not back to the
//! baseline (+ `--fd-slack`) once the clients are gone, on connections or handshakes the
//! server still counts open then, and on rotations that were never applied. Short mode for a
//! test: `--duration 20s --idle 300 --warmup 5s`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tower_mtls::rustls::AlertDescription;
use tower_mtls_test_kit::client::{Client, ClientError, Connection};
use tower_mtls_test_kit::extension::http_get;
use tower_mtls_test_kit::pki::{Ca, CrlSpec, write_secret_generation};

/// How long a single client operation may take before it counts as failed.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections per `idle` client process.
const IDLE_PER_PROCESS: usize = 5_000;
/// An HTTP/1.1 idle connection's request interval (below hyper's 30 s header-read timeout).
const TOUCH_EVERY: Duration = Duration::from_secs(20);
/// A stream request counts as "during a reload" when it starts this long before an applied
/// reload is logged (the check before it read and built the same files) …
const RELOAD_BEFORE: Duration = Duration::from_millis(1500);
/// … or this long after it.
const RELOAD_AFTER: Duration = Duration::from_millis(500);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = if args.first().map(String::as_str) == Some("client") {
        runtime.block_on(client_main(&args[1..]))
    } else {
        runtime.block_on(coordinator(&args))
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("soak: {error}");
            ExitCode::from(2)
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `10m`, `30s`, `1h`, `500ms` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, BoxError> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: f64 = number.parse().map_err(|_| format!("bad duration {text}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in {text}").into()),
    };
    Ok(Duration::from_secs_f64(secs))
}

// --- client mode ---------------------------------------------------------------------------

/// What a client process found; written as JSON to its `--out` file.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    resumed: AtomicU64,
    full: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
    samples: std::sync::Mutex<Vec<(u64, u64)>>,
}

impl Tally {
    fn fail(&self, what: impl Into<String>) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().expect("errors");
        if errors.len() < 20 {
            errors.push(what.into());
        }
    }

    fn json(&self, role: &str) -> Value {
        json!({
            "role": role,
            "ok": self.ok.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "refused": self.refused.load(Ordering::Relaxed),
            "resumed": self.resumed.load(Ordering::Relaxed),
            "full": self.full.load(Ordering::Relaxed),
            "errors": *self.errors.lock().expect("errors"),
            "samples": *self.samples.lock().expect("samples"),
        })
    }
}

struct ClientArgs {
    role: String,
    addr: SocketAddr,
    dir: PathBuf,
    until_ms: u64,
    stop_file: Option<PathBuf>,
    count: usize,
    out: PathBuf,
}

fn parse_client_args(args: &[String]) -> Result<ClientArgs, BoxError> {
    let mut it = args.iter();
    let role = it.next().ok_or("client ROLE")?.clone();
    let mut parsed = ClientArgs {
        role,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        dir: PathBuf::new(),
        until_ms: 0,
        stop_file: None,
        count: 0,
        out: PathBuf::new(),
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => parsed.addr = value.parse()?,
            "--dir" => parsed.dir = value.into(),
            "--until" => parsed.until_ms = value.parse()?,
            "--stop-file" => parsed.stop_file = Some(value.into()),
            "--count" => parsed.count = value.parse()?,
            "--out" => parsed.out = value.into(),
            other => return Err(format!("unknown client argument {other}").into()),
        }
    }
    Ok(parsed)
}

/// A client presenting `name`'s certificate (from the soak's directory), trusting the server CA.
fn client(dir: &Path, name: &str, alpn: &[u8], resumption: bool) -> Result<Client, BoxError> {
    let mut builder = Client::builder()
        .trust_server_ca_file(dir.join("server-ca.crt"))
        .identity_files(
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        )
        .alpn_protocols(vec![alpn.to_vec()]);
    if !resumption {
        builder = builder.no_resumption();
    }
    Ok(builder.build()?)
}

async fn timed<T>(
    future: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Result<T, String> {
    match tokio::time::timeout(OP_TIMEOUT, future).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {OP_TIMEOUT:?}")),
    }
}

async fn get(conn: &Connection) -> Result<(), String> {
    let response = timed(conn.get("/")).await?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", response.status()))
    }
}

async fn connect(client: &Client, addr: SocketAddr) -> Result<Connection, String> {
    timed(client.connect(addr, "localhost")).await
}

async fn client_main(args: &[String]) -> Result<bool, BoxError> {
    let args = parse_client_args(args)?;
    let tally = Arc::new(Tally::default());
    let until = {
        let left = args.until_ms.saturating_sub(unix_ms());
        tokio::time::Instant::now() + Duration::from_millis(left)
    };
    match args.role.as_str() {
        "idle" => idle(&args, until, tally.clone()).await?,
        "stream" => stream(&args, until, tally.clone()).await?,
        "handshake" | "resume" => {
            let resume = args.role == "resume";
            let client = client(&args.dir, "agent", b"http/1.1", resume)?;
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..2 {
                let (client, tally, addr) = (client.clone(), tally.clone(), args.addr);
                workers.spawn(async move {
                    let mut pace = tokio::time::interval(Duration::from_millis(25));
                    while tokio::time::Instant::now() < until {
                        pace.tick().await;
                        match connect(&client, addr).await {
                            Ok(conn) => {
                                let counter = if conn.is_resumed() {
                                    &tally.resumed
                                } else {
                                    &tally.full
                                };
                                counter.fetch_add(1, Ordering::Relaxed);
                                match get(&conn).await {
                                    Ok(()) => drop(tally.ok.fetch_add(1, Ordering::Relaxed)),
                                    Err(e) => tally.fail(format!("request: {e}")),
                                }
                            }
                            Err(e) => tally.fail(format!("handshake: {e}")),
                        }
                    }
                });
            }
            while workers.join_next().await.is_some() {}
        }
        "revoked" => {
            let client = client(&args.dir, "revoked", b"http/1.1", false)?;
            let mut pace = tokio::time::interval(Duration::from_millis(200));
            while tokio::time::Instant::now() < until {
                pace.tick().await;
                let attempt = async {
                    let conn = client.connect(args.addr, "localhost").await?;
                    conn.get("/").await
                };
                match tokio::time::timeout(OP_TIMEOUT, attempt).await {
                    Ok(Ok(response)) => tally.fail(format!(
                        "a revoked certificate was accepted: HTTP {}",
                        response.status()
                    )),
                    Ok(Err(e)) if e.alert() == Some(AlertDescription::CertificateRevoked) => {
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => tally.fail(format!("revoked client, wrong refusal: {e}")),
                    Err(_) => tally.fail("revoked client: no answer"),
                }
            }
        }
        other => return Err(format!("unknown role {other}").into()),
    }
    let json = tally.json(&args.role);
    std::fs::write(&args.out, serde_json::to_vec(&json)?)?;
    Ok(tally.failed.load(Ordering::Relaxed) == 0)
}

/// Opens `count` connections (half HTTP/1.1, half HTTP/2), holds them until the stop file
/// appears (or `until`), touching the HTTP/1.1 ones every [`TOUCH_EVERY`], then checks each.
async fn idle(
    args: &ClientArgs,
    until: tokio::time::Instant,
    tally: Arc<Tally>,
) -> Result<(), BoxError> {
    let h1 = client(&args.dir, "agent", b"http/1.1", false)?;
    let h2 = client(&args.dir, "agent", b"h2", false)?;
    let opening = Arc::new(tokio::sync::Semaphore::new(16));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let opened = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.count {
        let client = if i % 2 == 0 { h1.clone() } else { h2.clone() };
        let touch = i % 2 == 0;
        let (opening, tally, addr, opened) =
            (opening.clone(), tally.clone(), args.addr, opened.clone());
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let conn = {
                let Ok(_permit) = opening.acquire().await else {
                    return;
                };
                match connect(&client, addr).await {
                    Ok(conn) => conn,
                    Err(e) => return tally.fail(format!("idle handshake: {e}")),
                }
            };
            if let Err(e) = get(&conn).await {
                return tally.fail(format!("idle first request: {e}"));
            }
            opened.fetch_add(1, Ordering::Relaxed);
            loop {
                let next = tokio::time::Instant::now() + TOUCH_EVERY;
                tokio::select! {
                    _ = stop.changed() => break,
                    () = tokio::time::sleep_until(next), if touch => {
                        if let Err(e) = get(&conn).await {
                            return tally.fail(format!("idle HTTP/1.1 keep-alive request: {e}"));
                        }
                    }
                }
            }
            match get(&conn).await {
                Ok(()) => drop(tally.ok.fetch_add(1, Ordering::Relaxed)),
                Err(e) => tally.fail(format!("idle connection at the end: {e}")),
            }
        });
    }
    // Hold until told to stop: the stop file, or the deadline as a safety net.
    loop {
        let stop = args.stop_file.as_deref().is_some_and(Path::exists);
        if stop || tokio::time::Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Keep-alive requests on four connections, paced, with their latencies.
async fn stream(
    args: &ClientArgs,
    until: tokio::time::Instant,
    tally: Arc<Tally>,
) -> Result<(), BoxError> {
    let client = client(&args.dir, "agent", b"http/1.1", false)?;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, tally, addr) = (client.clone(), tally.clone(), args.addr);
        workers.spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_millis(20));
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut conn = None;
            while tokio::time::Instant::now() < until {
                pace.tick().await;
                if conn.is_none() {
                    match connect(&client, addr).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            tally.fail(format!("stream handshake: {e}"));
                            continue;
                        }
                    }
                }
                let Some(c) = &conn else { continue };
                let (at, start) = (unix_ms(), Instant::now());
                match get(c).await {
                    Ok(()) => {
                        let micros = start.elapsed().as_micros() as u64;
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                        tally.samples.lock().expect("samples").push((at, micros));
                    }
                    Err(e) => {
                        tally.fail(format!("keep-alive request: {e}"));
                        conn = None;
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    Ok(())
}

// --- coordinator ---------------------------------------------------------------------------

struct Settings {
    duration: Duration,
    idle: usize,
    rotate_every: Duration,
    warmup: Duration,
    max_rss_growth_mib: f64,
    fd_slack: usize,
    extension: Option<PathBuf>,
    keep: Option<PathBuf>,
    json: Option<PathBuf>,
}

const USAGE: &str = "usage: soak [--duration 10m] [--idle 10000] [--rotate-every 3s] \
    [--warmup 60s] [--max-rss-growth-mib 32] [--fd-slack 8] [--extension PATH] [--keep DIR] \
    [--json FILE]";

fn parse_settings(args: &[String]) -> Result<Settings, BoxError> {
    let mut s = Settings {
        duration: Duration::from_secs(600),
        idle: 10_000,
        rotate_every: Duration::from_secs(3),
        warmup: Duration::ZERO,
        max_rss_growth_mib: 32.0,
        fd_slack: 8,
        extension: None,
        keep: None,
        json: None,
    };
    let mut warmup = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--duration" => s.duration = parse_duration(value)?,
            "--idle" => s.idle = value.parse()?,
            "--rotate-every" => s.rotate_every = parse_duration(value)?,
            "--warmup" => warmup = Some(parse_duration(value)?),
            "--max-rss-growth-mib" => s.max_rss_growth_mib = value.parse()?,
            "--fd-slack" => s.fd_slack = value.parse()?,
            "--extension" => s.extension = Some(value.into()),
            "--keep" => s.keep = Some(value.into()),
            "--json" => s.json = Some(value.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    // A tenth of the run, at most a minute, by default.
    s.warmup = warmup.unwrap_or_else(|| (s.duration / 10).min(Duration::from_secs(60)));
    Ok(s)
}

/// The `extension` example next to this binary (`target/<profile>/examples/extension`),
/// built with the same profile when missing.
fn extension_binary() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().ok_or("no target dir")?;
    let binary = profile_dir.join("examples").join("extension");
    if !binary.exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
        cmd.args(["build", "-p", "tower-mtls", "--example", "extension"])
            .current_dir(root);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        if !cmd.status()?.success() {
            return Err("building the extension example failed".into());
        }
    }
    Ok(binary)
}

/// The soft open-file limit of this process.
fn nofile_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

/// `program` with at least `nofile` open files: through `prlimit` (util-linux) when this
/// process's own limit is lower.
fn command_with_nofile(program: &Path, nofile: u64) -> Command {
    if nofile_limit() >= nofile {
        Command::new(program)
    } else {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(program);
        cmd
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The sum of the samples of `name` whose labels include every `labels` pair.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        // An empty sum is -0.0.
        .sum::<f64>()
        + 0.0
}

/// Writes `content` over `path` in place (through its symlinks), in two halves with a pause:
/// a reader can meet an empty or a half-written file, as with `cp` or an editor's save.
async fn write_in_place(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    let (first, rest) = content.split_at(content.len() / 2);
    file.write_all(first)?;
    file.flush()?;
    tokio::time::sleep(Duration::from_millis(150)).await;
    file.write_all(rest)?;
    file.flush()
}

/// What the soak rotates, and how.
struct Rotator {
    dir: PathBuf,
    server_ca: Ca,
    client_ca: Ca,
    revoked_serial: Vec<u8>,
    /// Rotations so far.
    count: u64,
    /// The generation directory each secret's `..data` links to now.
    current: std::collections::HashMap<&'static str, String>,
}

impl Rotator {
    fn crl(&self) -> String {
        let now = SystemTime::now();
        let spec = CrlSpec::new(self.count + 1, (2024, 1, 1))
            .at(
                now - Duration::from_secs(3600),
                now + Duration::from_secs(30 * 86_400),
            )
            .revoking_serial(&self.revoked_serial)
            // A fresh serial each time, so that every CRL differs from the last.
            .revoking_serial(&[0x11, (self.count >> 8) as u8, self.count as u8]);
        self.client_ca.crl_with(&spec)
    }

    fn server_files(&self) -> (String, String) {
        let leaf = self.server_ca.server();
        (leaf.chain_pem, leaf.key_pem)
    }

    fn client_cas(&self) -> String {
        format!(
            "{}{}",
            self.client_ca.cert_pem,
            Ca::new(&format!("Soak Extra CA {}", self.count)).cert_pem
        )
    }

    /// A new generation of `secret` (`..data` swapped atomically), the previous one removed
    /// afterwards as the kubelet does.
    fn swap(&mut self, secret: &'static str, files: &[(&str, &str)]) {
        let dir = self.dir.join(secret);
        let generation = format!("..soak_{:06}", self.count);
        write_secret_generation(&dir, &generation, files);
        if let Some(old) = self.current.insert(secret, generation) {
            let _ = std::fs::remove_dir_all(dir.join(old));
        }
    }

    /// Initial files.
    fn init(&mut self) -> Result<(), BoxError> {
        let (crt, key) = self.server_files();
        self.swap("server", &[("tls.crt", &crt), ("tls.key", &key)]);
        let cas = self.client_cas();
        self.swap("client-cas", &[("ca.crt", &cas)]);
        let crl = self.crl();
        self.swap("crls", &[("crl.pem", &crl)]);
        std::fs::write(
            self.dir.join("extra-cas.pem"),
            Ca::new("Soak In-place CA").cert_pem,
        )?;
        Ok(())
    }

    /// The next rotation: server certificate, CA bundle, CRL in turn; `..data` swaps and
    /// in-place writes in turn. Returns what it did.
    async fn rotate(&mut self) -> Result<&'static str, BoxError> {
        self.count += 1;
        let atomic = (self.count / 3).is_multiple_of(2);
        Ok(match (self.count % 3, atomic) {
            (0, true) => {
                let (crt, key) = self.server_files();
                self.swap("server", &[("tls.crt", &crt), ("tls.key", &key)]);
                "server certificate, ..data swap"
            }
            (0, false) => {
                // Certificate first, key a moment later: for a while they do not match.
                let (crt, key) = self.server_files();
                write_in_place(&self.dir.join("server/tls.crt"), crt.as_bytes()).await?;
                write_in_place(&self.dir.join("server/tls.key"), key.as_bytes()).await?;
                "server certificate, in place"
            }
            (1, true) => {
                let cas = self.client_cas();
                self.swap("client-cas", &[("ca.crt", &cas)]);
                "client CA bundle, ..data swap"
            }
            (1, false) => {
                let pem = format!(
                    "{}{}",
                    Ca::new(&format!("Soak In-place CA {}", self.count)).cert_pem,
                    Ca::new("Soak In-place CA bis").cert_pem
                );
                write_in_place(&self.dir.join("extra-cas.pem"), pem.as_bytes()).await?;
                "client CA bundle, in place"
            }
            (_, true) => {
                let crl = self.crl();
                self.swap("crls", &[("crl.pem", &crl)]);
                "CRL, ..data swap"
            }
            (_, false) => {
                let crl = self.crl();
                write_in_place(&self.dir.join("crls/crl.pem"), crl.as_bytes()).await?;
                "CRL, in place"
            }
        })
    }
}

/// Starts the client processes: this binary in client mode, against one server.
struct Clients<'a> {
    exe: &'a Path,
    addr: SocketAddr,
    /// The certificates and keys the clients present.
    dir: &'a Path,
}

impl Clients<'_> {
    /// Starts `soak client ROLE …` with at least `nofile` open files.
    fn spawn(
        &self,
        role: &str,
        until_ms: u64,
        extra: &[String],
        out: &Path,
        nofile: u64,
    ) -> Result<Child, BoxError> {
        let mut cmd = command_with_nofile(self.exe, nofile);
        cmd.arg("client")
            .arg(role)
            .args(["--addr", &self.addr.to_string()])
            .arg("--dir")
            .arg(self.dir)
            .args(["--until", &until_ms.to_string()])
            .arg("--out")
            .arg(out)
            .args(extra)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        Ok(cmd.spawn()?)
    }
}

/// The time of a text log line (`2026-12-07T10:01:28.017388Z  INFO …`), Unix milliseconds.
fn log_time_ms(line: &str) -> Option<u64> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut ymd = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let mut hms = time.split(':');
    let (h, min) = (
        hms.next()?.parse::<i64>().ok()?,
        hms.next()?.parse::<i64>().ok()?,
    );
    let secs: f64 = hms.next()?.parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 86_400 + h * 3600 + min * 60) as f64 + secs) * 1000.0;
    u64::try_from(ms as i64).ok()
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn median(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    percentile(&v, 0.5)
}

async fn wait_exit(child: &mut Child, patience: Duration) -> Option<std::process::ExitStatus> {
    tokio::time::timeout(patience, child.wait())
        .await
        .ok()
        .and_then(Result::ok)
}

async fn coordinator(args: &[String]) -> Result<bool, BoxError> {
    let s = parse_settings(args)?;
    let exe = std::env::current_exe()?;
    let extension = match &s.extension {
        Some(path) => path.clone(),
        None => extension_binary()?,
    };
    let tmp = tempfile::tempdir()?;
    let dir = match &s.keep {
        Some(keep) => {
            std::fs::create_dir_all(keep)?;
            keep.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let clients_dir = dir.join("clients");
    std::fs::create_dir_all(&clients_dir)?;

    // --- PKI and the first generation of every secret
    let server_ca = Ca::new("Soak Server CA");
    let client_ca = Ca::new("Soak Client CA");
    let agent = client_ca.client("soak-agent");
    let revoked = client_ca.client("soak-revoked");
    server_ca.write(&clients_dir, "server-ca.crt");
    agent.write(&clients_dir, "agent");
    revoked.write(&clients_dir, "revoked");
    let mut rotator = Rotator {
        dir: dir.clone(),
        server_ca,
        client_ca,
        revoked_serial: revoked.serial(),
        count: 0,
        current: Default::default(),
    };
    rotator.init()?;

    // --- the server
    let log_path = dir.join("extension.log");
    let log = std::fs::File::create(&log_path)?;
    // The idle connections, the load's (a few dozen) and room to spare.
    let mut ext = command_with_nofile(&extension, s.idle as u64 + 1024);
    ext.env_clear()
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("STEADYBIT_EXTENSION_PORT", "0")
        .env("STEADYBIT_EXTENSION_HEALTH_PORT", "0")
        .env("TOWER_MTLS_DRAIN_DELAY", "0")
        .env(
            "STEADYBIT_EXTENSION_TLS_SERVER_CERT",
            dir.join("server/tls.crt"),
        )
        .env(
            "STEADYBIT_EXTENSION_TLS_SERVER_KEY",
            dir.join("server/tls.key"),
        )
        .env(
            "STEADYBIT_EXTENSION_TLS_CLIENT_CAS",
            format!(
                "{},{}",
                dir.join("client-cas").display(),
                dir.join("extra-cas.pem").display()
            ),
        )
        .env("TOWER_MTLS_CLIENT_CRLS", dir.join("crls"))
        .env("TOWER_MTLS_CLIENT_ALLOW", "cn=soak-agent")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let mut server = ext.spawn()?;
    let pid = server.id().ok_or("extension exited at once")?;
    let (port, health) = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let ports: Vec<u16> = text
                .split_whitespace()
                .filter_map(|w| w.strip_prefix("listen="))
                .filter_map(|a| a.rsplit(':').next()?.parse().ok())
                .collect();
            if ports.len() >= 2 {
                break (ports[0], ports[1]);
            }
            if Instant::now() > deadline || server.try_wait()?.is_some() {
                return Err(format!("the extension did not start:\n{text}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let scrape = || async move {
        http_get(health, "/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, fds0) = (rss_kib(pid).unwrap_or(0), fd_count(pid).unwrap_or(0));
    eprintln!(
        "soak: extension pid {pid} on {addr} (health {health}), RSS {rss0} KiB, {fds0} fds; \
         {} idle connections, {:?} after a {:?} warm-up, a rotation every {:?}",
        s.idle, s.duration, s.warmup, s.rotate_every
    );

    // --- idle connections
    let far = unix_ms() + (s.warmup + s.duration + Duration::from_secs(900)).as_millis() as u64;
    let stop_file = dir.join("stop");
    let clients = Clients {
        exe: &exe,
        addr,
        dir: &clients_dir,
    };
    let mut children: Vec<(String, PathBuf, Child)> = Vec::new();
    let processes = s.idle.div_ceil(IDLE_PER_PROCESS);
    for p in 0..processes {
        let count = (s.idle - p * IDLE_PER_PROCESS).min(IDLE_PER_PROCESS);
        let out = dir.join(format!("idle-{p}.json"));
        let extra = [
            "--count".to_owned(),
            count.to_string(),
            "--stop-file".to_owned(),
            stop_file.display().to_string(),
        ];
        let child = clients.spawn("idle", far, &extra, &out, count as u64 + 256)?;
        children.push((format!("idle-{p}"), out, child));
    }
    let opening = Instant::now();
    let deadline = opening + Duration::from_secs(600);
    loop {
        let text = scrape().await;
        let open = metric(&text, "tower_mtls_connections_open", &[]) as usize;
        if open >= s.idle {
            break;
        }
        let exited = children
            .iter_mut()
            .any(|(_, _, c)| c.try_wait().ok().flatten().is_some());
        if exited || Instant::now() > deadline {
            eprintln!("soak: only {open} of {} idle connections opened", s.idle);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rss_idle = rss_kib(pid).unwrap_or(0);
    eprintln!(
        "soak: idle connections open after {:.1} s; RSS {rss_idle} KiB ({:.1} KiB per connection), {} fds",
        opening.elapsed().as_secs_f64(),
        (rss_idle as f64 - rss0 as f64) / s.idle.max(1) as f64,
        fd_count(pid).unwrap_or(0)
    );

    // --- load, rotations, samples
    let load_start_ms = unix_ms();
    let load_start = Instant::now();
    let until_ms = load_start_ms + (s.warmup + s.duration).as_millis() as u64;
    for role in ["stream", "handshake", "resume", "revoked"] {
        let out = dir.join(format!("{role}.json"));
        let child = clients.spawn(role, until_ms, &[], &out, 256)?;
        children.push((role.to_owned(), out, child));
    }
    let mut rotations: Vec<(u64, &'static str)> = Vec::new();
    let mut samples: Vec<(Duration, u64, usize)> = Vec::new();
    let mut next_rotation = Instant::now() + s.rotate_every;
    let mut next_sample = Instant::now();
    let end = load_start + s.warmup + s.duration;
    let mut last_report = Instant::now();
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_rotation {
            let at = unix_ms();
            let what = rotator.rotate().await?;
            rotations.push((at, what));
            next_rotation += s.rotate_every;
        }
        if now >= next_sample {
            if let (Some(rss), Some(fds)) = (rss_kib(pid), fd_count(pid)) {
                samples.push((load_start.elapsed(), rss, fds));
            }
            next_sample += Duration::from_secs(2);
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            if let Some(&(at, rss, fds)) = samples.last() {
                eprintln!(
                    "soak: {:>4.0} s: RSS {rss} KiB, {fds} fds, {} rotations",
                    at.as_secs_f64(),
                    rotations.len()
                );
            }
        }
        if let Some(status) = server.try_wait()? {
            return Err(format!("the extension exited during the soak: {status}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // --- the end: clients stop and report; the server must be back where it started
    std::fs::write(&stop_file, b"")?;
    let mut reports = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (name, out, child) in &mut children {
        match wait_exit(child, Duration::from_secs(180)).await {
            Some(_) => {}
            None => {
                let _ = child.kill().await;
                failures.push(format!("client {name} did not finish in time"));
            }
        }
        match std::fs::read(&*out)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        {
            Some(report) => reports.push(report),
            None => failures.push(format!("client {name} wrote no report")),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let (fds_after, metrics_after) = loop {
        let fds = fd_count(pid).unwrap_or(usize::MAX);
        let text = scrape().await;
        let open = metric(&text, "tower_mtls_connections_open", &[]);
        let busy = metric(&text, "tower_mtls_handshakes_in_progress", &[]);
        if (fds <= fds0 + s.fd_slack && open == 0.0 && busy == 0.0) || Instant::now() > deadline {
            break (fds, text);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let rss_end = rss_kib(pid).unwrap_or(0);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exit = wait_exit(&mut server, Duration::from_secs(60)).await;
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();

    // --- the verdict
    let sum = |role: &str, key: &str| -> u64 {
        reports
            .iter()
            .filter(|r| r["role"] == role)
            .filter_map(|r| r[key].as_u64())
            .sum()
    };
    for report in &reports {
        let failed = report["failed"].as_u64().unwrap_or(0);
        if failed > 0 {
            failures.push(format!(
                "{} client: {failed} failed operations, first: {}",
                report["role"], report["errors"]
            ));
        }
    }
    if sum("revoked", "refused") == 0 {
        failures.push("the revoked client was never refused".into());
    }
    let applied = metric(
        &metrics_after,
        "tower_mtls_reloads_total",
        &[("outcome", "applied")],
    );
    let rejected = metric(
        &metrics_after,
        "tower_mtls_reloads_total",
        &[("outcome", "rejected")],
    );
    if (applied as usize) < rotations.len() / 2 {
        failures.push(format!(
            "{} rotations but only {applied} reloads applied",
            rotations.len()
        ));
    }
    // Memory after the warm-up: the first tenth of the samples against the last tenth.
    let steady: Vec<&(Duration, u64, usize)> = samples
        .iter()
        .filter(|(at, _, _)| *at >= s.warmup)
        .collect();
    let tenth = (steady.len() / 10).max(1);
    let rss_of =
        |part: &[&(Duration, u64, usize)]| median(&part.iter().map(|x| x.1).collect::<Vec<_>>());
    let (rss_early, rss_late) = if steady.is_empty() {
        (0, 0)
    } else {
        (
            rss_of(&steady[..tenth]),
            rss_of(&steady[steady.len() - tenth..]),
        )
    };
    let growth_mib = (rss_late as f64 - rss_early as f64) / 1024.0;
    if growth_mib > s.max_rss_growth_mib {
        failures.push(format!(
            "resident memory grew by {growth_mib:.1} MiB after the warm-up (limit {} MiB)",
            s.max_rss_growth_mib
        ));
    }
    let (fd_min, fd_max) = steady
        .iter()
        .fold((usize::MAX, 0), |(lo, hi), x| (lo.min(x.2), hi.max(x.2)));
    if fds_after > fds0 + s.fd_slack {
        failures.push(format!(
            "{fds_after} file descriptors after the load, {fds0} before it"
        ));
    }
    let open_after = metric(&metrics_after, "tower_mtls_connections_open", &[]);
    let busy_after = metric(&metrics_after, "tower_mtls_handshakes_in_progress", &[]);
    if open_after != 0.0 || busy_after != 0.0 {
        failures.push(format!(
            "after the load the server counts {open_after} connections open and {busy_after} handshakes in progress"
        ));
    }
    if exit.and_then(|e| e.code()) != Some(143) {
        failures.push(format!(
            "the extension's exit on SIGTERM: {exit:?}, not 143"
        ));
    }
    let panics = log_text.lines().filter(|l| l.contains("panicked")).count();
    if panics > 0 {
        failures.push(format!("{panics} panics in the extension's log"));
    }

    // Keep-alive latency, during reloads and without.
    let windows: Vec<u64> = log_text
        .lines()
        .filter(|l| l.contains("TLS configuration reloaded"))
        .filter_map(log_time_ms)
        .collect();
    let (before, after) = (
        RELOAD_BEFORE.as_millis() as u64,
        RELOAD_AFTER.as_millis() as u64,
    );
    let warm_ms = load_start_ms + s.warmup.as_millis() as u64;
    let (mut during, mut quiet) = (Vec::new(), Vec::new());
    for report in reports.iter().filter(|r| r["role"] == "stream") {
        for sample in report["samples"].as_array().into_iter().flatten() {
            let (Some(at), Some(us)) = (sample[0].as_u64(), sample[1].as_u64()) else {
                continue;
            };
            if at < warm_ms {
                continue;
            }
            // The first reload logged at or after `at - after`.
            let i = windows.partition_point(|&w| w + after < at);
            let in_window = windows.get(i).is_some_and(|&w| at + before >= w);
            if in_window { &mut during } else { &mut quiet }.push(us);
        }
    }
    during.sort_unstable();
    quiet.sort_unstable();
    let log_count = |needle: &str| log_text.lines().filter(|l| l.contains(needle)).count();
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for (_, what) in &rotations {
        match kinds.iter_mut().find(|(k, _)| k == what) {
            Some((_, n)) => *n += 1,
            None => kinds.push((what, 1)),
        }
    }

    let report = json!({
        "duration_s": s.duration.as_secs_f64(),
        "warmup_s": s.warmup.as_secs_f64(),
        "idle_connections": s.idle,
        "rotations": rotations.len(),
        "rotation_kinds": kinds.iter().map(|(k, n)| json!({"kind": k, "count": n})).collect::<Vec<_>>(),
        "reloads_applied": applied,
        "reloads_rejected": rejected,
        "log_reloaded_lines": log_count("TLS configuration reloaded"),
        "log_rejected_lines": log_count("cannot be used; keeping the previous configuration"),
        "idle_ok_at_end": sum("idle", "ok"),
        "stream_requests": sum("stream", "ok"),
        "full_handshakes": sum("handshake", "full") + sum("resume", "full"),
        "resumed_handshakes": sum("resume", "resumed"),
        "handshake_client_full": sum("handshake", "full"),
        "resume_client_resumed": sum("resume", "resumed"),
        "resume_client_full": sum("resume", "full"),
        "revoked_refused": sum("revoked", "refused"),
        "failed_operations": reports.iter().filter_map(|r| r["failed"].as_u64()).sum::<u64>(),
        "rss_kib": {"start": rss0, "idle_open": rss_idle, "after_warmup": rss_early, "end_of_load": rss_late, "after_load": rss_end},
        "rss_growth_mib": growth_mib,
        "fds": {"start": fds0, "load_min": fd_min, "load_max": fd_max, "after_load": fds_after},
        "keepalive_us": {
            "during_reloads": {"n": during.len(), "p50": percentile(&during, 0.5), "p99": percentile(&during, 0.99), "max": during.last()},
            "without": {"n": quiet.len(), "p50": percentile(&quiet, 0.5), "p99": percentile(&quiet, 0.99), "max": quiet.last()},
        },
        "failures": failures,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(path) = &s.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    if failures.is_empty() {
        eprintln!("soak: PASSED");
        Ok(true)
    } else {
        for failure in &failures {
            eprintln!("soak: FAILED: {failure}");
        }
        eprintln!("soak: the extension's log: {}", log_path.display());
        if s.keep.is_none() {
            // Keep the evidence.
            let _ = tmp.keep();
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_times_are_unix_milliseconds() {
        let line = "2026-12-07T10:01:28.017388Z  INFO tower_mtls::tls::config::reload: TLS configuration reloaded";
        assert_eq!(super::log_time_ms(line), Some(1_796_637_688_017));
        assert_eq!(super::log_time_ms("not a log line"), None);
    }
}
