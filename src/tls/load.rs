//! PEM files and secret directories → certificates, keys and CRLs. Every error carries the path.
//!
//! A trust source is a PEM file or a directory of them. Directories are read the way Kubernetes
//! mounts a secret: entries whose names start with `..` (the kubelet's `..data` link and its
//! timestamped target) are skipped, so each file is seen once, through its stable symlink.
//! Files in a directory that hold no certificate (a secret's `tls.key`) are skipped too.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use super::error::ConfigError;

/// Where a piece of PEM material comes from: a path, or bytes handed over in code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A file, or (for trust and CRL sources) a directory.
    Path(PathBuf),
    /// PEM (or, for CRLs, DER) bytes; the label names them in errors.
    Memory { label: PathBuf, bytes: Arc<[u8]> },
}

impl Source {
    pub(crate) fn memory(label: &str, bytes: impl Into<Vec<u8>>) -> Self {
        Self::Memory {
            label: PathBuf::from(format!("<{label}>")),
            bytes: Arc::from(bytes.into()),
        }
    }

    /// The path, or the label of in-memory bytes, for messages.
    pub(crate) fn name(&self) -> &Path {
        match self {
            Self::Path(path) => path,
            Self::Memory { label, .. } => label,
        }
    }

    /// Reads every file the source stands for: one for a file or in-memory bytes, each
    /// eligible file (sorted by name) for a directory.
    pub(crate) fn read(&self) -> Result<SourceFiles, ConfigError> {
        match self {
            Self::Memory { label, bytes } => Ok(SourceFiles {
                directory: false,
                files: vec![LoadedFile {
                    path: label.clone(),
                    bytes: bytes.to_vec(),
                }],
            }),
            Self::Path(path) => {
                let meta = fs::metadata(path).map_err(|e| ConfigError::io(path, e))?;
                let mut files = Vec::new();
                if meta.is_dir() {
                    walk_dir(path, 0, &mut files)?;
                } else {
                    let bytes = fs::read(path).map_err(|e| ConfigError::io(path, e))?;
                    files.push(LoadedFile {
                        path: path.clone(),
                        bytes,
                    });
                }
                Ok(SourceFiles {
                    directory: meta.is_dir(),
                    files,
                })
            }
        }
    }

    /// Reads a source that must be a single file (or in-memory bytes).
    pub(crate) fn read_file(&self) -> Result<LoadedFile, ConfigError> {
        let read = self.read()?;
        match (read.directory, read.files.into_iter().next()) {
            (false, Some(file)) => Ok(file),
            _ => Err(ConfigError::Io {
                path: self.name().to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "is a directory, expected a PEM file",
                ),
            }),
        }
    }
}

/// The files read for one [`Source`].
#[derive(Debug, Clone)]
pub(crate) struct SourceFiles {
    /// Whether the source is a directory (its files are then optional, one by one).
    pub(crate) directory: bool,
    /// The files, sorted by name within each directory.
    pub(crate) files: Vec<LoadedFile>,
}

/// A file's path and its bytes, as read.
#[derive(Debug, Clone)]
pub(crate) struct LoadedFile {
    pub(crate) path: PathBuf,
    pub(crate) bytes: Vec<u8>,
}

/// Deep enough for any sane layout; stops a pathological tree.
const MAX_DEPTH: usize = 8;

fn walk_dir(dir: &Path, depth: usize, out: &mut Vec<LoadedFile>) -> Result<(), ConfigError> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| ConfigError::io(dir, e))? {
        let entry = entry.map_err(|e| ConfigError::io(dir, e))?;
        entries.push(entry);
    }
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("..") {
            // The kubelet's `..data` link and `..<timestamp>` target: the same files again.
            continue;
        }
        let path = entry.path();
        let link = entry
            .file_type()
            .map_err(|e| ConfigError::io(&path, e))?
            .is_symlink();
        // Follows symlinks, as a secret's files are links into `..data`.
        let meta = fs::metadata(&path).map_err(|e| ConfigError::io(&path, e))?;
        if meta.is_dir() {
            if link {
                tracing::debug!(path = %path.display(), "not following a symlinked directory in a trust directory");
            } else if depth + 1 < MAX_DEPTH {
                walk_dir(&path, depth + 1, out)?;
            }
        } else if meta.is_file() {
            let bytes = fs::read(&path).map_err(|e| ConfigError::io(&path, e))?;
            out.push(LoadedFile { path, bytes });
        }
    }
    Ok(())
}

/// Every PEM section in `bytes`, with the labels of those this parser does not know.
fn sections(path: &Path, bytes: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, ConfigError> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| ConfigError::InvalidPem {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

/// The labels of all `-----BEGIN …-----` lines, for error messages.
fn pem_labels(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("-----BEGIN ")
                .and_then(|rest| rest.strip_suffix("-----"))
                .map(str::to_owned)
        })
        .collect()
}

fn missing(path: &Path, bytes: &[u8], expected: &'static str) -> ConfigError {
    let labels = pem_labels(bytes);
    if labels.is_empty() {
        ConfigError::NoPemBlock {
            path: path.to_owned(),
            expected,
        }
    } else {
        ConfigError::WrongPemBlock {
            path: path.to_owned(),
            expected,
            found: labels.join(", "),
        }
    }
}

/// The certificates of a PEM file, in order, read as the server reads its certificate file:
/// an error naming the file when it is missing, unreadable or holds no certificate.
pub fn certificates_from_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    certificates(&Source::Path(path.to_owned()).read_file()?)
}

/// The certificates of one PEM file, in order. An error when there are none.
pub(crate) fn certificates(file: &LoadedFile) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = certificates_or_none(file)?;
    if certs.is_empty() {
        return Err(missing(&file.path, &file.bytes, "CERTIFICATE"));
    }
    Ok(certs)
}

fn certificates_or_none(file: &LoadedFile) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    Ok(sections(&file.path, &file.bytes)?
        .into_iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect())
}

/// The one private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
pub(crate) fn private_key(file: &LoadedFile) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let mut keys = sections(&file.path, &file.bytes)?
        .into_iter()
        .filter_map(|(kind, der)| match kind {
            SectionKind::PrivateKey => Some(PrivateKeyDer::Pkcs8(der.into())),
            SectionKind::RsaPrivateKey => Some(PrivateKeyDer::Pkcs1(der.into())),
            SectionKind::EcPrivateKey => Some(PrivateKeyDer::Sec1(der.into())),
            _ => None,
        });
    let Some(key) = keys.next() else {
        if pem_labels(&file.bytes)
            .iter()
            .any(|l| l == "ENCRYPTED PRIVATE KEY")
        {
            return Err(ConfigError::UnsupportedKey {
                path: file.path.clone(),
                reason: "the key is encrypted; provide it unencrypted (Kubernetes TLS secrets are)"
                    .into(),
            });
        }
        return Err(missing(
            &file.path,
            &file.bytes,
            "PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY",
        ));
    };
    if keys.next().is_some() {
        return Err(ConfigError::UnsupportedKey {
            path: file.path.clone(),
            reason: "the file holds more than one private key".into(),
        });
    }
    Ok(key)
}

/// A certificate from a trust source, with the file it came from and its position there.
#[derive(Debug, Clone)]
pub(crate) struct TrustCert {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) path: PathBuf,
    pub(crate) index: usize,
    /// The trust source (file or directory) it was configured through.
    pub(crate) source: PathBuf,
    /// Whether that source is a directory (a mounted secret).
    pub(crate) from_directory: bool,
}

/// Every certificate of one trust source, in file order.
///
/// A single file must hold a certificate. In a directory, files without one are skipped (a
/// secret's `tls.key`), but a malformed PEM block is an error, and so is a directory without
/// any certificate.
pub(crate) fn trust_certificates(
    source: &Source,
    read: &SourceFiles,
) -> Result<Vec<TrustCert>, ConfigError> {
    let mut out = Vec::new();
    for file in &read.files {
        let certs = if read.directory {
            let certs = certificates_or_none(file)?;
            if certs.is_empty() {
                tracing::debug!(path = %file.path.display(), "no certificate in this file of a trust directory; skipped");
            }
            certs
        } else {
            certificates(file)?
        };
        out.extend(certs.into_iter().enumerate().map(|(i, der)| TrustCert {
            der,
            path: file.path.clone(),
            index: i + 1,
            source: source.name().to_owned(),
            from_directory: read.directory,
        }));
    }
    if out.is_empty() {
        return Err(ConfigError::EmptyTrustSource {
            path: source.name().to_owned(),
            reason: "no certificate found in this trust source".into(),
        });
    }
    Ok(out)
}

/// Every CRL of one source: PEM `X509 CRL` blocks, or a whole file of DER.
pub(crate) fn crls(
    source: &Source,
    read: &SourceFiles,
) -> Result<Vec<(PathBuf, CertificateRevocationListDer<'static>)>, ConfigError> {
    let mut out = Vec::new();
    for file in &read.files {
        if pem_labels(&file.bytes).is_empty() {
            // DER: an ASN.1 SEQUENCE. Anything else in a directory is not ours to judge.
            if file.bytes.first() == Some(&0x30) {
                out.push((
                    file.path.clone(),
                    CertificateRevocationListDer::from(file.bytes.clone()),
                ));
            } else if !read.directory {
                return Err(missing(&file.path, &file.bytes, "X509 CRL (PEM or DER)"));
            }
            continue;
        }
        out.extend(
            sections(&file.path, &file.bytes)?
                .into_iter()
                .filter(|(kind, _)| *kind == SectionKind::Crl)
                .map(|(_, der)| (file.path.clone(), CertificateRevocationListDer::from(der))),
        );
    }
    if out.is_empty() {
        return Err(ConfigError::InvalidCrl {
            path: source.name().to_owned(),
            reason: "no certificate revocation list found".into(),
        });
    }
    Ok(out)
}
