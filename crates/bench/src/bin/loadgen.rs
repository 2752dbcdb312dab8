//! A loopback load generator for mutual-TLS HTTP servers: many concurrent clients presenting a
//! client certificate, reporting rate, latency and — given the server's PID — the server's CPU
//! time per operation and its memory per idle connection. `crates/bench/compare.sh` drives it.
//!
//! ```text
//! cargo run --release --example loadgen -- --addr 127.0.0.1:8443 \
//!     --ca ca.crt --cert client.crt --key client.key \
//!     --mode handshake|keepalive|idle [--http 1|2] [--concurrency 32] \
//!     [--duration 10] [--warmup 2] [--connections 10000] [--requests 1] \
//!     [--pid SERVER_PID] [--label NAME] [--json]
//! ```
//!
//! Modes:
//!
//! * `handshake`: each client opens a new connection for every request (full TLS 1.3
//!   handshake, never resumed), sends one `GET`, reads the response and closes the connection
//!   (close_notify, then FIN). One operation = connect + handshake + request + close.
//! * `keepalive`: each client opens one connection before the measurement and sends
//!   requests on it one after the other (HTTP/1.1 keep-alive, or one HTTP/2 stream at a time).
//!   One operation = one request.
//! * `count-handshakes`, `count-requests`: exactly `--ops` operations (handshake + request +
//!   close, or one keep-alive request on one of `--concurrency` connections opened, with one
//!   request each, beforehand), `--concurrency` at a time, between the shell commands
//!   `--on-start` and `--on-stop` (for instance `callgrind_control -i on PID`): a fixed
//!   workload for counting the server's instructions per operation (`callgrind.sh`).
//! * `idle`: opens `--connections` connections (`--concurrency` at a time), makes `--requests`
//!   requests (default one) on each and keeps them all open; reports the server's resident
//!   memory (VmRSS) before and after, per connection. A fixed amount of work, also handy for
//!   counting a server's instructions per connection or per request under a profiler.
//!
//! The client offers TLS 1.3 with X25519 only (`--kx x25519mlkem768`: the post-quantum hybrid
//! only), so every server negotiates the same key
//! exchange, and ALPN `http/1.1` or `h2` only, so the protocol is the one asked for.
//!
//! CPU figures come from `/proc/PID/stat` (user + system time of all the server's threads),
//! sampled at the start and end of the measurement window; operations are counted when they
//! complete inside it. On a machine with few cores the client, not the server, may be the
//! bottleneck: the server's CPU time per operation is the figure to compare, and the server's
//! utilisation (fraction of one core) says how loaded it was.

use tower_mtls_test_kit::floor;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tower_mtls_test_kit::client::{Client, Connection};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Handshake,
    KeepAlive,
    Idle,
    /// A fixed number of handshakes (`--ops`), bracketed by `--on-start`/`--on-stop`.
    CountHandshakes,
    /// A fixed number of keep-alive requests (`--ops`) on `--concurrency` connections opened
    /// before `--on-start`.
    CountRequests,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::KeepAlive => "keepalive",
            Self::Idle => "idle",
            Self::CountHandshakes => "count-handshakes",
            Self::CountRequests => "count-requests",
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    addr: SocketAddr,
    server_name: String,
    path: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    mode: Mode,
    http2: bool,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    connections: usize,
    requests: usize,
    settle: Duration,
    pid: Option<u32>,
    label: String,
    json: bool,
    ops: usize,
    mlkem: bool,
    on_start: Option<String>,
    on_stop: Option<String>,
}

const USAGE: &str = "usage: loadgen --addr HOST:PORT --ca FILE --cert FILE --key FILE \
    [--mode handshake|keepalive|idle|count-handshakes|count-requests] [--http 1|2] \
    [--concurrency N] [--duration SECS] [--warmup SECS] [--connections N] [--requests N] \
    [--ops N] [--kx x25519|x25519mlkem768] [--on-start CMD] [--on-stop CMD] [--settle SECS] [--pid PID] \
    [--server-name NAME] [--path PATH] [--label NAME] [--json]";

fn parse_args() -> Args {
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 8443)),
        server_name: "localhost".into(),
        path: "/".into(),
        ca: PathBuf::new(),
        cert: PathBuf::new(),
        key: PathBuf::new(),
        mode: Mode::Handshake,
        http2: false,
        concurrency: 32,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        connections: 10_000,
        requests: 1,
        settle: Duration::from_secs(2),
        pid: None,
        label: "server".into(),
        json: false,
        ops: 1000,
        mlkem: false,
        on_start: None,
        on_stop: None,
    };
    let secs = |v: String| Duration::from_secs_f64(v.parse().expect("seconds"));
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            args.json = true;
            continue;
        }
        let value = it
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--addr" => args.addr = value.parse().expect("--addr HOST:PORT"),
            "--server-name" => args.server_name = value,
            "--path" => args.path = value,
            "--ca" => args.ca = value.into(),
            "--cert" => args.cert = value.into(),
            "--key" => args.key = value.into(),
            "--mode" => {
                args.mode = match value.as_str() {
                    "handshake" => Mode::Handshake,
                    "keepalive" => Mode::KeepAlive,
                    "idle" => Mode::Idle,
                    "count-handshakes" => Mode::CountHandshakes,
                    "count-requests" => Mode::CountRequests,
                    other => panic!("--mode {other}\n{USAGE}"),
                }
            }
            "--http" => {
                args.http2 = match value.as_str() {
                    "1" | "1.1" => false,
                    "2" => true,
                    other => panic!("--http {other}\n{USAGE}"),
                }
            }
            "--concurrency" => args.concurrency = value.parse().expect("--concurrency N"),
            "--duration" => args.duration = secs(value),
            "--warmup" => args.warmup = secs(value),
            "--connections" => args.connections = value.parse().expect("--connections N"),
            "--requests" => args.requests = value.parse().expect("--requests N"),
            "--ops" => args.ops = value.parse().expect("--ops N"),
            "--kx" => {
                args.mlkem = match value.as_str() {
                    "x25519" => false,
                    "x25519mlkem768" => true,
                    other => panic!("--kx {other}: x25519 or x25519mlkem768\n{USAGE}"),
                }
            }
            "--on-start" => args.on_start = Some(value),
            "--on-stop" => args.on_stop = Some(value),
            "--settle" => args.settle = secs(value),
            "--pid" => args.pid = Some(value.parse().expect("--pid PID")),
            "--label" => args.label = value,
            other => panic!("unknown argument {other}\n{USAGE}"),
        }
    }
    assert!(
        !args.ca.as_os_str().is_empty()
            && !args.cert.as_os_str().is_empty()
            && !args.key.as_os_str().is_empty(),
        "--ca, --cert and --key are required\n{USAGE}"
    );
    args.concurrency = args.concurrency.max(1);
    args
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args();
    let alpn: &[u8] = if args.http2 { b"h2" } else { b"http/1.1" };
    let client = Client::builder()
        .trust_server_ca_file(&args.ca)
        .identity_files(&args.cert, &args.key)
        .crypto_provider(if args.mlkem {
            floor::client_provider_with(rustls::NamedGroup::X25519MLKEM768)
        } else {
            floor::client_provider()
        })
        .protocol_versions(&[&rustls::version::TLS13])
        .alpn_protocols(vec![alpn.to_vec()])
        .no_resumption()
        .build()?;
    let target = Target {
        client,
        addr: args.addr,
        server_name: args.server_name.clone(),
        path: args.path.clone(),
        alpn,
    };
    // Fail early, and loudly, when the server does not speak what we measure or turns us away.
    target.get(&target.connect().await?).await?;

    let report = match args.mode {
        Mode::Handshake | Mode::KeepAlive => load(&args, Arc::new(target)).await,
        Mode::Idle => idle(&args, Arc::new(target)).await?,
        Mode::CountHandshakes | Mode::CountRequests => count(&args, Arc::new(target)).await?,
    };
    eprintln!("{}", report.summary);
    if args.json {
        println!("{}", report.json);
    }
    Ok(())
}

/// Where and how to connect.
struct Target {
    client: Client,
    addr: SocketAddr,
    server_name: String,
    path: String,
    alpn: &'static [u8],
}

impl Target {
    /// A new connection, checked to be what we asked for.
    async fn connect(&self) -> Result<Connection, String> {
        let conn = self
            .client
            .connect(self.addr, &self.server_name)
            .await
            .map_err(|e| e.to_string())?;
        if conn.alpn_protocol() != Some(self.alpn) {
            return Err(format!(
                "server chose ALPN {:?}, not {}",
                conn.alpn_protocol().map(String::from_utf8_lossy),
                String::from_utf8_lossy(self.alpn)
            ));
        }
        if conn.is_resumed() || conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return Err("not a full TLS 1.3 handshake".into());
        }
        Ok(conn)
    }

    /// `GET path` on `conn`, expecting a success.
    async fn get(&self, conn: &Connection) -> Result<(), String> {
        let response = conn.get(&self.path).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        Ok(())
    }

    /// One operation of `mode`; `conn` is the worker's keep-alive connection.
    async fn operation(&self, mode: Mode, conn: &mut Option<Connection>) -> Result<(), String> {
        match mode {
            Mode::KeepAlive => {
                if conn.is_none() {
                    *conn = Some(self.connect().await?);
                }
                let result = match conn {
                    Some(c) => self.get(c).await,
                    None => unreachable!("connected above"),
                };
                if result.is_err() {
                    *conn = None;
                }
                result
            }
            // Dropping the connection closes it: close_notify, then FIN.
            _ => self.get(&self.connect().await?).await,
        }
    }
}

/// What one run found: a line for people, a JSON object for scripts.
struct Report {
    summary: String,
    json: serde_json::Value,
}

/// What a worker saw: completion time and latency of each operation, and errors.
#[derive(Default)]
struct Tally {
    done: Vec<(Instant, Duration)>,
    errors: usize,
    first_error: Option<String>,
}

/// The handshake and keep-alive modes.
async fn load(args: &Args, target: Arc<Target>) -> Report {
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (target, stop, mode) = (target.clone(), stop.clone(), args.mode);
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut conn = None;
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                match target.operation(mode, &mut conn).await {
                    Ok(()) => tally.done.push((Instant::now(), start.elapsed())),
                    Err(e) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert(e);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            tally
        }));
    }

    // The window: after the warm-up, for the duration; the workers stop after it closes.
    tokio::time::sleep(args.warmup).await;
    let (t0, server0, self0) = (Instant::now(), args.pid.map(cpu_times), own_cpu_times());
    tokio::time::sleep(args.duration).await;
    let (t1, server1, self1) = (Instant::now(), args.pid.map(cpu_times), own_cpu_times());
    stop.store(true, Ordering::Relaxed);

    let mut latencies = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    for worker in workers {
        let tally = worker.await.expect("worker");
        latencies.extend(
            tally
                .done
                .iter()
                .filter(|(at, _)| *at >= t0 && *at <= t1)
                .map(|(_, latency)| *latency),
        );
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    latencies.sort_unstable();
    let wall = (t1 - t0).as_secs_f64();
    let ops = latencies.len();
    let rate = ops as f64 / wall;
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);
    let server_cpu = match (server0, server1) {
        (Some(Ok(a)), Some(Ok(b))) => Some(b.since(a)),
        _ => None,
    };
    let per_op = server_cpu
        .filter(|_| ops > 0)
        .map(|c| c.total() / ops as f64);
    let server_util = server_cpu.map(|c| c.total() / 1e6 / wall);
    // The kernel's share: sockets, loopback TCP, epoll, scheduling.
    let server_system = server_cpu
        .filter(|c| c.total() > 0.0)
        .map(|c| c.system / c.total());
    let client_util = match (self0, self1) {
        (Ok(a), Ok(b)) => Some(b.since(a).total() / 1e6 / wall),
        _ => None,
    };

    let protocol = if args.http2 { "h2" } else { "http/1.1" };
    let mut summary = format!(
        "[{}] {} {protocol} c={}: {ops} ops in {wall:.1} s = {rate:.0}/s, \
         latency p50 {} p99 {}",
        args.label,
        args.mode.name(),
        args.concurrency,
        fmt_duration(p50),
        fmt_duration(p99),
    );
    if let (Some(per_op), Some(util)) = (per_op, server_util) {
        summary += &format!(
            ", server {per_op:.1} µs CPU/op ({:.0}% in the kernel) at {:.0}% of a core",
            server_system.unwrap_or(0.0) * 100.0,
            util * 100.0
        );
    }
    if let Some(util) = client_util {
        summary += &format!(", client at {:.0}%", util * 100.0);
    }
    if errors > 0 {
        summary += &format!(
            ", {errors} ERRORS (first: {})",
            first_error.unwrap_or_default()
        );
    }
    let json = json!({
        "label": args.label,
        "mode": args.mode.name(),
        "protocol": protocol,
        "concurrency": args.concurrency,
        "seconds": wall,
        "ops": ops,
        "errors": errors,
        "rate": rate,
        "p50_us": p50.as_secs_f64() * 1e6,
        "p99_us": p99.as_secs_f64() * 1e6,
        "server_cpu_us_per_op": per_op,
        "server_util": server_util,
        "server_system_share": server_system,
        "client_util": client_util,
    });
    Report { summary, json }
}

/// Runs `cmd` with `sh -c`, failing when it fails.
fn hook(cmd: &Option<String>) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(cmd) = cmd {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .status()?;
        if !status.success() {
            return Err(format!("`{cmd}` failed: {status}").into());
        }
    }
    Ok(())
}

/// The count modes: a fixed number of operations between the two hooks.
async fn count(args: &Args, target: Arc<Target>) -> Result<Report, Box<dyn std::error::Error>> {
    let mode = args.mode;
    // Keep-alive connections are opened (with one request each) before the window.
    let mut conns = Vec::new();
    if mode == Mode::CountRequests {
        for _ in 0..args.concurrency {
            let conn = target.connect().await?;
            target.get(&conn).await?;
            conns.push(conn);
        }
    }
    // Let the server finish what the set-up left (closing the check connection, TLS tickets).
    tokio::time::sleep(Duration::from_millis(300)).await;
    hook(&args.on_start)?;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    let mut conns = conns.into_iter();
    for _ in 0..args.concurrency {
        let (target, next, total) = (target.clone(), next.clone(), args.ops);
        let conn = conns.next();
        workers.push(tokio::spawn(async move {
            let mut done = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                match &conn {
                    Some(conn) => target.get(conn).await?,
                    None => target.get(&target.connect().await?).await?,
                }
                done += 1;
            }
            Ok::<_, String>((done, conn))
        }));
    }
    let (mut done, mut conns) = (0, Vec::new());
    for worker in workers {
        let (n, conn) = worker.await??;
        done += n;
        conns.extend(conn);
    }
    let secs = started.elapsed().as_secs_f64();
    // Closing is part of a handshake operation: let the server see the last close_notify.
    tokio::time::sleep(Duration::from_millis(300)).await;
    hook(&args.on_stop)?;
    drop(conns);
    let protocol = if args.http2 { "h2" } else { "http/1.1" };
    let summary = format!(
        "[{}] {} {protocol} c={}: {done} ops in {secs:.1} s",
        args.label,
        mode.name(),
        args.concurrency
    );
    let json = json!({
        "label": args.label,
        "mode": mode.name(),
        "protocol": protocol,
        "concurrency": args.concurrency,
        "ops": done,
        "seconds": secs,
    });
    Ok(Report { summary, json })
}

/// The idle mode: many open connections, the server's memory before and after.
async fn idle(args: &Args, target: Arc<Target>) -> Result<Report, Box<dyn std::error::Error>> {
    // The check in `main` made one connection; let the server settle before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = args.pid.map(rss_kib).transpose()?;

    let opened = Arc::new(std::sync::Mutex::new(Vec::with_capacity(args.connections)));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut openers = Vec::new();
    for _ in 0..args.concurrency {
        let (target, opened, next, total, requests) = (
            target.clone(),
            opened.clone(),
            next.clone(),
            args.connections,
            args.requests.max(1),
        );
        openers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let conn = match target.connect().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert(e);
                        continue;
                    }
                };
                let mut outcome = Ok(());
                for _ in 0..requests {
                    outcome = target.get(&conn).await;
                    if outcome.is_err() {
                        break;
                    }
                }
                match outcome {
                    Ok(()) => opened.lock().expect("lock").push(conn),
                    Err(e) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert(e);
                    }
                }
            }
            tally
        }));
    }
    let (mut errors, mut first_error) = (0, None);
    for opener in openers {
        let tally = opener.await?;
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    let open_secs = started.elapsed().as_secs_f64();
    let held = opened.lock().expect("lock").len();
    tokio::time::sleep(args.settle).await;
    let after = args.pid.map(rss_kib).transpose()?;

    let per_conn = match (before, after) {
        (Some(b), Some(a)) if held > 0 => Some((a as f64 - b as f64) / held as f64),
        _ => None,
    };
    let protocol = if args.http2 { "h2" } else { "http/1.1" };
    let mut summary = format!(
        "[{}] idle {protocol}: {held} connections held (opened in {open_secs:.1} s)",
        args.label
    );
    if let (Some(b), Some(a), Some(per)) = (before, after, per_conn) {
        summary += &format!(", server RSS {b} KiB -> {a} KiB = {per:.1} KiB per connection");
    }
    if errors > 0 {
        summary += &format!(
            ", {errors} ERRORS (first: {})",
            first_error.unwrap_or_default()
        );
    }
    let json = json!({
        "label": args.label,
        "mode": "idle",
        "protocol": protocol,
        "connections": held,
        "errors": errors,
        "open_seconds": open_secs,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": per_conn,
    });
    drop(opened);
    Ok(Report { summary, json })
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn fmt_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros >= 1000.0 {
        format!("{:.2} ms", micros / 1000.0)
    } else {
        format!("{micros:.0} µs")
    }
}

/// CPU time of a process, all threads (living and exited), in microseconds.
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    user: f64,
    system: f64,
}

impl CpuTimes {
    fn since(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: (self.user - earlier.user).max(0.0),
            system: (self.system - earlier.system).max(0.0),
        }
    }

    fn total(self) -> f64 {
        self.user + self.system
    }
}

fn cpu_times(pid: u32) -> std::io::Result<CpuTimes> {
    proc_cpu_times(&format!("/proc/{pid}/stat"))
}

fn own_cpu_times() -> std::io::Result<CpuTimes> {
    proc_cpu_times("/proc/self/stat")
}

fn proc_cpu_times(path: &str) -> std::io::Result<CpuTimes> {
    let stat = std::fs::read_to_string(path)?;
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let micros = |i: usize| {
        let ticks = fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
        ticks as f64 * 1e6 / clock_ticks_per_second() as f64
    };
    Ok(CpuTimes {
        user: micros(11),
        system: micros(12),
    })
}

/// `sysconf(_SC_CLK_TCK)`, asked of `getconf` (100 on Linux unless built otherwise).
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// Resident memory of a process (VmRSS), in KiB.
fn rss_kib(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no VmRSS for pid {pid}")))
}
