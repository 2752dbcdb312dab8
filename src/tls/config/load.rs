//! PEM files and secret directories → certificates, keys and CRLs. Every error carries the path.
//!
//! A trust source is a PEM file or a directory of them. Directories are read the way Kubernetes
//! mounts a secret: entries whose names start with `..` (the kubelet's `..data` link and its
//! timestamped target) are skipped, so each file is seen once, through its stable symlink.
//! Files in a directory that hold no certificate (a secret's `tls.key`) are skipped too.
//!
//! Only regular files are read, and only up to a size: a FIFO, a device (`/dev/zero`) or a
//! socket named as a source is refused with an error naming it (reading one would block the
//! reload forever or exhaust memory); inside a directory such entries, and entries whose
//! metadata cannot be read (a dangling or looping symlink), are skipped with a warning.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::tls::config::error::ConfigError;

/// Where a piece of PEM material comes from: a path, or bytes handed over in code.
///
/// Its `Debug` never shows in-memory bytes (they may be a private key): only their label and
/// length, so a builder printed with `{:?}` leaks nothing.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A file, or (for trust and CRL sources) a directory.
    Path(PathBuf),
    /// PEM (or, for CRLs, DER) bytes; the label names them in errors.
    Memory { label: PathBuf, bytes: Arc<[u8]> },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Path(path) => f.debug_tuple("Path").field(path).finish(),
            Self::Memory { label, bytes } => f
                .debug_struct("Memory")
                .field("label", label)
                .field("bytes", &format_args!("<{} bytes, redacted>", bytes.len()))
                .finish(),
        }
    }
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
    /// eligible file (sorted by name) for a directory. Files up to [`MAX_PEM_FILE`] bytes.
    pub(crate) fn read(&self) -> Result<SourceFiles, ConfigError> {
        self.read_up_to(MAX_PEM_FILE)
    }

    /// [`Source::read`] for files up to `max` bytes each.
    pub(crate) fn read_up_to(&self, max: u64) -> Result<SourceFiles, ConfigError> {
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
                    walk_dir(path, 0, max, &mut files)?;
                } else {
                    let bytes = read_regular(path, &meta, max)?;
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

/// The largest certificate, key or trust file read: 4 MiB holds thousands of certificates.
pub(crate) const MAX_PEM_FILE: u64 = 4 << 20;

/// The largest CRL file read: the CRLs of large public CAs reach tens of MiB.
pub(crate) const MAX_CRL_FILE: u64 = 64 << 20;

/// What a non-regular file is, for messages.
fn kind_of(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let ty = meta.file_type();
    if ty.is_fifo() {
        "a FIFO"
    } else if ty.is_char_device() || ty.is_block_device() {
        "a device"
    } else if ty.is_socket() {
        "a socket"
    } else if ty.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

fn refused(path: &Path, reason: String) -> ConfigError {
    ConfigError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, reason),
    }
}

/// Reads `path` (whose metadata, following symlinks, is `meta`): a regular file of at most
/// `max` bytes, or an error naming it. Checked before opening (opening a FIFO blocks) and
/// again on the opened file, and the read itself stops past `max`.
fn read_regular(path: &Path, meta: &fs::Metadata, max: u64) -> Result<Vec<u8>, ConfigError> {
    let too_large = |size: u64| {
        refused(
            path,
            format!("is {size} bytes, more than the {max} bytes read from one file"),
        )
    };
    if !meta.is_file() {
        return Err(refused(
            path,
            format!("is {}: only regular files are read", kind_of(meta)),
        ));
    }
    if meta.len() > max {
        return Err(too_large(meta.len()));
    }
    let file = fs::File::open(path).map_err(|e| ConfigError::io(path, e))?;
    let opened = file.metadata().map_err(|e| ConfigError::io(path, e))?;
    if !opened.is_file() {
        return Err(refused(
            path,
            format!("is {}: only regular files are read", kind_of(&opened)),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(opened.len().min(max)).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ConfigError::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

fn walk_dir(
    dir: &Path,
    depth: usize,
    max: u64,
    out: &mut Vec<LoadedFile>,
) -> Result<(), ConfigError> {
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
        // Follows symlinks, as a secret's files are links into `..data`. An entry that cannot
        // be followed (dangling or looping link) is no file to read: skipped, like a FIFO.
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(error) => {
                tracing::warn!(
                    path = %path.display(),
                    %error,
                    "skipping a directory entry whose metadata cannot be read"
                );
                continue;
            }
        };
        if meta.is_dir() {
            if link {
                tracing::debug!(path = %path.display(), "not following a symlinked directory in a trust directory");
            } else if depth + 1 < MAX_DEPTH {
                walk_dir(&path, depth + 1, max, out)?;
            }
        } else if meta.is_file() {
            let bytes = read_regular(&path, &meta, max)?;
            out.push(LoadedFile { path, bytes });
        } else {
            tracing::warn!(
                path = %path.display(),
                kind = kind_of(&meta),
                "skipping a directory entry that is not a regular file"
            );
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
            reason: pem_error(&e),
        })
}

/// A PEM error as text: the parser's own `Display` prints the offending line as a byte array.
fn pem_error(error: &pem::Error) -> String {
    let text = |bytes: &[u8]| {
        crate::identity::escape_control(String::from_utf8_lossy(bytes).trim()).into_owned()
    };
    match error {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!(
                "a section has no end line (expected \"-----END {}-----\")",
                text(end_marker)
            )
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("a malformed BEGIN line: \"{}\"", text(line))
        }
        other => other.to_string(),
    }
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
