//! Reading the agent's files: an encrypted PKCS#8 block, a file named by its variable.

use std::path::Path;

use super::AgentError;
use crate::tls::config::load::{LoadedFile, Source};

/// The `ENCRYPTED PRIVATE KEY` PEM block of `bytes`, begin and end lines included.
pub(super) fn encrypted_pkcs8_block(bytes: &[u8]) -> Option<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &[u8] = b"-----END ENCRYPTED PRIVATE KEY-----";
    let start = find(bytes, BEGIN)?;
    let end = start + find(&bytes[start..], END)? + END.len();
    Some(&bytes[start..end])
}

/// Whether `bytes` hold a PEM private key block of any kind (PKCS#8, encrypted PKCS#8, PKCS#1,
/// SEC1).
pub(super) fn holds_private_key(bytes: &[u8]) -> bool {
    find(bytes, b"PRIVATE KEY-----").is_some()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(super) fn read(variable: &'static str, path: &Path) -> Result<LoadedFile, AgentError> {
    Source::Path(path.to_owned())
        .read_file()
        .map_err(|source| AgentError::File { variable, source })
}
