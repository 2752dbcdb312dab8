//! Per-route client-certificate policies in an axum app: `cargo run --example axum`.
//!
//! * `/public`  — anyone who completed the TLS handshake (client certificates are optional);
//! * `/agent`   — only the client whose subject is `CN=steadybit-agent, O=Steadybit`;
//! * `/workload`— only the workload with SPIFFE ID `spiffe://cluster.local/ns/chaos/sa/runner`;
//! * `/admin`   — only the holder of one key, pinned by the SHA-256 of its SubjectPublicKeyInfo
//!   (the pin survives re-issuing the certificate for the same key).
//!
//! The example generates its own CA and clients, serves on an ephemeral port, calls every
//! route with every client and prints the status table; it exits 0 when every answer is the
//! expected one.

use tower_mtls_test_kit::pki;

use std::process::ExitCode;

use axum::Router;
use axum::extract::Extension;
use axum::routing::get;
use pki::{Ca, Leaf, LeafSpec};
use tower_mtls::Rule;
use tower_mtls::{
    ClientAuth, ClientCertLayer, ClientIdentity, MtlsServer, TlsConfig, identity::SpiffeId,
    policy::AllowedClient,
};
use tower_mtls_test_kit::client::Client;

async fn public() -> &'static str {
    "public: hello, whoever you are\n"
}

async fn protected(Extension(client): Extension<AllowedClient>) -> String {
    let who = client
        .identity()
        .map_or_else(|| "?".to_owned(), |id| id.subject().to_string());
    let rule = client
        .matched_rule()
        .map_or_else(|| "-".to_owned(), |rule| rule.to_string());
    format!("welcome {who} (rule {rule})\n")
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();

    let dir = tempfile::tempdir()?;
    let ca = Ca::new("Cluster CA");
    let ca_path = ca.write(dir.path(), "ca.crt");
    let (server_cert, server_key) = ca.server().write(dir.path(), "server");
    let agent = ca.issue(&LeafSpec::client("steadybit-agent").org("Steadybit"));
    let workload =
        ca.issue(&LeafSpec::client("runner").uri("spiffe://cluster.local/ns/chaos/sa/runner"));
    let admin = ca.issue(&LeafSpec::client("ops-laptop").org("Ops"));
    let admin_pin = ClientIdentity::parse(admin.der.as_ref())?.spki_sha256();

    let app = Router::new()
        .route("/public", get(public))
        .route(
            "/agent",
            get(protected).layer(
                ClientCertLayer::require().allow(
                    Rule::named("agent")
                        .subject_cn("steadybit-agent")
                        .subject_o("Steadybit"),
                ),
            ),
        )
        .route(
            "/workload",
            get(protected).layer(ClientCertLayer::require().allow_spiffe_id(SpiffeId::parse(
                "spiffe://cluster.local/ns/chaos/sa/runner",
            )?)),
        )
        .route(
            "/admin",
            get(protected).layer(ClientCertLayer::require().allow_spki_sha256(admin_pin)),
        );

    // Client certificates are optional at the TLS level, so /public serves everyone; the
    // layers decide for the other routes.
    let tls = TlsConfig::builder()
        .server_cert_file(server_cert)
        .server_key_file(server_key)
        .client_trust(ca_path)
        .client_auth(ClientAuth::Optional)
        .build()?;
    let server = MtlsServer::bind("127.0.0.1:0").await?.tls(tls);
    let addr = match server.local_addr()? {
        tower_mtls::serve::ListenAddr::Tcp(addr) => addr,
        other => return Err(format!("unexpected listener {other}").into()),
    };
    tokio::spawn(server.serve(app));
    println!("serving on https://{addr}\n");

    let clients: [(&str, Option<&Leaf>); 4] = [
        ("no certificate", None),
        ("steadybit-agent", Some(&agent)),
        ("SPIFFE runner", Some(&workload)),
        ("pinned admin", Some(&admin)),
    ];
    let routes = ["/public", "/agent", "/workload", "/admin"];
    // Expected status per client (rows) and route (columns).
    let expected = [
        [200, 401, 401, 401],
        [200, 200, 403, 403],
        [200, 403, 200, 403],
        [200, 403, 403, 200],
    ];
    println!("{:<18}{}", "", routes.map(|r| format!("{r:<11}")).concat());
    let mut all_as_expected = true;
    for ((name, leaf), expected) in clients.iter().zip(expected) {
        let mut builder = Client::builder().trust_server_ca_pem(ca.cert_pem.clone());
        if let Some(leaf) = leaf {
            builder = builder.identity_pem(leaf.cert_pem.clone(), leaf.key_pem.clone());
        }
        let connection = builder.build()?.connect(addr, "localhost").await?;
        let mut row = format!("{name:<18}");
        for (route, want) in routes.iter().zip(expected) {
            let status = connection.get(route).await?.status().as_u16();
            all_as_expected &= status == want;
            row.push_str(&format!(
                "{:<11}",
                if status == want {
                    format!("{status}")
                } else {
                    format!("{status}!={want}")
                }
            ));
        }
        println!("{row}");
    }

    let agent_conn = Client::builder()
        .trust_server_ca_pem(ca.cert_pem.clone())
        .identity_pem(agent.cert_pem.clone(), agent.key_pem.clone())
        .build()?
        .connect(addr, "localhost")
        .await?;
    print!(
        "\n/agent as the agent: {}",
        String::from_utf8_lossy(agent_conn.get("/agent").await?.body())
    );
    let denied = agent_conn.get("/admin").await?;
    println!(
        "/admin as the agent: {} {}",
        denied.status(),
        String::from_utf8_lossy(denied.body())
    );

    Ok(if all_as_expected {
        println!("\nevery route answered as expected");
        ExitCode::SUCCESS
    } else {
        println!("\nsome answers were unexpected");
        ExitCode::FAILURE
    })
}
