//! Framework integrations, one module per framework behind its own feature; each a small
//! trait impl over [`MtlsListener`](crate::serve::MtlsListener) and `connection.rs`, not a
//! second server.

#[cfg(feature = "tonic")]
pub mod tonic;
