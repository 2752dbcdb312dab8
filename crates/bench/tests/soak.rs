//! The soak in its short mode: every client role, every kind of rotation, the leak and
//! descriptor checks, in about half a minute. The ten-minute run is by hand (BENCHMARKS.md,
//! Reliability).

use std::process::Command;

#[test]
fn a_short_soak_with_rotation_passes() {
    let output = Command::new(env!("CARGO_BIN_EXE_soak"))
        .args(["--duration", "15s", "--warmup", "5s", "--idle", "200"])
        .args(["--rotate-every", "2s"])
        .output()
        .expect("run the soak");
    let report = String::from_utf8_lossy(&output.stdout);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}\n{log}");
    let report: serde_json::Value = serde_json::from_str(&report).expect("the JSON report");
    // Each of the six kinds of rotation happened, and the revoked client was refused.
    assert!(report["rotations"].as_u64() >= Some(6), "{report:#}");
    assert!(report["revoked_refused"].as_u64() > Some(0), "{report:#}");
    assert_eq!(report["failed_operations"], 0, "{report:#}");
}
