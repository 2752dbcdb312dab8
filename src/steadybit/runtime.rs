//! The small runtime every Steadybit extension needs besides its routes (feature
//! `steadybit-runtime`): logs, health probes, `/metrics`, signals, drain and shutdown, the way
//! Steadybit's Go extension-kit does them.
//!
//! ```no_run
//! use std::process::ExitCode;
//! use tower_mtls::steadybit::runtime::ExtensionRuntime;
//!
//! #[tokio::main]
//! async fn main() -> ExitCode {
//!     // Logs first: STEADYBIT_LOG_LEVEL, STEADYBIT_LOG_FORMAT, RUST_LOG.
//!     let runtime = ExtensionRuntime::init("my-extension");
//!     let routes = axum::Router::new().route("/", axum::routing::get(|| async { "{}" }));
//!     runtime.run(routes).await
//! }
//! ```
//!
//! [`ExtensionRuntime::run`] reads the [`ExtensionEnv`] (a misconfiguration is logged and exits
//! 1), serves the routes on the extension port — HTTPS with the contract's certificates when
//! configured, wrapped in a [`ClientCertLayer`] when
//! `TOWER_MTLS_CLIENT_ALLOW` is set, reloading certificates, trust and CRLs live — and serves
//! plain HTTP on the health port:
//!
//! | path | answer |
//! |---|---|
//! | `/health/liveness` | `200 {"status":"UP"}` while the process runs |
//! | `/health/readiness` | `200 {"status":"UP"}`, then `503 {"status":"DOWN"}` from the shutdown signal on |
//! | `/metrics` | what [`ExtensionRuntime::metrics`] renders (the Prometheus text format), `404` without it |
//!
//! On SIGTERM or SIGINT readiness answers 503 at once while the extension keeps serving for the
//! drain delay (default 5 s, `TOWER_MTLS_DRAIN_DELAY`), so that Kubernetes takes the pod out of
//! its endpoints before it stops; then the service stops accepting and lets requests in flight
//! finish within its grace period (default 10 s, [`ExtensionRuntime::grace_period`]); then the
//! process exits with 128 + the signal number (143 for SIGTERM, 130 for SIGINT), like the Go
//! kit.
//!
//! | variable | meaning |
//! |---|---|
//! | `STEADYBIT_LOG_LEVEL` | `trace`, `debug`, `info` (default), `warn`, `error` |
//! | `STEADYBIT_LOG_FORMAT` | `text` (default) or `json`: one JSON object per line, with the event's fields at the top level |
//! | `RUST_LOG` | finer filters on top, e.g. `tower_mtls=debug,hyper=warn` |
//! | `TOWER_MTLS_DRAIN_DELAY` | how long to keep serving after the signal: seconds (`5`) or with a unit (`500ms`, `5s`) |

use std::convert::Infallible;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::Full;
use hyper::body::Incoming;
use tower_layer::Layer;
use tower_service::Service;

use super::{ExtensionEnv, vars};
use crate::serve::DEFAULT_GRACE_PERIOD;
use crate::tls::DEFAULT_WATCH_INTERVAL;
use crate::{ClientAuth, ClientCertLayer, ConfigError, MtlsAcceptor, MtlsServer};

/// The default port of the extension's service.
pub const DEFAULT_PORT: u16 = 8080;
/// The default health port.
pub const DEFAULT_HEALTH_PORT: u16 = 8081;
/// The default drain delay: how long the extension keeps serving after SIGTERM or SIGINT.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// How often the handshake counters are logged.
const STATS_INTERVAL: Duration = Duration::from_secs(60);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// How log lines are written (`STEADYBIT_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// Sets up `tracing` from `STEADYBIT_LOG_LEVEL`, `STEADYBIT_LOG_FORMAT` and `RUST_LOG` (see
/// the [module docs](self)), writing to stdout. Does nothing if a global subscriber is set
/// already. An invalid value is an error; logging is then set up with the defaults (`info`,
/// text), so that the error can be logged.
pub fn init_logging() -> Result<LogFormat, ConfigError> {
    let get = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let level = match get(vars::LOG_LEVEL).map(|v| v.to_ascii_lowercase()) {
        None => Ok("info"),
        Some(v) => match v.as_str() {
            "trace" => Ok("trace"),
            "debug" => Ok("debug"),
            "info" => Ok("info"),
            "warn" | "warning" => Ok("warn"),
            "error" | "fatal" | "panic" => Ok("error"),
            _ => Err(ConfigError::Env {
                variable: vars::LOG_LEVEL,
                reason: format!("expected trace, debug, info, warn or error, got {v:?}"),
            }),
        },
    };
    let format = match get(vars::LOG_FORMAT).map(|v| v.to_ascii_lowercase()) {
        None => Ok(LogFormat::Text),
        Some(v) if v == "text" => Ok(LogFormat::Text),
        Some(v) if v == "json" => Ok(LogFormat::Json),
        Some(v) => Err(ConfigError::Env {
            variable: vars::LOG_FORMAT,
            reason: format!("expected text or json, got {v:?}"),
        }),
    };
    let mut filter = tracing_subscriber::EnvFilter::new(*level.as_ref().unwrap_or(&"info"));
    let mut ignored = Vec::new();
    if let Some(rust_log) = get("RUST_LOG") {
        for directive in rust_log.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            match directive.parse() {
                Ok(d) => filter = filter.add_directive(d),
                Err(_) => ignored.push(directive.to_owned()),
            }
        }
    }
    let chosen = *format.as_ref().unwrap_or(&LogFormat::Text);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    // A subscriber set already (tests, an application's own) stays.
    let _ = match chosen {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init(),
    };
    if !ignored.is_empty() {
        tracing::warn!(ignored = ?ignored, "RUST_LOG: directives that do not parse are ignored");
    }
    level?;
    format
}

/// Reads `TOWER_MTLS_DRAIN_DELAY`: seconds, or a number with `ms` or `s`.
fn drain_delay_from_env() -> Result<Option<Duration>, ConfigError> {
    let Some(value) = std::env::var(vars::DRAIN_DELAY)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    parse_duration(&value)
        .map(Some)
        .ok_or_else(|| ConfigError::Env {
            variable: vars::DRAIN_DELAY,
            reason: format!("expected seconds (5) or a duration (500ms, 5s), got {value:?}"),
        })
}

/// `5`, `5s` or `500ms`.
fn parse_duration(value: &str) -> Option<Duration> {
    if let Some(ms) = value.strip_suffix("ms") {
        ms.trim().parse::<u64>().ok().map(Duration::from_millis)
    } else {
        value
            .strip_suffix('s')
            .unwrap_or(value)
            .trim()
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    }
}

/// Runs a Steadybit extension: see the [module docs](self).
#[must_use = "the runtime does nothing until `run` is awaited"]
pub struct ExtensionRuntime {
    name: String,
    format: LogFormat,
    startup_error: Option<ConfigError>,
    drain_delay: Duration,
    grace_period: Duration,
    default_port: u16,
    default_health_port: u16,
    metrics: Option<Render>,
}

impl fmt::Debug for ExtensionRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtensionRuntime")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("drain_delay", &self.drain_delay)
            .field("grace_period", &self.grace_period)
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl ExtensionRuntime {
    /// Sets up logging ([`init_logging`]) and reads the runtime's own variables. `name` prefixes
    /// the line a startup error writes to stderr (text format). Errors are reported by
    /// [`run`](Self::run), after logging is up.
    pub fn init(name: impl Into<String>) -> Self {
        let (format, mut startup_error) = match init_logging() {
            Ok(format) => (format, None),
            Err(e) => (LogFormat::Text, Some(e)),
        };
        let drain_delay = match drain_delay_from_env() {
            Ok(delay) => delay.unwrap_or(DEFAULT_DRAIN_DELAY),
            Err(e) => {
                startup_error.get_or_insert(e);
                DEFAULT_DRAIN_DELAY
            }
        };
        Self {
            name: name.into(),
            format,
            startup_error,
            drain_delay,
            grace_period: DEFAULT_GRACE_PERIOD,
            default_port: DEFAULT_PORT,
            default_health_port: DEFAULT_HEALTH_PORT,
            metrics: None,
        }
    }

    /// How long to keep serving after the signal, readiness already 503 (default 5 s, or
    /// `TOWER_MTLS_DRAIN_DELAY`; this overrides both).
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// How long the graceful shutdown after the drain waits for requests in flight (default
    /// 10 s).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// The ports used when `STEADYBIT_EXTENSION_PORT` / `STEADYBIT_EXTENSION_HEALTH_PORT` are
    /// unset (default 8080 and 8081).
    pub fn default_ports(mut self, port: u16, health_port: u16) -> Self {
        self.default_port = port;
        self.default_health_port = health_port;
        self
    }

    /// Serves `render()` at `/metrics` on the health port, as `text/plain; version=0.0.4` (the
    /// Prometheus text format), e.g. a `metrics-exporter-prometheus` handle's `render`. With
    /// the `metrics` feature this also describes the crate's metrics
    /// ([`tls::metrics::describe`](crate::tls::metrics::describe)): install the recorder first.
    pub fn metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        #[cfg(feature = "metrics")]
        crate::tls::metrics::describe();
        self.metrics = Some(Arc::new(render));
        self
    }

    /// The log format in use.
    pub fn log_format(&self) -> LogFormat {
        self.format
    }

    /// Reads the [`ExtensionEnv`], serves `routes` and the health port until SIGTERM or
    /// SIGINT, drains, shuts down, and returns the exit code: 128 + the signal number, or 1
    /// after a startup error (logged, and in the text format also written to stderr).
    pub async fn run<S, B>(mut self, routes: S) -> ExitCode
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let name = self.name.clone();
        let format = self.format;
        let result = match self.startup_error.take() {
            Some(e) => Err(e.into()),
            None => self.serve(routes).await,
        };
        match result {
            Ok(code) => code,
            Err(error) => {
                tracing::error!(error = %error, "{name} cannot start");
                if format == LogFormat::Text {
                    let _ = writeln!(std::io::stderr(), "{name}: {error}");
                }
                ExitCode::FAILURE
            }
        }
    }

    async fn serve<S, B>(self, routes: S) -> Result<ExitCode, BoxError>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut signals = Signals::new()?;
        let env = ExtensionEnv::from_env()?;
        let mut server = match &env.unix_socket {
            #[cfg(unix)]
            Some(path) => MtlsServer::bind_unix(path).await?,
            #[cfg(not(unix))]
            Some(_) => return Err("Unix sockets need a Unix host".into()),
            None => MtlsServer::bind_all_interfaces(env.port_or(self.default_port)).await?,
        };
        let mut acceptor = None;
        let _watch = match &env.tls {
            Some(tls) => {
                let tls_acceptor = MtlsAcceptor::new(tls.clone());
                server = server.tls(tls_acceptor.clone());
                acceptor = Some(tls_acceptor);
                Some(tls.watch(DEFAULT_WATCH_INTERVAL))
            }
            None => None,
        };
        let mode = match &env.tls {
            None => "plain HTTP".to_owned(),
            Some(tls) => match tls.client_auth() {
                ClientAuth::Required => {
                    let trust = tls.trust_summary();
                    format!(
                        "HTTPS, client certificates required ({} CAs, {} pinned, {} CRLs)",
                        trust.anchors, trust.pinned, trust.crls
                    )
                }
                ClientAuth::Optional => "HTTPS, client certificates optional".to_owned(),
                ClientAuth::None => "HTTPS, no client authentication".to_owned(),
            },
        };
        if let Some(policy) = &env.client_allow {
            tracing::info!(%policy, "client policy on the service port");
        }
        tracing::info!(listen = %server.local_addr()?, "{} serving {mode}", self.name);

        let ready = Arc::new(AtomicBool::new(true));
        let health_server =
            MtlsServer::bind_all_interfaces(env.health_port_or(self.default_health_port)).await?;
        tracing::info!(listen = %health_server.local_addr()?, "health probes serving plain HTTP");
        let health = HealthService {
            ready: ready.clone(),
            metrics: self.metrics.clone(),
        };

        if let Some(acceptor) = acceptor.clone() {
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(STATS_INTERVAL);
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    tracing::info!(stats = %acceptor.stats(), "TLS");
                }
            });
        }

        let (stop_service, service_stopped) = tokio::sync::watch::channel(false);
        let (stop_health, health_stopped) = tokio::sync::watch::channel(false);
        let server = server
            .grace_period(self.grace_period)
            .with_graceful_shutdown(stopped(service_stopped));
        // The policy wraps the whole router (cheaper than a router-level layer); the health
        // port stays outside it.
        let mut service = match env.client_allow.clone() {
            Some(policy) => tokio::spawn(
                server.serve(ClientCertLayer::require().with_policy(policy).layer(routes)),
            ),
            None => tokio::spawn(server.serve(routes)),
        };
        let mut probes = tokio::spawn(
            health_server
                .with_graceful_shutdown(stopped(health_stopped))
                .serve(health),
        );

        let signal = tokio::select! {
            signal = signals.recv() => signal?,
            ended = &mut service => {
                ended??;
                return Err("the service stopped on its own".into());
            }
            ended = &mut probes => {
                ended??;
                return Err("the health server stopped on its own".into());
            }
        };
        ready.store(false, Ordering::SeqCst);
        tracing::info!(
            signal = signal.name,
            drain_delay = ?self.drain_delay,
            "shutdown signal: readiness is DOWN; still serving for the drain delay"
        );
        tokio::time::sleep(self.drain_delay).await;
        tracing::info!(grace_period = ?self.grace_period, "drain delay over: shutting down");
        let _ = stop_service.send(true);
        service.await??;
        let _ = stop_health.send(true);
        probes.await??;
        if let Some(acceptor) = acceptor {
            tracing::info!(stats = %acceptor.stats(), "TLS at shutdown");
        }
        tracing::info!(exit_code = 128 + u32::from(signal.number), "stopped");
        Ok(ExitCode::from(128 + signal.number))
    }
}

async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

struct Signal {
    name: &'static str,
    number: u8,
}

/// SIGTERM and SIGINT, listened for from creation on (so that a signal sent as soon as the
/// listeners are up is not the default action, death).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    #[cfg(unix)]
    async fn recv(&mut self) -> std::io::Result<Signal> {
        Ok(tokio::select! {
            _ = self.term.recv() => Signal { name: "SIGTERM", number: 15 },
            _ = self.int.recv() => Signal { name: "SIGINT", number: 2 },
        })
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) -> std::io::Result<Signal> {
        tokio::signal::ctrl_c().await?;
        Ok(Signal {
            name: "SIGINT",
            number: 2,
        })
    }
}

/// The health port: liveness, readiness, metrics.
#[derive(Clone)]
struct HealthService {
    ready: Arc<AtomicBool>,
    metrics: Option<Render>,
}

const UP: &str = "{\"status\":\"UP\"}\n";
const DOWN: &str = "{\"status\":\"DOWN\"}\n";

impl Service<Request<Incoming>> for HealthService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let json = "application/json";
        let (status, content_type, body) = match req.uri().path() {
            "/health/liveness" => (StatusCode::OK, json, Bytes::from_static(UP.as_bytes())),
            "/health/readiness" if self.ready.load(Ordering::SeqCst) => {
                (StatusCode::OK, json, Bytes::from_static(UP.as_bytes()))
            }
            "/health/readiness" => (
                StatusCode::SERVICE_UNAVAILABLE,
                json,
                Bytes::from_static(DOWN.as_bytes()),
            ),
            "/metrics" => match &self.metrics {
                Some(render) => (
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    Bytes::from(render()),
                ),
                None => (
                    StatusCode::NOT_FOUND,
                    "text/plain; charset=utf-8",
                    Bytes::from_static(b"no metrics recorder\n"),
                ),
            },
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                Bytes::from_static(b"not found\n"),
            ),
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        if let Ok(value) = header::HeaderValue::from_str(content_type) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        std::future::ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_delay_forms() {
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("-1"), None);
    }
}
