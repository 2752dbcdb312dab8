//! Integrations with the servers of web frameworks, each behind its own cargo feature.

#[cfg(feature = "axum")]
pub mod axum;

#[cfg(feature = "tonic")]
pub mod tonic;
