//! `tower-mtls`: the doctor for mutual TLS between a Steadybit agent and an extension.
//!
//! * `check` — would the extension start with this configuration, and what would it trust?
//! * `verify` — would the extension accept this client certificate?
//! * `probe` — connect to a running extension as the agent would, and say what happened.
//! * `ticket-key` — print a fresh session ticket key line.
//!
//! Each subcommand reads the environment variables of the component it stands in for; flags
//! override them. Exit codes: 0 success, 1 refusal or a configuration that would not start,
//! 2 usage error.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod check;
mod describe;
mod probe;
mod running;
mod tickets;
mod verify;

/// Checks, verifies and probes mutual TLS between a Steadybit agent and an extension.
///
/// Every subcommand reads the environment variables of the component it stands in for
/// (`check`, `verify`: the extension's; `probe`: the agent's); flags override them, and an
/// empty flag value unsets a variable. Exit codes: 0 success, 1 refused or would not start,
/// 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "tower-mtls", version, propagate_version = true)]
struct Cli {
    /// Print one JSON object on stdout instead of the report.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the configuration as the extension would at startup, and report what it holds.
    Check(CheckArgs),
    /// Judge a client certificate chain as the extension would.
    Verify(VerifyArgs),
    /// Connect to an extension as the Steadybit agent would.
    Probe(ProbeArgs),
    /// Print a fresh session ticket key line (base64 of 32 random bytes) for
    /// TOWER_MTLS_SESSION_TICKET_KEYS.
    TicketKey,
}

/// The extension's TLS settings; each flag overrides its environment variable.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct ExtensionArgs {
    /// The server certificate chain, PEM [env: STEADYBIT_EXTENSION_TLS_SERVER_CERT]
    #[arg(long, value_name = "FILE")]
    pub(crate) server_cert: Option<String>,
    /// The server's private key, PEM [env: STEADYBIT_EXTENSION_TLS_SERVER_KEY]
    #[arg(long, value_name = "FILE")]
    pub(crate) server_key: Option<String>,
    /// Client trust: comma-separated PEM files or directories [env: STEADYBIT_EXTENSION_TLS_CLIENT_CAS]
    #[arg(long, value_name = "PATHS")]
    pub(crate) client_cas: Option<String>,
    /// CRLs: comma-separated files or directories [env: TOWER_MTLS_CLIENT_CRLS]
    #[arg(long, value_name = "PATHS")]
    pub(crate) crls: Option<String>,
    /// Refuse clients whose issuer's CRL is stale: true or false [env: TOWER_MTLS_CLIENT_CRLS_REQUIRE_FRESH]
    #[arg(long, value_name = "BOOL")]
    pub(crate) crls_require_fresh: Option<String>,
    /// The client policy, text form [env: TOWER_MTLS_CLIENT_ALLOW]
    #[arg(long, value_name = "POLICY")]
    pub(crate) policy: Option<String>,
}

impl ExtensionArgs {
    /// The flag standing in for `variable`, if given.
    fn flag(&self, variable: &str) -> Option<&String> {
        use tower_mtls::steadybit::vars;
        match variable {
            vars::TLS_SERVER_CERT => self.server_cert.as_ref(),
            vars::TLS_SERVER_KEY => self.server_key.as_ref(),
            vars::TLS_CLIENT_CAS => self.client_cas.as_ref(),
            vars::CLIENT_CRLS => self.crls.as_ref(),
            vars::CLIENT_CRLS_REQUIRE_FRESH => self.crls_require_fresh.as_ref(),
            vars::CLIENT_ALLOW => self.policy.as_ref(),
            _ => None,
        }
    }

    /// The extension's environment with the flags laid over it.
    pub(crate) fn lookup(&self, variable: &str) -> Option<String> {
        match self.flag(variable) {
            Some(value) => Some(value.clone()),
            None => std::env::var(variable).ok(),
        }
    }
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    extension: ExtensionArgs,
    /// Exit 1 when there is any warning, not only when the extension would not start.
    #[arg(long)]
    deny_warnings: bool,
    /// A running extension's metrics (`http://127.0.0.1:HEALTH_PORT/metrics`): compare the
    /// trust files it applies with the files on disk, and say whether its last reload was
    /// rejected. Run in the extension's pod, where the paths are the same.
    #[arg(long, value_name = "URL")]
    running: Option<String>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    extension: ExtensionArgs,
    /// The client's certificate chain, PEM, leaf first.
    #[arg(long, value_name = "FILE")]
    client_cert: std::path::PathBuf,
    /// Judge at this moment, RFC 3339 (e.g. 2030-01-01T00:00:00Z) [default: now]
    #[arg(long, value_name = "RFC3339", value_parser = describe::parse_rfc3339)]
    time: Option<std::time::SystemTime>,
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// The extension's URL, e.g. https://10.0.0.7:8080/
    url: String,
    /// The client certificate chain, PEM [env: STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_CHAIN_FILE]
    #[arg(long, value_name = "FILE")]
    cert: Option<String>,
    /// Its key, PEM, plain or encrypted PKCS#8 [env: STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_KEY_FILE]
    #[arg(long, value_name = "FILE")]
    key: Option<String>,
    /// The key's password [env: STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_PASSWORD]
    #[arg(long, value_name = "PASSWORD")]
    key_password: Option<String>,
    /// The extension's certificate or CA to trust, PEM [env: STEADYBIT_AGENT_EXTENSIONS_SERVER_CERT]
    #[arg(long, value_name = "FILE")]
    server_cert: Option<String>,
    /// strict, unsafe or unsafe_ip_addresses [env: STEADYBIT_AGENT_EXTENSIONS_HOSTNAME_VERIFICATION] [default: unsafe_ip_addresses]
    #[arg(long, value_name = "MODE")]
    hostname_verification: Option<String>,
    /// Extra trusted certificates, file or directory, added to the platform's trust store when no server certificate is given [env: STEADYBIT_AGENT_EXTRA_CERTS_PATH]
    #[arg(long, value_name = "PATH")]
    extra_certs: Option<String>,
    /// true: do not verify the extension's certificate at all, as the agent with the chart's insecureSkipVerify [env: STEADYBIT_AGENT_EXTENSIONS_INSECURE_SKIP_VERIFY]
    #[arg(long, value_name = "BOOL")]
    insecure_skip_verify: Option<String>,
    /// Give up connecting, handshaking or waiting for the answer after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    timeout: u64,
}

/// What a subcommand found: the JSON object, the human report, and whether it succeeded.
pub(crate) struct Outcome {
    pub(crate) ok: bool,
    pub(crate) json: serde_json::Value,
    pub(crate) human: String,
}

/// The command could not run as asked (exit 2).
pub(crate) struct UsageError(pub(crate) String);

fn main() -> ExitCode {
    // Library warnings (e.g. an unused key password) go to stderr; reports go to stdout.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOWER_MTLS_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => Ok(check::run(
            &args.extension,
            args.deny_warnings,
            args.running.as_deref(),
        )),
        Command::Verify(args) => verify::run(&args.extension, &args.client_cert, args.time),
        Command::Probe(args) => probe::run(&args),
        Command::TicketKey => Ok(tickets::new_key()),
    };
    match result {
        Ok(outcome) => {
            if cli.json {
                println!("{}", outcome.json);
            } else {
                print!("{}", outcome.human);
            }
            if outcome.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(UsageError(message)) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({ "ok": false, "usage_error": message })
                );
            }
            eprintln!("tower-mtls: {message}");
            ExitCode::from(2)
        }
    }
}
