//! The real-client matrix: every client, with and without a client certificate, against one
//! mTLS server. With a certificate each must get 200 and be recognised; without, each must be
//! refused.

use tower_mtls_test_kit as support;

use std::path::{Path, PathBuf};

use support::*;
use tower_mtls::{MtlsAcceptor, tls::HandshakeFailure};

const JAVA_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/MtlsClient.java");
const PYTHON_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/mtls_client.py");

struct Identity {
    cert: PathBuf,
    key: PathBuf,
    p12: PathBuf,
    leaf: Leaf,
}

async fn run(cmd: &mut tokio::process::Command) -> (bool, String) {
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(PATIENCE * 4, cmd.output())
        .await
        .expect("client finishes")
        .expect("client runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// One client: returns (succeeded with 200, the handler saw CN=matrix, output).
async fn attempt(client: &str, pki: &Pki, port: u16, id: Option<&Identity>) -> (bool, String) {
    let ca: &Path = &pki.ca_path;
    match client {
        "curl --http2" | "curl --http1.1" => {
            let flag = client.split_whitespace().nth(1).expect("flag");
            let url = format!("https://localhost:{port}/matrix");
            let out = match id {
                Some(id) => curl_with_cert(ca, &url, port, &id.cert, &id.key, &[flag]).await,
                None => curl(ca, &url, port, &[flag]).await,
            };
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        }
        "openssl s_client -tls1_2" | "openssl s_client -tls1_3" => {
            let flag = client.split_whitespace().nth(2).expect("flag");
            s_client(
                port,
                ca,
                id.map(|i| (i.cert.as_path(), i.key.as_path())),
                &[flag],
            )
            .await
        }
        "python3 ssl" => {
            let mut cmd = tokio::process::Command::new("python3");
            cmd.arg(PYTHON_CLIENT)
                .arg(port.to_string())
                .arg("/matrix")
                .arg(ca);
            if let Some(id) = id {
                cmd.arg(&id.cert).arg(&id.key);
            }
            run(&mut cmd).await
        }
        "java 17 HttpClient + PKCS#12" => {
            let mut cmd = tokio::process::Command::new("java");
            cmd.arg(JAVA_CLIENT)
                .arg(format!("https://127.0.0.1:{port}/matrix"))
                .arg(ca);
            if let Some(id) = id {
                cmd.arg(&id.p12).arg("changeit");
            }
            run(&mut cmd).await
        }
        "tower-mtls client (h2)" | "tower-mtls client (http/1.1)" => {
            let mut builder = pki.client_builder(id.map(|id| &id.leaf));
            if client.ends_with("(http/1.1)") {
                builder = builder.alpn_protocols(vec![b"http/1.1".to_vec()]);
            }
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            match builder
                .build()
                .expect("client")
                .get(addr, "localhost", "/matrix")
                .await
            {
                Ok(r) => (
                    r.status() == 200,
                    String::from_utf8_lossy(r.body()).into_owned(),
                ),
                Err(e) => (false, format!("{e} (alert {:?})", e.alert())),
            }
        }
        other => panic!("unknown client {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_with_and_without_a_certificate() {
    let pki = Pki::new();
    let leaf = pki.ca.issue(&LeafSpec::client("matrix").org("Steadybit"));
    let (cert, key) = pki.write_leaf(&leaf, "matrix");
    let p12 = pki.path("matrix.p12");
    let status = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:changeit", "-in"])
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&p12)
        .status()
        .expect("openssl pkcs12");
    assert!(status.success());
    let id = Identity {
        cert,
        key,
        p12,
        leaf,
    };

    let acceptor = MtlsAcceptor::new(pki.required_config());
    let server = TestServer::start(acceptor.clone()).await;
    let clients = [
        "curl --http2",
        "curl --http1.1",
        "openssl s_client -tls1_2",
        "openssl s_client -tls1_3",
        "python3 ssl",
        "java 17 HttpClient + PKCS#12",
        "tower-mtls client (h2)",
        "tower-mtls client (http/1.1)",
    ];
    let mut table = vec![format!(
        "{:<32} {:<18} {}",
        "client", "with certificate", "without"
    )];
    let mut problems = Vec::new();
    for client in clients {
        let (with_ok, with_text) = attempt(client, &pki, server.port(), Some(&id)).await;
        let recognised = with_text.contains("\"cn\":\"matrix\"");
        let (without_ok, without_text) = attempt(client, &pki, server.port(), None).await;
        table.push(format!(
            "{client:<32} {:<18} {}",
            if with_ok && recognised {
                "200, identified"
            } else {
                "FAILED"
            },
            if without_ok {
                "SERVED (wrong)"
            } else {
                "refused"
            }
        ));
        if !(with_ok && recognised) {
            problems.push(format!("{client} with a certificate: {with_text}"));
        }
        if without_ok {
            problems.push(format!(
                "{client} without a certificate was served: {without_text}"
            ));
        }
    }
    println!("{}", table.join("\n"));
    assert!(problems.is_empty(), "{problems:#?}");
    // A client may see the refusal before the server has counted it: read the counters once
    // the server has stopped, which waits for every connection (handshakes included).
    server.stop().await;
    let stats = acceptor.stats();
    assert!(
        stats.handshakes_succeeded >= clients.len() as u64,
        "{stats}"
    );
    assert!(
        stats.failures(HandshakeFailure::NoClientCertificate) >= clients.len() as u64,
        "{stats}"
    );
}
