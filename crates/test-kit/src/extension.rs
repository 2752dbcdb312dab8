//! The `extension` example as a real process: started with environment variables, its log
//! collected, stopped with a signal.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{PATIENCE, example_binary};

/// A running `extension` example.
pub struct Extension {
    pub child: Child,
    /// The service port (0 on a Unix socket).
    pub port: u16,
    /// The health port (0 on a Unix socket: the probes answer there).
    pub health_port: u16,
    /// Every log line so far, the start-up lines included (the runtime logs to stderr, as the
    /// Go extension-kit does).
    pub log: Arc<Mutex<Vec<String>>>,
    /// Every stdout line so far (the runtime writes none).
    pub stdout: Arc<Mutex<Vec<String>>>,
}

/// The port of a start-up line that says where a listener listens, in text (`listen=[::]:1`)
/// or JSON (`{"listen":"[::]:1",…}`) format.
fn listen_port(line: &str) -> Option<u16> {
    let addr = match serde_json::from_str::<serde_json::Value>(line) {
        Ok(value) => value.get("listen")?.as_str()?.to_owned(),
        Err(_) => line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("listen="))?
            .to_owned(),
    };
    if addr.starts_with("unix:") {
        return Some(0);
    }
    addr.rsplit(':').next()?.parse().ok()
}

fn drain<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut lines: tokio::io::Lines<BufReader<R>>,
    sink: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().expect("log").push(line);
        }
    });
}

impl Extension {
    /// Starts the example with `vars` (after defaults: ephemeral ports, `RUST_LOG=info`, no
    /// drain delay) and waits until both listeners are logged.
    pub async fn start(vars: &[(&str, String)]) -> Extension {
        Self::start_until(&[], vars, 2).await
    }

    /// [`start`](Self::start) through a wrapper command that ends by running the program given
    /// as its last argument, e.g. `["prlimit", "--nofile=64:64", "--"]` or
    /// `["setpriv", "--reuid=nobody", …, "--"]` (both exec it: the child's PID is the
    /// extension's).
    pub async fn start_wrapped(wrapper: &[&str], vars: &[(&str, String)]) -> Extension {
        Self::start_until(wrapper, vars, 2).await
    }

    /// Starts the example on the Unix socket `STEADYBIT_EXTENSION_UNIX_SOCKET` of `vars` and
    /// waits until it serves there (no health port: the probes answer on the socket).
    pub async fn start_unix(vars: &[(&str, String)]) -> Extension {
        Self::start_until(&[], vars, 1).await
    }

    async fn start_until(wrapper: &[&str], vars: &[(&str, String)], listeners: usize) -> Extension {
        let binary = example_binary("extension");
        let mut cmd = match wrapper.split_first() {
            None => Command::new(binary),
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(binary);
                cmd
            }
        };
        cmd.env_clear()
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("STEADYBIT_EXTENSION_PORT", "0")
            .env("STEADYBIT_EXTENSION_HEALTH_PORT", "0")
            .env("TOWER_MTLS_DRAIN_DELAY", "0")
            .envs(vars.iter().map(|(k, v)| (*k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start extension");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut ports = Vec::new();
        let read = async {
            while let Some(line) = lines.next_line().await.expect("read log") {
                if let Some(port) = listen_port(&line) {
                    ports.push(port);
                }
                log.lock().expect("log").push(line);
                if ports.len() == listeners {
                    return;
                }
            }
            panic!(
                "extension exited before listening: {:#?}",
                log.lock().expect("log")
            );
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("extension starts");
        // Keep draining both pipes so the child never blocks on a full one.
        drain(lines, log.clone());
        let out = Arc::new(Mutex::new(Vec::new()));
        drain(BufReader::new(stdout).lines(), out.clone());
        Extension {
            child,
            port: ports.first().copied().unwrap_or(0),
            health_port: ports.get(1).copied().unwrap_or(0),
            log,
            stdout: out,
        }
    }

    /// Sends `signal` (e.g. `-TERM`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code, its whole log (stderr) and its
    /// stdout.
    pub async fn wait(mut self) -> (Option<i32>, Vec<String>, Vec<String>) {
        let exit = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("exits in time")
            .expect("exit status");
        // The drain tasks end at EOF, after the last line.
        let done = async {
            while Arc::strong_count(&self.log) > 1 || Arc::strong_count(&self.stdout) > 1 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(PATIENCE, done)
            .await
            .expect("log drained");
        let log = self.log.lock().expect("log").clone();
        let stdout = self.stdout.lock().expect("log").clone();
        (exit.code(), log, stdout)
    }

    /// Stops the extension with SIGTERM, as Kubernetes does; returns the exit code and the
    /// whole log.
    pub async fn terminate(self) -> (Option<i32>, Vec<String>) {
        self.signal("-TERM");
        let (code, log, _) = self.wait().await;
        (code, log)
    }

    /// The lines logged so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }
}

/// A plain-HTTP GET on loopback with a fresh connection: the status and the body.
pub async fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The sum of the samples of `name` in a Prometheus text exposition whose labels include every
/// `labels` pair (0 when there is none).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
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
        .map(|(_, value)| value.parse::<f64>().expect("sample value"))
        .sum()
}

/// `GET /metrics` on a health port; the body of a 200.
pub async fn scrape(port: u16) -> String {
    let (status, body) = http_get(port, "/metrics").await.expect("scrape");
    assert_eq!(status, 200, "{body}");
    body
}
