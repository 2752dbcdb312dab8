//! Session tickets every replica can resume: stateless tickets sealed with keys an operator
//! shares between replicas (a key of a Kubernetes secret) and rotates by editing that secret.
//!
//! Without shared keys each process keeps its own session store, and a client that resumes on
//! another replica behind a Service pays a full mTLS handshake. With
//! [`TlsConfigBuilder::session_ticket_keys`](crate::TlsConfigBuilder::session_ticket_keys) the
//! server issues stateless tickets instead (TLS 1.3 and TLS 1.2) that any replica holding the
//! key can open.
//!
//! **The key file**: one key per line, each the base64 of 32 random bytes
//! (`openssl rand -base64 32`, or `tower-mtls ticket-key`). The first line seals new tickets;
//! every line opens them. Empty lines are ignored; anything else that is not such a key stops
//! startup and is refused by a reload, with the file and line named and the line never echoed.
//!
//! **Keys are derived, never used as given**: HKDF-SHA256 turns each configured key into an
//! AES-256-GCM key and an 8-byte key id, from the crypto library the crate is built with
//! (`aws-lc-rs` or `ring`). The configured bytes are wiped as soon as both are derived.
//!
//! **A ticket** is `key id (8) ‖ nonce (12) ‖ AES-256-GCM(plaintext) ‖ tag (16)`, the key id
//! as associated data; the plaintext is `format (1) ‖ bound (8) ‖ trust binding (32) ‖ rustls's
//! session`. The **bound** is the moment until which the client verification the ticket
//! descends from holds (see [`session`](crate::tls::trust::session)); the **trust binding** is a digest of
//! everything that decides a client's acceptance: the trust and CRL files, the client-auth
//! mode, whether fresh CRLs are required and the chain limits. A ticket opens only when its
//! key is still configured, its trust binding is this configuration's and its bound has not
//! passed; otherwise the client gets a full handshake (never an error), and the reason is
//! counted ([`TicketRefusal`]). An opened ticket passes its bound on to the handshake, so the
//! tickets issued on the resumed connection inherit it, on any replica.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::crypto::SecureRandom;
use rustls::server::ProducesTickets;

use crate::crypto::Sha256;
use crate::identity::Fingerprint;
use crate::tls::config::error::ConfigError;
use crate::tls::trust::scope::{self, REFUSALS, TicketRefusal};
use crate::tls::trust::session;
use crate::tls::trust::verify::{ChainLimits, ClientAuth};

/// How long a client is told it may keep a ticket. A ticket really opens for as long as its key
/// stays in the file; rotating daily and keeping two keys opens every ticket for at least a day.
pub const SESSION_TICKET_LIFETIME: u32 = 24 * 60 * 60;

/// Bytes of a configured key.
const KEY_LEN: usize = 32;
/// Bytes of a key id.
const ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The plaintext format; a ticket of another format is refused as invalid.
const FORMAT: u8 = 1;
/// Format, bound, trust binding.
const HEADER_LEN: usize = 1 + 8 + 32;
const SALT: &[u8] = b"tower-mtls session ticket key v1";

/// One configured key, derived: its id and its AEAD key.
struct TicketKey {
    id: [u8; ID_LEN],
    key: cipher::Key,
}

/// The keys of a session ticket key file, derived and ready to seal and open tickets.
///
/// Its `Debug` shows the file and the number of keys, never key material.
pub struct SessionTicketKeys {
    path: PathBuf,
    keys: Vec<TicketKey>,
}

impl fmt::Debug for SessionTicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTicketKeys")
            .field("path", &self.path)
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Overwrites key material before its memory is freed or reused. Best effort without a
/// zeroizing crate: `black_box` keeps the compiler from dropping the writes as dead stores.
pub(crate) fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}

/// The ticket cipher: HKDF-SHA256 and AES-256-GCM from the bundled provider's library. Built
/// without one (neither `aws-lc-rs` nor `ring`), a key file is refused at build, naming why.
mod cipher {
    #[cfg(feature = "aws-lc-rs")]
    use aws_lc_rs::{aead, hkdf};
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    use ring::{aead, hkdf};

    use super::{ID_LEN, NONCE_LEN, TAG_LEN};
    #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
    use super::{SALT, wipe};

    /// A derived AES-256-GCM key.
    #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
    pub(super) struct Key(aead::LessSafeKey);

    /// No key can exist without a cipher.
    #[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
    pub(super) enum Key {}

    /// An HKDF output length.
    #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
    struct Len(usize);

    #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }

    /// The key id and the key derived from a key line's 32 bytes.
    #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
    pub(super) fn derive(raw: &[u8]) -> Result<([u8; ID_LEN], Key), &'static str> {
        const FAILED: &str = "the key cannot be derived";
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(raw);
        let mut id = [0u8; ID_LEN];
        prk.expand(&[b"key id".as_slice()], Len(ID_LEN))
            .and_then(|okm| okm.fill(&mut id))
            .map_err(|_| FAILED)?;
        let mut key = [0u8; 32];
        let derived = prk
            .expand(&[b"aes-256-gcm key".as_slice()], Len(key.len()))
            .and_then(|okm| okm.fill(&mut key))
            .and_then(|()| aead::UnboundKey::new(&aead::AES_256_GCM, &key));
        wipe(&mut key);
        Ok((
            id,
            Key(aead::LessSafeKey::new(derived.map_err(|_| FAILED)?)),
        ))
    }

    #[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
    pub(super) fn derive(_raw: &[u8]) -> Result<([u8; ID_LEN], Key), &'static str> {
        Err("shared session ticket keys need tower-mtls's `aws-lc-rs` or `ring` feature")
    }

    impl Key {
        /// Seals `in_out` in place; the tag.
        #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
        pub(super) fn seal(
            &self,
            nonce: [u8; NONCE_LEN],
            aad: [u8; ID_LEN],
            in_out: &mut [u8],
        ) -> Option<[u8; TAG_LEN]> {
            let tag = self
                .0
                .seal_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(aad),
                    in_out,
                )
                .ok()?;
            tag.as_ref().try_into().ok()
        }

        /// Opens `in_out` (ciphertext and tag) in place; the plaintext.
        #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
        pub(super) fn open<'a>(
            &self,
            nonce: [u8; NONCE_LEN],
            aad: [u8; ID_LEN],
            in_out: &'a mut [u8],
        ) -> Option<&'a mut [u8]> {
            self.0
                .open_in_place(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(aad),
                    in_out,
                )
                .ok()
        }

        #[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
        pub(super) fn seal(
            &self,
            _nonce: [u8; NONCE_LEN],
            _aad: [u8; ID_LEN],
            _in_out: &mut [u8],
        ) -> Option<[u8; TAG_LEN]> {
            match *self {}
        }

        #[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
        pub(super) fn open<'a>(
            &self,
            _nonce: [u8; NONCE_LEN],
            _aad: [u8; ID_LEN],
            _in_out: &'a mut [u8],
        ) -> Option<&'a mut [u8]> {
            match *self {}
        }
    }
}

impl SessionTicketKeys {
    /// Reads and checks a key file as the server does: an error names the file and the line
    /// at fault, and never shows what the line holds.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let mut bytes = std::fs::read(path).map_err(|e| ConfigError::io(path, e))?;
        let keys = Self::parse(path, &bytes);
        wipe(&mut bytes);
        keys
    }

    /// Parses the bytes of a key file; `path` names it in errors.
    pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ConfigError> {
        let invalid = |line: usize, reason: String| ConfigError::InvalidSessionTicketKey {
            path: path.to_owned(),
            line,
            reason,
        };
        let mut keys = Vec::new();
        for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
            let line_no = index + 1;
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            // Room for more than a key, so that a longer one is told apart from bad base64.
            let mut raw = [0u8; 2 * KEY_LEN];
            let decoded = BASE64.decode_slice(line, &mut raw);
            let result = match decoded {
                Ok(KEY_LEN) => cipher::derive(&raw[..KEY_LEN])
                    .map(|(id, key)| TicketKey { id, key })
                    .map_err(|reason| invalid(line_no, reason.into())),
                Ok(n) => Err(invalid(
                    line_no,
                    format!("decodes to {n} bytes, expected {KEY_LEN}"),
                )),
                Err(base64::DecodeSliceError::OutputSliceTooSmall) => Err(invalid(
                    line_no,
                    format!("decodes to more than {KEY_LEN} bytes"),
                )),
                // The decoder's message would quote the offending byte: say only what it is.
                Err(base64::DecodeSliceError::DecodeError(_)) => {
                    Err(invalid(line_no, "not valid base64".into()))
                }
            };
            wipe(&mut raw);
            keys.push(result?);
        }
        if keys.is_empty() {
            return Err(ConfigError::NoSessionTicketKey {
                path: path.to_owned(),
            });
        }
        Ok(Self {
            path: path.to_owned(),
            keys,
        })
    }

    /// How many keys the file holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always `false`: a key file without a key is refused.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The file the keys were read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn find(&self, id: &[u8; ID_LEN]) -> Option<&TicketKey> {
        self.keys.iter().find(|k| &k.id == id)
    }
}

/// A fresh key line for a session ticket key file: the base64 of 32 random bytes from the
/// crate's crypto provider, as `openssl rand -base64 32` prints it (without the newline).
pub fn new_session_ticket_key() -> Result<String, rustls::Error> {
    let mut raw = [0u8; KEY_LEN];
    crate::crypto::provider(None)?
        .secure_random
        .fill(&mut raw)?;
    let line = BASE64.encode(raw);
    wipe(&mut raw);
    Ok(line)
}

/// Live ticket counters of one configuration, kept across reloads.
#[derive(Debug, Default)]
pub(crate) struct TicketCounters {
    issued: AtomicU64,
    accepted: AtomicU64,
    refused: [AtomicU64; REFUSALS],
}

impl TicketCounters {
    pub(crate) fn snapshot(&self) -> TicketStats {
        let mut refused = [0; REFUSALS];
        for (slot, counter) in refused.iter_mut().zip(&self.refused) {
            *slot = counter.load(Ordering::Relaxed);
        }
        TicketStats {
            issued: self.issued.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused,
        }
    }
}

/// What the shared session ticket keys did, from
/// [`TlsConfig::session_ticket_stats`](crate::TlsConfig::session_ticket_stats); all zero
/// without keys.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TicketStats {
    /// Tickets sealed and sent to clients.
    pub issued: u64,
    /// Tickets presented that opened and were handed to the handshake to resume.
    pub accepted: u64,
    refused: [u64; REFUSALS],
}

impl TicketStats {
    /// Tickets refused for `reason`.
    pub fn refused(&self, reason: TicketRefusal) -> u64 {
        self.refused[reason as usize]
    }

    /// Tickets refused, all reasons together.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }
}

/// The digest a ticket binds: everything that decides whether a client is accepted.
pub(crate) fn trust_binding(
    trust_digest: &Fingerprint,
    client_auth: ClientAuth,
    require_fresh_crls: bool,
    limits: ChainLimits,
) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(SALT);
    digest.update(b"\0trust\0");
    digest.update(trust_digest.as_bytes());
    digest.update(client_auth.as_str().as_bytes());
    digest.update(&[0, u8::from(require_fresh_crls)]);
    digest.update(&(limits.max_certs as u64).to_be_bytes());
    digest.update(&(limits.max_bytes as u64).to_be_bytes());
    digest.finish()
}

/// Seals and opens the tickets of one built configuration.
pub(crate) struct Ticketer {
    keys: Arc<SessionTicketKeys>,
    binding: [u8; 32],
    random: &'static dyn SecureRandom,
    counters: Arc<TicketCounters>,
    /// Without client authentication there is no verification to bound, so a ticket may be
    /// sealed outside an acceptor's handshake scope.
    anonymous: bool,
}

impl fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticketer")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Ticketer {
    pub(crate) fn new(
        keys: Arc<SessionTicketKeys>,
        binding: [u8; 32],
        random: &'static dyn SecureRandom,
        counters: Arc<TicketCounters>,
        client_auth: ClientAuth,
    ) -> Self {
        Self {
            keys,
            binding,
            random,
            counters,
            anonymous: client_auth == ClientAuth::None,
        }
    }

    fn refuse(&self, reason: TicketRefusal) -> Option<Vec<u8>> {
        self.counters.refused[reason as usize].fetch_add(1, Ordering::Relaxed);
        scope::note_ticket_refused(reason);
        #[cfg(feature = "metrics")]
        crate::tls::accept::metrics::session_ticket(Some(reason.as_str()));
        tracing::debug!(
            reason = reason.as_str(),
            "not resuming a session ticket; the client gets a full handshake"
        );
        None
    }
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        SESSION_TICKET_LIFETIME
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let until = match scope::verified_until() {
            // No bound: no client certificate was verified nor a bounded ticket resumed.
            Some(bound) => bound.unwrap_or(u64::MAX),
            None if self.anonymous => u64::MAX,
            // Outside an acceptor's handshake the bound is unknown: issue no ticket.
            None => return None,
        };
        let key = self.keys.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut ticket =
            Vec::with_capacity(ID_LEN + NONCE_LEN + HEADER_LEN + plain.len() + TAG_LEN);
        ticket.extend_from_slice(&key.id);
        ticket.extend_from_slice(&nonce);
        ticket.push(FORMAT);
        ticket.extend_from_slice(&until.to_be_bytes());
        ticket.extend_from_slice(&self.binding);
        ticket.extend_from_slice(plain);
        let tag = key
            .key
            .seal(nonce, key.id, &mut ticket[ID_LEN + NONCE_LEN..])?;
        ticket.extend_from_slice(&tag);
        self.counters.issued.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::tls::accept::metrics::session_ticket_issued();
        Some(ticket)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let Some((id, rest)) = cipher.split_first_chunk::<ID_LEN>() else {
            return self.refuse(TicketRefusal::Invalid);
        };
        let Some(key) = self.keys.find(id) else {
            return self.refuse(TicketRefusal::UnknownKey);
        };
        let Some((nonce, sealed)) = rest.split_first_chunk::<NONCE_LEN>() else {
            return self.refuse(TicketRefusal::Invalid);
        };
        let mut opened = sealed.to_vec();
        let Some(plain) = key.key.open(*nonce, *id, &mut opened) else {
            return self.refuse(TicketRefusal::Invalid);
        };
        let plain_len = plain.len();
        let Some((header, _)) = plain.split_first_chunk::<HEADER_LEN>() else {
            return self.refuse(TicketRefusal::Invalid);
        };
        let (format, rest) = header.split_at(1);
        let (until, binding) = rest.split_at(8);
        if format != [FORMAT] {
            return self.refuse(TicketRefusal::Invalid);
        }
        if binding != self.binding {
            return self.refuse(TicketRefusal::OtherTrust);
        }
        let mut bound = [0u8; 8];
        bound.copy_from_slice(until);
        let until = u64::from_be_bytes(bound);
        if session::now() > until {
            return self.refuse(TicketRefusal::BoundPassed);
        }
        if until != u64::MAX {
            // The tickets of the resumed handshake descend from this one: they inherit it.
            scope::note_verified(until);
        }
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::tls::accept::metrics::session_ticket(None);
        opened.truncate(plain_len);
        opened.drain(..HEADER_LEN);
        Some(opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_line(byte: u8) -> String {
        BASE64.encode([byte; KEY_LEN])
    }

    fn keys(lines: &[String]) -> Arc<SessionTicketKeys> {
        let text = lines.join("\n");
        Arc::new(SessionTicketKeys::parse(Path::new("keys"), text.as_bytes()).expect("keys"))
    }

    fn ticketer(keys: Arc<SessionTicketKeys>, binding: u8) -> (Ticketer, Arc<TicketCounters>) {
        let counters = Arc::new(TicketCounters::default());
        let ticketer = Ticketer::new(
            keys,
            [binding; 32],
            crate::crypto::default_provider().secure_random,
            counters.clone(),
            ClientAuth::Required,
        );
        (ticketer, counters)
    }

    /// Seals `plain` in a handshake whose verification holds until `until`.
    fn seal(ticketer: &Ticketer, until: Option<u64>, plain: &[u8]) -> Vec<u8> {
        scope::handshake_scope_sync(|| {
            if let Some(until) = until {
                scope::note_verified(until);
            }
            ticketer.encrypt(plain).expect("sealed")
        })
    }

    /// Opens `ticket` in a handshake; what it returns and the bound the handshake then holds.
    fn open(ticketer: &Ticketer, ticket: &[u8]) -> (Option<Vec<u8>>, Option<u64>) {
        scope::handshake_scope_sync(|| {
            let plain = ticketer.decrypt(ticket);
            (plain, scope::verified_until().flatten())
        })
    }

    #[test]
    fn a_key_file_reads_one_key_per_line_and_skips_empty_lines() {
        let text = format!("\n{}\r\n\n  {}  \n", key_line(1), key_line(2));
        let keys = SessionTicketKeys::parse(Path::new("k"), text.as_bytes()).expect("keys");
        assert_eq!(keys.len(), 2);
        assert_ne!(keys.keys[0].id, keys.keys[1].id);
        // The id is derived, not the key's first bytes.
        assert_ne!(keys.keys[0].id, [1u8; ID_LEN]);
        assert_eq!(
            format!("{keys:?}"),
            r#"SessionTicketKeys { path: "k", keys: 2 }"#
        );
    }

    #[test]
    fn a_malformed_key_file_names_the_line_and_never_echoes_it() {
        let long = BASE64.encode([b'k'; 80]);
        let secret = long.as_str();
        let cases = [
            (
                format!("{}\nnot*base64!\n", key_line(1)),
                2,
                "not valid base64",
            ),
            (
                format!("{}\n\n{}\n", key_line(1), BASE64.encode([7u8; 16])),
                3,
                "decodes to 16 bytes",
            ),
            (format!("{secret}\n"), 1, "more than 32 bytes"),
            (
                format!("{}\n", BASE64.encode([b'k'; 40])),
                1,
                "decodes to 40 bytes",
            ),
            (format!("{}=\n", key_line(1)), 1, "not valid base64"),
        ];
        for (text, line, reason) in cases {
            let error = SessionTicketKeys::parse(Path::new("/s/keys"), text.as_bytes())
                .expect_err("refused")
                .to_string();
            assert!(
                error.starts_with(&format!("/s/keys: line {line}: ")),
                "{error}"
            );
            assert!(error.contains(reason), "{error}");
            assert!(
                !error.contains(secret) && !error.contains("not*base64"),
                "{error}"
            );
        }
        for empty in ["", "\n\n", "  \n"] {
            let error = SessionTicketKeys::parse(Path::new("/s/keys"), empty.as_bytes())
                .expect_err("no key");
            assert!(
                matches!(error, ConfigError::NoSessionTicketKey { .. }),
                "{error}"
            );
        }
    }

    #[test]
    fn a_ticket_opens_with_the_same_keys_and_trust_and_passes_its_bound_on() {
        let shared = keys(&[key_line(1)]);
        let (a, _) = ticketer(shared.clone(), 9);
        // Another replica: its own ticketer built from the same key file and trust.
        let (b, counters) = ticketer(keys(&[key_line(1)]), 9);
        let until = session::now() + 3600;
        let ticket = seal(&a, Some(until), b"session");
        assert!(!ticket.windows(7).any(|w| w == b"session"), "sealed");
        assert_eq!(open(&b, &ticket), (Some(b"session".to_vec()), Some(until)));
        assert_eq!(counters.snapshot().accepted, 1);
        // Anonymous (optional client auth, no certificate): no bound to pass on.
        let anonymous = seal(&a, None, b"anon");
        assert_eq!(open(&b, &anonymous), (Some(b"anon".to_vec()), None));
    }

    #[test]
    fn a_rotated_key_file_opens_old_tickets_until_their_key_is_dropped() {
        let (old, _) = ticketer(keys(&[key_line(1)]), 9);
        let ticket = seal(&old, None, b"s");
        let (rotated, _) = ticketer(keys(&[key_line(2), key_line(1)]), 9);
        assert_eq!(open(&rotated, &ticket).0, Some(b"s".to_vec()));
        let fresh = seal(&rotated, None, b"t");
        assert_eq!(
            &fresh[..ID_LEN],
            &rotated.keys.keys[0].id,
            "the first key seals"
        );
        let (dropped, counters) = ticketer(keys(&[key_line(2)]), 9);
        assert_eq!(open(&dropped, &ticket).0, None);
        assert_eq!(open(&dropped, &fresh).0, Some(b"t".to_vec()));
        assert_eq!(counters.snapshot().refused(TicketRefusal::UnknownKey), 1);
    }

    #[test]
    fn a_ticket_is_refused_under_other_trust_past_its_bound_or_damaged() {
        let shared = keys(&[key_line(1)]);
        let (a, _) = ticketer(shared.clone(), 9);
        let (other_trust, counters) = ticketer(shared.clone(), 8);
        let ticket = seal(&a, Some(session::now() + 3600), b"s");
        assert_eq!(open(&other_trust, &ticket), (None, None));
        assert_eq!(counters.snapshot().refused(TicketRefusal::OtherTrust), 1);

        let (same, counters) = ticketer(shared, 9);
        let expired = seal(&a, Some(session::now() - 1), b"s");
        assert_eq!(open(&same, &expired), (None, None), "no bound noted either");
        let mut flipped = ticket.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(open(&same, &flipped).0, None);
        assert_eq!(open(&same, &ticket[..ID_LEN + 3]).0, None);
        assert_eq!(open(&same, b"short").0, None);
        let stats = counters.snapshot();
        assert_eq!(stats.refused(TicketRefusal::BoundPassed), 1);
        assert_eq!(stats.refused(TicketRefusal::Invalid), 3);
        assert_eq!(stats.refused_total(), 4);
        assert_eq!(stats.accepted, 0);
    }

    #[test]
    fn no_ticket_is_sealed_outside_a_handshake_scope_when_clients_are_verified() {
        let (a, counters) = ticketer(keys(&[key_line(1)]), 9);
        assert_eq!(a.encrypt(b"s"), None);
        assert_eq!(counters.snapshot().issued, 0);
        let anonymous = Ticketer::new(
            keys(&[key_line(1)]),
            [9; 32],
            crate::crypto::default_provider().secure_random,
            Arc::default(),
            ClientAuth::None,
        );
        assert!(anonymous.encrypt(b"s").is_some());
    }

    #[test]
    fn the_trust_binding_covers_every_setting_that_decides_a_client() {
        let digest = Fingerprint::of(b"trust");
        let limits = ChainLimits::default();
        let base = trust_binding(&digest, ClientAuth::Required, false, limits);
        assert_eq!(
            base,
            trust_binding(&digest, ClientAuth::Required, false, limits)
        );
        let others = [
            trust_binding(
                &Fingerprint::of(b"other"),
                ClientAuth::Required,
                false,
                limits,
            ),
            trust_binding(&digest, ClientAuth::Optional, false, limits),
            trust_binding(&digest, ClientAuth::Required, true, limits),
            trust_binding(
                &digest,
                ClientAuth::Required,
                false,
                ChainLimits {
                    max_certs: 9,
                    ..limits
                },
            ),
        ];
        assert!(others.iter().all(|other| *other != base));
    }

    #[test]
    fn a_fresh_key_line_is_a_valid_key() {
        let line = new_session_ticket_key().expect("random");
        assert_eq!(line.len(), 44);
        assert_ne!(line, new_session_ticket_key().expect("random"));
        SessionTicketKeys::parse(Path::new("k"), line.as_bytes()).expect("a key");
    }
}
