//! Integrations with the servers of web frameworks, each behind its own cargo feature and
//! re-exported at the crate root (`tower_mtls::axum`, `tower_mtls::axum_server`, …).

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "axum-server")]
pub mod axum_server;
#[cfg(feature = "tonic")]
pub mod tonic;
