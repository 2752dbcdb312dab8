//! `tower-mtls ticket-key` and what `check` says about a session ticket key file: the number of
//! keys and the file's age, never a key.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use tower_mtls_test_kit::pki::Ca;

fn doctor(args: &[&str], vars: &[(&str, &Path)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tower-mtls"))
        .env_clear()
        .args(args)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_os_str())))
        .output()
        .expect("run tower-mtls")
}

fn json(out: &Output, code: i32) -> Value {
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn ticket_key_prints_a_fresh_key_line_that_check_counts_without_printing() {
    let first = doctor(&["ticket-key"], &[]);
    assert!(first.status.success());
    let first = String::from_utf8(first.stdout).expect("utf-8");
    let second = String::from_utf8(doctor(&["ticket-key"], &[]).stdout).expect("utf-8");
    assert_eq!(first.trim_end().len(), 44, "{first:?}");
    assert!(first.ends_with('\n'));
    assert_ne!(first, second);

    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("Server CA");
    let (cert, key) = ca.server().write(dir.path(), "server");
    let keys = dir.path().join("ticket-keys");
    std::fs::write(&keys, format!("{first}\n{second}")).expect("write");
    let vars = [
        ("STEADYBIT_EXTENSION_TLS_SERVER_CERT", cert.as_path()),
        ("STEADYBIT_EXTENSION_TLS_SERVER_KEY", key.as_path()),
        ("TOWER_MTLS_SESSION_TICKET_KEYS", keys.as_path()),
    ];
    let out = doctor(&["check", "--json"], &vars);
    let report = json(&out, 0);
    assert_eq!(report["session_ticket_keys"]["keys"], 2, "{report}");
    assert!(
        report["session_ticket_keys"]["age_seconds"]
            .as_u64()
            .is_some()
    );
    let human = String::from_utf8(doctor(&["check"], &vars).stdout).expect("utf-8");
    assert!(
        human.contains("2 keys, the first seals; file age"),
        "{human}"
    );
    for key in [first.trim(), second.trim()] {
        assert!(!human.contains(key) && !report.to_string().contains(key));
    }

    std::fs::write(&keys, format!("{first}dG9vLXNob3J0\n")).expect("write");
    let report = json(&doctor(&["check", "--json"], &vars), 1);
    let error = report["error"].as_str().expect("the error");
    assert!(
        error.contains("ticket-keys: line 2: decodes to 9 bytes"),
        "{report}"
    );
}
