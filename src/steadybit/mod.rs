//! The Steadybit extension contract: configuration from environment variables.
//!
//! | variable | meaning |
//! |---|---|
//! | `STEADYBIT_EXTENSION_PORT` | TCP port to listen on (the extension picks its default) |
//! | `STEADYBIT_EXTENSION_TLS_SERVER_CERT` | PEM file: the server certificate chain |
//! | `STEADYBIT_EXTENSION_TLS_SERVER_KEY` | PEM file: its private key |
//! | `STEADYBIT_EXTENSION_TLS_CLIENT_CAS` | comma-separated PEM files or directories trusted for client certificates |
//! | `STEADYBIT_EXTENSION_UNIX_SOCKET` | serve on this Unix socket instead of TCP: plain HTTP, health probes on the socket too (as the Go kit does) |
//! | `TOWER_MTLS_UNIX_SOCKET_TLS` | *(this crate's addition)* `true`: TLS on the Unix socket as on TCP |
//! | `STEADYBIT_EXTENSION_HEALTH_PORT` | plain-HTTP port for the Kubernetes probes |
//! | `TOWER_MTLS_CLIENT_CRLS` | *(this crate's addition)* comma-separated CRL files or directories |
//! | `TOWER_MTLS_CLIENT_ALLOW` | *(this crate's addition)* who may call: a [`ClientCertPolicy`] in its text form, e.g. `cn=steadybit-agent & o=Steadybit` |
//! | `TOWER_MTLS_CLIENT_CRLS_REQUIRE_FRESH` | *(this crate's addition)* `true`: refuse clients whose issuer's CRL is past its nextUpdate |
//! | `TOWER_MTLS_SESSION_TICKET_KEYS` | *(this crate's addition)* a file of shared session ticket keys, so that replicas resume each other's sessions (see [`TlsConfigBuilder::session_ticket_keys`]) |
//! | `STEADYBIT_LOG_LEVEL`, `STEADYBIT_LOG_FORMAT` | log level and `text`/`json` format, read by [`runtime`](self#runtime) (feature `steadybit-runtime`) |
//! | `TOWER_MTLS_DRAIN_DELAY` | *(this crate's addition)* how long the runtime keeps serving after SIGTERM (default 5 s) |
//!
//! The rules are those of Steadybit's Go extension-kit: TLS is on when any of the certificate,
//! key or client CAs is set, and then certificate **and** key are required; client CAs make
//! client certificates mandatory; without TLS variables the extension speaks plain HTTP. Where
//! the Go kit is lenient this crate is not: an unreadable or empty CA source stops startup
//! instead of leaving an empty trust pool. A Unix socket serves plain HTTP like the kit's,
//! whatever the TLS variables say (they apply to TCP only; [`ExtensionEnv::listener_tls`]),
//! unless `TOWER_MTLS_UNIX_SOCKET_TLS=true`. Empty values count as unset.
//!
//! # Runtime
//!
//! With the feature `steadybit-runtime`, `steadybit::runtime::ExtensionRuntime` does what every
//! extension's `main` does besides its routes: log set-up, the health port with readiness and
//! `/metrics`, SIGTERM with a drain delay, a graceful shutdown and exit code 128 + signal.

use std::path::PathBuf;

use crate::tls::ClientTrust;
use crate::tls::config::error::ConfigError;
use crate::{ClientAuth, ClientCertPolicy, TlsConfig, TlsConfigBuilder};

#[cfg(feature = "agent")]
#[cfg_attr(docsrs, doc(cfg(feature = "agent")))]
pub mod agent;

#[cfg(feature = "steadybit-runtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "steadybit-runtime")))]
pub mod runtime;

/// The environment variable names.
pub mod vars {
    /// TCP port of the extension.
    pub const PORT: &str = "STEADYBIT_EXTENSION_PORT";
    /// PEM file with the server certificate chain.
    pub const TLS_SERVER_CERT: &str = "STEADYBIT_EXTENSION_TLS_SERVER_CERT";
    /// PEM file with the server private key.
    pub const TLS_SERVER_KEY: &str = "STEADYBIT_EXTENSION_TLS_SERVER_KEY";
    /// Comma-separated PEM files or directories trusted for client certificates.
    pub const TLS_CLIENT_CAS: &str = "STEADYBIT_EXTENSION_TLS_CLIENT_CAS";
    /// Unix socket to serve on instead of TCP.
    pub const UNIX_SOCKET: &str = "STEADYBIT_EXTENSION_UNIX_SOCKET";
    /// Plain-HTTP port for the health probes.
    pub const HEALTH_PORT: &str = "STEADYBIT_EXTENSION_HEALTH_PORT";
    /// Comma-separated CRL files or directories (this crate's addition to the contract).
    pub const CLIENT_CRLS: &str = "TOWER_MTLS_CLIENT_CRLS";
    /// `true` refuses clients whose issuer's CRL is past its nextUpdate (this crate's
    /// addition; default `false`: a stale CRL is still applied, and warned about).
    pub const CLIENT_CRLS_REQUIRE_FRESH: &str = "TOWER_MTLS_CLIENT_CRLS_REQUIRE_FRESH";
    /// A client-certificate policy in text form (this crate's addition; see
    /// [`ClientCertLayer`](crate::ClientCertLayer)).
    pub const CLIENT_ALLOW: &str = "TOWER_MTLS_CLIENT_ALLOW";
    /// A file of shared session ticket keys, one base64 key per line (this crate's addition;
    /// see [`TlsConfigBuilder::session_ticket_keys`](crate::TlsConfigBuilder::session_ticket_keys)).
    pub const SESSION_TICKET_KEYS: &str = "TOWER_MTLS_SESSION_TICKET_KEYS";
    /// Log level: `trace`, `debug`, `info`, `warn` or `error` (read by the Go extension-kit and
    /// by the `runtime` module).
    pub const LOG_LEVEL: &str = "STEADYBIT_LOG_LEVEL";
    /// Log format: `text` or `json` (read by the Go extension-kit and by the `runtime` module).
    pub const LOG_FORMAT: &str = "STEADYBIT_LOG_FORMAT";
    /// How long an extension keeps serving after SIGTERM, readiness already down (this crate's
    /// addition, read by the `runtime` module; default 5 s).
    pub const DRAIN_DELAY: &str = "TOWER_MTLS_DRAIN_DELAY";
    /// `true`: serve TLS on the Unix socket too (this crate's addition; default `false`: like
    /// the Go extension-kit, the socket speaks plain HTTP whatever the TLS variables say).
    pub const UNIX_SOCKET_TLS: &str = "TOWER_MTLS_UNIX_SOCKET_TLS";
    /// Log colours: `true` always, `false` never, unset only when stderr is a terminal (and
    /// `NO_COLOR` is unset). Read by the Go extension-kit and by the `runtime` module.
    pub const LOG_COLOR: &str = "STEADYBIT_LOG_COLOR";
    /// The Go extension-kit's switch for its `/debug/pprof/` handlers. A Rust extension has no
    /// pprof: the `runtime` module logs that it is not supported when it is `true`.
    pub const ENABLE_PPROF: &str = "STEADYBIT_EXTENSION_ENABLE_PPROF";
}

/// Everything the extension contract configures, read from the environment.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExtensionEnv {
    /// `STEADYBIT_EXTENSION_PORT`, if set.
    pub port: Option<u16>,
    /// `STEADYBIT_EXTENSION_UNIX_SOCKET`, if set: serve there instead of on the TCP port.
    pub unix_socket: Option<PathBuf>,
    /// `TOWER_MTLS_UNIX_SOCKET_TLS`: whether the Unix socket speaks TLS when TLS is configured.
    /// `false` by default, as in the Go extension-kit: the socket serves plain HTTP (its file
    /// permissions guard it) and the TLS variables apply to TCP only.
    pub unix_socket_tls: bool,
    /// `STEADYBIT_EXTENSION_HEALTH_PORT`, if set.
    pub health_port: Option<u16>,
    /// The TLS configuration; `None` when no TLS variable is set (plain HTTP).
    pub tls: Option<TlsConfig>,
    /// `TOWER_MTLS_CLIENT_ALLOW`, parsed: who may call the extension's routes (give it to a
    /// [`ClientCertLayer`](crate::ClientCertLayer) with `with_policy`); `None` when unset.
    pub client_allow: Option<ClientCertPolicy>,
}

impl ExtensionEnv {
    /// Reads the contract from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the contract through `lookup` (a variable name → its value), e.g. from a map in
    /// tests.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_lookup_with(lookup, |builder| builder)
    }

    /// Reads the contract through `lookup`, letting `customize` add what the variables do not
    /// cover to the TLS configuration before it is built (called only when TLS is
    /// configured): session ticket keys, an expiry window, optional client authentication for
    /// a gRPC server that answers `UNAUTHENTICATED` itself.
    ///
    /// ```no_run
    /// use tower_mtls::steadybit::ExtensionEnv;
    ///
    /// let env = ExtensionEnv::from_lookup_with(
    ///     |name| std::env::var(name).ok(),
    ///     |tls| if tls.has_client_trust() { tls.optional_client_auth() } else { tls },
    /// )?;
    /// # Ok::<(), tower_mtls::ConfigError>(())
    /// ```
    pub fn from_lookup_with(
        lookup: impl Fn(&str) -> Option<String>,
        customize: impl FnOnce(TlsConfigBuilder) -> TlsConfigBuilder,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let env = Self {
            port: port(vars::PORT, get(vars::PORT))?,
            unix_socket: get(vars::UNIX_SOCKET).map(PathBuf::from),
            unix_socket_tls: boolean(vars::UNIX_SOCKET_TLS, get(vars::UNIX_SOCKET_TLS))?
                .unwrap_or(false),
            health_port: port(vars::HEALTH_PORT, get(vars::HEALTH_PORT))?,
            tls: match tls_builder(&get)? {
                Some(builder) => Some(customize(builder).build()?),
                None => None,
            },
            client_allow: policy(get(vars::CLIENT_ALLOW))?,
        };
        if env.unix_socket_tls && env.unix_socket.is_none() {
            return Err(ConfigError::Env {
                variable: vars::UNIX_SOCKET_TLS,
                reason: format!("set, but {} is not", vars::UNIX_SOCKET),
            });
        }
        if env.unix_socket_tls && env.tls.is_none() {
            return Err(ConfigError::Env {
                variable: vars::UNIX_SOCKET_TLS,
                reason: format!(
                    "set, but TLS is not configured: set {} and {}",
                    vars::TLS_SERVER_CERT,
                    vars::TLS_SERVER_KEY
                ),
            });
        }
        if env.client_allow.is_some() && env.unix_socket.is_some() && !env.unix_socket_tls {
            return Err(ConfigError::Env {
                variable: vars::CLIENT_ALLOW,
                reason: format!(
                    "set, but the Unix socket {} serves plain HTTP, where no client presents a \
                     certificate: set {}=true to serve TLS on the socket",
                    vars::UNIX_SOCKET,
                    vars::UNIX_SOCKET_TLS
                ),
            });
        }
        let client_auth = env.tls.as_ref().map(TlsConfig::client_auth);
        if env.client_allow.is_some() && matches!(client_auth, None | Some(ClientAuth::None)) {
            return Err(ConfigError::Env {
                variable: vars::CLIENT_ALLOW,
                reason: format!(
                    "set, but client certificates are not requested: set {}",
                    vars::TLS_CLIENT_CAS
                ),
            });
        }
        Ok(env)
    }

    /// The TLS configuration of the service listener: [`tls`](Self::tls), except on a Unix
    /// socket without [`unix_socket_tls`](Self::unix_socket_tls), which serves plain HTTP like
    /// the Go extension-kit.
    pub fn listener_tls(&self) -> Option<&TlsConfig> {
        match (&self.unix_socket, self.unix_socket_tls) {
            (Some(_), false) => None,
            _ => self.tls.as_ref(),
        }
    }

    /// The port to serve on: `STEADYBIT_EXTENSION_PORT`, else `default`.
    pub fn port_or(&self, default: u16) -> u16 {
        self.port.unwrap_or(default)
    }

    /// The health port: `STEADYBIT_EXTENSION_HEALTH_PORT`, else `default`.
    pub fn health_port_or(&self, default: u16) -> u16 {
        self.health_port.unwrap_or(default)
    }
}

fn port(variable: &'static str, value: Option<String>) -> Result<Option<u16>, ConfigError> {
    value
        .map(|v| {
            v.parse::<u16>().map_err(|_| ConfigError::Env {
                variable,
                reason: format!("not a port number (0-65535): {v:?}"),
            })
        })
        .transpose()
}

/// The client-trust part of the contract alone — `STEADYBIT_EXTENSION_TLS_CLIENT_CAS`,
/// `TOWER_MTLS_CLIENT_CRLS`, `TOWER_MTLS_CLIENT_CRLS_REQUIRE_FRESH` — through `lookup`, without
/// the server's certificate or key: what judging a client certificate needs
/// ([`ClientTrust::verify_client_chain`]). `Ok(None)` when no client CA is set.
pub fn client_trust_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<ClientTrust>, ConfigError> {
    let get = |name: &str| {
        lookup(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let cas = list(get(vars::TLS_CLIENT_CAS));
    let crls = list(get(vars::CLIENT_CRLS));
    let require_fresh = boolean(
        vars::CLIENT_CRLS_REQUIRE_FRESH,
        get(vars::CLIENT_CRLS_REQUIRE_FRESH),
    )?;
    if cas.is_empty() {
        if !crls.is_empty() {
            return Err(ConfigError::Env {
                variable: vars::CLIENT_CRLS,
                reason: format!(
                    "set, but {} is not: revocation lists only apply to client certificates",
                    vars::TLS_CLIENT_CAS
                ),
            });
        }
        return Ok(None);
    }
    if require_fresh == Some(true) && crls.is_empty() {
        return Err(ConfigError::Env {
            variable: vars::CLIENT_CRLS_REQUIRE_FRESH,
            reason: format!("set to true, but {} is not set", vars::CLIENT_CRLS),
        });
    }
    let mut builder = ClientTrust::builder().require_fresh_crls(require_fresh.unwrap_or(false));
    for ca in cas {
        builder = builder.client_trust(ca);
    }
    for crl in crls {
        builder = builder.client_crl(crl);
    }
    builder.build().map(Some)
}

/// `TOWER_MTLS_CLIENT_ALLOW` through `lookup`, parsed; `Ok(None)` when unset. (Whether client
/// certificates are required, which the policy needs, is [`ExtensionEnv`]'s check.)
pub fn client_allow_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<ClientCertPolicy>, ConfigError> {
    policy(
        lookup(vars::CLIENT_ALLOW)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty()),
    )
}

fn policy(text: Option<String>) -> Result<Option<ClientCertPolicy>, ConfigError> {
    text.map(|text| {
        text.parse::<ClientCertPolicy>()
            .map_err(|e| ConfigError::Env {
                variable: vars::CLIENT_ALLOW,
                reason: e.to_string(),
            })
    })
    .transpose()
}

/// `true`/`1` or `false`/`0` (ASCII case-insensitive).
pub(crate) fn boolean(
    variable: &'static str,
    value: Option<String>,
) -> Result<Option<bool>, ConfigError> {
    match value.as_deref() {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(Some(false)),
        Some(other) => Err(ConfigError::Env {
            variable,
            reason: format!("expected true or false, got {other:?}"),
        }),
    }
}

fn list(value: Option<String>) -> Vec<PathBuf> {
    value
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn tls_builder(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<TlsConfigBuilder>, ConfigError> {
    let cert = get(vars::TLS_SERVER_CERT);
    let key = get(vars::TLS_SERVER_KEY);
    let cas = list(get(vars::TLS_CLIENT_CAS));
    let crls = list(get(vars::CLIENT_CRLS));
    let ticket_keys = get(vars::SESSION_TICKET_KEYS).map(PathBuf::from);
    let require_fresh = boolean(
        vars::CLIENT_CRLS_REQUIRE_FRESH,
        get(vars::CLIENT_CRLS_REQUIRE_FRESH),
    )?;
    if require_fresh == Some(true) && crls.is_empty() {
        return Err(ConfigError::Env {
            variable: vars::CLIENT_CRLS_REQUIRE_FRESH,
            reason: format!("set to true, but {} is not set", vars::CLIENT_CRLS),
        });
    }
    if cert.is_none() && key.is_none() && cas.is_empty() {
        if ticket_keys.is_some() {
            return Err(ConfigError::Env {
                variable: vars::SESSION_TICKET_KEYS,
                reason: format!(
                    "set, but TLS is not configured: session tickets need {} and {}",
                    vars::TLS_SERVER_CERT,
                    vars::TLS_SERVER_KEY
                ),
            });
        }
        if !crls.is_empty() {
            return Err(ConfigError::Env {
                variable: vars::CLIENT_CRLS,
                reason: format!(
                    "set, but TLS is not configured: revocation lists need {} (and a server certificate)",
                    vars::TLS_CLIENT_CAS
                ),
            });
        }
        return Ok(None);
    }
    let set = |present: bool, name: &'static str| present.then_some(name);
    let others = |missing: &'static str| -> String {
        [
            set(cert.is_some(), vars::TLS_SERVER_CERT),
            set(key.is_some(), vars::TLS_SERVER_KEY),
            set(!cas.is_empty(), vars::TLS_CLIENT_CAS),
        ]
        .into_iter()
        .flatten()
        .filter(|n| *n != missing)
        .collect::<Vec<_>>()
        .join(" and ")
    };
    let (cert, key) = match (cert.clone(), key.clone()) {
        (Some(cert), Some(key)) => (cert, key),
        (None, _) => {
            return Err(ConfigError::Env {
                variable: vars::TLS_SERVER_CERT,
                reason: format!(
                    "not set, but {} is: TLS needs both the server certificate and its key",
                    others(vars::TLS_SERVER_CERT)
                ),
            });
        }
        (Some(_), None) => {
            return Err(ConfigError::Env {
                variable: vars::TLS_SERVER_KEY,
                reason: format!(
                    "not set, but {} is: TLS needs both the server certificate and its key",
                    others(vars::TLS_SERVER_KEY)
                ),
            });
        }
    };
    if cas.is_empty() && !crls.is_empty() {
        return Err(ConfigError::Env {
            variable: vars::CLIENT_CRLS,
            reason: format!(
                "set, but {} is not: revocation lists only apply to client certificates",
                vars::TLS_CLIENT_CAS
            ),
        });
    }
    // Client authentication follows from the CAs: required with them, off without.
    let mut builder = TlsConfig::from_pem_files(cert, key);
    for ca in cas {
        builder = builder.client_trust(ca);
    }
    for crl in crls {
        builder = builder.client_crl(crl);
    }
    if let Some(fresh) = require_fresh {
        builder = builder.require_fresh_crls(fresh);
    }
    if let Some(path) = ticket_keys {
        builder = builder.session_ticket_keys(path);
    }
    Ok(Some(builder))
}
