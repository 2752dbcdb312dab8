//! The text form of policies, in both directions: [`ClientCertPolicy`]'s `FromStr` (with
//! positioned errors) and the `Display` of policies, rules and matchers, which parses back.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::dns::DnsPattern;
use super::parse_error::{PolicyErrorKind, PolicyParseError};
use super::rules::{Attribute, ClientCertPolicy, Matcher, Rule};
use crate::identity::{Fingerprint, SpiffeId, oid};

/// The fixed keys of the text form, each with the matcher it makes: one table for the parser,
/// the text form's `Display`, the unknown-key message and the documentation.
macro_rules! keys {
    ($first:ident = $first_text:literal: $first_doc:literal, $($variant:ident = $text:literal: $doc:literal,)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Key {
            $first,
            $($variant,)*
        }

        impl Key {
            fn from_text(text: &str) -> Option<Self> {
                match text {
                    $first_text => Some(Self::$first),
                    $($text => Some(Self::$variant),)*
                    _ => None,
                }
            }

            fn as_str(self) -> &'static str {
                match self {
                    Self::$first => $first_text,
                    $(Self::$variant => $text,)*
                }
            }
        }

        /// The keys as the unknown-key message lists them.
        macro_rules! key_list {
            () => {
                concat!($first_text, $(", ", $text,)* " or a dotted OID")
            };
        }

        /// The keys as the documentation lists them: one Markdown bullet each.
        macro_rules! key_list_doc {
            () => {
                concat!(
                    "  * `", $first_text, "`: ", $first_doc, "\n",
                    $("  * `", $text, "`: ", $doc, "\n",)*
                )
            };
        }
    };
}

keys! {
    Cn = "cn": "the subject's common name (a name with several has none)",
    O = "o": "a subject organization",
    Ou = "ou": "a subject organizational unit",
    IssuerCn = "issuer.cn": "the common name of the leaf's issuer",
    IssuerO = "issuer.o": "an organization of the leaf's issuer",
    IssuerOu = "issuer.ou": "an organizational unit of the leaf's issuer",
    Dns = "dns": "a DNS SAN, as a [`DnsPattern`](crate::policy::DnsPattern) (`*` only as the whole left-most label)",
    Uri = "uri": "a URI SAN",
    Email = "email": "an email SAN",
    Ip = "ip": "an IP address SAN",
    Spiffe = "spiffe": "the whole SPIFFE ID",
    SpiffeDomain = "spiffe-domain": "the SPIFFE ID's trust domain",
    Sha256 = "sha256": "the SHA-256 fingerprint of the certificate",
    SpkiSha256 = "spki-sha256": "the SHA-256 fingerprint of its public key (SubjectPublicKeyInfo)",
}

/// The text form of the policy syntax (`key=value & key=value`); a predicate shows as
/// `<predicate>`, which does not parse back.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.matchers.is_empty() {
            return f.write_str("<empty rule>");
        }
        for (i, matcher) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(" & ")?;
            }
            write!(f, "{matcher}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Subject(attr) => write_attribute(f, false, attr),
            Self::Issuer(attr) => write_attribute(f, true, attr),
            Self::DnsName(pattern) => write_pair(f, Key::Dns, pattern.as_str()),
            Self::Uri(uri) => write_pair(f, Key::Uri, uri),
            Self::Email(email) => write_pair(f, Key::Email, &email.address),
            Self::IpAddress(ip) => write_pair(f, Key::Ip, &ip.to_string()),
            Self::SpiffeId(id) => write_pair(f, Key::Spiffe, id.as_str()),
            Self::SpiffeTrustDomain(domain) => write_pair(f, Key::SpiffeDomain, domain),
            Self::Sha256(fp) => write_pair(f, Key::Sha256, &fp.to_string()),
            Self::SpkiSha256(fp) => write_pair(f, Key::SpkiSha256, &fp.to_string()),
            Self::Predicate(_) => f.write_str("<predicate>"),
        }
    }
}

fn write_pair(f: &mut fmt::Formatter<'_>, key: Key, value: &str) -> fmt::Result {
    f.write_str(key.as_str())?;
    f.write_str("=")?;
    write_value(f, value)
}

fn write_attribute(f: &mut fmt::Formatter<'_>, issuer: bool, attr: &Attribute) -> fmt::Result {
    match Key::for_attribute(issuer, &attr.oid) {
        Some(key) => f.write_str(key.as_str())?,
        None => {
            if issuer {
                f.write_str("issuer.")?;
            }
            f.write_str(&attr.oid)?;
        }
    }
    f.write_str("=")?;
    write_value(f, &attr.value)
}

/// Writes `value` bare when the policy parser would read it back unchanged, else quoted.
pub(crate) fn write_value(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let edge_space = |c: Option<char>| c.is_some_and(is_space);
    let needs_quotes = value.is_empty()
        || edge_space(value.chars().next())
        || edge_space(value.chars().next_back())
        || value.contains(['&', '|', '"', '\\', '\n']);
    if !needs_quotes {
        return f.write_str(value);
    }
    f.write_str("\"")?;
    for c in value.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        fmt::Write::write_char(f, c)?;
    }
    f.write_str("\"")
}

impl fmt::Display for ClientCertPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rule) in self.rules().iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{rule}")?;
        }
        Ok(())
    }
}

impl FromStr for ClientCertPolicy {
    type Err = PolicyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Parser { src: s, pos: 0 }.policy()
    }
}

/// Whitespace that may surround tokens. A new line is a rule separator, not whitespace.
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r')
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos..)?.chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.bump();
        }
    }

    fn at_end_of_matcher(&self) -> bool {
        matches!(self.peek(), None | Some('&' | '|' | '\n'))
    }

    fn error(&self, position: usize, kind: PolicyErrorKind) -> PolicyParseError {
        let before = self.src.get(..position).unwrap_or(self.src);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        PolicyParseError {
            position,
            line: before.matches('\n').count() + 1,
            column: before.get(line_start..).unwrap_or("").chars().count() + 1,
            kind,
        }
    }

    fn policy(mut self) -> Result<ClientCertPolicy, PolicyParseError> {
        let mut rules = Vec::new();
        let mut rule = Rule::new();
        // Where the last `|` was, while no matcher has followed it.
        let mut open_pipe = None;
        loop {
            self.skip_space();
            let at = self.pos;
            match self.peek() {
                None | Some('\n' | '|') => {
                    let separator = self.bump();
                    if !rule.is_empty() {
                        rules.push(std::mem::take(&mut rule));
                    } else if separator == Some('|') {
                        return Err(self.error(at, PolicyErrorKind::EmptyRule));
                    } else if let Some(pipe) = open_pipe {
                        return Err(self.error(pipe, PolicyErrorKind::EmptyRule));
                    }
                    open_pipe = (separator == Some('|')).then_some(at);
                    if separator.is_none() {
                        break;
                    }
                }
                Some('&') => return Err(self.error(at, PolicyErrorKind::MissingMatcher)),
                Some(_) => {
                    rule = self.matcher(rule)?;
                    open_pipe = None;
                    self.skip_space();
                    if self.peek() == Some('&') {
                        self.bump();
                        self.skip_space();
                        if self.at_end_of_matcher() {
                            return Err(self.error(self.pos, PolicyErrorKind::MissingMatcher));
                        }
                    }
                }
            }
        }
        if rules.is_empty() {
            return Err(self.error(0, PolicyErrorKind::EmptyPolicy));
        }
        Ok(ClientCertPolicy { rules })
    }

    /// Parses one `key=value` and adds it to `rule`.
    fn matcher(&mut self, rule: Rule) -> Result<Rule, PolicyParseError> {
        let key_start = self.pos;
        while self
            .peek()
            .is_some_and(|c| !is_space(c) && !matches!(c, '=' | '&' | '|' | '\n' | '"'))
        {
            self.bump();
        }
        let written = self.src.get(key_start..self.pos).unwrap_or("");
        let key_end = self.pos;
        self.skip_space();
        if self.peek() != Some('=') {
            if written.is_empty() {
                return Err(self.error(key_start, PolicyErrorKind::MissingMatcher));
            }
            let kind = PolicyErrorKind::MissingEquals {
                key: written.to_owned(),
            };
            return Err(self.error(key_end, kind));
        }
        if written.is_empty() {
            return Err(self.error(key_start, PolicyErrorKind::MissingKey));
        }
        let Some(key) = Target::parse(written) else {
            let kind = PolicyErrorKind::UnknownKey {
                key: written.to_owned(),
            };
            return Err(self.error(key_start, kind));
        };
        self.bump();
        self.skip_space();
        let value_start = self.pos;
        let value = if self.peek() == Some('"') {
            self.quoted()?
        } else {
            self.bare()?
        };
        if value.is_empty() {
            let kind = PolicyErrorKind::EmptyValue {
                key: written.to_owned(),
            };
            return Err(self.error(value_start, kind));
        }
        key.add_to(rule, value)
            .map_err(|kind| self.error(value_start, kind))
    }

    fn quoted(&mut self) -> Result<String, PolicyParseError> {
        let open = self.pos;
        self.bump();
        let mut value = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None => return Err(self.error(open, PolicyErrorKind::UnterminatedQuote)),
                Some('"') => break,
                Some('\\') => match self.bump() {
                    Some(c @ ('"' | '\\')) => value.push(c),
                    Some(escape) => {
                        return Err(self.error(at, PolicyErrorKind::BadEscape { escape }));
                    }
                    None => return Err(self.error(open, PolicyErrorKind::UnterminatedQuote)),
                },
                Some(c) => value.push(c),
            }
        }
        self.skip_space();
        match self.peek() {
            Some(found) if !self.at_end_of_matcher() => {
                Err(self.error(self.pos, PolicyErrorKind::UnexpectedAfterQuote { found }))
            }
            _ => Ok(value),
        }
    }

    fn bare(&mut self) -> Result<String, PolicyParseError> {
        let start = self.pos;
        while !self.at_end_of_matcher() {
            if self.peek() == Some('"') {
                return Err(self.error(self.pos, PolicyErrorKind::UnexpectedQuote));
            }
            self.bump();
        }
        let value = self.src.get(start..self.pos).unwrap_or("");
        Ok(value.trim_end_matches(is_space).to_owned())
    }
}

impl Key {
    /// The key for a name attribute, when the attribute type has one.
    pub(super) fn for_attribute(issuer: bool, attribute_oid: &str) -> Option<Self> {
        Some(match (issuer, attribute_oid) {
            (false, oid::COMMON_NAME) => Self::Cn,
            (false, oid::ORGANIZATION) => Self::O,
            (false, oid::ORGANIZATIONAL_UNIT) => Self::Ou,
            (true, oid::COMMON_NAME) => Self::IssuerCn,
            (true, oid::ORGANIZATION) => Self::IssuerO,
            (true, oid::ORGANIZATIONAL_UNIT) => Self::IssuerOu,
            _ => return None,
        })
    }
}

/// What a written key stands for: a fixed key, or a name attribute by dotted OID.
enum Target {
    Key(Key),
    Subject(String),
    Issuer(String),
}

impl Target {
    fn parse(written: &str) -> Option<Self> {
        let key = written.to_ascii_lowercase();
        if let Some(key) = Key::from_text(&key) {
            return Some(Self::Key(key));
        }
        match key.strip_prefix("issuer.") {
            Some(dotted) if is_dotted_oid(dotted) => Some(Self::Issuer(dotted.to_owned())),
            None if is_dotted_oid(&key) => Some(Self::Subject(key)),
            _ => None,
        }
    }

    fn add_to(self, rule: Rule, value: String) -> Result<Rule, PolicyErrorKind> {
        let key = match self {
            Self::Subject(oid) => return Ok(rule.subject_attribute(oid, value)),
            Self::Issuer(oid) => return Ok(rule.issuer_attribute(oid, value)),
            Self::Key(key) => key,
        };
        Ok(match key {
            Key::Cn => rule.subject_attribute(oid::COMMON_NAME, value),
            Key::O => rule.subject_attribute(oid::ORGANIZATION, value),
            Key::Ou => rule.subject_attribute(oid::ORGANIZATIONAL_UNIT, value),
            Key::IssuerCn => rule.issuer_attribute(oid::COMMON_NAME, value),
            Key::IssuerO => rule.issuer_attribute(oid::ORGANIZATION, value),
            Key::IssuerOu => rule.issuer_attribute(oid::ORGANIZATIONAL_UNIT, value),
            Key::Dns => {
                rule.dns_name(DnsPattern::new(&value).map_err(PolicyErrorKind::InvalidDnsPattern)?)
            }
            Key::Uri => rule.uri(value),
            Key::Email => {
                let valid = value
                    .rsplit_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
                if !valid {
                    return Err(PolicyErrorKind::InvalidEmail { value });
                }
                rule.email(value)
            }
            Key::Ip => match value.parse::<IpAddr>() {
                Ok(ip) => rule.ip_address(ip),
                Err(_) => return Err(PolicyErrorKind::InvalidIpAddress { value }),
            },
            Key::Spiffe => {
                rule.spiffe_id(SpiffeId::parse(&value).map_err(PolicyErrorKind::InvalidSpiffeId)?)
            }
            Key::SpiffeDomain => {
                let domain = value.strip_prefix("spiffe://").unwrap_or(&value);
                let valid = !domain.contains('/')
                    && SpiffeId::parse(&format!("spiffe://{}", domain.to_ascii_lowercase()))
                        .is_ok();
                if !valid {
                    return Err(PolicyErrorKind::InvalidSpiffeTrustDomain { value });
                }
                rule.spiffe_trust_domain(domain)
            }
            Key::Sha256 => rule.sha256(parse_fingerprint(&value)?),
            Key::SpkiSha256 => rule.spki_sha256(parse_fingerprint(&value)?),
        })
    }
}

fn parse_fingerprint(value: &str) -> Result<Fingerprint, PolicyErrorKind> {
    value.parse().map_err(PolicyErrorKind::InvalidFingerprint)
}

fn is_dotted_oid(s: &str) -> bool {
    s.split('.').count() >= 2
        && s.split('.')
            .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ClientCertPolicy {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn err(s: &str) -> PolicyParseError {
        match s.parse::<ClientCertPolicy>() {
            Ok(p) => panic!("{s:?} should not parse, got {p}"),
            Err(e) => e,
        }
    }

    /// The rules' text forms, for compact assertions.
    fn rules(s: &str) -> Vec<String> {
        parse(s).rules().iter().map(ToString::to_string).collect()
    }

    const FP: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

    #[test]
    fn one_rule_one_matcher() {
        assert_eq!(rules("cn=steadybit-agent"), ["cn=steadybit-agent"]);
    }

    #[test]
    fn rules_split_on_pipes_and_new_lines_matchers_on_ampersands() {
        assert_eq!(
            rules("cn=a & o=b | ou=c\ndns=x.example.com&uri=spiffe://d/e"),
            ["cn=a & o=b", "ou=c", "dns=x.example.com & uri=spiffe://d/e"]
        );
    }

    #[test]
    fn whitespace_blank_lines_and_crlf_are_tolerated() {
        let text =
            "\n  \t cn = agent one \t &\to=Steadybit  \r\n\r\n   ou=x |\tip = 10.0.0.1  \n\n";
        assert_eq!(
            rules(text),
            ["cn=agent one & o=Steadybit", "ou=x", "ip=10.0.0.1"]
        );
    }

    #[test]
    fn every_key_parses() {
        let text = format!(
            "cn=a & o=b & ou=c & issuer.cn=d & issuer.o=e & issuer.ou=f & dns=*.example.com \
             & uri=https://example.com/x?y=z & email=me@Example.com & ip=::1 \
             & spiffe=spiffe://example.org/agent & spiffe-domain=Example.org \
             & sha256={FP} & spki-sha256={} & 2.5.4.5=42 & issuer.0.9.2342.19200300.100.1.25=com",
            FP.to_uppercase()
        );
        assert_eq!(
            rules(&text),
            [format!(
                "cn=a & o=b & ou=c & issuer.cn=d & issuer.o=e & issuer.ou=f & dns=*.example.com \
                 & uri=https://example.com/x?y=z & email=me@Example.com & ip=::1 \
                 & spiffe=spiffe://example.org/agent & spiffe-domain=example.org \
                 & sha256={FP} & spki-sha256={FP} & 2.5.4.5=42 & issuer.0.9.2342.19200300.100.1.25=com"
            )]
        );
    }

    #[test]
    fn keys_are_case_insensitive() {
        assert_eq!(
            rules(&format!(
                "CN=a & Issuer.O=b & DNS=X.example.com & SPKI-SHA256={FP}"
            )),
            [format!(
                "cn=a & issuer.o=b & dns=x.example.com & spki-sha256={FP}"
            )]
        );
    }

    #[test]
    fn fingerprints_take_colons() {
        let colons = FP
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(rules(&format!("sha256={colons}")), [format!("sha256={FP}")]);
    }

    #[test]
    fn quoted_values_hold_separators_quotes_and_backslashes() {
        let policy = parse(r#"cn="agent, O=Steadybit" & ou = " a & b | c " | o="say \"hi\" \\o/""#);
        assert_eq!(policy.rules().len(), 2);
        assert_eq!(
            policy.to_string(),
            r#"cn=agent, O=Steadybit & ou=" a & b | c " | o="say \"hi\" \\o/""#
        );
        // A quoted value may span lines and use `=`.
        assert_eq!(
            rules("cn=\"two\nlines\"\nuri=a=b"),
            ["cn=\"two\nlines\"", "uri=a=b"]
        );
    }

    #[test]
    fn display_parses_back_to_the_same_policy() {
        let text =
            r##"cn="a&b" & o=x | dns=*.k8s.example.com | ip=10.1.2.3 & email="q\"r@example.com""##;
        let once = parse(text).to_string();
        assert_eq!(parse(&once).to_string(), once);
    }

    #[track_caller]
    fn assert_error(text: &str, line: usize, column: usize, kind: PolicyErrorKind) {
        let e = err(text);
        assert_eq!(e.kind(), &kind, "{text:?}: {e}");
        assert_eq!((e.line(), e.column()), (line, column), "{text:?}: {e}");
    }

    #[test]
    fn empty_policies_are_errors() {
        for text in ["", "   ", "\n\n", " \r\n \t "] {
            assert_error(text, 1, 1, PolicyErrorKind::EmptyPolicy);
        }
    }

    #[test]
    fn empty_rules_are_errors() {
        assert_error("cn=a || o=b", 1, 7, PolicyErrorKind::EmptyRule);
        assert_error("cn=a | | o=b", 1, 8, PolicyErrorKind::EmptyRule);
        assert_error("| cn=a", 1, 1, PolicyErrorKind::EmptyRule);
        assert_error("cn=a |", 1, 6, PolicyErrorKind::EmptyRule);
        assert_error("cn=a |  \ncn=b", 1, 6, PolicyErrorKind::EmptyRule);
        assert_error("cn=a\n  | cn=b", 2, 3, PolicyErrorKind::EmptyRule);
    }

    #[test]
    fn missing_matchers_around_ampersands_are_errors() {
        assert_error("cn=a &", 1, 7, PolicyErrorKind::MissingMatcher);
        assert_error("cn=a & | o=b", 1, 8, PolicyErrorKind::MissingMatcher);
        assert_error("cn=a && o=b", 1, 7, PolicyErrorKind::MissingMatcher);
        assert_error("& cn=a", 1, 1, PolicyErrorKind::MissingMatcher);
        assert_error("o=b\n  & cn=a", 2, 3, PolicyErrorKind::MissingMatcher);
    }

    #[test]
    fn key_errors() {
        assert_error("=agent", 1, 1, PolicyErrorKind::MissingKey);
        assert_error("o=x &  = agent", 1, 8, PolicyErrorKind::MissingKey);
        assert_error("\"cn\"=agent", 1, 1, PolicyErrorKind::MissingMatcher);
        assert_error(
            "cn",
            1,
            3,
            PolicyErrorKind::MissingEquals { key: "cn".into() },
        );
        assert_error(
            "o=x & cn agent | o=y",
            1,
            9,
            PolicyErrorKind::MissingEquals { key: "cn".into() },
        );
        assert_error(
            "o=x\nsubject=agent",
            2,
            1,
            PolicyErrorKind::UnknownKey {
                key: "subject".into(),
            },
        );
        for key in ["issuer.dns", "1.", "issuer.", "2..5", "x.1"] {
            let e = err(&format!("{key}=v"));
            assert_eq!(e.kind(), &PolicyErrorKind::UnknownKey { key: key.into() });
        }
    }

    #[test]
    fn empty_values_are_errors() {
        assert_error(
            "cn=",
            1,
            4,
            PolicyErrorKind::EmptyValue { key: "cn".into() },
        );
        assert_error(
            "cn=  & o=a",
            1,
            6,
            PolicyErrorKind::EmptyValue { key: "cn".into() },
        );
        assert_error(
            "o=a | CN = \"\"",
            1,
            12,
            PolicyErrorKind::EmptyValue { key: "CN".into() },
        );
    }

    #[test]
    fn quoting_errors() {
        assert_error("cn=\"agent", 1, 4, PolicyErrorKind::UnterminatedQuote);
        assert_error("cn=\"agent\\", 1, 4, PolicyErrorKind::UnterminatedQuote);
        assert_error("cn=\"agent\\\"", 1, 4, PolicyErrorKind::UnterminatedQuote);
        assert_error(
            "cn=\"a\\nb\"",
            1,
            6,
            PolicyErrorKind::BadEscape { escape: 'n' },
        );
        assert_error("cn=ag\"ent\"", 1, 6, PolicyErrorKind::UnexpectedQuote);
        assert_error(
            "cn=\"agent\" x",
            1,
            12,
            PolicyErrorKind::UnexpectedAfterQuote { found: 'x' },
        );
        assert_error(
            "cn=\"agent\"\"x\"",
            1,
            11,
            PolicyErrorKind::UnexpectedAfterQuote { found: '"' },
        );
    }

    #[test]
    fn value_errors_point_at_the_value() {
        let e = err("o=a & sha256=abc");
        assert!(matches!(e.kind(), PolicyErrorKind::InvalidFingerprint(_)));
        assert_eq!((e.line(), e.column(), e.position()), (1, 14, 13));
        let e = err(&format!("spki-sha256={}zz", &FP[..62]));
        assert!(matches!(e.kind(), PolicyErrorKind::InvalidFingerprint(_)));

        assert_error(
            "ip=10.0.0.256",
            1,
            4,
            PolicyErrorKind::InvalidIpAddress {
                value: "10.0.0.256".into(),
            },
        );
        assert_error(
            "ip=10.0.0.0/8",
            1,
            4,
            PolicyErrorKind::InvalidIpAddress {
                value: "10.0.0.0/8".into(),
            },
        );

        let e = err("spiffe = spiffe://Example.org/agent");
        assert!(matches!(e.kind(), PolicyErrorKind::InvalidSpiffeId(_)));
        assert_eq!(e.column(), 10);
        assert!(matches!(
            err("spiffe=http://example.org").kind(),
            PolicyErrorKind::InvalidSpiffeId(_)
        ));

        for bad in ["example.org/path", "exa mple.org", "spiffe://", "ex@mple"] {
            assert_eq!(
                err(&format!("spiffe-domain=\"{bad}\"")).kind(),
                &PolicyErrorKind::InvalidSpiffeTrustDomain { value: bad.into() },
            );
        }
        assert_eq!(
            rules("spiffe-domain=spiffe://Prod.example.org"),
            ["spiffe-domain=prod.example.org"]
        );

        let e = err("dns=foo.*.example.com");
        assert!(matches!(e.kind(), PolicyErrorKind::InvalidDnsPattern(_)));
        assert!(
            e.to_string()
                .contains("'*' may only be the whole left-most label")
        );

        for bad in ["agent", "@example.com", "agent@"] {
            assert_eq!(
                err(&format!("email={bad}")).kind(),
                &PolicyErrorKind::InvalidEmail { value: bad.into() },
            );
        }
    }

    #[test]
    fn errors_name_line_and_column_in_their_message() {
        let e = err("cn=a\n  o=b & bogus=1");
        assert_eq!(
            e.to_string(),
            "invalid client certificate policy at line 2, column 9: unknown key `bogus` (expected cn, o, ou, issuer.cn, issuer.o, issuer.ou, dns, uri, email, ip, spiffe, spiffe-domain, sha256, spki-sha256 or a dotted OID)"
        );
        assert_eq!(e.position(), 13);
        // Columns count characters, not bytes.
        assert_eq!(err("cn=äöü & x=1").column(), 10);
    }

    #[test]
    fn builder_and_iterator_forms() {
        let policy: ClientCertPolicy = [Rule::new().subject_cn("a"), Rule::new().subject_o("b")]
            .into_iter()
            .collect();
        let mut policy = policy.allow(Rule::new().uri("u"));
        policy.extend([Rule::new().email("e@x")]);
        assert_eq!(policy.to_string(), "cn=a | o=b | uri=u | email=e@x");
        assert_eq!(policy.into_iter().count(), 4);
        assert!(ClientCertPolicy::new().is_empty());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn parsing_never_panics(text in "\\PC{0,80}") {
                let _ = text.parse::<ClientCertPolicy>();
            }

            #[test]
            fn parsing_never_panics_on_policy_like_text(
                text in "[ \t\r\n|&=\"\\\\a-z0-9.:*@/-]{0,60}"
            ) {
                if let Err(e) = text.parse::<ClientCertPolicy>() {
                    prop_assert!(e.position() <= text.len());
                }
            }

            #[test]
            fn any_value_round_trips_through_display(value in "\\PC{1,40}") {
                let policy = ClientCertPolicy::new().allow(Rule::new().subject_cn(value.clone()).issuer_o("x"));
                let text = policy.to_string();
                let reparsed: ClientCertPolicy = text.parse().map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
                prop_assert_eq!(reparsed.to_string(), text);
            }
        }
    }
}
