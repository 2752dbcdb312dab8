//! Control characters from a client certificate never reach a log line raw: a common name
//! holding a new line and an ANSI escape sequence cannot forge a line or recolour a terminal.
//! (Its own test binary: it installs a process-wide subscriber to read the log.)

use tower_mtls::Rule;
use tower_mtls_test_kit as support;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tower::ServiceBuilder;
use tower_mtls::{ClientCertLayer, MtlsAcceptor};
use tracing_subscriber::fmt::MakeWriter;

/// Everything the `fmt` subscriber writes, as it would reach a terminal or a file.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Output {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("UTF-8 log")
    }
}

impl io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Output {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

const EVIL_CN: &str = "agent\nFAKE LOG LINE\u{1b}[31m";
/// Unicode format characters: a right-to-left override that makes a viewer show
/// "agentmin1" as "agent1nim", a zero-width space, a line separator, a byte-order mark.
const FORMAT_CN: &str = "agent\u{202e}nim1\u{200b}\u{2028}x\u{feff}";
/// What must never reach a log raw besides control characters.
const FORMAT_CHARS: &[char] = &[
    '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}', '\u{200b}', '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}', '\u{2060}', '\u{feff}',
    '\u{2028}', '\u{2029}',
];

/// Every line is one event (it starts with its level), and no raw control character other than
/// the line ends is anywhere.
#[track_caller]
fn assert_clean(text: &str) {
    for line in text.lines() {
        assert!(
            [" WARN ", " INFO ", " DEBUG ", " ERROR ", " TRACE "]
                .iter()
                .any(|level| line.contains(level)),
            "a line that is no event (forged?): {line:?}\nin:\n{text}"
        );
        assert!(
            !line.chars().any(|c| c.is_control()),
            "raw control character in {line:?}"
        );
        assert!(
            !line.chars().any(|c| FORMAT_CHARS.contains(&c)),
            "raw format character in {line:?}"
        );
    }
    assert!(!text.contains("\nFAKE LOG LINE"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_a_denied_certificate_are_escaped_in_the_log() {
    let output = Output::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(output.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("global subscriber");

    let pki = Pki::new();
    let tls = pki.required_config();
    let service = ServiceBuilder::new()
        .layer(ClientCertLayer::require().allow(Rule::new().subject_cn("steadybit-agent")))
        .service_fn(whoami);
    let server = TestServer::start_service(Some(MtlsAcceptor::new(tls)), service).await;

    // Verified by the CA, denied by the policy: the layer logs the denial before it answers.
    let evil = pki.ca.issue(
        &LeafSpec::client(EVIL_CN)
            .dns("evil.example.com")
            .uri("spiffe://example.org/a\u{1b}[2J"),
    );
    let response = pki
        .client(Some(&evil))
        .get(server.addr, "localhost", "/")
        .await
        .expect("denied with a response");
    assert_eq!(response.status(), 403);
    let body = String::from_utf8_lossy(response.body()).into_owned();
    assert!(body.contains("client_certificate_not_allowed"), "{body}");
    assert!(
        !body.contains(EVIL_CN) && !body.contains('\u{1b}'),
        "{body:?}"
    );
    for value in response.headers().values() {
        assert!(
            !value.as_bytes().iter().any(u8::is_ascii_control),
            "{value:?}"
        );
    }

    let text = output.text();
    let denial = text
        .lines()
        .find(|line| line.contains("client_certificate_not_allowed"))
        .unwrap_or_else(|| panic!("no denial logged:\n{text}"));
    assert!(denial.contains(" WARN "), "{denial}");
    assert!(
        denial.contains(r"subject=CN=agent\0aFAKE LOG LINE\1b[31m"),
        "{denial}"
    );
    assert!(
        denial.contains(r#"uri=["spiffe://example.org/a\1b[2J"]"#),
        "{denial}"
    );
    assert_clean(&text);

    // Format characters (bidi overrides, zero-width, separators) are escaped the same way, in
    // the denial line and in the connection span's `client` field.
    let hidden = pki.ca.client(FORMAT_CN);
    let response = pki
        .client(Some(&hidden))
        .get(server.addr, "localhost", "/")
        .await
        .expect("denied with a response");
    assert_eq!(response.status(), 403);
    let text = output.text();
    let escaped = r"CN=agent\e2\80\aenim1\e2\80\8b\e2\80\a8x\ef\bb\bf";
    let denial = text
        .lines()
        .find(|line| line.contains("client_certificate_not_allowed") && line.contains("nim1"))
        .unwrap_or_else(|| panic!("no denial logged:\n{text}"));
    assert!(denial.contains(escaped), "{denial}");
    assert_clean(&text);

    // The same name refused at the handshake (issued by a CA the server does not trust): the
    // acceptor's line escapes it too.
    let stranger = Ca::new("Stranger CA").issue(&LeafSpec::client(EVIL_CN));
    assert!(
        refusal_alert(&pki, Some(&stranger), server.addr)
            .await
            .is_some()
    );
    let logged = async {
        while !output.text().contains("client certificate rejected") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(PATIENCE, logged)
        .await
        .unwrap_or_else(|_| panic!("no refusal logged:\n{}", output.text()));
    let text = output.text();
    let refusal = text
        .lines()
        .find(|line| line.contains("client certificate rejected"))
        .expect("refusal line");
    assert!(
        refusal.contains(r"agent\\0aFAKE LOG LINE\\1b[31m"),
        "{refusal}"
    );
    assert_clean(&text);
    server.stop().await;
}
