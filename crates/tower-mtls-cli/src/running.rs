//! `check --running URL`: what a running extension applies, read from its `/metrics`, next to
//! the files on disk.
//!
//! The server publishes `tower_mtls_trust_files_digest` (the first 48 bits of the SHA-256 of the
//! trust and CRL files in use, as an integer) and `tower_mtls_reload_rejected` (1 while the files
//! on disk are a rejected change). The digest is `TlsConfig::trust_files_digest`, which `check`
//! computes from the same files: run in the same pod (same paths), equal digests mean the server
//! applies what is on disk.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long the doctor waits for the server's metrics.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a metrics page read.
const MAX_PAGE: u64 = 16 << 20;

/// What a running server says about its trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InForce {
    /// The first 48 bits of the digest of the trust and CRL files in use, when the server
    /// publishes it.
    pub(crate) trust_files: Option<u64>,
    /// Whether its last reload was rejected (the files on disk are not in use).
    pub(crate) reload_rejected: bool,
}

/// Reads `url` (`http://host:port/path`, typically the health port's `/metrics`).
pub(crate) fn fetch(url: &str) -> Result<InForce, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs (the plain health port) are read"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{url}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("{url}: {e}"))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: text/plain\r\n\r\n"
    )
    .map_err(|e| format!("{url}: {e}"))?;
    let mut page = Vec::new();
    stream
        .take(MAX_PAGE)
        .read_to_end(&mut page)
        .map_err(|e| format!("{url}: {e}"))?;
    let page = String::from_utf8_lossy(&page);
    let (head, body) = page
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{url}: not an HTTP response"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("{url}: HTTP status {status}"));
    }
    Ok(parse(body))
}

/// The two samples of a Prometheus text page.
pub(crate) fn parse(page: &str) -> InForce {
    let mut in_force = InForce {
        trust_files: None,
        reload_rejected: false,
    };
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        if series == "tower_mtls_reload_rejected" {
            in_force.reload_rejected = value == 1.0;
        } else if series == "tower_mtls_trust_files_digest" && value >= 0.0 {
            // 48 bits: exact in the float the exporter printed.
            in_force.trust_files = Some(value as u64);
        }
    }
    in_force
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_digest_in_use_and_the_rejection() {
        let page = "# HELP tower_mtls_reload_rejected x\n\
                    tower_mtls_reload_rejected 1\n\
                    tower_mtls_trust_files_digest 281474976710655\n";
        assert_eq!(
            parse(page),
            InForce {
                trust_files: Some(0xffff_ffff_ffff),
                reload_rejected: true
            }
        );
        assert_eq!(
            parse(""),
            InForce {
                trust_files: None,
                reload_rejected: false
            }
        );
    }
}
