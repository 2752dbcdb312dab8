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
//!     // Logs first (to stderr): STEADYBIT_LOG_LEVEL, _FORMAT, _COLOR, RUST_LOG.
//!     let runtime = ExtensionRuntime::init("my-extension")
//!         .version(env!("CARGO_PKG_VERSION"))
//!         .on_shutdown(|| async { /* abort the attacks still running */ });
//!     let routes = axum::Router::new().route("/", axum::routing::get(|| async { "{}" }));
//!     runtime.run(routes).await
//! }
//! ```
//!
//! [`ExtensionRuntime::run`] reads the [`ExtensionEnv`] (a misconfiguration is logged and exits
//! 1), serves the routes on the extension port — HTTPS with the contract's certificates when
//! configured, wrapped in a [`ClientCertLayer`] when
//! `TOWER_MTLS_CLIENT_ALLOW` is set, reloading certificates, trust and CRLs live — and serves
//! plain HTTP on the health port (on a Unix socket, `STEADYBIT_EXTENSION_UNIX_SOCKET`, the
//! probes answer on the socket itself and no health port is opened, as in the Go kit):
//!
//! | path | answer |
//! |---|---|
//! | `/health/liveness` | `200 {"status":"UP"}` while the process runs |
//! | `/health/readiness` | `200 {"status":"UP"}`, then `503 {"status":"DOWN"}` from the shutdown signal on |
//! | `/metrics` | what [`ExtensionRuntime::metrics`] renders (the Prometheus text format), `404` without it |
//!
//! On SIGTERM, SIGINT or SIGUSR1 (the Go kit's `extsignals.Kill`) readiness answers 503 at once
//! while the extension keeps serving for the drain delay (default 5 s, `TOWER_MTLS_DRAIN_DELAY`),
//! so that Kubernetes takes the pod out of its endpoints before it stops; then the shutdown hook
//! runs ([`ExtensionRuntime::on_shutdown`], the kit's "stop actions" step); then the service
//! stops accepting and lets requests in flight finish within its grace period (default 10 s,
//! [`ExtensionRuntime::grace_period`]); then the process exits with 128 + the signal number
//! (143 for SIGTERM, 130 for SIGINT, 138 for SIGUSR1), like the Go kit. The name, version and
//! revision are logged at startup, like the kit's `extbuild.PrintBuildInformation`.
//!
//! | variable | meaning |
//! |---|---|
//! | `STEADYBIT_LOG_LEVEL` | `trace`, `debug`, `info` (default), `warn`, `error` |
//! | `STEADYBIT_LOG_FORMAT` | `text` (default) or `json`: one JSON object per line, with the event's fields at the top level |
//! | `STEADYBIT_LOG_COLOR` | `true` colours, `false` never; unset: only when stderr is a terminal and `NO_COLOR` is unset (the kit's README; its code inverts `true` and `false`) |
//! | `NO_COLOR` | set and not empty: no colours unless `STEADYBIT_LOG_COLOR=true` |
//! | `RUST_LOG` | finer filters on top, e.g. `tower_mtls=debug,hyper=warn` |
//! | `STEADYBIT_EXTENSION_ENABLE_PPROF` | recognised: `true` logs a warning that pprof is not supported |
//! | `TOWER_MTLS_DRAIN_DELAY` | how long to keep serving after the signal: seconds (`5`) or with a unit (`500ms`, `5s`) |

use std::convert::Infallible;
use std::fmt;
use std::io::IsTerminal;
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
type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
type Hook = Box<dyn FnOnce() -> BoxFuture + Send>;

/// How log lines are written (`STEADYBIT_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// Sets up `tracing` from `STEADYBIT_LOG_LEVEL`, `STEADYBIT_LOG_FORMAT`, `STEADYBIT_LOG_COLOR`,
/// `NO_COLOR` and `RUST_LOG` (see the [module docs](self)), writing to stderr as the Go kit does. Does nothing if a global subscriber is set
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
    let colour = log_colour(
        get(vars::LOG_COLOR),
        std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        std::io::stderr().is_terminal(),
    );
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
        // stderr, like the Go kit's zerolog writer: stdout stays free for the program's output.
        .with_writer(std::io::stderr);
    // A subscriber set already (tests, an application's own) stays.
    let _ = match chosen {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(*colour.as_ref().unwrap_or(&false))
            .try_init(),
    };
    if !ignored.is_empty() {
        tracing::warn!(ignored = ?ignored, "RUST_LOG: directives that do not parse are ignored");
    }
    level?;
    colour?;
    format
}

/// Whether text logs are coloured: `STEADYBIT_LOG_COLOR` as the Go kit's README documents it
/// (`true` always, `false` never) — not as its `getNoColor` reads it, which inverts the two —
/// and, when it is unset, only on a terminal and without `NO_COLOR`.
fn log_colour(value: Option<String>, no_color: bool, terminal: bool) -> Result<bool, ConfigError> {
    match value.map(|v| v.to_ascii_lowercase()).as_deref() {
        None => Ok(terminal && !no_color),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(ConfigError::Env {
            variable: vars::LOG_COLOR,
            reason: format!(
                "expected true or false (or unset: colours only on a terminal), got {other:?}"
            ),
        }),
    }
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
    version: String,
    revision: String,
    on_shutdown: Option<Hook>,
}

impl fmt::Debug for ExtensionRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtensionRuntime")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("drain_delay", &self.drain_delay)
            .field("grace_period", &self.grace_period)
            .field("metrics", &self.metrics.is_some())
            .field("version", &self.version)
            .field("revision", &self.revision)
            .field("on_shutdown", &self.on_shutdown.is_some())
            .finish_non_exhaustive()
    }
}

impl ExtensionRuntime {
    /// Sets up logging ([`init_logging`]) and reads the runtime's own variables. `name` is
    /// logged at startup (with [`version`](Self::version)) and names a startup error. Errors are
    /// reported by [`run`](Self::run), after logging is up.
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
            version: "unknown".to_owned(),
            revision: "unknown".to_owned(),
            on_shutdown: None,
        }
    }

    /// The extension's version, logged at startup with its name like the Go kit's `extbuild`
    /// (default `unknown`; pass `env!("CARGO_PKG_VERSION")`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The source revision logged at startup (default `unknown`), e.g. a commit hash set at
    /// build time.
    pub fn revision(mut self, revision: impl Into<String>) -> Self {
        self.revision = revision.into();
        self
    }

    /// Runs `hook` once on SIGTERM, SIGINT or SIGUSR1, after readiness turned `503` and the
    /// drain delay, and before the service stops accepting — the Go kit's "stop actions" step,
    /// where an extension aborts the attacks it is running. It runs after the drain so that
    /// attacks started while the endpoints were still being updated are stopped too. The
    /// shutdown waits for it at most the grace period, then goes on (and logs it).
    pub fn on_shutdown<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.on_shutdown = Some(Box::new(move || Box::pin(hook())));
        self
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
    /// ([`tls::metrics::describe`](crate::tls::accept::metrics::describe)): install the recorder first.
    ///
    /// A recorder that keeps samples until they are read needs its own upkeep:
    /// `metrics-exporter-prometheus`'s `install_recorder` leaves `PrometheusHandle::run_upkeep`
    /// to the caller, and until a scrape or the upkeep drains them, every handshake's duration
    /// sample stays in memory. The `extension` example runs it every 5 s.
    pub fn metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        #[cfg(feature = "metrics")]
        crate::tls::accept::metrics::describe();
        self.metrics = Some(Arc::new(render));
        self
    }

    /// The log format in use.
    pub fn log_format(&self) -> LogFormat {
        self.format
    }

    /// Reads the [`ExtensionEnv`], serves `routes` and the health probes until SIGTERM, SIGINT
    /// or SIGUSR1, drains, shuts down, and returns the exit code: 128 + the signal number, or 1
    /// after a startup error (logged).
    pub async fn run<S, B>(mut self, routes: S) -> ExitCode
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let name = self.name.clone();
        tracing::info!(
            name = %self.name,
            version = %self.version,
            revision = %self.revision,
            tower_mtls = env!("CARGO_PKG_VERSION"),
            "Build information"
        );
        let result = match self.startup_error.take() {
            Some(e) => Err(e.into()),
            None => self.serve(routes).await,
        };
        match result {
            Ok(code) => code,
            Err(error) => {
                // The log goes to stderr: the line a failed pod shows.
                tracing::error!(error = %error, "{name} cannot start");
                ExitCode::FAILURE
            }
        }
    }

    async fn serve<S, B>(mut self, routes: S) -> Result<ExitCode, BoxError>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut signals = Signals::new()?;
        let env = ExtensionEnv::from_env()?;
        pprof_from_env()?;
        let mut server = match &env.unix_socket {
            #[cfg(unix)]
            Some(path) => MtlsServer::bind_unix(path).await?,
            #[cfg(not(unix))]
            Some(_) => return Err("Unix sockets need a Unix host".into()),
            None => MtlsServer::bind_all_interfaces(env.port_or(self.default_port)).await?,
        };
        if env.unix_socket.is_some() && env.tls.is_some() && !env.unix_socket_tls {
            // Once, at startup: the kit's rule, which agents rely on.
            tracing::warn!(
                "the TLS variables apply to TCP only: the Unix socket serves plain HTTP (its file \
                 permissions guard it), as the Go extension-kit does; set {}=true for TLS on it",
                vars::UNIX_SOCKET_TLS
            );
        }
        let mut acceptor = None;
        let _watch = match env.listener_tls() {
            Some(tls) => {
                let tls_acceptor = MtlsAcceptor::new(tls.clone());
                server = server.tls(tls_acceptor.clone());
                acceptor = Some(tls_acceptor);
                Some(tls.watch(DEFAULT_WATCH_INTERVAL))
            }
            None => None,
        };
        let mode = match env.listener_tls() {
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
        let health = HealthService {
            ready: ready.clone(),
            metrics: self.metrics.clone(),
        };
        // On a Unix socket the kit serves the probes on the socket's own handler and opens no
        // health port; so do we.
        let health_server = match env.unix_socket {
            Some(_) => {
                tracing::info!("health probes on the Unix socket: no health port");
                None
            }
            None => {
                let health_server =
                    MtlsServer::bind_all_interfaces(env.health_port_or(self.default_health_port))
                        .await?;
                tracing::info!(listen = %health_server.local_addr()?, "health probes serving plain HTTP");
                Some(health_server)
            }
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
        // The policy wraps the whole router (cheaper than a router-level layer); the probes
        // stay outside it.
        let probes_here = health_server.is_none().then(|| health.clone());
        let mut service = match env.client_allow.clone() {
            Some(policy) => spawn_service(
                server,
                probes_here,
                ClientCertLayer::require().with_policy(policy).layer(routes),
            ),
            None => spawn_service(server, probes_here, routes),
        };
        let mut probes = match health_server {
            Some(health_server) => tokio::spawn(
                health_server
                    .with_graceful_shutdown(stopped(health_stopped))
                    .serve(health),
            ),
            None => tokio::spawn(async move {
                stopped(health_stopped).await;
                Ok(())
            }),
        };

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
        if let Some(hook) = self.on_shutdown.take() {
            tracing::info!("drain delay over: running the shutdown hook");
            if tokio::time::timeout(self.grace_period, hook())
                .await
                .is_err()
            {
                tracing::warn!(grace_period = ?self.grace_period, "the shutdown hook did not finish within the grace period; shutting down anyway");
            }
        }
        tracing::info!(grace_period = ?self.grace_period, "shutting down: the service stops accepting");
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

/// Reads `STEADYBIT_EXTENSION_ENABLE_PPROF`: recognised, never silently ignored.
fn pprof_from_env() -> Result<(), ConfigError> {
    let value = std::env::var(vars::ENABLE_PPROF)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    if super::boolean(vars::ENABLE_PPROF, value)? == Some(true) {
        tracing::warn!(
            "{} is true, but pprof is not supported by a Rust extension: no /debug/pprof/ \
             handlers are served",
            vars::ENABLE_PPROF
        );
    }
    Ok(())
}

/// Serves `service`, behind the probes when they share its listener.
fn spawn_service<S, B>(
    server: MtlsServer,
    probes: Option<HealthService>,
    service: S,
) -> tokio::task::JoinHandle<std::io::Result<()>>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    match probes {
        // The TCP path pays for no wrapper.
        None => tokio::spawn(server.serve(service)),
        Some(probes) => tokio::spawn(server.serve(WithProbes {
            probes,
            inner: service,
        })),
    }
}

/// The service, with the health probes in front of it when they are served on the same
/// listener (a Unix socket).
#[derive(Clone)]
struct WithProbes<S> {
    probes: HealthService,
    inner: S,
}

impl<S, B> Service<Request<Incoming>> for WithProbes<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = Response<http_body_util::Either<Full<Bytes>, B>>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        use http_body_util::Either;
        if let Some(response) = self.probes.answer(req.uri().path()) {
            return Box::pin(std::future::ready(Ok(response.map(Either::Left))));
        }
        let future = self.inner.call(req);
        Box::pin(async move { Ok(future.await.map_err(Into::into)?.map(Either::Right)) })
    }
}

async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

struct Signal {
    name: &'static str,
    number: u8,
}

/// SIGTERM, SIGINT and SIGUSR1 (the kit's `extsignals.Kill`: the same orderly shutdown, exit
/// 138), listened for from creation on (so that a signal sent as soon as the
/// listeners are up is not the default action, death).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                usr1: signal(SignalKind::user_defined1())?,
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
            _ = self.usr1.recv() => Signal { name: "SIGUSR1", number: 10 },
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
        std::future::ready(Ok(self.answer(req.uri().path()).unwrap_or_else(|| {
            respond(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                Bytes::from_static(b"not found\n"),
            )
        })))
    }
}

impl HealthService {
    /// The answer for `path` when it is a probe (or `/metrics` with a recorder); `None` for
    /// anything else.
    fn answer(&self, path: &str) -> Option<Response<Full<Bytes>>> {
        let json = "application/json";
        let (status, content_type, body) = match path {
            "/health/liveness" => (StatusCode::OK, json, Bytes::from_static(UP.as_bytes())),
            "/health/readiness" if self.ready.load(Ordering::SeqCst) => {
                (StatusCode::OK, json, Bytes::from_static(UP.as_bytes()))
            }
            "/health/readiness" => (
                StatusCode::SERVICE_UNAVAILABLE,
                json,
                Bytes::from_static(DOWN.as_bytes()),
            ),
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(self.metrics.as_ref()?()),
            ),
            _ => return None,
        };
        Some(respond(status, content_type, body))
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
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

    /// The kit's README, not its inverted `getNoColor`: `true` colours, `false` never, unset
    /// only on a terminal (and without `NO_COLOR`).
    #[test]
    fn log_colour_follows_the_kit_readme() {
        let v = |s: &str| Some(s.to_owned());
        for (terminal, no_color) in [(false, false), (true, false), (true, true), (false, true)] {
            assert!(log_colour(v("true"), no_color, terminal).unwrap());
            assert!(log_colour(v("TRUE"), no_color, terminal).unwrap());
            assert!(!log_colour(v("false"), no_color, terminal).unwrap());
        }
        assert!(log_colour(None, false, true).unwrap());
        assert!(!log_colour(None, true, true).unwrap());
        assert!(!log_colour(None, false, false).unwrap());
        let err = log_colour(v("yes"), false, true).unwrap_err().to_string();
        assert!(
            err.contains("STEADYBIT_LOG_COLOR") && err.contains("\"yes\""),
            "{err}"
        );
    }
}
