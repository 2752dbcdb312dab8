//! What users configure: files and in-memory PEM, loaded into one built generation, watched and
//! reloaded whole.

pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod load;
pub(crate) mod material;
pub(crate) mod reload;
pub(crate) mod tls_config;
