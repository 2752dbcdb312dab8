//! `tower-mtls check`: the extension's startup, without serving.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::json;
use tower_mtls::steadybit::vars;
use tower_mtls::{ClientAuth, ClientCertPolicy, TlsConfig, steadybit::ExtensionEnv};

use crate::describe::{CertInfo, expiry_warning, rfc3339};
use crate::running;
use crate::{ExtensionArgs, Outcome};

/// JVM clients refuse a CertificateRequest over 32 KiB; warn well before.
const CA_NAMES_WARNING_BYTES: usize = 24 * 1024;
const JVM_LIMIT_BYTES: usize = 32 * 1024;

/// The extension's configuration, loaded as the `extension` example loads it.
pub(crate) struct Loaded {
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) policy: Option<ClientCertPolicy>,
}

/// Loads the configuration the way the extension does at startup; `Err` holds the error the
/// extension would exit with.
pub(crate) fn load(args: &ExtensionArgs) -> Result<Loaded, String> {
    // The extension's own reading of its environment: TOWER_MTLS_CLIENT_ALLOW is parsed and
    // checked against the client-auth mode there, with the same error the extension exits with.
    let env = ExtensionEnv::from_lookup(|name| args.lookup(name)).map_err(|e| e.to_string())?;
    let policy = env.client_allow;
    Ok(Loaded {
        tls: env.tls,
        policy,
    })
}

#[derive(Serialize)]
struct Trusted {
    subject: String,
    not_after: String,
    expires_in_days: i64,
    path: PathBuf,
}

#[derive(Serialize)]
struct Crl {
    issuer: String,
    number: String,
    next_update: Option<String>,
    fresh: bool,
    path: PathBuf,
}

pub(crate) fn run(args: &ExtensionArgs, deny_warnings: bool, running: Option<&str>) -> Outcome {
    let mut outcome = on_disk(args, deny_warnings);
    if let Some(url) = running {
        compare_with_running(&mut outcome, args, url);
    }
    outcome
}

/// Adds what a running server applies, next to what the files on disk hold.
fn compare_with_running(outcome: &mut Outcome, args: &ExtensionArgs, url: &str) {
    let disk = load(args)
        .ok()
        .and_then(|l| l.tls)
        .map(|tls| tower_mtls::tls::metrics::digest_prefix(&tls.trust_files_digest()));
    let mut human = format!("\nrunning server ({url}):\n");
    let report = match running::fetch(url) {
        Err(error) => {
            let _ = writeln!(human, "  cannot read its metrics: {error}");
            outcome.ok = false;
            json!({ "url": url, "error": error })
        }
        Ok(in_force) => {
            let same = disk.is_some() && disk == in_force.trust_files;
            let _ = writeln!(
                human,
                "  trust files in use: {}\n  trust files on disk: {}{}\n  last reload rejected: {}",
                in_force.trust_files.map_or_else(
                    || "not published (metrics off?)".into(),
                    |d| format!("{d:012x}")
                ),
                disk.map_or_else(|| "do not load (above)".into(), |d| format!("{d:012x}")),
                if same { " (the same)" } else { " (DIFFERENT)" },
                if in_force.reload_rejected {
                    "YES"
                } else {
                    "no"
                }
            );
            if in_force.reload_rejected {
                let _ = writeln!(
                    human,
                    "  the server rejected the files on disk and still applies its previous \
                     trust: fix the files (see its error log) so that the change, a removal of \
                     trust included, takes effect"
                );
                outcome.ok = false;
            } else if !same && in_force.trust_files.is_some() && disk.is_some() {
                let _ = writeln!(
                    human,
                    "  the server has not applied these files (yet: it polls them every second; \
                     or it reads other paths)"
                );
            }
            json!({
                "url": url,
                "trust_files_in_use": in_force.trust_files,
                "trust_files_on_disk": disk,
                "same": same,
                "reload_rejected": in_force.reload_rejected,
            })
        }
    };
    outcome.human.push_str(&human);
    if let Some(object) = outcome.json.as_object_mut() {
        object.insert("running".into(), report);
        object.insert("ok".into(), outcome.ok.into());
    }
}

fn on_disk(args: &ExtensionArgs, deny_warnings: bool) -> Outcome {
    let now = SystemTime::now();
    let loaded = match load(args) {
        Ok(loaded) => loaded,
        Err(error) => {
            return Outcome {
                ok: false,
                json: json!({ "ok": false, "starts": false, "error": error }),
                human: format!("the extension would NOT start:\n  {error}\n"),
            };
        }
    };
    let mut warnings = Vec::new();
    let mut human = String::new();
    let Some(tls) = &loaded.tls else {
        warnings.push(format!(
            "TLS is not configured (none of {}, {}, {} is set): the extension would serve plain \
             HTTP, and any client may call it",
            vars::TLS_SERVER_CERT,
            vars::TLS_SERVER_KEY,
            vars::TLS_CLIENT_CAS
        ));
        let _ = writeln!(human, "the extension would start, serving plain HTTP");
        write_warnings(&mut human, &warnings);
        return Outcome {
            ok: !deny_warnings,
            json: json!({ "ok": !deny_warnings, "starts": true, "tls": false, "warnings": warnings }),
            human,
        };
    };

    let _ = writeln!(
        human,
        "the extension would start: HTTPS, client certificates {}",
        tls.client_auth()
    );
    // The certificate file was loaded fine a moment ago; read it again for the details.
    let cert_path = args
        .lookup(vars::TLS_SERVER_CERT)
        .map(|p| PathBuf::from(p.trim()))
        .unwrap_or_default();
    let chain = tower_mtls::tls::certificates_from_file(&cert_path)
        .map(|chain| CertInfo::chain(&chain, now))
        .unwrap_or_default();
    let _ = writeln!(
        human,
        "\nserver certificate chain ({}):",
        cert_path.display()
    );
    for (i, cert) in chain.iter().enumerate() {
        let _ = writeln!(human, "  #{} {}", i + 1, if i == 0 { "leaf" } else { "" });
        cert.write(&mut human, "     ", now);
        let role = if i == 0 {
            "server certificate".to_owned()
        } else {
            format!("server chain certificate #{}", i + 1)
        };
        if let Some(w) = expiry_warning(
            &format!("{role} {}", cert.subject),
            cert.not_after_time,
            now,
        ) {
            warnings.push(w);
        }
        if cert.not_before_time > now {
            warnings.push(format!(
                "{role} {} is not valid before {}",
                cert.subject, cert.not_before
            ));
        }
        match cert.issued_by_next {
            Some(true) => {
                let _ = writeln!(human, "     issued by the next certificate: yes");
            }
            Some(false) => {
                let _ = writeln!(human, "     issued by the next certificate: NO");
                warnings.push(format!(
                    "server chain out of order: certificate #{} ({}) is not issued by #{} \
                     ({}); list the leaf first, then each issuer",
                    i + 1,
                    cert.subject,
                    i + 2,
                    chain.get(i + 1).map_or("", |c| c.subject.as_str())
                ));
            }
            None => {}
        }
    }
    if let Some(leaf) = chain.first() {
        if !leaf
            .sans
            .iter()
            .any(|s| s.starts_with("DNS:") || s.starts_with("IP:"))
        {
            warnings.push(format!(
                "the server certificate {} has no DNS or IP subject alternative name: agents \
                 with strict hostname verification refuse it",
                leaf.subject
            ));
        }
        if leaf.is_ca {
            warnings.push(format!(
                "the server certificate {} is a CA certificate",
                leaf.subject
            ));
        }
    }

    let details = tls.trust_details();
    let anchors: Vec<Trusted> = details
        .anchors
        .iter()
        .map(|a| trusted(&a.subject, a.not_after, &a.path, now))
        .collect();
    let pinned: Vec<Trusted> = details
        .pinned
        .iter()
        .map(|a| trusted(&a.subject, a.not_after, &a.path, now))
        .collect();
    let crls: Vec<Crl> = details
        .crls
        .iter()
        .map(|c| Crl {
            issuer: c.issuer.clone(),
            number: c.number.clone(),
            next_update: c.next_update.map(rfc3339),
            fresh: c.next_update.is_none_or(|n| n > now),
            path: c.path.clone(),
        })
        .collect();
    if tls.client_auth() == ClientAuth::None {
        warnings.push(format!(
            "no client authentication ({} is not set): any client may call the extension",
            vars::TLS_CLIENT_CAS
        ));
    } else {
        let _ = writeln!(human, "\nclient trust:");
        for (label, list, what) in [
            ("CA", &anchors, "trusted CA"),
            ("pinned", &pinned, "pinned client certificate"),
        ] {
            for t in list {
                let _ = writeln!(
                    human,
                    "  {label:<7} {} ({}, {})",
                    t.subject,
                    t.path.display(),
                    if t.expires_in_days < 0 {
                        format!("EXPIRED {} days ago", -t.expires_in_days)
                    } else {
                        format!("expires in {} days", t.expires_in_days)
                    }
                );
            }
            for (t, d) in list.iter().zip(if label == "CA" {
                &details.anchors
            } else {
                &details.pinned
            }) {
                if let Some(w) = expiry_warning(
                    &format!("{what} {} ({})", t.subject, t.path.display()),
                    d.not_after,
                    now,
                ) {
                    warnings.push(w);
                }
            }
        }
        for c in &crls {
            let _ = writeln!(
                human,
                "  CRL     {} #{} ({}, next update {}{})",
                c.issuer,
                c.number,
                c.path.display(),
                c.next_update.as_deref().unwrap_or("none"),
                if c.fresh { "" } else { ", STALE" }
            );
        }
        let bytes = details.certificate_request_ca_names_bytes;
        let _ = writeln!(
            human,
            "  CertificateRequest CA names: {bytes} bytes (JVM clients refuse more than {JVM_LIMIT_BYTES})"
        );
        if bytes > CA_NAMES_WARNING_BYTES {
            warnings.push(format!(
                "the CertificateRequest lists {bytes} bytes of CA names: JVM clients (the \
                 Steadybit agent) refuse more than {JVM_LIMIT_BYTES}; trust fewer CAs"
            ));
        }
    }
    // The server's own warnings, as it logs them.
    warnings.extend(details.warnings.iter().cloned());
    let session_ticket_keys = crate::tickets::check(args, now, &mut human, &mut warnings);

    let policy = loaded.policy.as_ref().map(|p| {
        json!({
            "text": p.to_string(),
            "rules": p.rules().iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    });
    if let Some(p) = &loaded.policy {
        let _ = writeln!(human, "\nclient policy ({}):", vars::CLIENT_ALLOW);
        for (i, rule) in p.rules().iter().enumerate() {
            let _ = writeln!(human, "  #{i} {rule}");
        }
    }
    write_warnings(&mut human, &warnings);
    let ok = !deny_warnings || warnings.is_empty();
    let json = json!({
        "ok": ok,
        "starts": true,
        "tls": true,
        "client_auth": tls.client_auth().to_string(),
        "server_certificate_file": cert_path,
        "server_chain": chain,
        "trust": {
            "anchors": anchors,
            "pinned": pinned,
            "crls": crls,
            "certificate_request_ca_names_bytes": details.certificate_request_ca_names_bytes,
        },
        "policy": policy,
        "session_ticket_keys": session_ticket_keys,
        "warnings": warnings,
    });
    Outcome { ok, json, human }
}

fn trusted(
    subject: &str,
    not_after: SystemTime,
    path: &std::path::Path,
    now: SystemTime,
) -> Trusted {
    Trusted {
        subject: subject.to_owned(),
        not_after: rfc3339(not_after),
        expires_in_days: crate::describe::days_until(not_after, now),
        path: path.to_owned(),
    }
}

fn write_warnings(human: &mut String, warnings: &[String]) {
    if warnings.is_empty() {
        let _ = writeln!(human, "\nno warnings");
        return;
    }
    let _ = writeln!(human, "\nwarnings ({}):", warnings.len());
    for w in warnings {
        let _ = writeln!(human, "  - {w}");
    }
}
