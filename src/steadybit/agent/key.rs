//! Reading the agent's files: an encrypted PKCS#8 block, a file named by its variable.

use std::path::Path;

use super::AgentError;
use crate::tls::load::{LoadedFile, Source};

/// The `ENCRYPTED PRIVATE KEY` PEM block of `bytes`, begin and end lines included.
pub(super) fn encrypted_pkcs8_block(bytes: &[u8]) -> Option<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &[u8] = b"-----END ENCRYPTED PRIVATE KEY-----";
    let start = find(bytes, BEGIN)?;
    let end = start + find(&bytes[start..], END)? + END.len();
    Some(&bytes[start..end])
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(super) fn read(variable: &'static str, path: &Path) -> Result<LoadedFile, AgentError> {
    Source::Path(path.to_owned())
        .read_file()
        .map_err(|source| AgentError::File { variable, source })
}
