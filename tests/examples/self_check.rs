//! The self-checking examples run and succeed: `demo` (the README's main command), `axum`,
//! `axum_serve` and `hyper_acceptor`.

use tower_mtls_test_kit as support;

use support::*;

async fn run_example(name: &str) -> String {
    let output = tokio::time::timeout(
        PATIENCE * 2,
        tokio::process::Command::new(example_binary(name))
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("example finishes")
    .expect("example runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{name} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_three_outcomes_and_exits_0() {
    let out = run_example("demo").await;
    assert_eq!(out.matches("[as expected]").count(), 3, "{out}");
    assert!(out.contains("CN=steadybit-agent"), "{out}");
    assert!(
        out.contains("CertificateRequired") && out.contains("UnknownCA"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_example_routes_answer_as_expected() {
    let out = run_example("axum").await;
    assert!(out.contains("every route answered as expected"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_acceptor_example_serves_itself() {
    let out = run_example("hyper_acceptor").await;
    assert!(out.contains("hello CN=example-client"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_serve_example_answers_every_request_as_expected() {
    let out = run_example("axum_serve").await;
    assert_eq!(out.matches("[as expected]").count(), 10, "{out}");
    assert!(out.contains("every request behaved as expected"), "{out}");
}
