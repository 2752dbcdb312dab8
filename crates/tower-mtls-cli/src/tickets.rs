//! Shared session ticket keys: `check` reports the key file (never a key), `ticket-key` prints
//! a fresh key line.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::json;
use tower_mtls::steadybit::vars;
use tower_mtls::tls::SessionTicketKeys;

use crate::{ExtensionArgs, Outcome};

/// A key file older than this has probably stopped rotating.
const STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// What `check` says about the key file: its JSON, lines for the report, warnings. `None`
/// without `TOWER_MTLS_SESSION_TICKET_KEYS`. The extension's build has checked the file
/// already; this reads it again only to count the keys.
pub(crate) fn check(
    args: &ExtensionArgs,
    now: SystemTime,
    human: &mut String,
    warnings: &mut Vec<String>,
) -> Option<serde_json::Value> {
    let path = PathBuf::from(args.lookup(vars::SESSION_TICKET_KEYS)?.trim());
    if path.as_os_str().is_empty() {
        return None;
    }
    let keys = match SessionTicketKeys::from_file(&path) {
        Ok(keys) => keys.len(),
        Err(error) => {
            warnings.push(error.to_string());
            return Some(json!({ "path": path, "error": error.to_string() }));
        }
    };
    // Through the kubelet's links: the age of the secret's current generation.
    let age = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| now.duration_since(modified).ok());
    let age_text = age.map_or_else(
        || "unknown".to_owned(),
        |a| format!("{:.1} hours", a.as_secs_f64() / 3600.0),
    );
    let _ = writeln!(
        human,
        "\nsession ticket keys ({}): {keys} key{}, the first seals; file age {age_text}",
        path.display(),
        if keys == 1 { "" } else { "s" }
    );
    if age.is_some_and(|a| a > STALE_AFTER) {
        warnings.push(format!(
            "the session ticket key file {} has not changed for {age_text}: is its rotation \
             still running? A leaked key opens every ticket it sealed",
            path.display()
        ));
    }
    Some(json!({
        "path": path,
        "keys": keys,
        "age_seconds": age.map(|a| a.as_secs()),
    }))
}

/// `tower-mtls ticket-key`: one fresh key line.
pub(crate) fn new_key() -> Outcome {
    match tower_mtls::tls::new_session_ticket_key() {
        Ok(key) => Outcome {
            ok: true,
            human: format!("{key}\n"),
            json: json!({ "ok": true, "key": key }),
        },
        Err(error) => Outcome {
            ok: false,
            human: format!("no key: {error}\n"),
            json: json!({ "ok": false, "error": error.to_string() }),
        },
    }
}
