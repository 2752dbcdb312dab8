//! Allow rules: what a client certificate must show to pass a
//! [`ClientCertLayer`](crate::ClientCertLayer).
//!
//! A [`Rule`] is a list of matchers that must **all** hold; a policy is a list of rules of
//! which **any** may match. Everything a matcher compares is prepared when the rule is built
//! (fingerprints as bytes, DNS patterns lowercased and split), so matching a request only
//! reads the [`ClientIdentity`] the connection parsed once.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use super::dns::DnsPattern;
use crate::identity::{ClientIdentity, DistinguishedName, Fingerprint, SpiffeId, oid};

type Predicate = Arc<dyn Fn(&ClientIdentity) -> bool + Send + Sync + 'static>;

/// One allow rule: a certificate matches when **every** matcher in it holds.
///
/// Build it with the chained methods; add it to a layer with
/// [`ClientCertLayer::allow`](crate::ClientCertLayer::allow) or to a
/// [`ClientCertPolicy`](crate::ClientCertPolicy). Each single-matcher rule also has a shortcut on
/// the layer (`allow_subject_cn`, `allow_dns_name`, …).
///
/// ```
/// use tower_mtls::Rule;
/// use tower_mtls::policy::DnsPattern;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // An agent certificate issued by our own CA, for a name under agents.example.com.
/// let rule = Rule::named("agents")
///     .issuer_o("Steadybit CA")
///     .subject_ou("agents")
///     .dns_name("*.agents.example.com".parse::<DnsPattern>()?);
/// assert_eq!(rule.to_string(), "issuer.o=Steadybit CA & ou=agents & dns=*.agents.example.com");
/// # Ok(()) }
/// ```
///
/// # How values compare
///
/// * Subject and issuer attributes: the attribute's decoded text must equal the value exactly
///   (case-sensitive); with several attributes of one type (two `OU`s, `O`s or `DC`s), any may
///   match. The common name is the exception: a name with more than one `CN` has no common
///   name, and no CN matcher matches it (see [`Rule::subject_cn`]). Names are compared as
///   (OID, value) pairs, never as formatted DN strings, so a CN that contains `, O=Steadybit`
///   does not satisfy an `O` matcher. Issuer matchers read the **leaf's** issuer name, which
///   the leaf's signature binds — never a certificate the client appended.
/// * DNS names: ASCII case-insensitive; see [`DnsPattern`] for the wildcard.
/// * URIs: exact.
/// * Email addresses: the local part exactly, the domain (after the last `@`) ASCII
///   case-insensitive.
/// * IP addresses: as [`IpAddr`], IPv4-mapped IPv6 addresses equal their IPv4 form.
/// * SPIFFE ID: exact; the certificate has one only when it carries exactly one URI SAN and it is
///   a valid SPIFFE ID. SPIFFE trust domain: ASCII case-insensitive (trust domains are lowercase
///   by specification).
/// * Fingerprints: the SHA-256 of the whole certificate, or of its SubjectPublicKeyInfo (a pin
///   that survives re-issuing a certificate for the same key).
///
/// A rule without matchers matches nothing: an accidentally empty rule must not open the door.
#[derive(Clone, Default)]
pub struct Rule {
    name: Option<Arc<str>>,
    pub(super) matchers: Vec<Matcher>,
}

impl Rule {
    /// An empty rule; add matchers with the chained methods.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty rule with a name, reported in denial logs and in
    /// [`MatchedRule::name`](crate::peer::MatchedRule::name).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Some(Arc::from(name.into())),
            matchers: Vec::new(),
        }
    }

    /// The rule's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub(crate) fn shared_name(&self) -> Option<&Arc<str>> {
        self.name.as_ref()
    }

    /// Whether the rule reads nothing but the certificate: no [`predicate`](Self::predicate),
    /// so its verdict holds for as long as the connection.
    pub(crate) fn reads_only_certificate(&self) -> bool {
        !self
            .matchers
            .iter()
            .any(|m| matches!(m, Matcher::Predicate(_)))
    }

    /// Whether the rule has no matchers (and so matches nothing).
    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }

    /// Whether `identity` satisfies every matcher of this rule. An empty rule matches nothing.
    pub fn matches(&self, identity: &ClientIdentity) -> bool {
        !self.matchers.is_empty() && self.matchers.iter().all(|m| m.matches(identity))
    }

    fn with(mut self, matcher: Matcher) -> Self {
        self.matchers.push(matcher);
        self
    }

    /// The subject's common name (`CN`) equals `value`.
    ///
    /// The subject must have **exactly one** CN: a subject with several (`CN=evil,
    /// CN=steadybit-agent`) matches no CN rule, whatever the values. Which of several CNs is the
    /// name is ambiguous, and ambiguity is spoofable — Go's `crypto/x509` reads the last CN,
    /// OpenSSL-based tools the first — so this rule matches only what
    /// [`ClientIdentity::common_name`] returns to a handler. The same holds for
    /// [`issuer_cn`](Self::issuer_cn), for [`subject_attribute`](Self::subject_attribute) and
    /// [`issuer_attribute`](Self::issuer_attribute) with [`oid::COMMON_NAME`], and for `cn=` and
    /// `issuer.cn=` (or `2.5.4.3=`) in the text form. Other attribute types keep any-of
    /// semantics.
    pub fn subject_cn(self, value: impl Into<String>) -> Self {
        self.subject_attribute(oid::COMMON_NAME, value)
    }

    /// The subject has an organization (`O`) equal to `value`.
    pub fn subject_o(self, value: impl Into<String>) -> Self {
        self.subject_attribute(oid::ORGANIZATION, value)
    }

    /// The subject has an organizational unit (`OU`) equal to `value`.
    pub fn subject_ou(self, value: impl Into<String>) -> Self {
        self.subject_attribute(oid::ORGANIZATIONAL_UNIT, value)
    }

    /// The subject has an attribute of type `oid` (dotted form, see [`oid`](crate::identity::oid)) equal
    /// to `value`; any of several attributes of that type may match, except for the common
    /// name, which must be the only one (see [`subject_cn`](Self::subject_cn)).
    pub fn subject_attribute(self, oid: impl Into<String>, value: impl Into<String>) -> Self {
        self.with(Matcher::Subject(Attribute::new(oid, value)))
    }

    /// The leaf's issuer name has exactly one common name (`CN`), equal to `value`; an issuer
    /// name with several CNs matches no CN rule (see [`subject_cn`](Self::subject_cn)).
    pub fn issuer_cn(self, value: impl Into<String>) -> Self {
        self.issuer_attribute(oid::COMMON_NAME, value)
    }

    /// The leaf's issuer name has an organization (`O`) equal to `value`.
    pub fn issuer_o(self, value: impl Into<String>) -> Self {
        self.issuer_attribute(oid::ORGANIZATION, value)
    }

    /// The leaf's issuer name has an organizational unit (`OU`) equal to `value`.
    pub fn issuer_ou(self, value: impl Into<String>) -> Self {
        self.issuer_attribute(oid::ORGANIZATIONAL_UNIT, value)
    }

    /// The leaf's issuer name has an attribute of type `oid` (dotted form) equal to `value`;
    /// any of several may match, except for the common name, which must be the only one (see
    /// [`subject_cn`](Self::subject_cn)).
    pub fn issuer_attribute(self, oid: impl Into<String>, value: impl Into<String>) -> Self {
        self.with(Matcher::Issuer(Attribute::new(oid, value)))
    }

    /// A SAN DNS name matches `pattern` (ASCII case-insensitive; see [`DnsPattern`]).
    pub fn dns_name(self, pattern: DnsPattern) -> Self {
        self.with(Matcher::DnsName(pattern))
    }

    /// A SAN URI equals `uri` exactly.
    pub fn uri(self, uri: impl Into<String>) -> Self {
        self.with(Matcher::Uri(uri.into().into_boxed_str()))
    }

    /// A SAN email address equals `address`: the local part exactly, the domain ASCII
    /// case-insensitive.
    pub fn email(self, address: impl Into<String>) -> Self {
        self.with(Matcher::Email(EmailMatcher::new(address.into())))
    }

    /// A SAN IP address equals `ip` (an IPv4-mapped IPv6 address equals its IPv4 form).
    pub fn ip_address(self, ip: IpAddr) -> Self {
        self.with(Matcher::IpAddress(ip.to_canonical()))
    }

    /// The certificate's SPIFFE ID equals `id`.
    pub fn spiffe_id(self, id: SpiffeId) -> Self {
        self.with(Matcher::SpiffeId(id))
    }

    /// The certificate's SPIFFE ID is in `trust_domain` (e.g. `prod.example.org`; a leading
    /// `spiffe://` is ignored; ASCII case-insensitive).
    pub fn spiffe_trust_domain(self, trust_domain: impl Into<String>) -> Self {
        let domain = trust_domain.into();
        let domain = domain.strip_prefix("spiffe://").unwrap_or(&domain);
        self.with(Matcher::SpiffeTrustDomain(
            domain.to_ascii_lowercase().into_boxed_str(),
        ))
    }

    /// The SHA-256 of the whole certificate equals `fingerprint`.
    pub fn sha256(self, fingerprint: Fingerprint) -> Self {
        self.with(Matcher::Sha256(fingerprint))
    }

    /// The SHA-256 of the certificate's SubjectPublicKeyInfo equals `fingerprint`: a pin on the
    /// key that survives re-issuing the certificate.
    pub fn spki_sha256(self, fingerprint: Fingerprint) -> Self {
        self.with(Matcher::SpkiSha256(fingerprint))
    }

    /// `predicate` returns `true` for the certificate. It runs on every request that reaches
    /// this rule, so keep it cheap; it may read more than the certificate (a deny list that
    /// changes), which is why a layer with a predicate decides every request anew, where one
    /// without decides once per connection.
    pub fn predicate<F>(self, predicate: F) -> Self
    where
        F: Fn(&ClientIdentity) -> bool + Send + Sync + 'static,
    {
        self.with(Matcher::Predicate(Arc::new(predicate)))
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("matchers", &format_args!("{self}"))
            .finish()
    }
}

/// A list of allow rules, of which **any** may match; the matchers inside one rule must **all**
/// hold. Give it to a layer with
/// [`ClientCertLayer::with_policy`](crate::ClientCertLayer::with_policy).
///
/// # Text form
///
/// A policy parses from text ([`str::parse`]), for configuration files and environment
/// variables:
///
/// ```text
/// cn=steadybit-agent & issuer.o="Steadybit CA" | spiffe-domain=prod.example.org
/// ```
///
/// * Rules are separated by `|` or by new lines; blank lines are ignored, but an empty rule
///   between two separators (or before or after a `|`) is an error.
/// * Matchers inside a rule are joined by `&`; each is `key=value`. Spaces and tabs around keys,
///   values and separators are ignored.
/// * Keys (ASCII case-insensitive):
#[doc = key_list_doc!()]
///   and any other name attribute as a dotted OID: `2.5.4.5` (the subject's) or
///   `issuer.2.5.4.5` (the leaf's issuer's). Fingerprints are 64 hex digits, with or without
///   `:` between bytes.
/// * A value runs to the next `&`, `|` or line end and is trimmed. A value that holds one of
///   those, a `"`, or leading or trailing spaces is written in double quotes; inside quotes `\"`
///   stands for `"` and `\\` for `\`, and no other escape exists. Values are never empty.
///
/// How each kind of value compares (case rules, wildcards) is described on [`Rule`]. A syntax
/// error says where ([`PolicyParseError::line`](crate::policy::PolicyParseError::line), [`PolicyParseError::column`](crate::policy::PolicyParseError::column),
/// [`PolicyParseError::position`](crate::policy::PolicyParseError::position)) and what ([`PolicyParseError::kind`](crate::policy::PolicyParseError::kind)):
///
/// ```
/// use tower_mtls::ClientCertPolicy;
///
/// let policy: ClientCertPolicy = r#"cn="agent, O=Steadybit" | o=Steadybit & ou=agents"#
///     .parse()
///     .unwrap();
/// assert_eq!(policy.rules().len(), 2);
///
/// let err = "cn=agent & o=Steadybit | spiffe=https://x".parse::<ClientCertPolicy>().unwrap_err();
/// assert_eq!((err.line(), err.column()), (1, 33));
/// assert!(err.to_string().contains("not a valid SPIFFE ID"));
/// ```
///
/// The [`Display`](fmt::Display) form is the same syntax and parses back to an equal policy,
/// except for predicates (shown as `<predicate>`) and rule names, which have no text form.
#[derive(Clone, Debug, Default)]
pub struct ClientCertPolicy {
    pub(super) rules: Vec<Rule>,
}

impl ClientCertPolicy {
    /// A policy without rules.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule.
    pub fn allow(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether the policy has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The index of the first rule that `identity` satisfies.
    pub fn first_match(&self, identity: &ClientIdentity) -> Option<usize> {
        self.rules.iter().position(|rule| rule.matches(identity))
    }
}

impl FromIterator<Rule> for ClientCertPolicy {
    fn from_iter<I: IntoIterator<Item = Rule>>(iter: I) -> Self {
        Self {
            rules: iter.into_iter().collect(),
        }
    }
}

impl Extend<Rule> for ClientCertPolicy {
    fn extend<I: IntoIterator<Item = Rule>>(&mut self, iter: I) {
        self.rules.extend(iter);
    }
}

impl IntoIterator for ClientCertPolicy {
    type Item = Rule;
    type IntoIter = std::vec::IntoIter<Rule>;

    fn into_iter(self) -> Self::IntoIter {
        self.rules.into_iter()
    }
}

#[derive(Clone)]
pub(super) enum Matcher {
    Subject(Attribute),
    Issuer(Attribute),
    DnsName(DnsPattern),
    Uri(Box<str>),
    Email(EmailMatcher),
    IpAddress(IpAddr),
    SpiffeId(SpiffeId),
    SpiffeTrustDomain(Box<str>),
    Sha256(Fingerprint),
    SpkiSha256(Fingerprint),
    Predicate(Predicate),
}

impl Matcher {
    // Kept out of the loops over rules and matchers: inlined, the compiler hoists loads of every
    // identity field any arm might read in front of the loop, which cost more than the call.
    #[inline(never)]
    fn matches(&self, id: &ClientIdentity) -> bool {
        match self {
            Self::Subject(attr) => attr.matches(id.subject()),
            Self::Issuer(attr) => attr.matches(id.issuer()),
            Self::DnsName(pattern) => id.dns_names().iter().any(|name| pattern.matches(name)),
            Self::Uri(uri) => id.uris().iter().any(|u| u.as_str() == &**uri),
            Self::Email(email) => id.emails().iter().any(|e| email.matches(e)),
            Self::IpAddress(ip) => id.ip_addresses().iter().any(|a| a.to_canonical() == *ip),
            Self::SpiffeId(spiffe) => id
                .spiffe_id()
                .is_some_and(|s| s.as_str() == spiffe.as_str()),
            // Stored lowercase; a parsed SPIFFE ID's trust domain is lowercase by validation.
            Self::SpiffeTrustDomain(domain) => id
                .spiffe_id()
                .is_some_and(|s| s.trust_domain() == &**domain),
            Self::Sha256(fp) => id.sha256() == *fp,
            Self::SpkiSha256(fp) => id.spki_sha256() == *fp,
            Self::Predicate(predicate) => predicate(id),
        }
    }
}

#[derive(Clone)]
pub(super) struct Attribute {
    pub(super) oid: Box<str>,
    pub(super) value: Box<str>,
    /// `oid` is the common name's: compared with `common_name()` (decided once, here).
    is_cn: bool,
}

impl Attribute {
    fn new(oid: impl Into<String>, value: impl Into<String>) -> Self {
        let oid = oid.into().into_boxed_str();
        Self {
            is_cn: &*oid == oid::COMMON_NAME,
            oid,
            value: value.into().into_boxed_str(),
        }
    }

    fn matches(&self, name: &DistinguishedName) -> bool {
        // One identity: a CN rule matches exactly what `common_name()` hands a handler, so a
        // name with several CNs matches no CN rule.
        if self.is_cn {
            name.common_name() == Some(&*self.value)
        } else {
            name.contains(&self.oid, &self.value)
        }
    }
}

#[derive(Clone)]
pub(super) struct EmailMatcher {
    pub(super) address: Box<str>,
    /// Byte index of the last `@`, splitting local part and domain.
    at: Option<usize>,
}

impl EmailMatcher {
    fn new(address: String) -> Self {
        let at = address.rfind('@');
        Self {
            address: address.into_boxed_str(),
            at,
        }
    }

    fn matches(&self, candidate: &str) -> bool {
        let Some(at) = self.at else {
            return candidate == &*self.address;
        };
        let (local, domain) = self.address.split_at(at);
        match candidate.rfind('@') {
            Some(i) => {
                let (c_local, c_domain) = candidate.split_at(i);
                c_local == local && c_domain.eq_ignore_ascii_case(domain)
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_dns_names_compare_case_insensitively() {
        let p = DnsPattern::new("Agent.Example.COM.").unwrap();
        assert_eq!(p.as_str(), "agent.example.com");
        assert!(!p.is_wildcard());
        assert!(p.matches("agent.example.com"));
        assert!(p.matches("AGENT.example.com."));
        assert!(!p.matches("agent.example.co"));
        assert!(!p.matches("xagent.example.com"));
        assert!(!p.matches("a.agent.example.com"));
    }

    #[test]
    fn a_wildcard_stands_for_exactly_one_label() {
        let p = DnsPattern::new("*.agents.example.com").unwrap();
        assert!(p.is_wildcard());
        assert!(p.matches("node-1.agents.example.com"));
        assert!(p.matches("Node_1.AGENTS.example.com"));
        assert!(!p.matches("agents.example.com"));
        assert!(!p.matches(".agents.example.com"));
        assert!(!p.matches("a.b.agents.example.com"));
        assert!(!p.matches("xagents.example.com"));
        assert!(
            !p.matches("*.agents.example.com"),
            "a SAN wildcard is no label"
        );
        assert!(!p.matches("nodé.agents.example.com"));
    }

    #[test]
    fn a_certificate_wildcard_matches_no_pattern() {
        let wildcard = DnsPattern::new("*.example.com").unwrap();
        assert!(!wildcard.matches("*.example.com"));
        let exact = DnsPattern::new("x.example.com").unwrap();
        assert!(!exact.matches("*.example.com"));
        assert!(DnsPattern::new("*").is_err());
    }

    #[test]
    fn invalid_patterns_are_refused_with_a_reason() {
        for (pattern, reason) in [
            ("", "empty name"),
            (".", "empty name"),
            ("a..b", "empty label"),
            (
                "foo.*.example.com",
                "'*' may only be the whole left-most label",
            ),
            (
                "f*.example.com",
                "'*' may only be the whole left-most label",
            ),
            (
                "*.*.example.com",
                "'*' may only be the whole left-most label",
            ),
            ("*.com", "a wildcard needs at least two labels after it"),
            ("*", "a wildcard needs at least two labels after it"),
            (
                "exa mple.com",
                "only letters, digits, '-' and '_' are allowed (write international names in their xn-- form)",
            ),
            (
                "bücher.de",
                "only letters, digits, '-' and '_' are allowed (write international names in their xn-- form)",
            ),
        ] {
            let err = DnsPattern::new(pattern).unwrap_err();
            assert_eq!(err.reason(), reason, "{pattern:?}");
        }
        assert!(DnsPattern::new(&"a".repeat(64)).is_err());
        assert!(DnsPattern::new(&["a"; 128].join(".")).is_err());
    }

    #[test]
    fn email_local_part_is_exact_and_domain_case_insensitive() {
        let m = EmailMatcher::new("Agent@Example.com".into());
        assert!(m.matches("Agent@example.COM"));
        assert!(!m.matches("agent@example.com"));
        assert!(!m.matches("Agent@example.org"));
        assert!(!m.matches("Agentexample.com"));
        let quoted = EmailMatcher::new("\"a@b\"@example.com".into());
        assert!(quoted.matches("\"a@b\"@EXAMPLE.com"));
        let bare = EmailMatcher::new("no-at-sign".into());
        assert!(bare.matches("no-at-sign"));
        assert!(!bare.matches("no-at-sign@x"));
    }

    #[test]
    fn empty_rules_match_nothing_and_display_says_so() {
        assert!(Rule::new().is_empty());
        assert_eq!(Rule::new().to_string(), "<empty rule>");
    }

    #[test]
    fn display_quotes_values_that_need_it() {
        let rule = Rule::new()
            .subject_cn("agent, O=Steadybit")
            .subject_o(" padded")
            .subject_ou("a&b|c\"d\\e")
            .subject_attribute(oid::SERIAL_NUMBER, "42")
            .issuer_cn("")
            .predicate(|_| true);
        assert_eq!(
            rule.to_string(),
            r#"cn=agent, O=Steadybit & o=" padded" & ou="a&b|c\"d\\e" & 2.5.4.5=42 & issuer.cn="" & <predicate>"#
        );
    }
}
