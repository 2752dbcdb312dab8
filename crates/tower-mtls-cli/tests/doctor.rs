//! The `tower-mtls` binary as a black box: `check` and `verify` on generated PKI, `probe`
//! against the crate's `extension` example running as a real process on loopback.

use tower_mtls_test_kit::pki;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use pki::{Ca, Leaf, LeafSpec};
use serde_json::Value;

/// A generous bound for anything that should happen promptly on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs the CLI with only `vars` in its environment.
fn doctor(args: &[&str], vars: &[(&str, &Path)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tower-mtls"))
        .env_clear()
        .args(args)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_os_str())))
        .output()
        .expect("run tower-mtls")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `--json` object, with the exit code checked.
/// `value` with every run of digits in its strings replaced by `#`.
fn without_digits(value: &Value) -> Value {
    match value {
        Value::String(text) => {
            let mut out = String::with_capacity(text.len());
            for c in text.chars() {
                match (c.is_ascii_digit(), out.ends_with('#')) {
                    (true, true) => {}
                    (true, false) => out.push('#'),
                    (false, _) => out.push(c),
                }
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(without_digits).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), without_digits(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn json(out: &Output, code: i32) -> Value {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", stdout(out)))
}

/// A directory with a server identity and a client CA written to it.
struct Setup {
    dir: tempfile::TempDir,
    server_ca: Ca,
    client_ca: Ca,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_ca_path: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let server_ca = Ca::new("Server CA");
        let client_ca = Ca::new("Agent CA");
        let (server_cert, server_key) = server_ca.server().write(dir.path(), "server");
        let client_ca_path = client_ca.write(dir.path(), "agent-ca.crt");
        Setup {
            dir,
            server_ca,
            client_ca,
            server_cert,
            server_key,
            client_ca_path,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// The extension's variables: this server identity, trusting `client_cas`.
    fn extension_vars<'a>(&'a self, client_cas: &'a Path) -> Vec<(&'static str, &'a Path)> {
        vec![
            ("STEADYBIT_EXTENSION_TLS_SERVER_CERT", &self.server_cert),
            ("STEADYBIT_EXTENSION_TLS_SERVER_KEY", &self.server_key),
            ("STEADYBIT_EXTENSION_TLS_CLIENT_CAS", client_cas),
        ]
    }

    /// `verify --json --client-cert <leaf's chain>` with extra flags, against the extension's
    /// variables trusting the client CA — once with the server identity and once without it
    /// (the client trust alone), which must give the same verdict.
    fn verify(&self, leaf: &Leaf, name: &str, extra: &[&str], code: i32) -> Value {
        let (chain, _) = leaf.write(self.dir.path(), name);
        let chain = chain.to_string_lossy().into_owned();
        let mut args = vec!["verify", "--json", "--client-cert", &chain];
        args.extend_from_slice(extra);
        let full = json(
            &doctor(&args, &self.extension_vars(&self.client_ca_path)),
            code,
        );
        let trust_only = json(
            &doctor(
                &args,
                &[("STEADYBIT_EXTENSION_TLS_CLIENT_CAS", &self.client_ca_path)],
            ),
            code,
        );
        assert_eq!(full["server_identity"], true, "{full}");
        assert_eq!(trust_only["server_identity"], false, "{trust_only}");
        // Without `--time` each run judges at its own "now": the two may fall in different
        // seconds, so the time is compared only when it was given, and the numbers in the
        // reasons (rustls names the verification time) are left out.
        let timed = extra.contains(&"--time");
        let fields: &[&str] = if timed {
            &[
                "accepted",
                "tls",
                "policy",
                "failures",
                "client_chain",
                "time",
            ]
        } else {
            &["accepted", "tls", "policy", "failures", "client_chain"]
        };
        let comparable = |value: &Value| {
            if timed {
                value.clone()
            } else {
                without_digits(value)
            }
        };
        for field in fields {
            assert_eq!(
                comparable(&full[*field]),
                comparable(&trust_only[*field]),
                "{field}: with the server identity {full}\nwithout {trust_only}"
            );
        }
        full
    }
}

fn failure_classes(report: &Value) -> Vec<String> {
    report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(
                !f["hint"].as_str().unwrap().is_empty(),
                "every failure has a hint"
            );
            f["class"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn tls_reason(report: &Value) -> String {
    report["tls"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn check_reports_a_good_configuration_and_its_warnings() {
    let setup = Setup::new();
    // A pinned client certificate that expires in ten days: the check warns about it.
    let soon = SystemTime::now() + Duration::from_secs(10 * 24 * 3600);
    let pinned = setup
        .client_ca
        .issue(&LeafSpec::client("short-lived-agent").not_after_time(soon));
    let (pinned_path, _) = pinned.write(setup.dir.path(), "pinned");
    let cas = format!(
        "{},{}",
        setup.client_ca_path.display(),
        pinned_path.display()
    );
    let out = doctor(
        &[
            "check",
            "--json",
            "--client-cas",
            &cas,
            "--policy",
            "cn=steadybit-agent | o=Steadybit",
        ],
        &[
            ("STEADYBIT_EXTENSION_TLS_SERVER_CERT", &setup.server_cert),
            ("STEADYBIT_EXTENSION_TLS_SERVER_KEY", &setup.server_key),
        ],
    );
    let report = json(&out, 0);
    assert_eq!(report["starts"], true);
    assert_eq!(report["client_auth"], "required");
    let leaf = &report["server_chain"][0];
    assert_eq!(leaf["subject"], "CN=localhost");
    assert_eq!(leaf["issuer"], "O=tower-mtls tests,CN=Server CA");
    assert_eq!(leaf["key_type"], "ECDSA P-256");
    assert!(
        leaf["sans"]
            .as_array()
            .unwrap()
            .contains(&"IP:127.0.0.1".into())
    );
    let trust = &report["trust"];
    assert_eq!(
        trust["anchors"][0]["subject"],
        "O=tower-mtls tests,CN=Agent CA"
    );
    assert_eq!(trust["pinned"][0]["subject"], "CN=short-lived-agent");
    assert!(
        trust["certificate_request_ca_names_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(report["policy"]["rules"].as_array().unwrap().len(), 2);
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("pinned client certificate CN=short-lived-agent")
            && warnings.contains("(in 9 days)"),
        "{warnings}"
    );

    // The human report says the same, and --deny-warnings turns the warning into exit 1.
    let vars = setup.extension_vars(&setup.client_ca_path);
    let human = doctor(&["check"], &vars);
    assert_eq!(human.status.code(), Some(0));
    let text = stdout(&human);
    assert!(
        text.contains("would start") && text.contains("CN=localhost"),
        "{text}"
    );
    let strict = doctor(&["check", "--deny-warnings", "--client-cas", &cas], &vars);
    assert_eq!(strict.status.code(), Some(1), "{}", stdout(&strict));
}

#[test]
fn check_exits_1_with_the_servers_error_naming_the_file() {
    let setup = Setup::new();
    let missing = setup.path("no-such-ca.crt");
    let report = json(
        &doctor(&["check", "--json"], &setup.extension_vars(&missing)),
        1,
    );
    assert_eq!(report["starts"], false);
    let error = report["error"].as_str().unwrap();
    assert!(error.contains(&*missing.to_string_lossy()), "{error}");
    assert!(error.contains("no such file"), "{error}");

    // A key that belongs to another certificate: both files are named.
    let other = setup.server_ca.server();
    let (_, other_key) = other.write(setup.dir.path(), "other");
    let out = doctor(
        &["check", "--server-key", &other_key.to_string_lossy()],
        &setup.extension_vars(&setup.client_ca_path),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("would NOT start")
            && text.contains(&*other_key.to_string_lossy())
            && text.contains("does not match"),
        "{text}"
    );

    // An invalid policy stops the extension too.
    let out = doctor(
        &["check", "--policy", "cn=agent &"],
        &setup.extension_vars(&setup.client_ca_path),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("TOWER_MTLS_CLIENT_ALLOW"));
}

#[test]
fn verify_accepts_a_client_of_a_trusted_ca() {
    let setup = Setup::new();
    let agent = setup.client_ca.client("steadybit-agent");
    let report = setup.verify(&agent, "agent", &["--policy", "cn=steadybit-agent"], 0);
    assert_eq!(report["accepted"], true);
    assert!(
        report["tls"]["trusted_by"]
            .as_str()
            .unwrap()
            .contains("CN=Agent CA"),
        "{report}"
    );
    assert_eq!(report["policy"]["rule_index"], 0);
    assert!(failure_classes(&report).is_empty());
}

#[test]
fn verify_refuses_a_client_of_an_unknown_ca() {
    let setup = Setup::new();
    let stranger = Ca::new("Stranger CA").client("steadybit-agent");
    let report = setup.verify(&stranger, "stranger", &[], 1);
    assert_eq!(failure_classes(&report), ["unknown_ca"]);
    assert!(
        report["failures"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("STEADYBIT_EXTENSION_TLS_CLIENT_CAS")
    );
}

#[test]
fn verify_refuses_an_expired_client() {
    let setup = Setup::new();
    let expired = setup
        .client_ca
        .issue(&LeafSpec::client("steadybit-agent").expired());
    let report = setup.verify(&expired, "expired", &[], 1);
    assert_eq!(failure_classes(&report), ["expired"]);
    assert!(tls_reason(&report).contains("expired"), "{report}");
}

#[test]
fn verify_refuses_a_client_not_yet_valid_at_the_given_time() {
    let setup = Setup::new();
    // Valid 2020..2090: fine now, not yet valid in 2019, expired in 2095.
    let agent = setup.client_ca.client("steadybit-agent");
    setup.verify(&agent, "agent", &[], 0);
    let report = setup.verify(&agent, "agent", &["--time", "2019-06-01T00:00:00Z"], 1);
    assert_eq!(failure_classes(&report), ["not_yet_valid"]);
    assert_eq!(report["time"], "2019-06-01T00:00:00Z");
    let report = setup.verify(&agent, "agent", &["--time", "2095-06-01T02:00:00+02:00"], 1);
    assert_eq!(failure_classes(&report), ["expired"]);
    assert_eq!(report["time"], "2095-06-01T00:00:00Z");
}

#[test]
fn verify_names_the_crl_file_that_revoked_a_client() {
    let setup = Setup::new();
    let revoked = setup.client_ca.client("steadybit-agent");
    let crl = setup.write("agent-ca.crl", &setup.client_ca.crl(&[&revoked]));
    let report = setup.verify(&revoked, "revoked", &["--crls", &crl.to_string_lossy()], 1);
    assert_eq!(failure_classes(&report), ["revoked"]);
    let reason = tls_reason(&report);
    assert!(reason.contains(&*crl.to_string_lossy()), "{reason}");
}

#[test]
fn verify_refuses_a_ca_certificate_presented_as_a_client() {
    let setup = Setup::new();
    let report = setup.verify(&setup.client_ca.as_leaf(), "ca-as-leaf", &[], 1);
    assert_eq!(failure_classes(&report), ["wrong_key_usage"]);
    assert!(
        report["failures"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("not a CA certificate")
    );
}

#[test]
fn verify_reports_the_policy_that_denies_a_client() {
    let setup = Setup::new();
    let intruder = setup.client_ca.client("someone-else");
    let report = setup.verify(
        &intruder,
        "intruder",
        &["--policy", "cn=steadybit-agent | o=Steadybit"],
        1,
    );
    assert_eq!(report["tls"]["accepted"], true);
    assert_eq!(failure_classes(&report), ["policy_denied"]);
    let reason = report["policy"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("CN=someone-else")
            && reason.contains("#0 cn=steadybit-agent")
            && reason.contains("#1 o=Steadybit"),
        "{reason}"
    );
    // The human report carries the verdict and the fix.
    let (chain, _) = intruder.write(setup.dir.path(), "intruder");
    let out = doctor(
        &[
            "verify",
            "--client-cert",
            &chain.to_string_lossy(),
            "--policy",
            "cn=steadybit-agent",
        ],
        &setup.extension_vars(&setup.client_ca_path),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("verdict: REFUSED") && text.contains("fix (policy_denied)"),
        "{text}"
    );
}

/// The issue's command: a client certificate and the CAs, no server certificate or key
/// anywhere — no private key has to be copied to ask whether a client is trusted.
#[test]
fn verify_needs_no_server_identity() {
    let setup = Setup::new();
    let agent = setup.client_ca.client("steadybit-agent");
    let (chain, _) = agent.write(setup.dir.path(), "agent");
    let chain = chain.to_string_lossy().into_owned();
    let cas = setup.client_ca_path.to_string_lossy().into_owned();
    let out = doctor(
        &["verify", "--client-cert", &chain, "--client-cas", &cas],
        &[],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("no server identity given")
            && text.contains("TLS: accepted")
            && text.contains("verdict: ACCEPTED"),
        "{text}"
    );
    assert!(!text.contains("NOT start"), "{text}");

    // A pinned leaf (the chart passes the agent's own tls.crt), judged without the server.
    let (pinned, _) = setup
        .client_ca
        .client("pinned-agent")
        .write(setup.dir.path(), "pinned");
    let pinned = pinned.to_string_lossy().into_owned();
    let report = json(
        &doctor(
            &[
                "verify",
                "--json",
                "--client-cert",
                &pinned,
                "--client-cas",
                &pinned,
            ],
            &[],
        ),
        0,
    );
    assert_eq!(report["server_identity"], false);
    assert!(
        report["tls"]["trusted_by"]
            .as_str()
            .unwrap()
            .contains("pinned"),
        "{report}"
    );

    // Nothing trusted: refused, and the fix says what to set.
    let report = json(
        &doctor(&["verify", "--json", "--client-cert", &chain], &[]),
        1,
    );
    assert_eq!(failure_classes(&report), ["unknown_ca"]);
    assert!(tls_reason(&report).contains("STEADYBIT_EXTENSION_TLS_CLIENT_CAS"));

    // Broken trust is the startup error a server would give, naming the file.
    let report = json(
        &doctor(
            &[
                "verify",
                "--json",
                "--client-cert",
                &chain,
                "--client-cas",
                "/no/such/ca.pem",
            ],
            &[],
        ),
        1,
    );
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("/no/such/ca.pem"),
        "{report}"
    );
    // So is a policy that does not parse.
    let report = json(
        &doctor(
            &[
                "verify",
                "--json",
                "--client-cert",
                &chain,
                "--client-cas",
                &cas,
                "--policy",
                "cn=",
            ],
            &[],
        ),
        1,
    );
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("TOWER_MTLS_CLIENT_ALLOW"),
        "{report}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let setup = Setup::new();
    let agent = setup.client_ca.client("steadybit-agent");
    let (chain, _) = agent.write(setup.dir.path(), "agent");
    let vars = setup.extension_vars(&setup.client_ca_path);
    let chain = chain.to_string_lossy();
    for args in [
        vec!["verify", "--client-cert", &chain, "--time", "tomorrow"],
        vec!["verify"],
        vec!["verify", "--client-cert", "/no/such/chain.pem"],
        vec!["probe", "http://127.0.0.1:1/"],
        vec!["frobnicate"],
    ] {
        let out = doctor(&args, &vars);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// probe, against the `extension` example

/// The `extension` example's binary, next to this test's in the shared target directory
/// (`cargo test --workspace` builds the root package's examples); built on demand otherwise.
fn extension_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let binary = profile_dir.join("examples").join("extension");
    if !binary.exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "tower-mtls", "--example", "extension"])
            .current_dir(root)
            .status()
            .unwrap();
        assert!(status.success(), "building the extension example failed");
    }
    binary
}

/// A running `extension` example; killed on drop.
struct Extension {
    child: Child,
    port: u16,
    health_port: u16,
}

impl Drop for Extension {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the extension with `vars` and waits until it logs both listeners.
fn start_extension(vars: &[(&str, &Path)], policy: Option<&str>) -> Extension {
    let mut cmd = Command::new(extension_binary());
    cmd.env_clear()
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("STEADYBIT_EXTENSION_PORT", "0")
        .env("STEADYBIT_EXTENSION_HEALTH_PORT", "0")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_os_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(policy) = policy {
        cmd.env("TOWER_MTLS_CLIENT_ALLOW", policy);
    }
    let mut child = cmd.spawn().expect("start the extension");
    // The runtime logs to stderr, like the Go extension-kit.
    let stdout = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    // Reads the log to its end, so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(port) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("listen=").and_then(|a| a.rsplit(':').next()))
                .and_then(|p| p.parse::<u16>().ok())
            {
                let _ = tx.send(port);
            }
        }
    });
    let port = rx
        .recv_timeout(PATIENCE)
        .expect("the extension logs its service port");
    let health_port = rx
        .recv_timeout(PATIENCE)
        .expect("the extension logs its health port");
    Extension {
        child,
        port,
        health_port,
    }
}

/// `probe --json` with the agent's variables and extra flags.
fn probe(url: &str, vars: &[(&str, &Path)], extra: &[&str], code: i32) -> Value {
    let mut args = vec!["probe", "--json", url];
    args.extend_from_slice(extra);
    json(&doctor(&args, vars), code)
}

fn hints(report: &Value) -> String {
    report["hints"].to_string()
}

/// The agent's variables for a client identity and the trusted server certificate.
fn agent_vars<'a>(
    cert: &'a Path,
    key: &'a Path,
    server: &'a Path,
) -> Vec<(&'static str, &'a Path)> {
    vec![
        ("STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_CHAIN_FILE", cert),
        ("STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_KEY_FILE", key),
        ("STEADYBIT_AGENT_EXTENSIONS_SERVER_CERT", server),
    ]
}

#[test]
fn probe_reports_the_session_and_the_advertised_ca_names() {
    let setup = Setup::new();
    let ext = start_extension(&setup.extension_vars(&setup.client_ca_path), None);
    let (cert, key) = setup
        .client_ca
        .client("steadybit-agent")
        .write(setup.dir.path(), "agent");
    let server_ca = setup.server_ca.write(setup.dir.path(), "server-ca.crt");
    let url = format!("https://127.0.0.1:{}/", ext.port);
    let report = probe(&url, &agent_vars(&cert, &key, &server_ca), &[], 0);
    assert_eq!(report["outcome"]["status"], 200);
    assert_eq!(report["hostname_verification"], "unsafe_ip_addresses");
    assert!(
        report["tls"]["version"]
            .as_str()
            .unwrap()
            .starts_with("TLS")
    );
    assert!(!report["tls"]["cipher_suite"].as_str().unwrap().is_empty());
    assert_eq!(report["tls"]["alpn"], "h2");
    assert_eq!(report["server_chain"][0]["subject"], "CN=localhost");
    let request = &report["certificate_request"];
    assert_eq!(
        request["ca_names"],
        serde_json::json!(["O=tower-mtls tests,CN=Agent CA"])
    );
    assert_eq!(request["jvm_would_send"], true);
    assert_eq!(report["client_certificate_sent"], true);

    // Without a client certificate: the extension's alert, and what to set.
    let report = probe(
        &url,
        &[("STEADYBIT_AGENT_EXTENSIONS_SERVER_CERT", &server_ca)],
        &[],
        1,
    );
    assert_eq!(report["client_certificate_sent"], false);
    assert_eq!(report["outcome"]["alert"], "CertificateRequired");
    assert!(
        hints(&report).contains("STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_CHAIN_FILE"),
        "{report}"
    );

    // The human report.
    let out = doctor(&["probe", &url], &agent_vars(&cert, &key, &server_ca));
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("answered 200") && text.contains("JVM rule: a JVM agent would send"),
        "{text}"
    );
}

/// No `STEADYBIT_AGENT_EXTENSIONS_SERVER_CERT`: the platform's trust store, as the chart
/// documents. `SSL_CERT_FILE` points rustls-native-certs at a test "system" bundle.
#[test]
fn probe_trusts_the_platform_store_without_a_server_cert() {
    let setup = Setup::new();
    let ext = start_extension(&setup.extension_vars(&setup.client_ca_path), None);
    let (cert, key) = setup
        .client_ca
        .client("steadybit-agent")
        .write(setup.dir.path(), "agent");
    let unrelated = Ca::new("Some Public Root");
    // A system bundle: an unrelated root and the extension's root.
    let system = setup.write(
        "system-bundle.pem",
        &format!("{}{}", unrelated.cert_pem, setup.server_ca.cert_pem),
    );
    let other_system = setup.write("other-bundle.pem", &unrelated.cert_pem);
    let url = format!("https://127.0.0.1:{}/", ext.port);
    let identity = [
        (
            "STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_CHAIN_FILE",
            cert.as_path(),
        ),
        (
            "STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_KEY_FILE",
            key.as_path(),
        ),
    ];
    fn with<'a>(
        identity: &[(&'static str, &'a Path)],
        extra: &[(&'static str, &'a Path)],
    ) -> Vec<(&'static str, &'a Path)> {
        let mut vars = identity.to_vec();
        vars.extend_from_slice(extra);
        vars
    }

    let report = probe(
        &url,
        &with(&identity, &[("SSL_CERT_FILE", &system)]),
        &[],
        0,
    );
    assert_eq!(report["outcome"]["status"], 200, "{report}");
    assert_eq!(report["server_trust"], "the platform's trust store");
    assert_eq!(report["server_verification"], true);

    // A system store without the extension's root: refused, as the agent would be.
    let report = probe(
        &url,
        &with(&identity, &[("SSL_CERT_FILE", &other_system)]),
        &[],
        1,
    );
    assert!(
        report["outcome"].to_string().contains("UnknownIssuer"),
        "{report}"
    );

    // The chart's extraCertificates add to the store.
    let extra_dir = setup.path("extra-certs");
    std::fs::create_dir(&extra_dir).unwrap();
    setup.server_ca.write(&extra_dir, "extension-ca.crt");
    let report = probe(
        &url,
        &with(
            &identity,
            &[
                ("SSL_CERT_FILE", &other_system),
                ("STEADYBIT_AGENT_EXTRA_CERTS_PATH", &extra_dir),
            ],
        ),
        &[],
        0,
    );
    assert_eq!(report["outcome"]["status"], 200, "{report}");
    assert!(
        report["server_trust"]
            .as_str()
            .unwrap()
            .contains("extra-certs"),
        "{report}"
    );
}

/// `STEADYBIT_AGENT_EXTENSIONS_INSECURE_SKIP_VERIFY=true`: nothing about the server is
/// verified; the probe connects and says so loudly, and the library warns.
#[test]
fn probe_with_insecure_skip_verify_connects_and_says_so() {
    let setup = Setup::new();
    let ext = start_extension(&setup.extension_vars(&setup.client_ca_path), None);
    let (cert, key) = setup
        .client_ca
        .client("steadybit-agent")
        .write(setup.dir.path(), "agent");
    let elsewhere = setup.write("elsewhere.pem", &Ca::new("Elsewhere").cert_pem);
    let url = format!("https://localhost:{}/", ext.port);
    let vars = [
        (
            "STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_CHAIN_FILE",
            cert.as_path(),
        ),
        (
            "STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_KEY_FILE",
            key.as_path(),
        ),
        // Trusts something else entirely, and insists on names: both ignored.
        (
            "STEADYBIT_AGENT_EXTENSIONS_SERVER_CERT",
            elsewhere.as_path(),
        ),
        (
            "STEADYBIT_AGENT_EXTENSIONS_HOSTNAME_VERIFICATION",
            Path::new("strict"),
        ),
        (
            "STEADYBIT_AGENT_EXTENSIONS_INSECURE_SKIP_VERIFY",
            Path::new("true"),
        ),
    ];
    let report = probe(&url, &vars, &[], 0);
    assert_eq!(report["outcome"]["status"], 200, "{report}");
    assert_eq!(report["server_verification"], false);
    assert_eq!(report["server_trust"], "none");

    let out = doctor(&["probe", &url], &vars);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.starts_with("WARNING: STEADYBIT_AGENT_EXTENSIONS_INSECURE_SKIP_VERIFY=true")
            && text.contains("NOT verify"),
        "{text}"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("WARN") && log.contains("NOT verified"),
        "{log}"
    );

    // Without it, the same settings are refused.
    let vars_strict = &vars[..4];
    let report = probe(&url, vars_strict, &[], 1);
    assert_eq!(report["server_verification"], true);
}

/// The chart's path mode can set the chain file without the key file: the key is then read
/// from the chain file; a chain file without one is an error naming the chart value to set.
#[test]
fn probe_reads_the_key_from_the_chain_file_when_no_key_file_is_set() {
    let setup = Setup::new();
    let ext = start_extension(&setup.extension_vars(&setup.client_ca_path), None);
    let agent = setup.client_ca.client("steadybit-agent");
    let combined = setup.write(
        "agent-combined.pem",
        &format!("{}{}", agent.chain_pem, agent.key_pem),
    );
    let (chain_only, _) = agent.write(setup.dir.path(), "agent");
    let server_ca = setup.server_ca.write(setup.dir.path(), "server-ca.crt");
    let url = format!("https://127.0.0.1:{}/", ext.port);
    let report = probe(
        &url,
        &[
            (
                "STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_CHAIN_FILE",
                &combined,
            ),
            ("STEADYBIT_AGENT_EXTENSIONS_SERVER_CERT", &server_ca),
        ],
        &[],
        0,
    );
    assert_eq!(report["outcome"]["status"], 200, "{report}");
    assert_eq!(report["client_certificate_sent"], true);

    let report = probe(
        &url,
        &[
            (
                "STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_CHAIN_FILE",
                &chain_only,
            ),
            ("STEADYBIT_AGENT_EXTENSIONS_SERVER_CERT", &server_ca),
        ],
        &[],
        1,
    );
    let error = report["configuration_error"].as_str().unwrap();
    assert!(
        error.starts_with("STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_KEY_FILE")
            && error.contains("agent.extensions.tls.clientCertificate.key.path"),
        "{error}"
    );
}

#[test]
fn probe_decrypts_an_encrypted_pkcs8_key() {
    let setup = Setup::new();
    let ext = start_extension(&setup.extension_vars(&setup.client_ca_path), None);
    let (cert, plain_key) = setup
        .client_ca
        .client("steadybit-agent")
        .write(setup.dir.path(), "agent");
    let encrypted = setup.path("agent.key.enc");
    let status = Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:s3cret pass",
            "-in",
        ])
        .arg(&plain_key)
        .arg("-out")
        .arg(&encrypted)
        .status()
        .expect("run openssl");
    assert!(status.success());
    assert!(
        std::fs::read_to_string(&encrypted)
            .unwrap()
            .contains("BEGIN ENCRYPTED PRIVATE KEY")
    );
    let server_ca = setup.server_ca.write(setup.dir.path(), "server-ca.crt");
    let url = format!("https://127.0.0.1:{}/", ext.port);
    let vars = agent_vars(&cert, &encrypted, &server_ca);

    let report = probe(&url, &vars, &["--key-password", "s3cret pass"], 0);
    assert_eq!(report["outcome"]["status"], 200);
    assert_eq!(report["client_certificate_sent"], true);

    let report = probe(&url, &vars, &["--key-password", "wrong"], 1);
    let error = report["configuration_error"].as_str().unwrap();
    assert!(
        error.contains("wrong password") && error.contains(&*encrypted.to_string_lossy()),
        "{error}"
    );
    let report = probe(&url, &vars, &[], 1);
    let error = report["configuration_error"].as_str().unwrap();
    assert!(
        error.contains("STEADYBIT_AGENT_EXTENSIONS_CLIENT_CERT_PASSWORD is not set"),
        "{error}"
    );
}

#[test]
fn probe_applies_each_hostname_verification_mode() {
    let setup = Setup::new();
    // A server certificate for a name only: neither 127.0.0.1 nor localhost is in it.
    let mut spec = LeafSpec::server();
    spec.subject = vec![(rcgen::DnType::CommonName, "extension.internal".into())];
    spec.sans = vec![rcgen::SanType::DnsName(
        "extension.internal".try_into().unwrap(),
    )];
    let named = setup.server_ca.issue(&spec);
    let (named_cert, named_key) = named.write(setup.dir.path(), "named-server");
    let ext = start_extension(
        &[
            ("STEADYBIT_EXTENSION_TLS_SERVER_CERT", &named_cert),
            ("STEADYBIT_EXTENSION_TLS_SERVER_KEY", &named_key),
            ("STEADYBIT_EXTENSION_TLS_CLIENT_CAS", &setup.client_ca_path),
        ],
        None,
    );
    let (cert, key) = setup
        .client_ca
        .client("steadybit-agent")
        .write(setup.dir.path(), "agent");
    let server_ca = setup.server_ca.write(setup.dir.path(), "server-ca.crt");
    let vars = agent_vars(&cert, &key, &server_ca);
    let by_ip = format!("https://127.0.0.1:{}/", ext.port);
    let by_name = format!("https://localhost:{}/", ext.port);
    let mode = |m: &'static str| ["--hostname-verification", m];

    // strict: the name check applies to IP addresses too.
    let report = probe(&by_ip, &vars, &mode("strict"), 1);
    let error = report["outcome"]["error"].as_str().unwrap();
    assert!(error.contains("not valid for name"), "{error}");
    assert!(
        hints(&report).contains("not made out for 127.0.0.1"),
        "{report}"
    );
    assert!(report["tls"].is_null());
    assert_eq!(
        report["server_chain"][0]["subject"],
        "CN=extension.internal"
    );
    probe(&by_name, &vars, &mode("strict"), 1);

    // unsafe_ip_addresses (the default): by IP accepted, by a wrong name refused.
    let report = probe(&by_ip, &vars, &[], 0);
    assert_eq!(report["hostname_verification"], "unsafe_ip_addresses");
    probe(&by_ip, &vars, &mode("unsafe_ip_addresses"), 0);
    probe(&by_name, &vars, &mode("unsafe_ip_addresses"), 1);

    // unsafe: a wrong name is accepted; trust is still checked.
    probe(&by_name, &vars, &mode("unsafe"), 0);
    let stranger = Ca::new("Stranger CA").write(setup.dir.path(), "stranger-ca.crt");
    let report = probe(
        &by_name,
        &agent_vars(&cert, &key, &stranger),
        &mode("unsafe"),
        1,
    );
    assert!(
        hints(&report).contains("holds neither the extension's certificate nor the CA"),
        "{report}"
    );

    // The variable works like the flag, and a bad value is named.
    let mut strict_vars = vars.clone();
    let strict = PathBuf::from("strict");
    strict_vars.push(("STEADYBIT_AGENT_EXTENSIONS_HOSTNAME_VERIFICATION", &strict));
    probe(&by_ip, &strict_vars, &[], 1);
    let report = probe(&by_ip, &vars, &mode("sometimes"), 1);
    assert!(
        report["configuration_error"]
            .as_str()
            .unwrap()
            .contains("STEADYBIT_AGENT_EXTENSIONS_HOSTNAME_VERIFICATION"),
        "{report}"
    );

    // The extension's own leaf as the agent's trust: pinned, accepted as itself.
    let report = probe(&by_ip, &agent_vars(&cert, &key, &named_cert), &[], 0);
    assert_eq!(report["outcome"]["status"], 200);
}

#[test]
fn probe_reports_a_server_that_refuses_the_client() {
    let setup = Setup::new();
    let server_ca = setup.server_ca.write(setup.dir.path(), "server-ca.crt");

    // Refused in the handshake: an expired client certificate of the trusted CA.
    let ext = start_extension(&setup.extension_vars(&setup.client_ca_path), None);
    let (cert, key) = setup
        .client_ca
        .issue(&LeafSpec::client("steadybit-agent").expired())
        .write(setup.dir.path(), "expired");
    let url = format!("https://127.0.0.1:{}/", ext.port);
    let report = probe(&url, &agent_vars(&cert, &key, &server_ca), &[], 1);
    assert_eq!(report["client_certificate_sent"], true);
    assert_eq!(report["certificate_request"]["jvm_would_send"], true);
    assert_eq!(report["outcome"]["alert"], "CertificateExpired");
    assert!(hints(&report).contains("tower-mtls verify"), "{report}");
    drop(ext);

    // Refused by the client policy, after the handshake.
    let ext = start_extension(
        &setup.extension_vars(&setup.client_ca_path),
        Some("cn=steadybit-agent"),
    );
    let (cert, key) = setup
        .client_ca
        .client("someone-else")
        .write(setup.dir.path(), "someone-else");
    let url = format!("https://127.0.0.1:{}/", ext.port);
    let report = probe(&url, &agent_vars(&cert, &key, &server_ca), &[], 1);
    assert_eq!(report["outcome"]["status"], 403);
    assert!(
        report["outcome"]["body"]
            .as_str()
            .unwrap()
            .contains("client_certificate_not_allowed")
    );
    assert!(
        hints(&report).contains("TOWER_MTLS_CLIENT_ALLOW"),
        "{report}"
    );
}

/// The JVM rule. The extension advertises its CAs' subjects and its pinned leaves' issuers, so
/// a client it trusts in any way always finds its issuer listed. The case where a JVM agent
/// stays silent is a client chain the extension does not know: here the extension trusts
/// only "Other CA", and the agent presents a leaf of "Agent CA". rustls sends it anyway (and
/// the extension refuses it); the probe reports that a JVM agent would not have sent it at
/// all. Then the same leaf, pinned at the extension: its issuer is advertised, and the JVM
/// would send it.
#[test]
fn probe_reports_the_jvm_rule_when_the_clients_issuer_is_not_advertised() {
    let setup = Setup::new();
    let server_ca = setup.server_ca.write(setup.dir.path(), "server-ca.crt");
    let agent = setup.client_ca.client("steadybit-agent");
    let (cert, key) = agent.write(setup.dir.path(), "agent");
    let other_ca = Ca::new("Other CA").write(setup.dir.path(), "other-ca.crt");

    let ext = start_extension(&setup.extension_vars(&other_ca), None);
    let url = format!("https://127.0.0.1:{}/", ext.port);
    let report = probe(&url, &agent_vars(&cert, &key, &server_ca), &[], 1);
    let request = &report["certificate_request"];
    assert_eq!(
        request["ca_names"],
        serde_json::json!(["O=tower-mtls tests,CN=Other CA"])
    );
    assert_eq!(request["jvm_would_send"], false);
    assert!(
        request["jvm"]
            .as_str()
            .unwrap()
            .contains("would send NO certificate"),
        "{report}"
    );
    assert!(hints(&report).contains("a JVM agent would send NO certificate"));
    assert_eq!(report["client_certificate_sent"], true);
    assert!(report["outcome"]["alert"].is_string(), "{report}");
    drop(ext);

    // Pinned: the extension trusts the agent's own tls.crt and advertises its issuer.
    let ext = start_extension(&setup.extension_vars(&cert), None);
    let url = format!("https://127.0.0.1:{}/", ext.port);
    let report = probe(&url, &agent_vars(&cert, &key, &server_ca), &[], 0);
    let request = &report["certificate_request"];
    assert!(
        request["ca_names"]
            .to_string()
            .contains("O=tower-mtls tests,CN=Agent CA"),
        "{report}"
    );
    assert_eq!(request["jvm_would_send"], true);
}

// check --running: what the server applies next to the files on disk

#[test]
fn check_running_compares_the_trust_in_use_with_the_files_on_disk() {
    let setup = Setup::new();
    let cas = setup.dir.path().join("bundle.pem");
    std::fs::write(&cas, &setup.client_ca.cert_pem).unwrap();
    let vars: Vec<(&str, &Path)> = vec![
        ("STEADYBIT_EXTENSION_TLS_SERVER_CERT", &setup.server_cert),
        ("STEADYBIT_EXTENSION_TLS_SERVER_KEY", &setup.server_key),
        ("STEADYBIT_EXTENSION_TLS_CLIENT_CAS", &cas),
    ];
    let ext = start_extension(&vars, None);
    let url = format!("http://127.0.0.1:{}/metrics", ext.health_port);
    let check = |code: i32| {
        json(
            &doctor(&["check", "--json", "--running", &url], &vars),
            code,
        )
    };

    let report = check(0);
    assert_eq!(report["running"]["same"], true, "{report:#}");
    assert_eq!(report["running"]["reload_rejected"], false, "{report:#}");
    let in_use = report["running"]["trust_files_in_use"].clone();

    // A broken bundle: the files would not start an extension, the running one keeps its trust
    // and says its reload was rejected; the doctor shows both and exits 1.
    std::fs::write(&cas, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    let report = loop {
        let out = doctor(&["check", "--json", "--running", &url], &vars);
        let report = json(&out, 1);
        if report["running"]["reload_rejected"] == true || std::time::Instant::now() > deadline {
            break report;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(report["starts"], false, "{report:#}");
    assert_eq!(report["running"]["reload_rejected"], true, "{report:#}");
    assert_eq!(
        report["running"]["trust_files_in_use"], in_use,
        "{report:#}"
    );
    assert_eq!(report["running"]["same"], false, "{report:#}");
    let human = stdout(&doctor(&["check", "--running", &url], &vars));
    assert!(
        human.contains("would NOT start") && human.contains("last reload rejected: YES"),
        "{human}"
    );
    drop(ext);
}
