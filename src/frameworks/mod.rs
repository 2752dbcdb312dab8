//! Integrations with HTTP frameworks and servers, each behind its own cargo feature.

#[cfg(feature = "axum-server")]
pub mod axum_server;
