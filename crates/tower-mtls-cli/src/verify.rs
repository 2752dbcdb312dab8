//! `tower-mtls verify`: would the extension accept this client certificate?

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use serde_json::json;
use tower_mtls::ClientIdentity;
use tower_mtls::steadybit::{self, vars};
use tower_mtls::tls::{ClientAccepted, HandshakeFailure, TrustedBy};

use crate::describe::{CertInfo, rfc3339};
use crate::{ExtensionArgs, Outcome, UsageError};

/// One thing to fix, per failure class.
pub(crate) fn hint(kind: HandshakeFailure) -> &'static str {
    match kind {
        HandshakeFailure::UnknownCa => {
            "the extension trusts neither this certificate nor its issuer: add the issuing CA \
             (or the client's own tls.crt) to STEADYBIT_EXTENSION_TLS_CLIENT_CAS, or issue the \
             client certificate from a CA it trusts"
        }
        HandshakeFailure::Expired => {
            "renew the client certificate (or, if it should still be valid, check this machine's clock)"
        }
        HandshakeFailure::NotYetValid => {
            "the certificate is not valid yet: check the clocks of the issuer and of the \
             extension's host, or wait until its notBefore"
        }
        HandshakeFailure::Revoked => {
            "the certificate is revoked by the CRL named: issue a new client certificate (or, if \
             the revocation is a mistake, publish a CRL without it)"
        }
        HandshakeFailure::StaleCrl => {
            "the issuer's CRL is past its nextUpdate: publish a fresh CRL, or set \
             TOWER_MTLS_CLIENT_CRLS_REQUIRE_FRESH=false"
        }
        HandshakeFailure::WrongKeyUsage => {
            "use an end-entity certificate made for client authentication (extendedKeyUsage \
             clientAuth, or none), not a CA certificate or a server-only one"
        }
        HandshakeFailure::BadSignature => {
            "a signature in the chain does not verify: the chain was assembled from the wrong \
             CA certificate, or damaged; re-export it from the issuer"
        }
        HandshakeFailure::ChainTooLarge => {
            "send fewer or smaller certificates: the leaf and its intermediates, not the whole \
             trust store"
        }
        HandshakeFailure::NoClientCertificate => {
            "the file holds no certificate: give the client's PEM chain, leaf first"
        }
        _ => {
            "the certificate cannot be used: check that it is a valid X.509 v3 certificate with \
             a supported key and signature algorithm"
        }
    }
}

/// The hint for a client the policy does not allow.
pub(crate) const POLICY_HINT: &str = "add a rule for this client to TOWER_MTLS_CLIENT_ALLOW \
     (see the names above), or issue its certificate with the names a rule expects";

/// The verdict when nothing trusts client certificates.
fn not_configured() -> (HandshakeFailure, String) {
    (
        HandshakeFailure::UnknownCa,
        format!(
            "no client trust is configured: the extension asks for no client certificate (set {} \
             to the client's CA or its tls.crt)",
            vars::TLS_CLIENT_CAS
        ),
    )
}

pub(crate) fn run(
    args: &ExtensionArgs,
    client_cert: &Path,
    time: Option<SystemTime>,
) -> Result<Outcome, UsageError> {
    let chain = tower_mtls::tls::certificates_from_file(client_cert)
        .map_err(|e| UsageError(format!("--client-cert: {e}")))?;
    let at = time.unwrap_or_else(SystemTime::now);
    let given = |variable: &str| {
        args.lookup(variable)
            .is_some_and(|value| !value.trim().is_empty())
    };
    // The verdict needs the trust, CRLs and policy only. With a server identity the whole
    // extension is loaded (and must start); without one, the client trust alone is built, with
    // the same loading and the same verifier.
    let server_identity = given(vars::TLS_SERVER_CERT) || given(vars::TLS_SERVER_KEY);
    type Judge = Box<dyn Fn() -> Result<ClientAccepted, (HandshakeFailure, String)>>;
    let (judge, policy): (Judge, _) = if server_identity {
        let loaded = match crate::check::load(args) {
            Ok(loaded) => loaded,
            Err(error) => {
                return Ok(Outcome {
                    ok: false,
                    json: json!({ "ok": false, "accepted": false, "starts": false, "error": error }),
                    human: format!(
                        "the extension would NOT start, so it accepts no client:\n  {error}\n"
                    ),
                });
            }
        };
        let chain = chain.clone();
        let judge: Judge = match loaded.tls {
            None => Box::new(|| Err(not_configured())),
            Some(tls) => Box::new(move || {
                tls.verify_client_chain(&chain, at)
                    .map_err(|refused| (refused.kind, refused.reason))
            }),
        };
        (judge, loaded.policy)
    } else {
        let lookup = |name: &str| args.lookup(name);
        let built = steadybit::client_trust_from_lookup(lookup)
            .and_then(|trust| Ok((trust, steadybit::client_allow_from_lookup(lookup)?)));
        let (trust, policy) = match built {
            Ok(built) => built,
            Err(error) => {
                let error = error.to_string();
                return Ok(Outcome {
                    ok: false,
                    json: json!({ "ok": false, "accepted": false, "server_identity": false, "error": error }),
                    human: format!(
                        "the client trust cannot be built, so the extension would accept no \
                         client:\n  {error}\n"
                    ),
                });
            }
        };
        let chain = chain.clone();
        let judge: Judge = match trust {
            None => Box::new(|| Err(not_configured())),
            Some(trust) => Box::new(move || {
                trust
                    .verify_client_chain(&chain, at)
                    .map_err(|refused| (refused.kind, refused.reason))
            }),
        };
        (judge, policy)
    };
    let mut human = String::new();
    if !server_identity {
        let _ = writeln!(
            human,
            "no server identity given ({} / {} unset): judging with the client trust alone \
             (CAs, pinned certificates, CRLs, policy)\n",
            vars::TLS_SERVER_CERT,
            vars::TLS_SERVER_KEY
        );
    }
    let client = CertInfo::chain(&chain, at);
    let _ = writeln!(
        human,
        "client certificate chain ({}), judged at {}:",
        client_cert.display(),
        rfc3339(at)
    );
    for (i, cert) in client.iter().enumerate() {
        let _ = writeln!(human, "  #{}", i + 1);
        cert.write(&mut human, "     ", at);
    }

    let mut failures = Vec::new();
    let tls_verdict = judge();
    let tls_json = match &tls_verdict {
        Ok(accepted) => {
            let by = match &accepted.trusted_by {
                TrustedBy::Anchor { subject } => format!("chains to the trusted CA {subject}"),
                TrustedBy::Pinned => "is pinned (trusted as itself)".to_owned(),
                other => format!("{other:?}"),
            };
            let _ = writeln!(human, "\nTLS: accepted: {} {by}", accepted.subject);
            json!({ "accepted": true, "trusted_by": by })
        }
        Err((kind, reason)) => {
            let _ = writeln!(human, "\nTLS: REFUSED ({kind}): {reason}");
            failures.push(json!({ "class": kind.as_str(), "reason": reason, "hint": hint(*kind) }));
            json!({ "accepted": false, "class": kind.as_str(), "reason": reason, "hint": hint(*kind) })
        }
    };

    let mut policy_json = serde_json::Value::Null;
    if let Some(policy) = &policy {
        let rules: Vec<String> = policy.rules().iter().map(ToString::to_string).collect();
        match chain
            .first()
            .map(|leaf| ClientIdentity::parse(leaf.as_ref()))
        {
            Some(Ok(identity)) => match policy.first_match(&identity) {
                Some(index) => {
                    let _ = writeln!(human, "policy: allowed by rule #{index}: {}", rules[index]);
                    policy_json = json!({ "allowed": true, "rule_index": index, "rule": rules[index], "rules": rules });
                }
                None => {
                    let reason = format!(
                        "no rule of {} matches {} (issuer {}); tried: {}",
                        vars::CLIENT_ALLOW,
                        identity.subject(),
                        identity.issuer(),
                        rules
                            .iter()
                            .enumerate()
                            .map(|(i, r)| format!("#{i} {r}"))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    );
                    let _ = writeln!(human, "policy: DENIED (403): {reason}");
                    failures.push(
                        json!({ "class": "policy_denied", "reason": reason, "hint": POLICY_HINT }),
                    );
                    policy_json = json!({ "allowed": false, "reason": reason, "rules": rules });
                }
            },
            _ => {
                let reason = "the leaf certificate cannot be parsed for the policy".to_owned();
                let _ = writeln!(human, "policy: DENIED (403): {reason}");
                failures.push(json!({ "class": "policy_unparsable", "reason": reason, "hint": hint(HandshakeFailure::BadCertificate) }));
                policy_json = json!({ "allowed": false, "reason": reason, "rules": rules });
            }
        }
    }

    let accepted = failures.is_empty();
    if accepted {
        let _ = writeln!(
            human,
            "\nverdict: ACCEPTED (a live handshake must still prove the client holds the key)"
        );
    } else {
        let _ = writeln!(human, "\nverdict: REFUSED");
        for f in &failures {
            let _ = writeln!(
                human,
                "  fix ({}): {}",
                f["class"].as_str().unwrap_or(""),
                f["hint"].as_str().unwrap_or("")
            );
        }
    }
    Ok(Outcome {
        ok: accepted,
        json: json!({
            "ok": accepted,
            "accepted": accepted,
            "time": rfc3339(at),
            "server_identity": server_identity,
            "client_chain": client,
            "tls": tls_json,
            "policy": policy_json,
            "failures": failures,
        }),
        human,
    })
}
