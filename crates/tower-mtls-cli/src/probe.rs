//! `tower-mtls probe URL`: connect to an extension as the Steadybit agent would.

use std::fmt::Write as _;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower_mtls::rustls::client::ResolvesClientCert;
use tower_mtls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tower_mtls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tower_mtls::rustls::sign::CertifiedKey;
use tower_mtls::rustls::{
    self, AlertDescription, CertificateError, DigitallySignedStruct, SignatureScheme,
};
use tower_mtls::steadybit::agent::{self, AgentTls, HostnameVerification, JvmChoice, vars};

use crate::describe::CertInfo;
use crate::{Outcome, ProbeArgs, UsageError};

/// Where to connect: only ever where the URL says.
struct Target {
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, UsageError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| UsageError(format!("{url:?} is not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some(other) => {
                return Err(UsageError(format!(
                    "{url:?}: the scheme is {other}, but the agent speaks https to an extension \
                     with TLS"
                )));
            }
            None => {
                return Err(UsageError(format!(
                    "{url:?}: give a full URL, like https://127.0.0.1:8080/"
                )));
            }
        }
        let host = uri
            .host()
            .ok_or_else(|| UsageError(format!("{url:?}: no host")))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        Ok(Target {
            host,
            port: uri.port_u16().unwrap_or(443),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        })
    }

    /// `host:port` for the Host header, IPv6 in brackets.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What the server's CertificateRequest said, and what was sent back.
#[derive(Debug, Default)]
struct Requested {
    ca_names: Vec<Vec<u8>>,
    sent: bool,
}

/// Records the CertificateRequest's CA names (rustls hands them to `resolve`).
#[derive(Debug)]
struct RecordingResolver {
    inner: Arc<dyn ResolvesClientCert>,
    seen: Arc<Mutex<Option<Requested>>>,
}

impl ResolvesClientCert for RecordingResolver {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let key = self.inner.resolve(root_hint_subjects, sigschemes);
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(Requested {
            ca_names: root_hint_subjects.iter().map(|n| n.to_vec()).collect(),
            sent: key.is_some(),
        });
        key
    }

    fn only_raw_public_keys(&self) -> bool {
        self.inner.only_raw_public_keys()
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}

/// Records the chain the server presented, also when the agent's verifier refuses it.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    presented: Arc<Mutex<Vec<CertificateDer<'static>>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self
            .presented
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = chain;
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Remembers the first TLS error on the stream: with TLS 1.3 the server judges the client
/// certificate after the client's handshake is done, so its alert arrives on the first read,
/// and HTTP/2 turns I/O errors into text.
struct RecordTlsError<IO> {
    inner: IO,
    slot: Arc<Mutex<Option<rustls::Error>>>,
}

impl<IO> RecordTlsError<IO> {
    fn record<T>(&self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result
            && let Some(tls) = tls_error(e)
        {
            self.slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| tls.clone());
        }
        result
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for RecordTlsError<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner)
            .poll_read(cx, buf)
            .map(|r| this.record(r))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for RecordTlsError<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner)
            .poll_write(cx, buf)
            .map(|r| this.record(r))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner)
            .poll_flush(cx)
            .map(|r| this.record(r))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner)
            .poll_shutdown(cx)
            .map(|r| this.record(r))
    }
}

fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// How the attempt ended.
enum End {
    /// No TCP connection.
    Connect(String),
    /// The handshake failed: this side refused the server, or the server sent an alert.
    Handshake(rustls::Error),
    /// The handshake failed otherwise (the server hung up, a timeout).
    HandshakeIo(String),
    /// The server sent an alert after the handshake (TLS 1.3 client certificate refusal).
    Alert(AlertDescription),
    /// HTTP failed otherwise.
    Http(String),
    /// An HTTP answer.
    Status(http::StatusCode, String),
}

struct TlsFacts {
    version: String,
    cipher_suite: String,
    alpn: Option<String>,
}

pub(crate) fn run(args: &ProbeArgs) -> Result<Outcome, UsageError> {
    let target = Target::parse(&args.url)?;
    let flag = |name: &str| -> Option<&String> {
        match name {
            vars::CLIENT_CERT_CHAIN_FILE => args.cert.as_ref(),
            vars::CLIENT_CERT_KEY_FILE => args.key.as_ref(),
            vars::CLIENT_CERT_PASSWORD => args.key_password.as_ref(),
            vars::SERVER_CERT => args.server_cert.as_ref(),
            vars::HOSTNAME_VERIFICATION => args.hostname_verification.as_ref(),
            vars::EXTRA_CERTS_PATH => args.extra_certs.as_ref(),
            vars::INSECURE_SKIP_VERIFY => args.insecure_skip_verify.as_ref(),
            _ => None,
        }
    };
    let configured =
        AgentTls::from_lookup(|name| flag(name).cloned().or_else(|| std::env::var(name).ok()))
            .and_then(|agent| {
                let config = std::sync::Arc::new(agent.client_config()?);
                let verifier = agent.server_cert_verifier()?;
                Ok((agent, config, verifier))
            });
    let (agent, config, verifier) = match configured {
        Ok(c) => c,
        Err(error) => {
            let error = error.to_string();
            return Ok(Outcome {
                ok: false,
                json: json!({ "ok": false, "url": args.url, "configuration_error": error }),
                human: format!(
                    "the agent could not connect: its configuration is unusable:\n  {error}\n"
                ),
            });
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| UsageError(format!("cannot start the runtime: {e}")))?;
    Ok(runtime.block_on(probe(
        args,
        &target,
        &agent,
        config,
        verifier,
        Duration::from_secs(args.timeout.max(1)),
    )))
}

async fn probe(
    args: &ProbeArgs,
    target: &Target,
    agent: &AgentTls,
    config: Arc<rustls::ClientConfig>,
    verifier: Arc<dyn ServerCertVerifier>,
    timeout: Duration,
) -> Outcome {
    let now = SystemTime::now();
    let requested = Arc::new(Mutex::new(None));
    let presented = Arc::new(Mutex::new(Vec::new()));
    let mut config = (*config).clone();
    config.client_auth_cert_resolver = Arc::new(RecordingResolver {
        inner: config.client_auth_cert_resolver.clone(),
        seen: requested.clone(),
    });
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(RecordingVerifier {
            inner: verifier,
            presented: presented.clone(),
        }));
    config.resumption = rustls::client::Resumption::disabled();

    let client_chain = agent
        .client_cert_chain_path()
        .and_then(|p| tower_mtls::tls::certificates_from_file(p).ok())
        .unwrap_or_default();
    let mut address = None;
    let mut facts = None;
    let end = attempt(target, Arc::new(config), timeout, &mut address, &mut facts).await;

    let requested = requested
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let presented = presented
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let server_chain = CertInfo::chain(&presented, now);
    let mode = agent.hostname_verification_mode();
    let mut hints: Vec<String> = Vec::new();

    // The JVM rule, when the server asked for a certificate.
    let jvm = requested.as_ref().map(|r| {
        let names: Vec<&[u8]> = r.ca_names.iter().map(Vec::as_slice).collect();
        agent::jvm_key_manager_choice(&client_chain, &names)
    });
    let jvm_text = match (&jvm, client_chain.is_empty()) {
        (None, _) => None,
        (Some(_), true) => Some("no client certificate is configured".to_owned()),
        (Some(JvmChoice::NoCaNames), false) => {
            hints.push(
                "the server's CertificateRequest lists no CA names: a JVM agent sends no \
                 certificate to it; the extension should advertise the CAs it trusts"
                    .into(),
            );
            Some("a JVM agent would send NO certificate: the server listed no CA names".into())
        }
        (Some(JvmChoice::Offers { index, issuer }), false) => Some(format!(
            "a JVM agent would send its certificate: the issuer of chain certificate #{} ({issuer}) is listed",
            index + 1
        )),
        (Some(_), false) => {
            hints.push(format!(
                "a JVM agent would send NO certificate: no issuer in its chain is among the CA \
                 names the server advertised; make the extension trust the agent's CA or its \
                 tls.crt ({}), or issue the agent's certificate from a CA the extension trusts",
                tower_mtls::steadybit::vars::TLS_CLIENT_CAS
            ));
            Some(
                "a JVM agent would send NO certificate: no issuer in its chain is among the advertised CA names"
                    .into(),
            )
        }
    };
    let sent = requested.as_ref().is_some_and(|r| r.sent);

    let (ok, outcome_json, outcome_text) = match &end {
        End::Connect(e) => {
            hints.push(format!(
                "nothing accepts connections at {}: check the URL, the extension's port \
                 (STEADYBIT_EXTENSION_PORT) and that it is running",
                target.authority()
            ));
            (false, json!({ "error": e }), format!("cannot connect: {e}"))
        }
        End::HandshakeIo(e) => {
            hints.push(
                "the server ended the handshake without an alert: is this port speaking TLS?"
                    .into(),
            );
            (
                false,
                json!({ "error": e }),
                format!("TLS handshake failed: {e}"),
            )
        }
        End::Handshake(rustls::Error::AlertReceived(alert)) | End::Alert(alert) => {
            hints.push(alert_hint(*alert, !client_chain.is_empty()));
            (
                false,
                json!({ "alert": format!("{alert:?}") }),
                format!("the server refused the connection with the TLS alert {alert:?}"),
            )
        }
        End::Handshake(error) => {
            hints.push(server_refused_hint(error, target, mode, &server_chain));
            (
                false,
                json!({ "error": format!("the agent refused the server: {error}") }),
                format!("the agent refused the server's certificate: {error}"),
            )
        }
        End::Http(e) => (
            false,
            json!({ "error": e }),
            format!("the HTTP request failed: {e}"),
        ),
        End::Status(status, body) => {
            if matches!(status.as_u16(), 401 | 403) {
                hints.push(format!(
                    "the TLS handshake passed, but the extension's client policy refused the \
                     request ({}): run `tower-mtls verify --client-cert <chain>` with the \
                     extension's configuration to see which rule should match",
                    tower_mtls::steadybit::vars::CLIENT_ALLOW
                ));
            }
            (
                status.is_success(),
                json!({ "status": status.as_u16(), "body": body }),
                format!("GET {} answered {status}", target.path),
            )
        }
    };

    let ca_names: Option<Vec<String>> = requested
        .as_ref()
        .map(|r| r.ca_names.iter().map(|n| agent::name_text(n)).collect());
    let client_info = CertInfo::chain(&client_chain, now);

    let server_trust = if agent.skips_server_verification() {
        "none".to_owned()
    } else if let Some(path) = agent.server_cert_path() {
        format!("the certificates of {}", path.display())
    } else {
        match agent.extra_certs_file() {
            Some(extra) => format!(
                "the platform's trust store and the certificates of {}",
                extra.display()
            ),
            None => "the platform's trust store".to_owned(),
        }
    };
    let mut human = String::new();
    if agent.skips_server_verification() {
        let _ = writeln!(
            human,
            "WARNING: {}=true: the agent would NOT verify the extension's certificate — any \
             server can pose as this extension (never in production)\n",
            vars::INSECURE_SKIP_VERIFY
        );
    }
    let _ = writeln!(
        human,
        "probe {} ({}), hostname verification {mode}, trusting {server_trust}",
        args.url,
        address.as_deref().unwrap_or("unresolved")
    );
    match &facts {
        Some(f) => {
            let _ = writeln!(
                human,
                "TLS: {}, {}, ALPN {}",
                f.version,
                f.cipher_suite,
                f.alpn.as_deref().unwrap_or("none")
            );
        }
        None => {
            let _ = writeln!(human, "TLS: no session established");
        }
    }
    if !server_chain.is_empty() {
        let _ = writeln!(human, "\nserver chain:");
        for (i, c) in server_chain.iter().enumerate() {
            let _ = writeln!(human, "  #{}", i + 1);
            c.write(&mut human, "     ", now);
        }
    }
    let _ = writeln!(human);
    match &ca_names {
        None => {
            let _ = writeln!(
                human,
                "the server did not ask for a client certificate (or the handshake ended before)"
            );
        }
        Some(names) => {
            let _ = writeln!(
                human,
                "the server asked for a client certificate; CA names advertised ({}):",
                names.len()
            );
            for n in names {
                let _ = writeln!(human, "  - {n}");
            }
        }
    }
    if let Some(text) = &jvm_text {
        let _ = writeln!(human, "JVM rule: {text}");
    }
    match client_info.first() {
        Some(leaf) => {
            let _ = writeln!(
                human,
                "client certificate: {} (issuer {}){}",
                leaf.subject,
                leaf.issuer,
                if sent { ", sent" } else { ", NOT sent" }
            );
        }
        None => {
            let _ = writeln!(human, "client certificate: none configured");
        }
    }
    let _ = writeln!(human, "\noutcome: {outcome_text}");
    if let End::Status(_, body) = &end
        && !body.is_empty()
    {
        let _ = writeln!(human, "  body: {body}");
    }
    for h in &hints {
        let _ = writeln!(human, "  fix: {h}");
    }

    let json = json!({
        "ok": ok,
        "url": args.url,
        "address": address,
        "server_name": target.host,
        "hostname_verification": mode.as_str(),
        "server_verification": !agent.skips_server_verification(),
        "server_trust": server_trust,
        "tls": facts.as_ref().map(|f| json!({
            "version": f.version,
            "cipher_suite": f.cipher_suite,
            "alpn": f.alpn,
        })),
        "server_chain": server_chain,
        "certificate_request": ca_names.as_ref().map(|names| json!({
            "ca_names": names,
            "jvm_would_send": jvm.as_ref().is_some_and(JvmChoice::offers) && !client_chain.is_empty(),
            "jvm": jvm_text,
        })),
        "client_chain": client_info,
        "client_certificate_sent": sent,
        "outcome": outcome_json,
        "hints": hints,
    });
    Outcome { ok, json, human }
}

async fn attempt(
    target: &Target,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
    address: &mut Option<String>,
    facts: &mut Option<TlsFacts>,
) -> End {
    let within = |what: &'static str| move |_| format!("{what}: no answer within {timeout:?}");
    let addrs = match tokio::time::timeout(
        timeout,
        tokio::net::lookup_host((target.host.as_str(), target.port)),
    )
    .await
    .map_err(within("resolving"))
    {
        Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
        Ok(Err(e)) => return End::Connect(format!("cannot resolve {}: {e}", target.host)),
        Err(e) => return End::Connect(e),
    };
    let Some(addr) = addrs.first().copied() else {
        return End::Connect(format!("{} resolves to no address", target.host));
    };
    *address = Some(addr.to_string());
    let tcp = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return End::Connect(format!("{addr}: {e}")),
        Err(_) => return End::Connect(format!("{addr}: no answer within {timeout:?}")),
    };
    let _ = tcp.set_nodelay(true);
    let Ok(server_name) = ServerName::try_from(target.host.clone()) else {
        return End::Connect(format!("{:?} is not a valid server name", target.host));
    };
    let alpn_h2;
    let tls = match tokio::time::timeout(
        timeout,
        tokio_rustls::TlsConnector::from(config).connect(server_name, tcp),
    )
    .await
    {
        Ok(Ok(tls)) => {
            let (_, conn) = tls.get_ref();
            alpn_h2 = conn.alpn_protocol() == Some(b"h2");
            *facts = Some(TlsFacts {
                version: conn
                    .protocol_version()
                    .map_or_else(|| "unknown".into(), |v| format!("{v:?}")),
                cipher_suite: conn
                    .negotiated_cipher_suite()
                    .map_or_else(|| "unknown".into(), |s| format!("{:?}", s.suite())),
                alpn: conn
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned()),
            });
            tls
        }
        Ok(Err(e)) => {
            return match tls_error(&e) {
                Some(tls) => End::Handshake(tls.clone()),
                None => End::HandshakeIo(e.to_string()),
            };
        }
        Err(_) => return End::HandshakeIo(format!("no handshake within {timeout:?}")),
    };
    let slot = Arc::new(Mutex::new(None));
    let io = TokioIo::new(RecordTlsError {
        inner: tls,
        slot: slot.clone(),
    });
    let alert = || match slot.lock().unwrap_or_else(PoisonError::into_inner).clone() {
        Some(rustls::Error::AlertReceived(alert)) => Some(alert),
        _ => None,
    };
    let exchange = async {
        let request = http::Request::get(if alpn_h2 {
            format!("https://{}{}", target.authority(), target.path)
        } else {
            target.path.clone()
        });
        let request = if alpn_h2 {
            request
        } else {
            request.header(http::header::HOST, target.authority())
        };
        let request = request
            .header(http::header::USER_AGENT, "tower-mtls-probe")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = if alpn_h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender.send_request(request).await
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender.send_request(request).await
        }
        .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        text.retain(|c| !c.is_control() || c == ' ');
        Ok::<_, String>((status, text))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((status, body))) => End::Status(status, body),
        Ok(Err(e)) => match alert() {
            Some(alert) => End::Alert(alert),
            None => End::Http(e),
        },
        Err(_) => match alert() {
            Some(alert) => End::Alert(alert),
            None => End::Http(format!("no answer within {timeout:?}")),
        },
    }
}

/// What to fix when the server sent `alert`.
fn alert_hint(alert: AlertDescription, have_cert: bool) -> String {
    use AlertDescription as A;
    match alert {
        A::CertificateRequired | A::HandshakeFailure if !have_cert => format!(
            "the extension requires a client certificate: set {} and {} (or --cert and --key)",
            vars::CLIENT_CERT_CHAIN_FILE,
            vars::CLIENT_CERT_KEY_FILE
        ),
        A::CertificateRequired => "the extension got no client certificate although one is \
             configured: see the JVM rule above"
            .into(),
        A::UnknownCA
        | A::BadCertificate
        | A::CertificateExpired
        | A::CertificateRevoked
        | A::CertificateUnknown
        | A::UnsupportedCertificate
        | A::AccessDenied
        | A::DecryptError
        | A::HandshakeFailure => format!(
            "the extension refused the client certificate ({alert:?}): its log says why; \
             `tower-mtls verify --client-cert <chain>` with the extension's configuration shows \
             the reason offline"
        ),
        other => format!("the extension aborted the handshake with the alert {other:?}"),
    }
}

/// What to fix when this side refused the server's certificate.
fn server_refused_hint(
    error: &rustls::Error,
    target: &Target,
    mode: HostnameVerification,
    chain: &[CertInfo],
) -> String {
    let names = chain
        .first()
        .map_or_else(String::new, |c| c.sans.join(", "));
    match error {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the extension's certificate is not made out for {} (it lists: {}); connect by one \
             of those names, add {} to its SANs, or relax {} (now {mode}: unsafe_ip_addresses \
             skips the check for IP addresses, unsafe always)",
            target.host,
            if names.is_empty() { "no names" } else { &names },
            target.host,
            vars::HOSTNAME_VERIFICATION
        ),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "{} holds neither the extension's certificate nor the CA that issued it: point it \
             at the extension's tls.crt or its CA",
            vars::SERVER_CERT
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the extension's certificate has expired: renew it (STEADYBIT_EXTENSION_TLS_SERVER_CERT)"
            .into(),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "the extension's certificate is not valid yet: check the clocks".into(),
        other => format!("the TLS handshake failed on this side: {other}"),
    }
}
